"""Durability: every acknowledged document survives kill -9 of Chroma, of ingestion (once in the
middle of a large POST), of query, and of all three together.

Real processes started from the compose file's own commands (gunicorn, uvicorn workers, `chroma
run` at the pinned version), 2,000+ SciFact abstracts posted through the ingestion API (past the
1,000-record mark where Chroma 1.5.x users report vector indexes that fail to load after a
restart), and after every restart: each acknowledged id present, and searchable, found first for
its own text. Marked `durability`: `.ci/run` runs it (`make test-durability`), `make test` does not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deploy.local.compose import LocalLayout, local_services
from deploy.local.stack import child_environment
from tests.conftest import ROOT, free_port, wait_http
from tests.deploy.procs import resolve
from twotower.beir import iter_corpus

pytestmark = pytest.mark.durability
KEY = "durability-key"
N_DOCS = 2_100


@dataclass
class Processes:
    urls: dict[str, str]
    ready: dict[str, str]
    logs: Path
    argv: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, dict[str, str]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, *names: str) -> None:
        for name in names:
            out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
            self.procs[name] = subprocess.Popen(
                self.argv[name], env=self.env[name], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        for name in names:
            wait_http(self.ready[name], timeout=300, proc=self.procs[name])

    def kill(self, *names: str) -> None:
        for name in names:
            os.killpg(self.procs[name].pid, signal.SIGKILL)
            self.procs[name].wait(timeout=30)


@pytest.fixture(scope="module")
def stack(published_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    tmp = tmp_path_factory.mktemp("durability")
    layout = LocalLayout(
        ports={"chroma": free_port(), "ingest": free_port(), "query": free_port()},
        data_dir=tmp / "data",
        weights_dir=published_base,
    )
    services = local_services(layout, variables={"INGEST_API_KEY": KEY, "QUERY_WORKERS": "1"})
    procs = Processes(
        {n: s.url for n, s in services.items()},
        # /healthz for query: its /readyz is 503 until the first document is posted.
        {n: s.ready_url for n, s in services.items()},
        tmp,
    )
    for name, service in services.items():
        env = child_environment(service.env)
        procs.argv[name], procs.env[name] = resolve(service.argv, env), env
    try:
        procs.start(*services)
        yield procs
    finally:
        for proc in procs.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def documents(scifact_dir: Path) -> list[dict[str, str]]:
    docs = [d for _, d in zip(range(N_DOCS + 1000), iter_corpus(scifact_dir), strict=False)]
    # Short enough that each is one passage; distinct enough that each is found first for its text.
    return [{"id": d.id, "text": " ".join(d.text.split()[:60])} for d in docs if len(d.text.split()) > 30]


def post(stack: Processes, docs: list[dict[str, str]]) -> httpx.Response:
    return httpx.post(
        f"{stack.urls['ingest']}/documents", json={"documents": docs}, headers={"X-API-Key": KEY}, timeout=600
    )


def verify(stack: Processes, acknowledged: dict[str, str], *, search_all: bool) -> None:
    """Every acknowledged document is stored with its text, and found first for its own text (all of
    them, or every 20th between the intermediate restarts)."""
    wait_http(f"{stack.urls['query']}/readyz", timeout=120)
    with httpx.Client(timeout=60) as http:
        for doc_id, text in acknowledged.items():
            got = http.get(f"{stack.urls['ingest']}/documents/{doc_id}")
            assert got.status_code == 200 and got.json()["text"] == text, (doc_id, got.text[:200])
        sample = list(acknowledged.items())[:: 1 if search_all else 20]
        for doc_id, text in sample:
            hits = http.post(f"{stack.urls['query']}/search", json={"query": text, "k": 1}).json()["results"]
            assert [h["id"] for h in hits] == [doc_id], (doc_id, hits)
        stats = http.get(f"{stack.urls['ingest']}/stats").json()
    assert stats["count"] >= len(acknowledged)


def test_acknowledged_documents_survive_kill_9_of_every_process(
    stack: Processes, documents: list[dict[str, str]]
) -> None:
    acknowledged: dict[str, str] = {}
    first, rest = documents[:N_DOCS], documents[N_DOCS:]
    for start in range(0, len(first), 250):
        batch = first[start : start + 250]
        response = post(stack, batch)
        assert response.status_code == 200, response.text
        acknowledged.update({d["id"]: d["text"] for d in batch})
    verify(stack, acknowledged, search_all=False)

    stack.kill("chroma")  # the index process dies
    stack.start("chroma")
    verify(stack, acknowledged, search_all=False)

    # Ingestion dies in the middle of a large POST: it acknowledged nothing of it.
    answer: list[httpx.Response | Exception] = []
    # Long texts (several passages each, 400,000 characters in all, under the request's bound) keep
    # the POST busy for seconds even on a fast CPU, so the kill lands while it embeds.
    large = [{**d, "text": (d["text"] + " ") * 4 + "(posted while killed)"} for d in rest[:250]]
    poster = threading.Thread(target=lambda: answer.append(_try(lambda: post(stack, large))))
    poster.start()
    time.sleep(1.5)
    stack.kill("ingest")
    poster.join(timeout=120)
    assert answer and not (isinstance(answer[0], httpx.Response) and answer[0].status_code == 200)
    stack.start("ingest")
    verify(stack, acknowledged, search_all=False)

    stack.kill("query")
    stack.start("query")
    verify(stack, acknowledged, search_all=False)

    # All three at once, then everything again, every document searched for.
    more = rest[250:450]
    assert post(stack, more).status_code == 200
    acknowledged.update({d["id"]: d["text"] for d in more})
    stack.kill("query", "ingest", "chroma")
    stack.start("chroma", "ingest", "query")
    verify(stack, acknowledged, search_all=True)


def _try(call: object) -> httpx.Response | Exception:
    try:
        return call()  # type: ignore[operator,no-any-return]
    except httpx.HTTPError as exc:
        return exc
