"""The query service's work: embed the query with the query tower, find the nearest passages in
the served version's collection, rank (dense, or fused with BM25 over the candidates), and return
each document once.

    dense   the nearest passages by cosine distance; a document ranks where its best passage does
    hybrid  the `hybrid_depth` nearest passages ranked again by BM25 over those candidates alone
            (training's tokenisation), the two rankings fused by reciprocal rank fusion. No lexical
            index: BM25 reads each candidate's term statistics (stored at ingestion; a passage
            without them is tokenised from its text).
"""

from __future__ import annotations

import time

from services.common.state import ServiceState
from services.query.config import Settings
from services.query.schemas import SearchHit, SearchRequest, SearchResponse
from twotower.index.documents import STATS_KEY, Hit, passage_text, user_metadata
from twotower.index.store import Record
from twotower.lexical import rank_by_bm25, reciprocal_rank_fusion
from twotower.text import format_document

# Passages fetched per wanted document at first: long documents may have several near the top.
OVERFETCH = 2
MAX_CANDIDATES = 1_000


def search(state: ServiceState[Settings], request: SearchRequest) -> SearchResponse:
    """Raises CollectionMissing when nothing was ingested for this model version (a 503, see main)."""
    serving = state.current  # one version answers the whole request
    started = time.perf_counter()
    embedding = serving.encoder.encode_queries([request.query])[0]
    hybrid = request.mode == "hybrid"
    n = max(request.k * OVERFETCH, state.settings.hybrid_depth if hybrid else request.k + 10)
    while True:
        candidates = serving.index.candidates(embedding, min(n, MAX_CANDIDATES), request.where)
        ranked = (
            fuse(request.query, candidates)
            if hybrid
            else [(r, 1.0 - (r.distance or 0.0)) for r in candidates]
        )
        hits = serving.index.documents_of([r for r, _ in ranked], request.k)
        # Too few distinct documents among the passages, and there may be more: look deeper.
        if len(hits) >= request.k or len(candidates) < n or n >= MAX_CANDIDATES:
            break
        n *= 4
    scores = {r.id: score for r, score in ranked}
    took_ms = (time.perf_counter() - started) * 1000
    return SearchResponse(
        query=request.query,
        model_version=serving.version,
        mode=request.mode,
        took_ms=round(took_ms, 2),
        results=[_hit(h, ranked[h.rank][0], scores, hybrid) for h in hits],
    )


def fuse(query: str, candidates: list[Record]) -> list[tuple[Record, float]]:
    """The candidates (nearest first) re-ranked by RRF of their dense and BM25 ranks."""
    stats = [r.metadata.get(STATS_KEY) for r in candidates]
    texts = [
        None if s is not None else format_document(passage_text(r), user_metadata(r.metadata)[0])
        for r, s in zip(candidates, stats, strict=True)
    ]
    lexical = rank_by_bm25(query, texts, [None if s is None else str(s) for s in stats])
    fused = reciprocal_rank_fusion([list(range(len(candidates))), lexical])
    return [(candidates[i], score) for i, score in fused]


def _hit(hit: Hit, best: Record, scores: dict[str, float], hybrid: bool) -> SearchHit:
    # Chroma computes in float32: more than 6 decimals would be noise.
    distance = round(hit.distance, 6)
    document = hit.document
    return SearchHit(
        id=document.id,
        title=document.title,
        text=document.text,
        highlight=hit.passage,
        metadata=document.metadata,
        distance=distance,
        score=round(scores[best.id], 6) if hybrid else round(1.0 - distance, 6),
    )


def not_indexed(state: ServiceState[Settings]) -> str:
    return (
        f"no documents indexed for model version {state.version} yet "
        f"(collection {state.collection!r} does not exist): ingest documents first"
    )
