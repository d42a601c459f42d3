"""`python -m bench.lean`: the lean server it measures against the service must answer searches as
the service's `search()` does (same request and response models), and the whole run must work."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.lean import LEAN, SERVICE, LeanApp, main, parse_args
from services.query.schemas import SearchHit, SearchRequest, SearchResponse
from tests.conftest import LiveServer


def _answer(request: SearchRequest) -> SearchResponse:
    hit = SearchHit(id="d1", title=None, text="t", metadata={"n": 1}, distance=0.25, score=0.75)
    return SearchResponse(
        query=request.query, model_version="v1", mode=request.mode, took_ms=1.0, results=[hit]
    )


@pytest.mark.parametrize("inline", [True, False])
def test_the_lean_server_answers_a_search_with_the_services_models(inline: bool) -> None:
    seen: list[SearchRequest] = []

    def search(request: SearchRequest) -> SearchResponse:
        seen.append(request)
        return _answer(request)

    with LiveServer(LeanApp(search, inline=inline)) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        response = http.post("/search", json={"query": "  what is x ", "k": 3, "mode": "dense"})
        assert response.status_code == 200, response.text
        assert SearchResponse.model_validate(response.json()) == _answer(
            SearchRequest(query="what is x", mode="dense")
        )
        assert seen[0] == SearchRequest(query="what is x", k=3, mode="dense")
        bad = http.post("/search", json={"query": "   ", "k": 0})
        assert bad.status_code == 422
        assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {("query",), ("k",)}
        assert http.get("/search").status_code == 404
    assert len(seen) == 1


def test_an_inline_search_runs_on_the_event_loop_and_a_threaded_one_does_not() -> None:
    threads: dict[bool, Any] = {}
    for inline in (True, False):

        def search(request: SearchRequest, inline: bool = inline) -> SearchResponse:
            threads[inline] = threading.current_thread()
            return _answer(request)

        with LiveServer(LeanApp(search, inline=inline)) as server:
            assert httpx.post(f"{server.url}/search", json={"query": "x"}).status_code == 200
            assert (threads[inline] is server.thread) is inline


def test_clients_are_chosen_by_name_once_each() -> None:
    assert parse_args(["--clients", "stdlib, httpx,stdlib"]).clients == ["stdlib", "httpx"]
    assert parse_args([]).clients == ["httpx", "stdlib"]
    for wrong in ("curl", "", "httpx,curl"):
        with pytest.raises(SystemExit):
            parse_args(["--clients", wrong])


@pytest.mark.slow  # a Chroma server, both services under gunicorn and two lean servers: about 25 s
def test_a_run_measures_the_service_and_both_lean_servers_against_the_floor(
    published_base: Path, scifact_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lean.json"
    argv = ["--corpus", str(scifact_dir), "--weights-dir", str(published_base), "--docs", "16"]
    assert main([*argv, "--queries", "10", "--rounds", "3", "--slice", "5", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["servers"]) == {SERVICE, *LEAN}
    for server in report["servers"].values():
        assert set(server) == {"httpx", "stdlib"}
        for client, summary in server.items():
            assert summary["http_client"] == client
            assert summary["queries"] == 15 and summary["errors"] == 0
            assert summary["http_p50_over_floor"] > 0
    assert report["floor"]["total"]["p50_ms"] > 0
