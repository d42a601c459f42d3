"""Writes that follow the serving pointer, and the rollout of a new version while they go on.

`IndexWriter` is how ingestion writes (and a bulk import adds): to the served version's collection
and, while a migration runs, to the target's too, with an intent recorded first. `Rollout` moves the
pointer through start, backfill (copies that never overwrite: `BackfillJob`, run shard by shard by
twotower.index.bulk), finalize (pending intents waited for, every id with
an intent reconciled from the served collection), abort, and cleanup of unserved collections.

Why it is correct, in short: a write either finished on A before the migration began (the backfill,
which starts after, copies it), or re-reads the pointer after writing A and brings B along; a write
under way while migrating recorded its intent before re-reading the pointer, and finalizing changes
the pointer before it reads the intents, so either the writer sees `finalizing` and waits, or the
finalizer sees its intent and waits for it. Finalizing then makes B agree with A for every id any
write touched, which undoes what a backfill `add` racing a delete put back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from twotower.engine import Encoder
from twotower.index import bulk, passages
from twotower.index.bulk import Fanout
from twotower.index.documents import (
    PARENT_KEY,
    PARTS_KEY,
    PASSAGE_OVERLAP_KEY,
    PASSAGE_SEPARATOR,
    PASSAGE_TOKENS_KEY,
    Document,
    DocumentIndex,
    as_document,
    is_passage_id,
    passage_ids,
)
from twotower.index.feedback import FEEDBACK_COLLECTION
from twotower.index.passages import PassageConfig
from twotower.index.serving import (
    INTENTS_COLLECTION,
    POINTER_COLLECTION,
    Intents,
    Pointer,
    Progress,
    ServingPointer,
)
from twotower.index.store import ChromaStore, CollectionMissing, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
EncoderFor = Callable[[str], Encoder]


class RolloutError(RuntimeError):
    """The rollout cannot go on as asked (another migration runs, a version is missing...)."""


class RolloutInProgress(StoreUnavailable):
    """A migration is finishing and writes wait for it; it did not finish in time (a 503)."""


def passage_config_of(
    store: ChromaStore, version: str, default: PassageConfig, *, for_reading: bool = False
) -> PassageConfig:
    """The passage sizes a collection was built with (every writer splits alike); `default` for one not
    made yet or, `for_reading`, while Chroma is down (a service must start then)."""
    try:
        meta = store.collection(version).metadata or {}
    except CollectionMissing:
        return default
    except StoreUnavailable:
        if for_reading:
            return default
        raise
    tokens, overlap = meta.get(PASSAGE_TOKENS_KEY), meta.get(PASSAGE_OVERLAP_KEY)
    if isinstance(tokens, int) and isinstance(overlap, int):
        return PassageConfig(tokens, overlap)
    return default


class _Versions:
    """The versions' collections behind the serving pointer, each with its own encoder."""

    def __init__(self, store: ChromaStore, encoder_for: EncoderFor, passage_config: PassageConfig) -> None:
        self.store, self.encoder_for, self.passage_config = store, encoder_for, passage_config
        self.pointer = ServingPointer(store)

    def index(self, version: str, *, embeds: bool = True) -> DocumentIndex:
        """A version's documents; with the version's encoder when this will write embeddings."""
        config = passage_config_of(self.store, version, self.passage_config)
        return DocumentIndex(self.store, version, self.encoder_for(version) if embeds else None, config)


