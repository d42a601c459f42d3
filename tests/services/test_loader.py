"""The demo-corpus loader (`python -m services.loader`) against live services, and its corpus readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, ChromaServer
from tests.services.conftest import Api, ingest_service, query_service
from twotower.corpus import open_corpus, to_document
from twotower.limits import MAX_TEXT_CHARS


def loader_command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "services.loader", "--url", url, *args]


def loader_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "INGEST_API_KEY"}
    env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'shared'}"
    return env


def run_loader(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        loader_command(url, *args), capture_output=True, text=True, timeout=300, cwd=ROOT, env=loader_env()
    )


@pytest.fixture(scope="module")
def demo_stack(chroma_server: ChromaServer, base_weights: Path) -> Iterator[tuple[Api, Api]]:
    with (
        ingest_service(chroma_server, base_weights, "loader") as ingest,
        query_service(chroma_server, base_weights, "loader") as query,
    ):
        yield ingest, query


def test_loader_fills_an_empty_index_once(demo_stack: tuple[Api, Api]) -> None:
    ingest, query = demo_stack
    # Before any load the query service says why it cannot answer.
    not_ready = query.http.get("/readyz")
    assert not_ready.status_code == 503 and "no documents indexed" in not_ready.json()["detail"]
    refused = query.http.post("/search", json={"query": "assert"})
    assert refused.status_code == 503 and "no documents indexed" in refused.json()["detail"]

    first = run_loader(ingest.url, "--wait", "30", "--if-empty", "--limit", "12", "--batch-size", "5")
    assert first.returncode == 0, first.stderr
    summary = first.stderr.strip().splitlines()[-1]
    assert summary.startswith("loaded 12 documents from Python language reference topics")
    assert "in 3 requests" in summary and "the index now holds 12" in summary
    assert ingest.http.get("/stats").json()["count"] == 12

    second = run_loader(ingest.url, "--if-empty")
    assert second.returncode == 0, second.stderr
    assert "already holds 12 documents: nothing loaded" in second.stderr
    assert ingest.http.get("/stats").json()["count"] == 12

    # What was loaded is what the query service finds.
    assert query.http.get("/readyz").status_code == 200
    hits = query.http.post("/search", json={"query": "the assert statement for debugging", "k": 3}).json()
    assert hits["results"][0]["id"] == "assert"
    assert hits["results"][0]["metadata"] == {"source": "python-reference"}


def test_loader_retries_until_chroma_is_back(
    chroma_server: ChromaServer, ingest_api: Api, tmp_path: Path
) -> None:
    corpus = tmp_path / "notes.jsonl"
    rows = [{"_id": f"retry-{i}", "title": f"Note {i}", "text": f"Retry note number {i}."} for i in range(3)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with chroma_server.stopped():
        proc = subprocess.Popen(
            loader_command(ingest_api.url, "--corpus", str(corpus), "--retries", "8"),
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=loader_env(),
        )
        assert proc.stderr is not None
        seen: list[str] = []
        # Keep Chroma down until the loader has been refused (503) and is backing off.
        for line in proc.stderr:
            seen.append(line)
            if "retry 1/8" in line:
                break
        assert any("HTTP 503" in line for line in seen), seen
    stderr = proc.stderr
    reader = threading.Thread(target=lambda: seen.extend(stderr))
    reader.start()
    assert proc.wait(timeout=120) == 0, "".join(seen)
    reader.join()
    assert "loaded 3 documents" in seen[-1]
    assert ingest_api.http.get("/documents/retry-2").json()["title"] == "Note 2"


def test_loader_reports_a_missing_corpus(ingest_api: Api) -> None:
    result = run_loader(ingest_api.url, "--corpus", "/no/such/corpus")
    assert result.returncode == 1 and "no corpus at /no/such/corpus" in result.stderr


def test_corpus_rows_become_api_documents() -> None:
    notes: dict[str, int] = {}
    assert to_document(
        {"_id": 5, "title": "T", "text": "body", "metadata": {"a": 1, "b": {"x": 1}, "_c": 2}}, notes
    ) == {"id": "5", "title": "T", "text": "body", "metadata": {"a": 1}}
    assert to_document({"id": "t", "title": "Only a title", "text": " "}, notes) == {
        "id": "t",
        "text": "Only a title",
    }
    assert to_document({"id": "e", "text": ""}, notes) is None
    assert to_document({"text": "no id"}, notes) is None
    long = to_document({"id": "l", "text": "x" * (MAX_TEXT_CHARS + 5)}, notes)
    assert long is not None and len(long["text"]) == MAX_TEXT_CHARS
    # What the API would refuse (and so fail the whole batch) is skipped or dropped here.
    assert to_document({"id": "a/b", "text": "x"}, notes) is None
    assert to_document({"id": "s", "text": "bad \ud800"}, notes) is None
    odd = {"big": 2**63, "nan": float("nan"), "$and": 1, "ok": 2**63 - 1}
    assert to_document({"id": "m", "text": "x", "metadata": odd}, notes) == {
        "id": "m",
        "text": "x",
        "metadata": {"ok": 2**63 - 1},
    }
    assert notes == {
        "metadata values dropped (nested, null, out of bounds or reserved key)": 5,
        "skipped (no text)": 1,
        "skipped (no id)": 1,
        "skipped (id the API refuses: see twotower.limits.ID_CHARSET)": 1,
        "skipped (text is not valid Unicode)": 1,
        f"truncated to {MAX_TEXT_CHARS:,} characters": 1,
    }


def test_corpus_sources(tmp_path: Path, scifact_dir: Path) -> None:
    topics = open_corpus(None, limit=3)
    docs = list(topics.documents)
    assert topics.total == 3 and [d["id"] for d in docs] == ["assert", "assignment", "async"]
    assert all(d["title"] == d["id"] and d["text"].strip() for d in docs)

    beir = open_corpus(str(scifact_dir), limit=4)
    assert beir.total == 4 and len(list(beir.documents)) == 4

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "text": "fine"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not JSON"):
        list(open_corpus(str(bad)).documents)
