"""A model rollout as an operator runs it: real gunicorn workers (2 per service) started from the
compose file's own commands, a real Chroma server, `python -m ops.rollout` as its own process,
while a writer keeps posting, updating and deleting documents and a reader keeps searching.

1. A -> B in one go, then B -> A with the rollout process killed (SIGKILL) half-way and run again:
   afterwards the target's collection holds exactly what the writer's log of acknowledged writes
   says, every search answered 200, and both services report the target without having been
   restarted.
2. A rollout (to whichever version is not served; its collection, if any, is stale and rebuilt) with
   the ingestion service killed mid-migration and again after the promotion: the new ingestion
   processes join the migration (dual writes) and then serve the target; no search is ever answered
   from a partial index, and nothing acknowledged is lost. (Marked `durability`: CI runs it with
   `make test-durability`; it also runs alone.)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import torch

from deploy.local.compose import LocalLayout, local_services
from deploy.local.stack import child_environment
from tests.conftest import ROOT, free_port, wait_http
from tests.deploy.procs import resolve, stop_group
from twotower import load_published, publish
from twotower.beir import iter_corpus
from twotower.index.documents import DocumentIndex
from twotower.index.serving import ServingPointer
from twotower.index.store import ChromaStore
from twotower.registry import latest_version

# Live rollouts under gunicorn, with processes killed: `make test-stack` (the durability one: `make test-durability`).
pytestmark = pytest.mark.stack

KEY = "rollout-test-key"
PREFIX = "docs"  # the compose file's default


@pytest.fixture(scope="module")
def two_versions(published_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A weights volume with two versions: A, the untrained base, and B, the same with nudged heads
    (another version with other vectors, published with its ONNX export as training does)."""
    weights = tmp_path_factory.mktemp("rollout") / "weights"
    shutil.copytree(published_base, weights)
    a = latest_version(weights)
    assert a is not None
    model = load_published(weights, a, device="cpu")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for head in (model.query_head, model.doc_head):
            head.fc3.weight.add_(0.02 * torch.randn(head.fc3.weight.shape, generator=generator))
    b = publish(model, weights)
    return weights, a, b