class IndexWriter(_Versions):
    """Applies ingestion's writes where the serving pointer says, dual-writing while migrating."""

    def __init__(
        self,
        store: ChromaStore,
        encoder_for: EncoderFor,
        passage_config: PassageConfig,
        *,
        finalize_wait_s: float = 20.0,
    ) -> None:
        super().__init__(store, encoder_for, passage_config)
        self.finalize_wait_s = finalize_wait_s

    def current(self) -> Pointer:
        pointer = self.pointer.read()
        if pointer is None:
            raise StoreUnavailable("no serving pointer in the index yet (a service creates it at start)")
        return pointer

    def upsert(self, documents: Sequence[Document]) -> tuple[Pointer, list[str]]:
        return self._apply([d.id for d in documents], "upsert", lambda index: index.write(documents))

    def delete(self, doc_ids: Sequence[str]) -> tuple[Pointer, list[str]]:
        return self._apply(list(doc_ids), "delete", lambda index: index.delete(doc_ids))

    def add_new(self, documents: Sequence[Document]) -> tuple[Pointer, list[str]]:
        """Store those of `documents` that a version does not hold yet and leave the others as they
        are (a bulk import: the copy in a corpus never replaces what the API wrote). The ids count
        as written while migrating, so finalizing makes the target agree with the source for them."""

        def add(index: DocumentIndex) -> list[str]:
            try:
                have = {
                    r.id for r in self.store.get(index.version, ids=[d.id for d in documents], texts=False)
                }
            except CollectionMissing:
                have = set()
            new = [d for d in documents if d.id not in have]
            return index.write(new, only_new=True)

        return self._apply([d.id for d in documents], "upsert", add)

    def _apply(
        self, ids: list[str], op_name: str, op: Callable[[DocumentIndex], list[str]]
    ) -> tuple[Pointer, list[str]]:
        """Run `op` on every live version; return the pointer it ran under and the served result."""
        written: dict[str, list[str]] = {}
        deadline = time.monotonic() + self.finalize_wait_s
        while True:
            pointer = self.current()
            if pointer.state == "finalizing":
                if time.monotonic() > deadline:
                    raise RolloutInProgress(
                        f"a rollout to model version {pointer.target} is finishing and did not finish "
                        f"within {self.finalize_wait_s:g}s; nothing was written (if it was stopped, run "
                        f"`make rollout VERSION={pointer.target}` to finish it or `--abort`)"
                    )
                time.sleep(0.1)
                continue
            if pointer.state == "serving":
                if pointer.version in written:
                    return pointer, written[pointer.version]
                written[pointer.version] = op(self.index(pointer.version))
                continue  # look again: did a migration begin while this wrote?
            intents = Intents(self.store, pointer.target)
            intents.mark(ids, op_name, pending=True)
            try:
                if self.current().epoch != pointer.epoch:
                    continue  # the migration moved on (finalizing, aborted): start over under it
                for version in pointer.versions():
                    if version not in written:
                        written[version] = op(self.index(version))
            except CollectionMissing:
                if self.current().epoch != pointer.epoch:
                    continue  # the target was dropped: the migration was aborted meanwhile
                raise
            finally:
                # Done or failed, the ids are touched: finalizing reconciles them from A.
                try:
                    intents.mark(ids, op_name, pending=False)
                except StoreUnavailable:
                    log.warning("could not clear %d intents for %s (they expire)", len(ids), pointer.target)
            return pointer, written[pointer.version]


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def backfill_key(pointer: Pointer) -> str:
    """The backfill's name in the shard ledger: one per migration (`started` survives finalizing).
    Formatted to milliseconds: Chroma may hand a float metadata value back one ulp away from the one
    written, so the exact repr of a pointer read back can differ from the writer's."""
    return f"backfill-{pointer.target}-{pointer.started:.3f}"


@dataclass(frozen=True)
class BackfillJob:
    """One shard of a rollout's backfill: the served documents whose id falls in the shard, copied
    into the target's collection with its encoder, never replacing a record there (a newer write,
    or a copy made earlier). Stops when the migration it belongs to is aborted or moves on."""

    source: str
    target: str
    epoch: int
    key: str
    batch_size: int = 64
    unit: str = "record"  # of the served collection: a document's passages count one each

    def run(self, ctx: bulk.Context, shard: int, shards: int, advance: bulk.Advance) -> int:
        store = ctx.store
        source = DocumentIndex(store, self.source)
        config = passage_config_of(store, self.target, ctx.passage_config)
        target = DocumentIndex(store, self.target, ctx.encoder_for(self.target), config)
        pointer, seen = ServingPointer(store), 0
        for page in bulk.scan_ids(store, self.source):
            now = pointer.read()
            if now is None or now.epoch != self.epoch:
                raise RolloutError(
                    f"the migration to {self.target} was aborted or moved on meanwhile ({now})"
                )
            mine = [i for i in page if bulk.shard_of(i.split(PASSAGE_SEPARATOR)[0], shards) == shard]
            heads = [i for i in mine if not is_passage_id(i)]
            for ids in batched(heads, self.batch_size):
                there = {r.id for r in store.get(self.target, ids=list(ids), texts=False, metadata=False)}
                missing = [i for i in ids if i not in there]
                if missing:
                    docs = source.get(missing)  # those deleted meanwhile are simply not there
                    target.write(list(docs.values()), only_new=True)
                advance(len(ids))
            advance(len(mine) - len(heads))
            seen += len(mine)
        return seen


