"""The query service's work: embed the query with the query tower, ask Chroma for its neighbours."""

from __future__ import annotations

import time

from services.common.state import ServiceState
from services.query.config import Settings
from services.query.schemas import SearchHit, SearchRequest, SearchResponse
from twotower.index.store import Record


def search(state: ServiceState[Settings], request: SearchRequest) -> SearchResponse:
    """Raises CollectionMissing when nothing was ingested for this model version (a 503, see main)."""
    started = time.perf_counter()
    embedding = state.encoder.encode_queries([request.query])[0]
    records = state.store.query(state.version, embedding, request.k, request.where)
    hits = [_hit(r) for r in records]
    hits.sort(key=lambda h: h.distance)
    took_ms = (time.perf_counter() - started) * 1000
    return SearchResponse(
        query=request.query, model_version=state.version, took_ms=round(took_ms, 2), results=hits
    )


def _hit(record: Record) -> SearchHit:
    # Query results always carry a distance; 2.0 (opposite direction) only keeps the type honest.
    # Chroma computes in float32: more than 6 decimals would be noise.
    distance = round(record.distance if record.distance is not None else 2.0, 6)
    return SearchHit(
        id=record.id,
        title=record.title,
        text=record.text,
        metadata=record.metadata,
        distance=distance,
        score=round(1.0 - distance, 6),
    )


def not_indexed(state: ServiceState[Settings]) -> str:
    return (
        f"no documents indexed for model version {state.version} yet "
        f"(collection {state.collection!r} does not exist): ingest documents first"
    )
