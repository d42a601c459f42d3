"""The ingestion service's work: embed with the document tower, store in Chroma, read back, delete.

Writes go through `IndexWriter`: into the served version's collection and, while a rollout migrates,
the target's too, before the answer. Each function completes against Chroma or raises
(StoreUnavailable, PartialWrite naming the ids stored), so no answer acknowledges an unstored document.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from services.common.limits import grouped
from services.common.state import ServiceState
from services.ingest.config import Settings
from services.ingest.schemas import (
    DeleteResponse,
    DocumentIn,
    DocumentOut,
    IngestResponse,
    MigrationStatus,
    StatsResponse,
)
from twotower.index.documents import Document
from twotower.index.migration import IndexWriter
from twotower.index.store import CollectionMissing, PartialWrite, StoreUnavailable

log = logging.getLogger(__name__)

State = ServiceState[Settings]

# Characters embedded between two looks at whether the client is still there.
GROUP_CHARS = 50_000


class DocumentNotFoundError(LookupError):
    """No document with this id in this model version's collection: a 404."""


def writer(state: State) -> IndexWriter:
    return IndexWriter(
        state.store,
        state.models.get,
        state.passage_config,
        finalize_wait_s=state.settings.finalize_wait_s,
    )


class ClientGone(Exception):  # noqa: N818 - named for what happened
    """The client disconnected before its documents were all written; `stored` were (whole)."""

    def __init__(self, stored: list[str], total: int) -> None:
        super().__init__(f"client disconnected: stopped after {len(stored)} of {total} documents")
        self.stored = stored


async def index_documents(
    state: State, documents: list[DocumentIn], gone: Callable[[], Awaitable[bool]]
) -> IngestResponse:
    """Embed and store `documents` group by group, off the event loop. Before each group, `gone()`
    says whether the client disconnected: then nothing more is written (ClientGone). The groups
    already written hold whole documents, so a failure part-way is a PartialWrite naming them."""
    # Fail fast when Chroma is down, before spending seconds on embeddings nobody will store.
    await anyio.to_thread.run_sync(state.store.heartbeat)
    stored: list[str] = []
    upsert = writer(state).upsert
    for group in grouped(documents, GROUP_CHARS, lambda d: d.chars):
        if await gone():
            raise ClientGone(stored, len(documents))
        docs = [Document(d.id, d.text, d.title, dict(d.metadata)) for d in group]
        try:
            # Returns only once Chroma has confirmed every record; re-posting an id replaces it.
            pointer, ids = await anyio.to_thread.run_sync(upsert, docs)
        except PartialWrite as exc:
            raise PartialWrite(str(exc), stored + exc.stored) from exc
        except StoreUnavailable as exc:
            if stored:
                raise PartialWrite(str(exc), stored) from exc
            raise
        stored += ids
    collection = state.store.collection_name(pointer.version)
    log.info("upserted %d documents into %s", len(stored), collection)
    return IngestResponse(
        upserted=len(stored),
        model_version=pointer.version,
        collection=collection,
        also_written_to=pointer.target or None,
    )


def fetch_document(state: State, doc_id: str) -> DocumentOut:
    serving = state.current
    found = serving.index.get([doc_id]).get(doc_id)
    if found is None:
        raise DocumentNotFoundError(f"no document with id {doc_id!r} in {serving.index.collection}")
    return DocumentOut(id=found.id, text=found.text, title=found.title, metadata=found.metadata)


def delete_document(state: State, doc_id: str) -> DeleteResponse:
    pointer, deleted = writer(state).delete([doc_id])
    collection = state.store.collection_name(pointer.version)
    if not deleted:
        raise DocumentNotFoundError(f"no document with id {doc_id!r} in {collection}")
    log.info("deleted %r from %s", doc_id, collection)
    return DeleteResponse(deleted=doc_id, collection=collection)


def index_stats(state: State) -> StatsResponse:
    serving = state.current
    index = serving.index
    try:
        # Every record is a passage the search ranks: a short document is one, a long one several.
        passages = index.store.count(index.version)
        count = passages - index.passage_count()
    except CollectionMissing:
        passages, count = 0, 0  # created on the first ingest
    pointer = state.pointer.read()
    migration = None
    if pointer is not None and pointer.migrating:
        progress = state.pointer.progress()
        done, total = (
            (progress.done, progress.total) if progress and progress.target == pointer.target else (0, 0)
        )
        migration = MigrationStatus(
            state=pointer.state,
            source=pointer.version,
            target=pointer.target,
            backfilled=done,
            total=total,
            started=pointer.started,
        )
    return StatsResponse(
        count=count,
        passages=passages,
        collection=index.collection,
        model_version=serving.version,
        migration=migration,
    )
