"""The query app: `create_app()` builds it; gunicorn serves it (see gunicorn.conf.py)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from services.common.docs import serve_docs_offline
from services.common.errors import register_error_handlers, unavailable
from services.common.limits import RequestGuard
from services.common.observability import instrument_app, observed
from services.common.state import lifespan, state_of
from services.query.batching import query_batching
from services.query.config import Settings
from services.query.feedback import Feedback, FeedbackGate
from services.query.routes import feedback, health, search, ui
from services.query.search import not_indexed
from twotower.index.store import CollectionMissing

DESCRIPTION = """
Semantic search over the documents posted to the ingestion API. A query is embedded with the
**query tower** of the served model version and matched, by cosine distance, against the documents
that the same model version's **document tower** embedded (one Chroma collection per version, so
versions never mix).

* `POST /search` → the `k` nearest documents, nearest first, with `distance` and `score` = 1 − distance.
* **503** when Chroma is unreachable, or when nothing has been indexed yet for this model version
  (the collection does not exist): the service cannot answer, rather than answering "no results".
  An existing but empty collection answers 200 with no results.
* `POST /feedback` ← `{"search_id": <from /search>, "clicked": [ids]}` (and/or `relevant`,
  `not_relevant`): stored durably, for training on what users found useful.
* `GET /readyz` reports the same conditions, so a load balancer only routes to a replica that can answer.
"""


async def _collection_missing(request: Request, exc: Exception) -> JSONResponse:
    return unavailable(not_indexed(state_of(request)))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    app = FastAPI(
        title="Two-tower search: query API",
        description=DESCRIPTION,
        version="1.0.0",
        lifespan=lifespan(settings, "query", wrap=query_batching(settings), instrument=observed("query")),
        # Served by serve_docs_offline below, without a CDN.
        docs_url=None,
        redoc_url=None,
    )
    # Inside CORS, so that a 413 still carries the CORS headers a browser needs to read it.
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, setting="QUERY_MAX_BODY_BYTES")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
    )
    register_error_handlers(app)
    app.state.feedback = Feedback(settings)
    app.add_exception_handler(CollectionMissing, _collection_missing)
    app.include_router(health.router)
    app.include_router(search.router)
    app.include_router(feedback.router)
    app.include_router(ui.router)
    serve_docs_offline(app)
    instrument_app(app, "query")
    # Outermost, so a feedback flood is refused before any other middleware runs.
    app.add_middleware(FeedbackGate, feedback=app.state.feedback)
    return app
