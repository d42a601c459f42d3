"""The ingestion service's work: embed with the document tower, store in Chroma, read back, delete.

One function per route; each either completes against Chroma or raises (StoreUnavailable → 503),
so a response never acknowledges a document that was not stored.
"""

from __future__ import annotations

import logging

from services.common.state import ServiceState
from services.ingest.config import Settings
from services.ingest.schemas import (
    DeleteResponse,
    DocumentIn,
    DocumentOut,
    IngestResponse,
    StatsResponse,
)
from twotower import format_document
from twotower.index.store import CollectionMissing, Record

log = logging.getLogger(__name__)

State = ServiceState[Settings]


class DocumentNotFoundError(LookupError):
    """No document with this id in this model version's collection: a 404."""


def index_documents(state: State, documents: list[DocumentIn]) -> IngestResponse:
    # Fail fast when Chroma is down, before spending seconds on embeddings nobody will store.
    state.store.heartbeat()
    texts = [format_document(d.text, d.title) for d in documents]
    embeddings = state.encoder.encode_documents(texts)
    records = [Record(d.id, d.text, d.title, dict(d.metadata)) for d in documents]
    # Returns only once Chroma has confirmed every chunk; re-posting an id replaces it.
    stored = state.store.upsert(state.version, records, embeddings)
    log.info("upserted %d documents into %s", stored, state.collection)
    return IngestResponse(upserted=stored, model_version=state.version, collection=state.collection)


def fetch_document(state: State, doc_id: str) -> DocumentOut:
    try:
        record = state.store.get(state.version, doc_id)
    except CollectionMissing:
        record = None
    if record is None:
        raise DocumentNotFoundError(f"no document with id {doc_id!r} in {state.collection}")
    return DocumentOut(id=record.id, text=record.text, title=record.title, metadata=record.metadata)


def delete_document(state: State, doc_id: str) -> DeleteResponse:
    try:
        deleted = state.store.delete(state.version, doc_id)
    except CollectionMissing:
        deleted = False
    if not deleted:
        raise DocumentNotFoundError(f"no document with id {doc_id!r} in {state.collection}")
    log.info("deleted %r from %s", doc_id, state.collection)
    return DeleteResponse(deleted=doc_id, collection=state.collection)


def index_stats(state: State) -> StatsResponse:
    try:
        count = state.store.count(state.version)
    except CollectionMissing:
        count = 0  # created on the first ingest
    return StatsResponse(count=count, collection=state.collection, model_version=state.version)
