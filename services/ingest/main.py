"""The ingestion app: `create_app()` builds it; gunicorn serves it (see gunicorn.conf.py)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.common.docs import serve_docs_offline
from services.common.errors import register_error_handlers
from services.common.limits import RequestGuard
from services.common.observability import instrument_app, observed
from services.common.state import lifespan
from services.ingest.config import Settings, hnsw_settings, passage_config
from services.ingest.deps import write_guard
from services.ingest.indexer import DocumentNotFoundError
from services.ingest.routes import documents, health, stats

DESCRIPTION = """
Posts documents into the semantic search index. Each document is embedded with the **document
tower** of the served model version and stored, with its text, title and metadata, in that
version's Chroma collection (`<prefix>-<model version>`), where the query service finds it.

* `POST /documents` upserts up to `INGEST_MAX_DOCUMENTS_PER_REQUEST` documents (default 1,000) and
  answers only after Chroma stored them; re-posting an id replaces it. One request carries at most
  `INGEST_MAX_REQUEST_CHARS` characters of text and titles (default 500,000; more is a **413**):
  larger loads go in several requests (`python -m services.loader` splits them).
* When `INGEST_API_KEY` is set, `POST` and `DELETE` need the `X-API-Key` header.
* Chroma unreachable → **503** with the reason, and nothing is acknowledged.
"""


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    app = FastAPI(
        title="Two-tower search: ingestion API",
        description=DESCRIPTION,
        version="1.0.0",
        lifespan=lifespan(
            settings,
            "ingest",
            passage_config(settings),
            instrument=observed("ingest"),
            hnsw=hnsw_settings(settings),
        ),
        # Served by serve_docs_offline below, without a CDN.
        docs_url=None,
        redoc_url=None,
    )
    # The key (401) and the body size (413) are checked before the body is read.
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        setting="INGEST_MAX_BODY_BYTES",
        authorize=write_guard(settings),
    )
    register_error_handlers(app)
    app.add_exception_handler(DocumentNotFoundError, _not_found)
    app.include_router(health.router)
    app.include_router(documents.router)
    app.include_router(stats.router)
    serve_docs_offline(app)
    instrument_app(app, "ingest")
    return app