class Rollout(_Versions):
    """The operator's side: `make rollout VERSION=<v>` (ops/rollout.py) drives this."""

    def __init__(
        self,
        store: ChromaStore,
        encoder_for: EncoderFor,
        passage_config: PassageConfig,
        *,
        intent_timeout_s: float = 120.0,
    ) -> None:
        super().__init__(store, encoder_for, passage_config)
        self.intent_timeout_s = intent_timeout_s

    def read(self) -> Pointer | None:
        return self.pointer.read()

    def start(self, target: str) -> Pointer:
        """Begin migrating to `target` (or find the migration to it already running)."""
        pointer = self.pointer.read()
        if pointer is None:
            # Nothing served yet: nothing to migrate, serve the target from now on.
            self.encoder_for(target)  # fails here if it cannot load
            pointer = self.pointer.initialize(target)
            if pointer.version == target:
                return pointer
        if pointer.migrating:
            if pointer.target != target:
                raise RolloutError(
                    f"a migration {pointer.version} -> {pointer.target} is in progress: finish it "
                    f"(rollout {pointer.target}) or abort it (rollout --abort) first"
                )
            return pointer
        if pointer.version == target:
            return pointer
        source = pointer.version
        encoder = self.encoder_for(target)  # fails here, before anything changes, if it cannot load
        config = passage_config_of(self.store, source, self.passage_config)
        # A collection left by an aborted attempt or an earlier serving of this version is stale.
        self.store.drop(target)
        intents = Intents(self.store, target)
        intents.drop()
        DocumentIndex(self.store, target, encoder, config).create()
        intents.create()
        started = pointer.next(state="migrating", target=target, started=round(time.time(), 3))
        self.pointer.write(started)
        log.info("migrating %s -> %s (epoch %d)", source, target, started.epoch)
        return started

    def backfill(
        self,
        batch_size: int = 64,
        on_progress: Callable[[Progress], None] | None = None,
        fanout: Fanout | None = None,
    ) -> Progress:
        """Copy the served documents into the target (`BackfillJob`, run shard by shard as `fanout`
        says; default: in this process); resumable, and it never overwrites."""
        fanout = fanout or Fanout()
        pointer = self._migrating()
        progress = Progress(pointer.target, 0, self.store.count(pointer.version))
        self._progress(pointer, progress)
        last_saved = time.monotonic()

        def show(done: int) -> None:
            nonlocal last_saved
            progress.done = done
            if on_progress:
                on_progress(progress)
            if time.monotonic() - last_saved > 2:
                self._progress(pointer, progress)
                last_saved = time.monotonic()

        job = BackfillJob(pointer.version, pointer.target, pointer.epoch, backfill_key(pointer), batch_size)
        context = bulk.Context(self.store, self.encoder_for, self.passage_config)
        summary = bulk.run(job, context, fanout, total=progress.total, on_progress=show)
        log.info("%s", summary.line())
        if not fanout.only:  # a pod of an Indexed Job did its shard only
            progress.done = progress.total
        self._progress(pointer, progress)
        return progress

    def finalize(self, poll_s: float = 0.2) -> Pointer:
        """Hold new writes, wait for those under way, reconcile every touched id, promote."""
        pointer = self.pointer.read()
        if pointer is None or pointer.state == "serving":
            raise RolloutError("no migration to finalize")
        if pointer.state == "migrating":
            pointer = pointer.next(state="finalizing")
            self.pointer.write(pointer)
        intents = Intents(self.store, pointer.target)
        while True:
            now = time.time()
            live = [i for i in intents.pending() if now - i.at < self.intent_timeout_s]
            if not live:
                break
            log.info("waiting for %d writes under way", len(live))
            time.sleep(poll_s)
        touched = sorted({i.doc_id for i in intents.all()})
        fixed = self.reconcile(pointer.version, pointer.target, touched)
        log.info("reconciled %d documents written during the migration (%d repaired)", len(touched), fixed)
        promoted = pointer.next(state="serving", version=pointer.target, target="", previous=pointer.version)
        self.pointer.write(promoted)
        intents.drop()
        bulk.Ledger(self.store, backfill_key(pointer)).clear()
        return promoted

    def reconcile(
        self, source_version: str, target_version: str, doc_ids: Sequence[str], batch_size: int = 64
    ) -> int:
        """Make the target agree with the source for `doc_ids`; return how many needed a fix."""
        source, target = self.index(source_version, embeds=False), self.index(target_version)
        encoder = target.encoder
        assert encoder is not None
        fixed = 0
        for ids in batched(doc_ids, batch_size):
            wanted = source.get(ids)
            have = {r.id: r for r in self.store.get(target_version, ids=list(ids))}
            tails = self.store.get(
                target_version, where={PARENT_KEY: {"$in": list(ids)}}, texts=False, metadata=True
            )
            tail_ids: dict[str, set[str]] = {}
            for record in tails:
                tail_ids.setdefault(str(record.metadata[PARENT_KEY]), set()).add(record.id)
            stale: list[str] = []
            rewrite: list[Document] = []
            for doc_id in ids:
                present = [doc_id] if doc_id in have else []
                present += sorted(tail_ids.get(doc_id, ()))
                doc = wanted.get(doc_id)
                if doc is None:
                    stale += present
                    continue
                spans = passages.split(
                    doc.text, doc.title, encoder.tokenizer, encoder.max_seq_length, target.passage_config
                )
                expected = {doc_id, *passage_ids(doc_id, 1, len(spans))}
                current = as_document(have[doc_id]) if doc_id in have else None
                same = current == doc and set(present) == expected
                if doc_id in have and int(have[doc_id].metadata.get(PARTS_KEY, 1)) != len(spans):
                    same = False
                if not same:
                    stale += [i for i in present if i not in expected]
                    rewrite.append(doc)
            if stale:
                self.store.delete(target_version, ids=stale)
            if rewrite:
                target.write(rewrite)
            fixed += len(rewrite) + sum(1 for i in stale if PASSAGE_SEPARATOR not in i and i not in wanted)
        return fixed

    def abort(self) -> Pointer:
        """Back to serving the source version; the target's collection stays until cleanup."""
        pointer = self.pointer.read()
        if pointer is None or pointer.state == "serving":
            raise RolloutError("no migration to abort")
        back = pointer.next(state="serving", target="")
        self.pointer.write(back)
        Intents(self.store, pointer.target).drop()
        bulk.Ledger(self.store, backfill_key(pointer)).clear()
        return back

    def cleanup(self) -> list[str]:
        """Drop the collections of versions no longer served or migrated to; return their names."""
        pointer = self.pointer.read()
        if pointer is None:
            raise RolloutError("no serving pointer: nothing is served yet, so nothing is known to be unused")
        live = set(pointer.versions())
        dropped = []
        for name in self.store.names():
            # Search feedback (and its key) belongs to no version: kept.
            if name == POINTER_COLLECTION or name in live or name.startswith(FEEDBACK_COLLECTION):
                continue
            if name.startswith(INTENTS_COLLECTION) and name.removeprefix(INTENTS_COLLECTION) in live:
                continue
            if self.store.drop(name):
                dropped.append(self.store.collection_name(name))
        return dropped

    def _migrating(self) -> Pointer:
        pointer = self.pointer.read()
        if pointer is None or pointer.state != "migrating":
            raise RolloutError(f"no migration in its backfill phase (pointer: {pointer})")
        return pointer

    def _progress(self, started: Pointer, progress: Progress) -> None:
        """Save the progress, and stop if the migration is no longer the one this run began."""
        now = self.pointer.read()
        if now is None or now.epoch != started.epoch:
            raise RolloutError(f"the migration to {started.target} was aborted or moved on meanwhile ({now})")
        progress.at = time.time()
        self.pointer.save_progress(progress)
