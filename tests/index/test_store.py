"""The Chroma store against real `chroma run` servers: chunks by count and bytes, honest partial
writes, timeouts on a stalled server without a lock held, Chroma's refusals as the client's fault,
and cached collection handles that follow a collection being replaced."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chromadb
import httpx
import numpy as np
import pytest
from chromadb.api.models.Collection import Collection
from chromadb.errors import InternalError

from tests.conftest import ChromaServer, free_port
from twotower.index.chroma_client import QueryTransport
from twotower.index.store import (
    ChromaStore,
    CollectionMissing,
    HnswSettings,
    InvalidFilter,
    PartialWrite,
    Record,
    StoreFailed,
    StoreRejected,
    StoreUnavailable,
)


def records(n: int, text: str = "text", dim: int = 8) -> tuple[list[Record], np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    rows = [Record(f"d{i}", f"{text} {i}", {"i": i}) for i in range(n)]
    return rows, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def spy_upserts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    real = Collection.upsert

    def spy(self: Collection, *args: Any, **kwargs: Any) -> None:
        sizes.append(len(kwargs["ids"]))
        real(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", spy)
    return sizes


def test_writes_are_chunked_by_the_servers_max_batch(
    make_store: Callable[..., ChromaStore], spy_upserts: list[int]
) -> None:
    store = make_store()
    assert store.max_batch_size() > 1000  # the real server's limit, asked once
    store._max_batch = 3  # a small limit, so 8 records need 3 requests
    rows, vectors = records(8)
    store.collection("v1", create=True)
    store.write("v1", rows, vectors)
    assert spy_upserts == [3, 3, 2]
    assert store.count("v1") == 8
    assert store.get("v1", ids=["d7"]) == [Record("d7", "text 7", {"i": 7})]


def test_large_writes_are_chunked_below_chromas_payload_limit(
    make_store: Callable[..., ChromaStore], spy_upserts: list[int]
) -> None:
    # 450 records of 100,000 characters: 45 MB in one request, which Chroma refuses (40 MiB).
    store = make_store()
    rows, vectors = records(450, text="x" * 100_000)
    store.collection("big", create=True)
    store.write("big", rows, vectors)
    assert len(spy_upserts) >= 3 and sum(spy_upserts) == 450
    assert store.count("big") == 450
    assert max(spy_upserts) * 100_000 < 40 * 1024 * 1024


def test_a_failure_part_way_says_which_records_were_stored(
    make_store: Callable[..., ChromaStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    store._max_batch = 4
    rows, vectors = records(10)
    store.collection("v1", create=True)
    real, calls = Collection.upsert, []

    def second_fails(self: Collection, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise httpx.ConnectError("connection refused")
        real(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", second_fails)
    with pytest.raises(PartialWrite) as failed:
        store.write("v1", rows, vectors)
    assert failed.value.stored == ["d0", "d1", "d2", "d3"]
    monkeypatch.setattr(Collection, "upsert", real)
    assert sorted(store.ids("v1")) == ["d0", "d1", "d2", "d3"]


def test_chromas_refusals_are_the_clients_fault(make_store: Callable[..., ChromaStore]) -> None:
    store = make_store()
    rows, vectors = records(2)
    store.collection("v1", create=True)
    store.write("v1", rows, vectors)
    with pytest.raises(InvalidFilter):
        store.query("v1", vectors[0], 1, where={"i": {"$like": "x"}})
    with pytest.raises(StoreRejected):
        store.write("v1", [Record("bad", "x", {"$and": 1})], vectors[:1])
    with pytest.raises(StoreRejected):  # another dimension than the collection's
        store.write("v1", [Record("d9", "x", {})], np.ones((1, 3), dtype=np.float32))


def test_a_replaced_collection_is_found_again(make_store: Callable[..., ChromaStore]) -> None:
    store = make_store()
    other = ChromaStore(store.host, store.port, store.prefix)
    rows, vectors = records(3)
    store.collection("v1", create=True)
    store.write("v1", rows, vectors)
    assert store.count("v1") == 3  # the handle is cached now
    other.drop("v1")
    other.collection("v1", create=True)  # same name, new collection id
    other.write("v1", rows[:1], vectors[:1])
    assert store.count("v1") == 1
    assert [r.id for r in store.query("v1", vectors[0], 5)] == ["d0"]


@pytest.fixture
def stalled_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A Chroma server of its own, which the test stops (SIGSTOP) and resumes."""
    server = ChromaServer(tmp_path / "data", free_port())
    server.start()
    try:
        yield server
    finally:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def test_a_stalled_chroma_times_out_and_holds_no_lock(stalled_chroma: ChromaServer) -> None:
    store = ChromaStore(stalled_chroma.host, stalled_chroma.port, "stall", connect_timeout_s=1, timeout_s=1.5)
    rows, vectors = records(3)
    store.collection("v1", create=True)
    store.write("v1", rows, vectors)
    assert stalled_chroma.proc is not None
    os.kill(stalled_chroma.proc.pid, signal.SIGSTOP)
    # Eight callers at once (reconnecting included): each gives up within the timeout, none waits
    # for another's request.
    errors: list[tuple[float, Exception]] = []

    def call(op: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            op()
        except StoreUnavailable as exc:
            errors.append((time.monotonic() - started, exc))

    fresh = ChromaStore(stalled_chroma.host, stalled_chroma.port, "stall", connect_timeout_s=1, timeout_s=1.5)
    ops: list[Callable[[], object]] = [
        lambda: store.query("v1", vectors[0], 1),
        lambda: store.count("v1"),
        lambda: store.heartbeat(),
        lambda: store.write("v1", rows, vectors),
        lambda: fresh.heartbeat(),  # connecting to a stalled server
        lambda: fresh.count("v1"),
        lambda: store.get("v1", ids=["d0"]),
        lambda: store.ids("v1"),
    ]
    threads = [threading.Thread(target=call, args=(op,)) for op in ops]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(errors) == len(ops), errors
    assert time.monotonic() - started < 6, "callers waited for each other"
    assert all(seconds < 4 for seconds, _ in errors), errors
    assert any("timed out" in str(exc) for _, exc in errors)
    os.kill(stalled_chroma.proc.pid, signal.SIGCONT)
    assert store.count("v1") == 3  # and it recovers on its own


def test_queries_answer_as_chromadbs_client_does(make_store: Callable[..., ChromaStore]) -> None:
    """store.query posts to Chroma's query endpoint itself (QueryTransport): same records, same
    order, same distances as chromadb's Collection.query, with and without a filter."""
    store = make_store()
    rows, vectors = records(40)
    store.collection("v1", create=True)
    store.write("v1", rows, vectors)
    handle = store.collection("v1")
    for where in (None, {"i": {"$gte": 20}}):
        for vector in vectors[:5]:
            ours = store.query("v1", vector, 7, where)
            theirs = handle.query(
                query_embeddings=vector[None],
                n_results=7,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
            assert [r.id for r in ours] == theirs["ids"][0]
            assert [r.text for r in ours] == theirs["documents"][0]  # type: ignore[index]
            assert [r.metadata for r in ours] == theirs["metadatas"][0]  # type: ignore[index]
            assert [r.distance for r in ours] == theirs["distances"][0]  # type: ignore[index]
            assert all(r.metadata["i"] >= 20 for r in ours) if where else len(ours) == 7


def test_a_query_after_chroma_restarted_reconnects(tmp_path: Path) -> None:
    """The query transport keeps its connection open between queries; when Chroma restarted in
    between, that connection is dead, and the next query goes out on a new one instead of failing."""
    server = ChromaServer(tmp_path / "data", free_port())
    server.start()
    try:
        store = ChromaStore(server.host, server.port, "restart")
        rows, vectors = records(5)
        store.collection("v1", create=True)
        store.write("v1", rows, vectors)
        before = [r.id for r in store.query("v1", vectors[0], 3)]
        with server.stopped():
            pass
        assert [r.id for r in store.query("v1", vectors[0], 3)] == before
    finally:
        server.stop()


def test_a_query_on_a_stale_handle_finds_the_collection_again(make_store: Callable[..., ChromaStore]) -> None:
    """The query transport's 404 for a replaced collection is chromadb's NotFoundError, which the
    store answers by looking the collection up again; a dropped one is CollectionMissing."""
    store = make_store()
    other = ChromaStore(store.host, store.port, store.prefix)
    rows, vectors = records(3)
    store.collection("v1", create=True)
    store.write("v1", rows, vectors)
    assert [r.id for r in store.query("v1", vectors[0], 1)] == ["d0"]  # the handle is cached now
    other.drop("v1")
    other.collection("v1", create=True)
    other.write("v1", rows[1:2], vectors[1:2])
    assert [r.id for r in store.query("v1", vectors[0], 5)] == ["d1"]
    other.drop("v1")
    with pytest.raises(CollectionMissing):
        store.query("v1", vectors[0], 1)


def test_a_read_that_chroma_failed_is_sent_again(
    make_store: Callable[..., ChromaStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chroma 1.5.9 now and then fails a query that races a write ("Error finding id", a 500);
    the store sends a failed read again (three tries), and never a stalled one."""
    store = make_store()
    rows, vectors = records(5)
    store.collection("v1", create=True)
    store.write("v1", rows, vectors)
    expected = store.query("v1", vectors[0], 3)
    real_query, real_get = QueryTransport.query, Collection.get
    calls: list[str] = []

    def failing(times: int, real: Callable[..., Any], error: Exception) -> Callable[..., Any]:
        def op(*args: Any, **kwargs: Any) -> Any:
            calls.append(real.__name__)
            if len(calls) <= times:
                raise error
            return real(*args, **kwargs)

        return op

    race = InternalError("Error executing plan: Internal error: Error finding id")
    monkeypatch.setattr(QueryTransport, "query", failing(1, real_query, race))
    assert store.query("v1", vectors[0], 3) == expected
    assert calls == ["query", "query"]

    calls.clear()
    monkeypatch.setattr(Collection, "get", failing(2, real_get, race))
    assert [r.id for r in store.get("v1", ids=["d1", "d2"])] == ["d1", "d2"]
    assert calls == ["get"] * 3

    calls.clear()  # failing every time: a 503 after the third try
    monkeypatch.setattr(QueryTransport, "query", failing(99, real_query, race))
    with pytest.raises(StoreFailed, match="Error finding id"):
        store.query("v1", vectors[0], 3)
    assert calls == ["query"] * 3
    assert issubclass(StoreFailed, StoreUnavailable)

    calls.clear()  # a stalled server is not asked again: the client would only wait longer
    monkeypatch.setattr(QueryTransport, "query", failing(99, real_query, TimeoutError("timed out")))
    with pytest.raises(StoreUnavailable) as stalled:
        store.query("v1", vectors[0], 3)
    assert not isinstance(stalled.value, StoreFailed)
    assert calls == ["query"]


def test_hnsw_settings_reach_chroma_and_ef_search_changes_on_an_existing_collection(
    make_store: Callable[..., ChromaStore], chroma_server: ChromaServer
) -> None:
    store = make_store(hnsw=HnswSettings(ef_search=37, ef_construction=55, max_neighbors=12))
    store.collection("v1", create=True)
    # Read back by a client of its own, not through the store that made it.
    fresh = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    made = fresh.get_collection(store.collection_name("v1")).configuration_json["hnsw"]
    assert (made["space"], made["ef_search"], made["ef_construction"], made["max_neighbors"]) == (
        "cosine",
        37,
        55,
        12,
    )
    # Another store with other settings opens it as it is: the settings are the collection's.
    other = ChromaStore(store.host, store.port, store.prefix, hnsw=HnswSettings(ef_search=99))
    other.collection("v1", create=True)
    assert other.hnsw_of("v1")["ef_search"] == 37
    other.set_ef_search("v1", 64)
    with chroma_server.stopped():
        pass
    after = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    kept = after.get_collection(store.collection_name("v1")).configuration_json["hnsw"]
    assert (kept["ef_search"], kept["ef_construction"], kept["max_neighbors"]) == (64, 55, 12)
