"""The serving pointer: which model version every service serves, and the migration in progress.

It is one record of the collection `<prefix>--serving`, in Chroma: the one shared writable place
every process reaches (the weights volume is read-only). Only `make rollout` changes it; the first
process to find none creates it with Chroma's `add` (insert-if-absent: concurrent starts agree).

    serving A ──rollout B──▶ migrating A→B ──backfill done──▶ finalizing A→B ──▶ serving B
                                  │                               │
                                  └────────── rollout --abort ────┴──▶ serving A

While migrating, ingestion applies every write to both A's and B's collections and first records
an *intent* for each document id in `<prefix>--intents-<B>` (pending while the write is under way,
done after). The backfill never overwrites (`add`), and finalizing reconciles every id with an
intent from A, after waiting for pending intents to finish, while new writes wait.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from twotower.index.store import ChromaStore, CollectionMissing, Metadata, Record

State = Literal["serving", "migrating", "finalizing"]
POINTER_COLLECTION = "-serving"  # <prefix>--serving
INTENTS_COLLECTION = "-intents-"  # <prefix>--intents-<target>
POINTER_ID = "pointer"
PROGRESS_ID = "progress"
# Records of these control collections carry no meaning in their vectors; Chroma needs one.
_UNIT = np.ones((1, 1), dtype=np.float32)


@dataclass(frozen=True)
class Pointer:
    state: State
    version: str  # the version served: A while migrating
    target: str = ""  # B while migrating or finalizing
    epoch: int = 0  # +1 on every change: a process that saw another epoch must look again
    started: float = 0.0  # when the migration began (unix time)
    previous: str = ""  # the version served before the last promotion
    updated: float = 0.0

    @property
    def migrating(self) -> bool:
        return self.state != "serving"

    def versions(self) -> list[str]:
        """The versions whose collections are live: served, and being migrated to."""
        return [self.version, self.target] if self.target else [self.version]

    def next(self, **changes: object) -> Pointer:
        return dataclasses.replace(self, epoch=self.epoch + 1, updated=time.time(), **changes)  # type: ignore[arg-type]

    def to_metadata(self) -> Metadata:
        return dataclasses.asdict(self)

    @classmethod
    def from_metadata(cls, raw: Metadata) -> Pointer:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in fields})  # type: ignore[arg-type]


class ServingPointer:
    def __init__(self, store: ChromaStore) -> None:
        self.store = store

    def read(self) -> Pointer | None:
        try:
            found = self.store.get(POINTER_COLLECTION, ids=[POINTER_ID], texts=False)
        except CollectionMissing:
            return None
        return Pointer.from_metadata(found[0].metadata) if found else None

    def initialize(self, version: str) -> Pointer:
        """The pointer, created as `serving version` if there is none yet (the first start decides)."""
        current = self.read()
        if current is not None:
            return current
        self._create()
        first = Pointer("serving", version, updated=time.time())
        self.store.write(
            POINTER_COLLECTION, [Record(POINTER_ID, "", first.to_metadata())], _UNIT, only_new=True
        )
        pointer = self.read()
        assert pointer is not None
        return pointer

    def write(self, pointer: Pointer) -> None:
        """Replace the pointer (only the rollout command does this)."""
        self._create()
        self.store.write(POINTER_COLLECTION, [Record(POINTER_ID, "", pointer.to_metadata())], _UNIT)

    def _create(self) -> None:
        self.store.collection(POINTER_COLLECTION, create=True, metadata={"purpose": "serving pointer"})

    def progress(self) -> Progress | None:
        """The backfill's progress as last saved (its own record: saving it never races the pointer)."""
        try:
            found = self.store.get(POINTER_COLLECTION, ids=[PROGRESS_ID], texts=False)
        except CollectionMissing:
            return None
        if not found:
            return None
        meta = found[0].metadata
        return Progress(
            str(meta.get("target", "")),
            int(meta.get("done", 0)),
            int(meta.get("total", 0)),
            float(meta.get("at", 0)),
        )

    def save_progress(self, progress: Progress) -> None:
        record = Record(PROGRESS_ID, "", dataclasses.asdict(progress))
        self.store.write(POINTER_COLLECTION, [record], _UNIT)


@dataclass
class Progress:
    target: str
    done: int  # records (passages) of the served collection copied into the target, or found there
    total: int  # records of the served collection when the backfill began
    at: float = 0.0


@dataclass(frozen=True)
class Intent:
    doc_id: str
    op: str  # "upsert" | "delete"
    pending: bool
    at: float
    owner: str


class Intents:
    """The document ids written while migrating to `target`, and whether a write is under way."""

    def __init__(self, store: ChromaStore, target: str) -> None:
        self.store, self.target = store, target
        self.name = f"{INTENTS_COLLECTION}{target}"
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def create(self) -> None:
        self.store.collection(
            self.name, create=True, metadata={"purpose": f"migration intents for {self.target}"}
        )

    def drop(self) -> None:
        self.store.drop(self.name)

    def mark(self, doc_ids: Sequence[str], op: str, *, pending: bool) -> None:
        if not doc_ids:
            return
        now = time.time()
        meta: Metadata = {"op": op, "pending": pending, "at": now, "owner": self.owner}
        records = [Record(i, "", dict(meta)) for i in doc_ids]
        self.store.write(self.name, records, np.ones((len(records), 1), dtype=np.float32))

    def all(self) -> list[Intent]:
        try:
            found = self.store.get(self.name, texts=False)
        except CollectionMissing:
            return []
        return [
            Intent(
                r.id,
                str(r.metadata.get("op")),
                bool(r.metadata.get("pending")),
                float(r.metadata.get("at", 0)),
                str(r.metadata.get("owner", "")),
            )
            for r in found
        ]

    def pending(self) -> list[Intent]:
        return [i for i in self.all() if i.pending]
