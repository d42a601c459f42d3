"""Reindexing against a real Chroma server: every record re-embedded with the new document tower,
text/title/metadata carried over, resumable, and the completeness marker set and cleared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training import reindex as reindex_module
from training.reindex import ReindexError, reindex
from twotower import DualTowerWithFC, format_document, publish
from twotower.index.store import ChromaStore, Record

RECORDS = [
    Record(
        f"doc-{i}", f"text number {i} about {topic}", f"Title {i}" if i % 2 else None, {"n": i, "src": "t"}
    )
    for i, topic in enumerate(["proteins", "stars", "rivers", "taxes", "music", "cells", "glaciers"])
]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, DualTowerWithFC]:
    root = tmp_path_factory.mktemp("reindex-weights")
    model = DualTowerWithFC(device="cpu")
    return root, publish(model, root), model


def fresh_store(chroma_server: Any, prefix: str) -> ChromaStore:
    store = ChromaStore(chroma_server.host, chroma_server.port, prefix)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(RECORDS), 384)).astype(np.float32)
    store.upsert("old", RECORDS, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return store


def test_reindex_copies_everything_with_new_embeddings(chroma_server: Any, published: Any) -> None:
    root, version, model = published
    store = fresh_store(chroma_server, "rx1")
    result = reindex(store, root, batch_size=3, progress=False)
    assert (result.source, result.target) == ("old", version)
    assert (result.embedded, result.skipped, result.total) == (7, 0, 7)
    assert store.count(version) == 7 and store.incomplete_reason(version) is None
    for record in RECORDS:
        got = store.get(version, record.id)
        assert got is not None
        assert (got.text, got.title, got.metadata) == (record.text, record.title, record.metadata)
    # the stored vectors are the new document tower's: each document is its own nearest neighbour
    expected = model.encode_documents([format_document(r.text, r.title) for r in RECORDS])
    for record, vector in zip(RECORDS, expected, strict=True):
        hit = store.query(version, vector, 1)[0]
        assert hit.id == record.id and hit.distance is not None and hit.distance < 1e-4


def test_interrupted_reindex_is_marked_incomplete_and_resumes(
    chroma_server: Any, published: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, version, _ = published
    store = fresh_store(chroma_server, "rx2")
    real_upsert, calls = store.upsert, []

    def failing_upsert(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped half way
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(store, "upsert", failing_upsert)
    with pytest.raises(KeyboardInterrupt):
        reindex(store, root, batch_size=3, progress=False)
    monkeypatch.setattr(store, "upsert", real_upsert)
    assert store.count(version) == 3
    reason = store.incomplete_reason(version)
    assert reason is not None and "incomplete" in reason and "old" in reason

    result = reindex(store, root, batch_size=3, progress=False)
    assert (result.embedded, result.skipped) == (4, 3)
    assert store.count(version) == 7 and store.incomplete_reason(version) is None


def test_reindex_refuses_ambiguous_or_missing_sources(
    chroma_server: Any, published: Any, tmp_path: Path
) -> None:
    root, _, _ = published
    store = ChromaStore(chroma_server.host, chroma_server.port, "rx3")
    with pytest.raises(ReindexError, match="no collection of another model version"):
        reindex(store, root, progress=False)
    store.upsert("a", RECORDS[:1], np.ones((1, 384), dtype=np.float32))
    store.upsert("b", RECORDS[:1], np.ones((1, 384), dtype=np.float32))
    with pytest.raises(ReindexError, match="several collections"):
        reindex(store, root, progress=False)
    with pytest.raises(ReindexError, match="nothing published"):
        reindex(store, tmp_path, progress=False)


def test_cli_reports_errors_without_a_traceback(chroma_server: Any, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        reindex_module.main(["--weights-dir", str(tmp_path), "--chroma-port", str(chroma_server.port)])
    assert exit_info.value.code == 2
