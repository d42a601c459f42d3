"""The Chroma store on a real `chroma run` server: chunked upserts, the cached max batch size."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from chromadb.api.models.Collection import Collection

from twotower.index.store import ChromaStore, Record


def _records(n: int) -> tuple[list[Record], np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    records = [Record(f"d{i}", f"text {i}", None, {"i": i}) for i in range(n)]
    return records, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_upsert_sends_chunks_no_larger_than_the_servers_max_batch(
    chroma_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ChromaStore(chroma_server.host, chroma_server.port, "chunks")
    assert store.max_batch_size() > 1000  # the real server's limit, asked once
    store._max_batch = 3  # a small limit, so 8 records need 3 requests
    sizes: list[int] = []
    real_upsert = Collection.upsert

    def spy(self: Collection, *args: Any, **kwargs: Any) -> None:
        sizes.append(len(kwargs["ids"]))
        real_upsert(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", spy)
    records, vectors = _records(8)
    assert store.upsert("v1", records, vectors) == 8
    assert sizes == [3, 3, 2]
    assert store.count("v1") == 8
    assert store.get("v1", "d7") == Record("d7", "text 7", None, {"i": 7})


def test_max_batch_size_is_asked_once_per_connection(
    chroma_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ChromaStore(chroma_server.host, chroma_server.port, "cached")
    records, vectors = _records(2)
    store.upsert("v1", records, vectors)
    client = store._connect()
    asked: list[int] = []
    real = type(client).get_max_batch_size
    monkeypatch.setattr(type(client), "get_max_batch_size", lambda self: asked.append(1) or real(self))
    store.upsert("v1", records, vectors)
    store.upsert("v1", records, vectors)
    assert asked == []