@dataclass
class Live:
    weights: Path
    chroma_port: int
    urls: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, dict[str, str]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        self.procs[name] = subprocess.Popen(
            self.argv[name],
            env=self.env[name],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def store(self) -> ChromaStore:
        return ChromaStore("127.0.0.1", self.chroma_port, PREFIX)

    def rollout(self, *args: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "ops.rollout", *args, "--weights-dir", str(self.weights)]
        argv += ["--chroma-port", str(self.chroma_port), "--engine", "onnx", "--batch-size", "8"]
        out = open(self.logs / "rollout.log", "ab")  # noqa: SIM115
        return subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def live(two_versions: tuple[Path, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    weights, a, _ = two_versions
    tmp = tmp_path_factory.mktemp("live")
    layout = LocalLayout(
        ports={"chroma": free_port(), "ingest": free_port(), "query": free_port()},
        data_dir=tmp / "data",
        weights_dir=weights,
    )
    services = local_services(
        layout,
        variables={"INGEST_API_KEY": KEY, "QUERY_WORKERS": "2", "INGEST_WORKERS": "2", "MODEL_VERSION": a},
    )
    stack = Live(weights, layout.ports["chroma"], {n: s.url for n, s in services.items()}, tmp)
    try:
        for name, service in services.items():
            env = child_environment(service.env)
            env["QUERY_POINTER_POLL_S"] = env["INGEST_POINTER_POLL_S"] = "0.5"
            stack.argv[name], stack.env[name] = resolve(service.argv, env), env
            stack.start(name)
            wait_http(service.ready_url, timeout=300, proc=stack.procs[name])
        yield stack
    finally:
        for name in reversed(list(stack.procs)):
            stop_group(stack.procs[name])


class Traffic:
    """A writer (post / update / delete, logging what was acknowledged) and a reader (search)."""

    def __init__(self, live: Live, ids: list[str], seed: int, *, deletes: bool = True) -> None:
        self.live, self.ids, self.rng, self.deletes = live, ids, random.Random(seed), deletes
        self.words = sorted({w for i in ids[:50] for w in i.split("-")} | set(WORDS))
        self.expected: dict[str, str | None] = {}
        # Writes that got no answer (the service was killed) or a 503: each may or may not have
        # taken effect, so the document may end in any of these states (None = absent) until the
        # next acknowledged write of it settles it.
        self.unsettled: dict[str, set[str | None]] = {}
        self.search_errors: list[str] = []
        self.versions_seen: list[str] = []
        self.writes = self.searches = self.refused_writes = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write), threading.Thread(target=self._search)]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def _write(self) -> None:
        n = 0
        with httpx.Client(base_url=self.live.urls["ingest"], headers={"X-API-Key": KEY}, timeout=60) as http:
            while not self._stop.is_set():
                n += 1
                doc_id = self.rng.choice(self.ids) if self.rng.random() < 0.7 else f"new-{n}"
                delete = self.rng.random() < 0.25 and self.expected.get(doc_id, "") is not None
                delete = delete and (self.deletes or doc_id not in self.ids)
                text = f"Update {n} of {doc_id}: " + " ".join(
                    self.rng.choices(self.words, k=self.rng.randint(5, 400))
                )
                try:
                    if delete:
                        response = http.delete(f"/documents/{doc_id}")
                    else:
                        response = http.post("/documents", json={"documents": [{"id": doc_id, "text": text}]})
                except httpx.TransportError:
                    self.refused_writes += 1  # the service is being restarted: not acknowledged
                    self.unsettled.setdefault(doc_id, set()).add(None if delete else text)
                    time.sleep(0.2)
                    continue
                if response.status_code == 200:
                    self.expected[doc_id] = None if delete else text
                    self.unsettled.pop(doc_id, None)
                    self.writes += 1
                elif response.status_code == 404 and delete:
                    self.expected[doc_id] = None
                    self.unsettled.pop(doc_id, None)
                else:
                    assert response.status_code == 503, response.text
                    self.refused_writes += 1
                    self.unsettled.setdefault(doc_id, set()).add(None if delete else text)

    def _search(self) -> None:
        with httpx.Client(base_url=self.live.urls["query"], timeout=60) as http:
            while not self._stop.is_set():
                query = " ".join(self.rng.choices(self.words, k=4))
                try:
                    response = http.post("/search", json={"query": query, "k": 5})
                except httpx.TransportError as exc:
                    self.search_errors.append(repr(exc))
                    continue
                self.searches += 1
                if response.status_code != 200:
                    self.search_errors.append(f"{response.status_code} {response.text[:200]}")
                else:
                    self.versions_seen.append(response.json()["model_version"])


WORDS = [
    "cells",
    "protein",
    "gene",
    "expression",
    "cancer",
    "risk",
    "patients",
    "treatment",
    "vaccine",
    "immune",
    "response",
    "blood",
    "pressure",
    "brain",
    "memory",
    "sleep",
    "mice",
    "infection",
    "virus",
    "dose",
    "trial",
    "mortality",
    "diet",
    "exercise",
]


@pytest.fixture(scope="module")
def corpus(live: Live, scifact_dir: Path) -> dict[str, str]:
    """300 SciFact abstracts (their first 40 words), posted through the ingestion API into A's collection."""
    docs = [d for _, d in zip(range(300), iter_corpus(scifact_dir), strict=False)]
    with httpx.Client(base_url=live.urls["ingest"], headers={"X-API-Key": KEY}, timeout=300) as http:
        for start in range(0, len(docs), 100):
            batch = [{"id": d.id, "text": short(d.text)} for d in docs[start : start + 100]]
            assert http.post("/documents", json={"documents": batch}).status_code == 200
    return {d.id: short(d.text) for d in docs}


def short(text: str) -> str:
    return " ".join(text.split()[:40])


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def in_target(live: Live, version: str) -> int:
    """Records in the collection of the version being migrated to (backfilled, or dual-written)."""
    store = live.store()
    pointer = ServingPointer(store).read()
    if pointer is None or pointer.state != "migrating" or pointer.target != version:
        return 0
    return store.count(version)


def check_index(
    live: Live,
    version: str,
    expected: dict[str, str | None],
    unsettled: dict[str, set[str | None]],
) -> dict[str, str]:
    """The version's collection holds exactly the acknowledged state of every document; one whose
    last writes went unacknowledged may also hold any of those writes' outcomes."""
    index = DocumentIndex(live.store(), version)
    stored = index.get(index.document_ids())
    have = {i: d.text for i, d in stored.items()}
    wrong = {
        i: {"stored": have.get(i), "acknowledged": expected.get(i), "unacknowledged": unsettled.get(i)}
        for i in set(have) | set(expected) | set(unsettled)
        if have.get(i) not in {expected.get(i)} | unsettled.get(i, set())
    }
    assert not wrong, dict(sorted(wrong.items())[:5])
    passages = [r.id for r in live.store().get(version, texts=False) if "#" in r.id]
    assert all(p.split("#")[0] in have for p in passages)  # no passage of a deleted document
    return have


def service_versions(live: Live) -> set[str]:
    seen = set()
    for name in ("query", "ingest"):
        for _ in range(6):  # several requests: answered by either worker
            seen.add(httpx.get(f"{live.urls[name]}/", timeout=10).json()["model_version"])
    return seen


def served_and_other(live: Live, a: str, b: str) -> tuple[str, str]:
    """The version both services serve, and the other one (the next rollout's target)."""
    (source,) = service_versions(live)
    return source, a if source == b else b


@pytest.mark.parametrize("killed", [False, True], ids=["straight", "killed-half-way-and-run-again"])
def test_rollout_under_writes_and_searches_loses_nothing(
    live: Live, corpus: dict[str, str], two_versions: tuple[Path, str, str], killed: bool
) -> None:
    """A -> B in one go, then back B -> A with the rollout process killed half-way and run again."""
    _, a, b = two_versions
    source, target = served_and_other(live, a, b)
    pids = {name: proc.pid for name, proc in live.procs.items()}
    expected: dict[str, str | None] = dict(corpus)
    if not killed:  # a new target is built with the served collection's HNSW settings, tuned ones too
        live.store().set_ef_search(source, 77)
    with Traffic(live, list(corpus), seed=1 + killed) as traffic:
        if killed:
            first = live.rollout(target)
            wait_until(lambda: in_target(live, target) >= 60, 300, "the backfill to get going")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            assert ServingPointer(live.store()).read().migrating  # type: ignore[union-attr]
            time.sleep(1)  # writes go on, dual-written, with no rollout process alive
        rollout = live.rollout(target)
        assert rollout.wait(timeout=600) == 0, (live.logs / "rollout.log").read_text()[-3000:]
        wait_until(lambda: service_versions(live) == {target}, 30, "both services to serve the target")
        time.sleep(1)  # and some writes and searches on the target
    expected.update(traffic.expected)
    assert traffic.search_errors == [], traffic.search_errors[:5]
    assert traffic.writes > 20 and traffic.searches > 20
    assert set(traffic.versions_seen) == {source, target} and traffic.versions_seen[-1] == target
    stored = check_index(live, target, expected, traffic.unsettled)
    assert {name: proc.pid for name, proc in live.procs.items()} == pids  # no restart
    assert all(proc.poll() is None for proc in live.procs.values())
    stats = httpx.get(f"{live.urls['ingest']}/stats", timeout=10).json()
    assert stats["model_version"] == target and stats["migration"] is None
    if not killed:
        assert live.store().hnsw_of(target)["ef_search"] == 77
    corpus.clear()
    corpus.update(stored)  # what the next rollout starts from


@pytest.mark.durability  # restarts: in `make test-durability`, which CI runs; not in `make test`
def test_ingestion_restarted_mid_migration_and_after_promotion(
    live: Live, corpus: dict[str, str], two_versions: tuple[Path, str, str]
) -> None:
    _, a, b = two_versions
    # Roll out whichever version is not served: after the tests above B again, whose collection
    # is stale and is rebuilt; run on its own (`make test-durability`) B, new.
    source, target = served_and_other(live, a, b)
    expected: dict[str, str | None] = dict(corpus)
    with Traffic(live, list(corpus), seed=2) as traffic:
        rollout = live.rollout(target)
        wait_until(lambda: in_target(live, target) >= 40, 300, "the backfill to get going")
        live.kill("ingest")  # kill -9 mid-migration; the new processes must join it
        live.start("ingest")
        wait_http(f"{live.urls['ingest']}/readyz", timeout=300, proc=live.procs["ingest"])
        assert rollout.wait(timeout=600) == 0, (live.logs / "rollout.log").read_text()[-3000:]
        wait_until(lambda: service_versions(live) == {target}, 30, "both services to serve the target")
        live.kill("ingest")  # and once more after the promotion
        live.start("ingest")
        wait_http(f"{live.urls['ingest']}/readyz", timeout=300, proc=live.procs["ingest"])
        time.sleep(1)
    expected.update(traffic.expected)
    assert traffic.search_errors == [], traffic.search_errors[:5]
    # Searches were answered by the source (complete) until the promotion, then by the target
    # (complete): never by the target's collection while it was being built.
    seen = traffic.versions_seen
    assert seen[0] == source and seen[-1] == target
    assert seen == sorted(seen, key=lambda v: v == target)
    assert service_versions(live) == {target}
    check_index(live, target, expected, traffic.unsettled)
    assert json.loads(httpx.get(f"{live.urls['ingest']}/readyz", timeout=10).text)["ready"] is True
    assert traffic.writes > 10
