"""Search feedback in Chroma: what a search showed and what happened to its results.

Chroma is the one durable place every replica of the query service already reaches (compose, and
Kubernetes with several replicas) and that survives restarts, so feedback lives there, beside the
serving pointer, rather than in a new service to run:

    <prefix>--feedback       one record per feedback event (metadata below; a 1-dimensional vector,
                             as Chroma needs one: never searched, never embedded by Chroma)
    <prefix>--feedback-key   the HMAC key signing search ids, made once by the first process that
                             needs it (insert-if-absent: every replica and worker reads the same key)

The query service writes events; training reads them. `make cleanup` keeps both collections.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field

import numpy as np

from twotower.index.store import ChromaStore, CollectionMissing, Metadata, Record

FEEDBACK_COLLECTION = "-feedback"  # <prefix>--feedback; also the prefix of the key's collection
KEY_COLLECTION = "-feedback-key"
KEY_ID = "search-id-key"
# Records here carry no meaning in their vectors; Chroma needs one.
_UNIT = np.ones((1, 1), dtype=np.float32)


@dataclass(frozen=True)
class FeedbackEvent:
    """One `POST /feedback`: the search it names (as shown) and the judgements it carries."""

    search: str  # digest of the search id: events of one search share it
    searched_at: float  # unix time of the search
    at: float  # unix time the feedback was stored
    query: str  # "" when the service does not keep query text
    mode: str
    version: str  # the model version that ranked the results
    shown: tuple[str, ...]  # document ids in rank order (rank 1 first)
    clicked: tuple[str, ...] = ()
    relevant: tuple[str, ...] = ()
    not_relevant: tuple[str, ...] = ()
    id: str = field(default="", compare=False)

    def to_metadata(self) -> Metadata:
        return {
            "search": self.search,
            "searched_at": self.searched_at,
            "at": self.at,
            "query": self.query,
            "mode": self.mode,
            "version": self.version,
            "shown": json.dumps(list(self.shown)),
            "clicked": json.dumps(list(self.clicked)),
            "relevant": json.dumps(list(self.relevant)),
            "not_relevant": json.dumps(list(self.not_relevant)),
        }

    @classmethod
    def from_record(cls, record: Record) -> FeedbackEvent:
        m = record.metadata

        def ids(key: str) -> tuple[str, ...]:
            return tuple(str(i) for i in json.loads(str(m.get(key, "[]"))))

        return cls(
            search=str(m["search"]),
            searched_at=float(m["searched_at"]),
            at=float(m["at"]),
            query=str(m.get("query", "")),
            mode=str(m.get("mode", "")),
            version=str(m.get("version", "")),
            shown=ids("shown"),
            clicked=ids("clicked"),
            relevant=ids("relevant"),
            not_relevant=ids("not_relevant"),
            id=record.id,
        )


class FeedbackLog:
    """The feedback collection of one Chroma server (thread-safe, as ChromaStore is)."""

    def __init__(self, store: ChromaStore) -> None:
        self.store = store
        self._created = False

    def _create(self, name: str, purpose: str) -> None:
        self.store.collection(name, create=True, metadata={"purpose": purpose})

    def signing_key(self) -> bytes:
        """The shared key for search ids: the stored one, or a new one if none is stored yet (the
        first writer wins: `add` never overwrites, and everyone reads back what is stored)."""
        found = self._read_key()
        if found is None:
            self._create(KEY_COLLECTION, "key signing search ids")
            record = Record(KEY_ID, "", {"key": secrets.token_hex(32), "at": time.time()})
            self.store.write(KEY_COLLECTION, [record], _UNIT, only_new=True)
            found = self._read_key()
            if found is None:
                raise RuntimeError("the search-id key was written but cannot be read back")
        return bytes.fromhex(found)

    def _read_key(self) -> str | None:
        try:
            found = self.store.get(KEY_COLLECTION, ids=[KEY_ID], texts=False)
        except CollectionMissing:
            return None
        return str(found[0].metadata["key"]) if found else None

    def record(self, event: FeedbackEvent) -> None:
        """Store one event; returns once Chroma has acknowledged the write. Its id is derived from
        its content, so a client resending the same request stores it once."""
        if not self._created:
            self._create(FEEDBACK_COLLECTION, "search feedback")
            self._created = True
        try:
            self.store.write(FEEDBACK_COLLECTION, [Record(event.id, "", event.to_metadata())], _UNIT)
        except CollectionMissing:  # dropped meanwhile (an operator wiped it): make it again, once
            self._create(FEEDBACK_COLLECTION, "search feedback")
            self.store.write(FEEDBACK_COLLECTION, [Record(event.id, "", event.to_metadata())], _UNIT)

    def events(self, since: float = 0.0, until: float | None = None) -> list[FeedbackEvent]:
        """The stored events with `since <= at < until`, oldest first."""
        where: dict[str, object] = {"at": {"$gte": since}}
        if until is not None:
            where = {"$and": [where, {"at": {"$lt": until}}]}
        try:
            found = self.store.get(FEEDBACK_COLLECTION, where=where, texts=False)
        except CollectionMissing:
            return []
        return sorted((FeedbackEvent.from_record(r) for r in found), key=lambda e: (e.at, e.id))

    def delete_older_than(self, cutoff: float) -> None:
        with contextlib.suppress(CollectionMissing):
            self.store.delete(FEEDBACK_COLLECTION, where={"at": {"$lt": cutoff}})

    def count(self) -> int:
        try:
            return self.store.count(FEEDBACK_COLLECTION)
        except CollectionMissing:
            return 0

    def drop(self) -> None:
        """Delete every event (the key stays, so issued search ids stay valid)."""
        self.store.drop(FEEDBACK_COLLECTION)
        self._created = False
