"""Bulk embedding, fanned out: the one mechanism under a bulk import and a rollout's backfill.

A *job* (`ShardJob`: `twotower.index.migration.BackfillJob`, `twotower.index.importing.ImportJob`)
embeds and stores documents. Its work is cut into `shards` by a stable hash of each document's id
(`shard_of`), and the shard is the unit of work, of retry and of parallelism:

- idempotent: a job stores only what is missing and never replaces a record (Chroma `add`), so
  running a shard again, finished or half-done, rewrites nothing and re-embeds little;
- recorded when finished, in the `Ledger`: records of the pointer collection (`<prefix>--serving`,
  twotower.index.serving) that every process and every pod reaches; a run skips the shards found
  there, so a run killed half-way, run again, resumes;
- run by `run()`: in this process, by N worker processes of this machine (each with its own
  Chroma client and encoder: `Setup`), or one shard per pod by a Kubernetes Indexed Job
  (`Fanout.only` = its JOB_COMPLETION_INDEX: deploy/k8s/backfill-job.yaml).

Nothing holds every id of a job: the backfill pages through the served collection (`scan_ids`), an
import streams its file, and each shard keeps what falls in it, a batch at a time. The work runs
below search's priority (the commands renice themselves, and `idle_priority`), in
small batches on a CPU (`CPU_BATCH`), and `max_docs_per_s` caps its rate.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from tqdm import tqdm

from twotower.engine import Encoder, Engine, open_encoder
from twotower.index.passages import PassageConfig
from twotower.index.serving import POINTER_COLLECTION
from twotower.index.store import ChromaStore, Record

log = logging.getLogger(__name__)

PAGE = 1000  # ids per read when paging through a collection
SHARDS_PER_WORKER = 4  # a first run's default: a slow shard at the end leaves the others' workers idle less
# Documents per step. On a CPU a small step keeps each Chroma write short beside the searches it
# answers; on short documents it embedded as fast as 64 a step. A GPU wants large batches.
CPU_BATCH = 16
GPU_BATCH = 512
Advance = Callable[[int], None]


def shard_of(doc_id: str, shards: int) -> int:
    """The shard of a document: the same in every process, run and machine (not Python's `hash`)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little") % shards


def scan_ids(store: ChromaStore, name: str, page: int = PAGE) -> Iterator[list[str]]:
    """Every id of a collection, a page at a time, each at least once however others write meanwhile.

    Offsets alone would skip ids: a delete before the offset moves every later id one place
    forward. So each read starts at the last id yielded, which only deletes before it can move
    (`ChromaStore.page_ids`: updates keep their place, new ids go last); when it is not there, the
    read goes back until it finds the latest id of the last page still stored, and goes on after
    it. An id may come twice, never not at all; new ids come too."""
    recent: list[str] = []  # the last page yielded
    pos, back = 0, 0  # where recent[-1] was read; how far before it to look
    while True:
        start = max(0, pos - back)
        limit = pos - start + page + (1 if recent else 0)
        ids = store.page_ids(name, start, limit)
        new = ids
        if recent:
            seen = set(recent)
            last = max((j for j, i in enumerate(ids) if i in seen), default=None)
            if last is None and start > 0:
                back = max(page, 2 * back)  # every id of the page moved further back, or is gone
                continue
            new = ids if last is None else ids[last + 1 :]
        if new:
            yield new
            recent = new
        if len(ids) < limit:
            return
        pos, back = start + len(ids) - 1, 0


class Ledger:
    """The shards of one job, and which are finished: records `<job>/plan` and `<job>/<shard>` of
    the pointer collection."""

    def __init__(self, store: ChromaStore, job: str) -> None:
        self.store, self.job = store, job

    def agree(self, shards: int) -> int:
        """The job's shard count: `shards` on its first run, else what that run chose (an id must
        fall in the same shard in every process; Chroma's `add` makes concurrent first runs agree)."""
        plan = Record(f"{self.job}/plan", "", {"job": self.job, "shards": shards})
        self.store.write(POINTER_COLLECTION, [plan], np.ones((1, 1), np.float32), only_new=True)
        found = self.store.get(POINTER_COLLECTION, ids=[plan.id], texts=False)
        return int(found[0].metadata["shards"])

    def finished(self) -> dict[int, int]:
        """Finished shards, with the work each counted."""
        where = {"$and": [{"job": self.job}, {"shard": {"$gte": 0}}]}
        found = self.store.get(POINTER_COLLECTION, where=where, texts=False)
        return {int(r.metadata["shard"]): int(r.metadata["count"]) for r in found}

    def finish(self, shard: int, count: int) -> None:
        done = Record(f"{self.job}/{shard}", "", {"job": self.job, "shard": shard, "count": count})
        self.store.write(POINTER_COLLECTION, [done], np.ones((1, 1), np.float32))

    def clear(self) -> None:
        self.store.delete(POINTER_COLLECTION, where={"job": self.job})


@dataclass
class Context:
    """What a shard's work runs on, opened once per process."""

    store: ChromaStore
    encoder_for: Callable[[str], Encoder]
    passage_config: PassageConfig


@dataclass(frozen=True)
class Setup:
    """How a worker process opens its own Context: plain values, sent to spawned workers."""

    chroma_host: str
    chroma_port: int
    prefix: str
    roots: tuple[str, ...]
    engine: Engine = "onnx"
    variant: Literal["fp32", "int8", "auto"] = "auto"
    backend: Literal["onnxruntime", "openvino", "auto"] = "auto"
    device: str | None = None
    threads: int | None = None  # per worker: the cores shared out, so workers do not contend
    passage_config: PassageConfig = field(default_factory=PassageConfig)

    def open(self) -> Context:
        store = ChromaStore(self.chroma_host, self.chroma_port, self.prefix)

        @functools.cache
        def encoder_for(version: str) -> Encoder:
            return open_encoder(
                self.roots,
                version,
                engine=self.engine,
                variant=self.variant,
                backend=self.backend,
                device=self.device,
                threads=self.threads,
            )

        return Context(store, encoder_for, self.passage_config)


class ShardJob(Protocol):
    @property
    def key(self) -> str:
        """The job's name in the Ledger: the same for every run that continues it."""
        ...

    @property
    def unit(self) -> str:
        """What `run` counts (the progress bar's unit)."""
        ...

    def run(self, ctx: Context, shard: int, shards: int, advance: Advance) -> int:
        """Do one shard (idempotently), calling `advance(n)` as work is done; return the count."""
        ...


@dataclass(frozen=True)
class Fanout:
    """How a job's shards are run."""

    workers: int = 1  # processes on this machine; 1 = in the calling process
    shards: int = 0  # 0: SHARDS_PER_WORKER per worker (a first run decides, later ones follow it)
    only: tuple[int, ...] = ()  # just these shards (a Kubernetes pod's JOB_COMPLETION_INDEX)
    max_docs_per_s: float = 0.0  # over all workers; 0 = no cap
    setup: Setup | None = None  # how worker processes open Chroma and the encoders (workers > 1)


@dataclass
class Summary:
    job: str
    unit: str
    shards: int
    ran: int  # shards run now
    skipped: int  # shards finished by an earlier run
    count: int  # work counted by the shards run now
    seconds: float

    def line(self) -> str:
        rate = self.count / max(self.seconds, 1e-9)
        return (
            f"{self.job}: {self.count} {self.unit}s in {self.ran} of {self.shards} shards "
            f"({self.skipped} finished earlier), {self.seconds:.1f}s, {rate:.1f} {self.unit}s/s"
        )


@contextlib.contextmanager
def idle_priority() -> Iterator[None]:
    """Run the work inside under Linux's SCHED_IDLE policy (CPU time only when no other process
    wants it, so a search preempts it at once): this thread, and the threads and worker processes it
    starts meanwhile. The policy before is restored after, where the OS allows it: what follows a
    backfill (finalizing a rollout) holds writes and must not wait behind searches. Elsewhere
    (not Linux, or refused) the work runs at its niceness alone."""
    try:
        before = os.sched_getscheduler(0)
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as exc:
        log.info("SCHED_IDLE not available (%s): the work runs at its niceness alone", exc)
        yield
        return
    try:
        yield
    finally:
        try:
            os.sched_setscheduler(0, before, os.sched_param(0))
        except OSError as exc:
            log.warning("could not leave SCHED_IDLE (%s): what follows runs at idle priority", exc)


class Throttle:
    """Sleeps in `__call__(n)` as needed to keep the average at `per_s` (0: never)."""

    def __init__(self, per_s: float) -> None:
        self.per_s, self.started, self.done = per_s, time.monotonic(), 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.per_s > 0:
            ahead = self.done / self.per_s - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)


