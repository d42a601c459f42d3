"""Online migration against a real Chroma server: a writer keeps upserting, updating and deleting
(long documents too) through a rollout A -> B, interrupted or not, and B ends holding exactly what
the writer's acknowledged log says. The writes go through `IndexWriter`, as ingestion's do."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from tests.index.conftest import HashEncoder
from tests.index.test_documents import long_text
from twotower.index import passages
from twotower.index.documents import Document, DocumentIndex
from twotower.index.migration import IndexWriter, Rollout, RolloutError
from twotower.index.passages import PassageConfig
from twotower.index.serving import Intents, ServingPointer
from twotower.index.store import ChromaStore

CONFIG = PassageConfig(tokens=64, overlap=16)


class KilledError(Exception):
    """The rollout process dies here."""


class Writer(threading.Thread):
    """Posts, updates and deletes through the pointer until stopped; logs what was acknowledged."""

    def __init__(self, writer: IndexWriter, ids: list[str], seed: int) -> None:
        super().__init__(daemon=True)
        self.writer, self.ids, self.rng = writer, ids, random.Random(seed)
        self.expected: dict[str, str | None] = {}  # id -> text, None = deleted
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.ops = 0

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            doc_id = self.rng.choice(self.ids) if self.rng.random() < 0.7 else f"new-{n}"
            try:
                if self.rng.random() < 0.3 and self.expected.get(doc_id, "") is not None:
                    self.writer.delete([doc_id])
                    self.expected[doc_id] = None
                else:
                    text = long_text(self.rng.randint(5, 300)) + f" v{n}"
                    self.writer.upsert([Document(doc_id, text, f"title {n}", {"n": n})])
                    self.expected[doc_id] = text
                self.ops += 1
            except BaseException as exc:  # the test reports it
                self.errors.append(exc)
                return


def contents(store: ChromaStore, version: str, tokenizer_encoder: HashEncoder) -> dict[str, str]:
    """The documents of a collection, checking that each has exactly its passages."""
    index = DocumentIndex(store, version, tokenizer_encoder, CONFIG)
    records = {r.id: r for r in store.get(version)}
    docs = {i: r for i, r in records.items() if "#" not in i}
    for doc_id, record in docs.items():
        title = str(record.metadata.get("_title") or "") or None
        spans = passages.split(record.text, title, tokenizer_encoder.tokenizer, 256, index.passage_config)
        expected = {f"{doc_id}#{i}" for i in range(1, len(spans))}
        assert {i for i in records if i.startswith(f"{doc_id}#")} == expected, doc_id
    return {i: r.text for i, r in docs.items()}


@pytest.mark.parametrize("interrupted", [False, True], ids=["straight", "killed-and-resumed"])
def test_every_acknowledged_write_survives_a_rollout(
    make_store: Callable[..., ChromaStore], encoders: Callable[[str], HashEncoder], interrupted: bool
) -> None:
    store = make_store()
    ServingPointer(store).initialize("A")
    writer = IndexWriter(store, encoders, CONFIG)
    ids = [f"doc-{i}" for i in range(120)]
    initial = {i: long_text(random.Random(i).randint(5, 300)) for i in ids}
    writer.upsert([Document(i, t, None, {}) for i, t in initial.items()])

    log = Writer(IndexWriter(store, encoders, CONFIG), ids, seed=1)
    log.start()
    batches = 0

    def interleaved(progress: object) -> None:
        # Between two backfill batches, the writer acknowledges two more writes (however slow
        # the machine): the writes and the backfill interleave on every run.
        nonlocal batches
        batches += 1
        wanted, deadline = log.ops + 2, time.monotonic() + 10
        while log.ops < wanted and log.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if interrupted and batches == 4:
            raise KilledError

    rollout = Rollout(store, encoders, CONFIG)
    rollout.start("B")
    if interrupted:
        with pytest.raises(KilledError):
            rollout.backfill(8, interleaved)
        time.sleep(0.3)
        rollout = Rollout(store, encoders, CONFIG)  # a new process, run again
        assert rollout.start("B").state == "migrating"
    rollout.backfill(8, interleaved)
    promoted = rollout.finalize()
    assert promoted.state == "serving" and promoted.version == "B" and promoted.previous == "A"
    time.sleep(0.3)  # some writes after the promotion, to B alone
    log.stop.set()
    log.join(timeout=30)
    assert not log.errors, log.errors
    assert log.ops >= 2 * batches

    expected = dict(initial)
    expected.update(log.expected)
    want = {i: t for i, t in expected.items() if t is not None}
    assert contents(store, "B", encoders("B")) == want
    # The serving pointer names B, and A's collection is kept until cleanup.
    assert ServingPointer(store).read().version == "B"  # type: ignore[union-attr]
    assert "A" in store.names()
    assert Rollout(store, encoders, CONFIG).cleanup() == [store.collection_name("A")]


def test_finalizing_waits_for_writes_under_way_and_holds_new_ones(
    make_store: Callable[..., ChromaStore], encoders: Callable[[str], HashEncoder]
) -> None:
    store = make_store()
    ServingPointer(store).initialize("A")
    IndexWriter(store, encoders, CONFIG).upsert([Document("x", "old text")])
    rollout = Rollout(store, encoders, CONFIG)
    rollout.start("B")
    rollout.backfill()
    # A write under way: its intent is pending (written A, not B yet).
    Intents(store, "B").mark(["x"], "upsert", pending=True)
    IndexWriter(store, encoders, CONFIG).index("A").write([Document("x", "new text")])
    finished = threading.Event()
    thread = threading.Thread(target=lambda: (rollout.finalize(), finished.set()), daemon=True)
    thread.start()
    time.sleep(0.8)
    assert not finished.is_set()
    assert ServingPointer(store).read().state == "finalizing"  # type: ignore[union-attr]
    # A new write waits for the promotion, then lands in B.
    late = threading.Thread(
        target=lambda: IndexWriter(store, encoders, CONFIG).upsert(
            [Document("y", "written while finalizing")]
        )
    )
    late.start()
    time.sleep(0.3)
    Intents(store, "B").mark(["x"], "upsert", pending=False)  # the write under way finishes
    thread.join(timeout=20)
    late.join(timeout=20)
    assert finished.is_set()
    assert contents(store, "B", encoders("B")) == {"x": "new text", "y": "written while finalizing"}


def test_abort_returns_to_the_served_version(
    make_store: Callable[..., ChromaStore], encoders: Callable[[str], HashEncoder]
) -> None:
    store = make_store()
    ServingPointer(store).initialize("A")
    writer = IndexWriter(store, encoders, CONFIG)
    writer.upsert([Document("x", "text")])
    rollout = Rollout(store, encoders, CONFIG)
    rollout.start("B")
    with pytest.raises(RolloutError, match="in progress"):
        rollout.start("C")
    back = rollout.abort()
    assert back.state == "serving" and back.version == "A"
    pointer, stored = writer.upsert([Document("y", "after the abort")])
    assert pointer.target == "" and stored == ["y"]
    assert sorted(store.names()) == sorted(["-serving", "A", "B"])
    assert rollout.cleanup() == [store.collection_name("B")]
    with pytest.raises(RolloutError):
        rollout.abort()
