"""The shard mechanism under bulk imports and backfills (twotower.index.bulk), on a real Chroma
server: shards are stable, paging misses no id while others write, a killed job resumes without
redoing finished shards, an import never replaces a newer write, and a rate cap holds."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.index.conftest import HashEncoder
from twotower.index import bulk
from twotower.index.documents import Document, DocumentIndex
from twotower.index.importing import ImportJob, import_key
from twotower.index.migration import IndexWriter, Rollout, backfill_key
from twotower.index.passages import PassageConfig
from twotower.index.serving import ServingPointer
from twotower.index.store import ChromaStore, Record

CONFIG = PassageConfig(tokens=64, overlap=16)


class KilledError(Exception):
    """The process dies here."""


def test_shards_are_stable_and_even() -> None:
    # Not Python's hash(): the same in every process, whatever PYTHONHASHSEED.
    assert [bulk.shard_of(f"doc-{i}", 8) for i in range(6)] == [
        bulk.shard_of(f"doc-{i}", 8) for i in range(6)
    ]
    assert bulk.shard_of("doc-1", 1_000_003) == 190_154
    sizes = np.bincount([bulk.shard_of(f"id-{i}", 8) for i in range(8000)], minlength=8)
    assert sizes.min() > 850 and sizes.max() < 1150, sizes


def test_paging_misses_no_id_while_others_delete_and_add(make_store: Callable[..., ChromaStore]) -> None:
    store = make_store()
    store.collection("c", create=True)
    ids = [f"d{i}" for i in range(2500)]
    store.write("c", [Record(i, "") for i in ids], np.ones((len(ids), 1), np.float32))
    rng = random.Random(3)
    alive, deleted, seen, added = set(ids), set(), [], 0
    for page in bulk.scan_ids(store, "c", page=100):
        seen += page
        # Between reads: delete ids already read (the next page moves forward) and not yet read,
        # re-add some deleted ones (they go last) and add new ones.
        gone = rng.sample(sorted(alive), 120)
        store.delete("c", ids=gone)
        alive -= set(gone)
        deleted |= set(gone)
        back = [f"new{added + k}" for k in range(30)] + gone[:10]
        added += 30
        store.write("c", [Record(i, "") for i in back], np.ones((len(back), 1), np.float32))
        alive |= set(back)
    assert set(ids) - deleted <= set(seen)  # every id there all along came out
    assert len(set(ids) - deleted) > 400
    assert len(seen) < 3 * (len(ids) + added)  # went back a little, never in circles


def test_a_killed_backfill_resumes_without_redoing_finished_shards(
    make_store: Callable[..., ChromaStore], encoders: Callable[[str], HashEncoder]
) -> None:
    store = make_store()
    ServingPointer(store).initialize("A")
    docs = [Document(f"doc-{i}", f"text number {i}", None, {"i": i}) for i in range(200)]
    IndexWriter(store, encoders, CONFIG).upsert(docs)
    rollout = Rollout(store, encoders, CONFIG)
    pointer = rollout.start("B")
    calls = 0

    def die_late(progress: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 20:  # in the third of four shards (about 50 documents each, batches of 8)
            raise KilledError

    with pytest.raises(KilledError):
        rollout.backfill(8, die_late, bulk.Fanout(shards=4))
    served = rollout.read()
    assert served is not None
    key = backfill_key(served)
    assert key == backfill_key(pointer), "the key of the pointer written is the key of the one read back"
    ledger = bulk.Ledger(store, key)
    finished = ledger.finished()
    assert 1 <= len(finished) < 4, finished
    embedded = encoders("B").encoded
    progress = Rollout(store, encoders, CONFIG).backfill(8, None, bulk.Fanout(shards=2))  # asks 2: gets 4
    assert progress.done == progress.total == 200
    assert len(ledger.finished()) == 4
    # Only the unfinished shards ran; their documents copied before the kill were not embedded again.
    assert encoders("B").encoded - embedded == 200 - embedded
    assert DocumentIndex(store, "B").get([d.id for d in docs]).keys() == {d.id for d in docs}
    Rollout(store, encoders, CONFIG).finalize()
    assert ledger.finished() == {}  # the ledger's records go with the migration


def write_corpus(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("migrating", [False, True], ids=["serving", "while-rolling-out"])
def test_an_import_never_replaces_a_newer_write(
    make_store: Callable[..., ChromaStore],
    encoders: Callable[[str], HashEncoder],
    tmp_path: Path,
    migrating: bool,
) -> None:
    store = make_store()
    ServingPointer(store).initialize("A")
    writer = IndexWriter(store, encoders, CONFIG)
    writer.upsert([Document("x", "written by the pipeline", "new", {"v": 2})])
    rollout = Rollout(store, encoders, CONFIG)
    if migrating:
        rollout.start("B")
    rows = [
        {"_id": f"c{i}", "title": "t", "text": f"corpus text {i}", "metadata": {"k": i}} for i in range(60)
    ]
    rows.append({"id": "x", "text": "the corpus's older copy", "metadata": {"v": 1}})
    rows.append({"id": "c3", "text": "a second row for c3: the first one wins"})
    path = write_corpus(tmp_path / "c.jsonl", rows)
    job = ImportJob(path, import_key(path), batch_size=16)
    context = bulk.Context(store, encoders, CONFIG)
    summary = bulk.run(job, context, bulk.Fanout(shards=3), total=len(rows))
    assert summary.count == len(rows) and summary.ran == 3
    again = bulk.run(job, context, bulk.Fanout(shards=3), total=len(rows))
    assert again.ran == 0 and again.skipped == 3  # resumed: nothing left to do
    versions = ["A", "B"] if migrating else ["A"]
    if migrating:
        rollout.backfill(8)
        rollout.finalize()
    for version in versions:
        stored = DocumentIndex(store, version).get(["x", "c3", "c59"])
        assert stored["x"] == Document("x", "written by the pipeline", "new", {"v": 2})
        assert stored["c3"] == Document("c3", "corpus text 3", "t", {"k": 3})
        assert DocumentIndex(store, version).count() == 61


def test_the_rate_cap_holds(
    make_store: Callable[..., ChromaStore], encoders: Callable[[str], HashEncoder]
) -> None:
    throttle = bulk.Throttle(per_s=200)
    started = time.monotonic()
    for _ in range(5):
        throttle(20)
    assert time.monotonic() - started >= 0.45
    free = bulk.Throttle(per_s=0)
    started = time.monotonic()
    free(1_000_000)
    assert time.monotonic() - started < 0.1


IDLE_PROBE = """
import os, subprocess, sys, threading
from twotower.index import bulk
seen = {}
def probe():
    seen["thread"] = os.sched_getscheduler(0)
with bulk.idle_priority():
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"], capture_output=True, text=True
    )
    seen["child"] = int(child.stdout)
seen["after"] = os.sched_getscheduler(0)
print(seen["thread"] == os.SCHED_IDLE, seen["child"] == os.SCHED_IDLE, seen["after"] == os.SCHED_OTHER)
"""


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_bulk_work_runs_at_idle_priority_and_what_follows_does_not() -> None:
    # In a process of its own: the policy is the test process's otherwise.
    done = subprocess.run([sys.executable, "-c", IDLE_PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "True", "True"], done.stderr