def run_shard(job: ShardJob, ctx: Context, shard: int, shards: int, advance: Advance, per_s: float) -> int:
    """One shard, throttled, then recorded as finished."""
    throttle = Throttle(per_s)

    def step(n: int) -> None:
        if n:
            advance(n)
            throttle(n)

    count = job.run(ctx, shard, shards, step)
    Ledger(ctx.store, job.key).finish(shard, count)
    return count


def run(
    job: ShardJob,
    ctx: Context,
    fanout: Fanout,
    *,
    total: int,
    on_progress: Callable[[int], None] | None = None,
) -> Summary:
    """Run the job's unfinished shards (those of `fanout.only`, if named), with a progress bar
    (`total`: the work expected in all shards); `on_progress(done)` after each step."""
    ledger = Ledger(ctx.store, job.key)
    shards = ledger.agree(fanout.shards or SHARDS_PER_WORKER * max(1, fanout.workers))
    if any(not 0 <= s < shards for s in fanout.only):
        raise ValueError(f"{job.key} has shards 0..{shards - 1}; asked for {list(fanout.only)}")
    finished = ledger.finished()
    todo = [s for s in range(shards) if s not in finished and (not fanout.only or s in fanout.only)]
    started = time.monotonic()
    with tqdm(total=total, initial=sum(finished.values()), desc=job.key, unit=job.unit) as bar:

        def advance(n: int) -> None:
            bar.update(n)
            if on_progress:
                on_progress(bar.n)

        with idle_priority():
            if fanout.workers <= 1 or len(todo) <= 1:
                count = sum(run_shard(job, ctx, s, shards, advance, fanout.max_docs_per_s) for s in todo)
            else:
                count = _fan_out(job, shards, todo, fanout, advance)
    return Summary(job.key, job.unit, shards, len(todo), len(finished), count, time.monotonic() - started)


