"""bench.stack, the one launcher every benchmark measures: Chroma and both services under gunicorn
serve, the settings a benchmark passes reach the services (and the caller's own QUERY_* do not),
and nothing is left running afterwards."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.stack import running_stack


@pytest.mark.stack  # starts Chroma and both services under gunicorn, each loading the model
def test_the_stack_serves_its_settings_and_leaves_no_process_behind(
    published_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUERY_MAX_BODY_BYTES", "1")  # invalid: the query service would not start
    extra = {"QUERY_MAX_BODY_BYTES": "1024", "QUERY_ONNX_VARIANT": "fp32"}
    with running_stack("onnx", published_base, tmp_path, query_workers=1, extra=extra) as stack:
        processes = (stack.chroma, stack.ingest, stack.query)
        pids = [pid for process in processes for pid in process.pids()]
        assert len(pids) == 5  # Chroma; each gunicorn master and its worker
        doc = {"id": "bench-1", "title": "Loops", "text": "A for loop repeats its body for each item."}
        httpx.post(f"{stack.ingest.url}/documents", json={"documents": [doc]}, timeout=60).raise_for_status()
        found = httpx.post(f"{stack.query.url}/search", json={"query": "for loop", "k": 1}, timeout=60)
        assert [hit["id"] for hit in found.json()["results"]] == ["bench-1"]
        too_big = httpx.post(f"{stack.query.url}/search", json={"query": "x" * 2000}, timeout=60)
        assert too_big.status_code == 413
        assert set(stack.query.peak_rss_mb()) == {"main", "worker1"}
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