# A worker process's Context, progress queue, rate and parent: set once by its pool's initializer.
_worker: tuple[Context, multiprocessing.Queue[int], float, int] | None = None


def _start_worker(setup: Setup, progress: multiprocessing.Queue[int], per_s: float) -> None:
    global _worker
    logging.basicConfig(level=logging.WARNING)
    _worker = (setup.open(), progress, per_s, os.getppid())


def _run_in_worker(job: ShardJob, shard: int, shards: int) -> int:
    assert _worker is not None, "runs in a pool started by _fan_out"
    ctx, progress, per_s, parent = _worker

    def advance(n: int) -> None:
        # The command was killed (not the process group: a `kill` of its pid): stop with it
        # rather than embed on, unseen; its shard is unfinished, and the next run redoes it.
        if os.getppid() != parent:
            raise SystemExit(f"{job.key}: the command that started this worker is gone")
        progress.put(n)

    return run_shard(job, ctx, shard, shards, advance, per_s)


def _fan_out(job: ShardJob, shards: int, todo: list[int], fanout: Fanout, advance: Advance) -> int:
    """The shards of `todo` over `fanout.workers` fresh processes (spawned: nothing of this one's
    model or threads is copied), their progress relayed to `advance`; the first failure stops it."""
    if fanout.setup is None:
        raise ValueError("worker processes need a Setup to open Chroma and the encoders")
    spawn = multiprocessing.get_context("spawn")
    progress: multiprocessing.Queue[int] = spawn.Queue()
    workers = min(fanout.workers, len(todo))
    per_s = fanout.max_docs_per_s / workers
    pool = ProcessPoolExecutor(
        workers, mp_context=spawn, initializer=_start_worker, initargs=(fanout.setup, progress, per_s)
    )
    futures: list[Future[int]] = [pool.submit(_run_in_worker, job, s, shards) for s in todo]
    try:
        while not all(f.done() for f in futures):
            with contextlib.suppress(queue.Empty):
                advance(progress.get(timeout=0.5))
            failed = [f for f in futures if f.done() and f.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        while not progress.empty():
            advance(progress.get_nowait())
    finally:
        # Shards not begun are dropped; those under way finish (or stop: a backfill's shard stops
        # on its own when its migration is aborted), so no worker outlives the run.
        pool.shutdown(wait=True, cancel_futures=True)
    return sum(f.result() for f in futures)
