"""Prometheus metrics of both services, served at `GET /metrics`, every series labelled `service`.

Under gunicorn the workers share one multi-process directory (services/common/multiprocess.py), so a
scrape answered by any worker counts every worker's requests. The index layer and the engines stay
free of Prometheus: the store reports each Chroma call to an observer, and the encoder is wrapped here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from fastapi import APIRouter, FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.metrics import Info

from services.common.models import WrappedEncoder
from twotower.engine import Encoder

# One line per request, written where the request id is known (uvicorn's own access log is not).
access_log = logging.getLogger("services.access")
# Requests that matched no route are counted under this one label, not under their raw path: a
# scanner probing random paths must not create a series per path.
UNMATCHED = "unmatched"

HTTP_REQUESTS = Counter(
    "twotower_http_requests_total",
    "HTTP requests answered, by route template and status",
    ["service", "method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "twotower_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template and status",
    ["service", "method", "route", "status"],
)
EMBED_SECONDS = Histogram(
    "twotower_embedding_seconds",
    "Time one call of a tower took to embed a batch of texts",
    ["service", "tower"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EMBED_TEXTS = Counter("twotower_embedded_texts_total", "Texts embedded, by tower", ["service", "tower"])
CHROMA_SECONDS = Histogram(
    "twotower_chroma_seconds",
    "Time one call to the Chroma server took, by operation and outcome (ok, error)",
    ["service", "operation", "outcome"],
)
DOCUMENTS_INGESTED = Counter(
    "twotower_documents_ingested_total", "Documents stored (upserted) in Chroma", ["service"]
)
DOCUMENTS_DELETED = Counter("twotower_documents_deleted_total", "Documents deleted from Chroma", ["service"])
# 1 for the version a live worker serves; a swap sets the previous version to 0. Across workers the
# largest value counts, so during a rolling swap both versions read 1.
MODEL_INFO = Gauge(
    "twotower_model_info",
    "The model version (and engine) the service serves: 1 = served now",
    ["service", "version", "engine"],
    multiprocess_mode="livemax",
)

_served: dict[str, tuple[str, str]] = {}


def set_model_version(service: str, version: str, engine: str) -> None:
    """Record the model version `service` serves from now on (at start-up, and on a hot swap)."""
    previous = _served.get(service)
    if previous == (version, engine):
        return
    if previous is not None:
        MODEL_INFO.labels(service, *previous).set(0)
    MODEL_INFO.labels(service, version, engine).set(1)
    _served[service] = (version, engine)


def chroma_observer(service: str) -> Callable[[str, float, bool], None]:
    """The callback for `ChromaStore.observer`: called with (operation, seconds, ok) after each call."""

    def observe(operation: str, seconds: float, ok: bool) -> None:
        CHROMA_SECONDS.labels(service, operation, "ok" if ok else "error").observe(seconds)

    return observe


class TimedEncoder(WrappedEncoder):
    """An Encoder that times each tower call."""

    def __init__(self, inner: Encoder, service: str) -> None:
        super().__init__(inner)
        self.service = service

    @contextmanager
    def _timed(self, tower: str, n: int) -> Iterator[None]:
        started = time.perf_counter()
        yield
        EMBED_SECONDS.labels(self.service, tower).observe(time.perf_counter() - started)
        EMBED_TEXTS.labels(self.service, tower).inc(n)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._timed("query", len(texts)):
            return self.inner.encode_queries(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        with self._timed("document", len(texts)):
            return self.inner.encode_documents(texts)


def instrument_http(app: FastAPI, service: str) -> None:
    """Count and time every HTTP request by method, route template (e.g. `/documents/{doc_id:path}`)
    and status, and write its access line (prometheus-fastapi-instrumentator's middleware; its
    own default metrics are not used: these names and labels are what dashboards read)."""

    def observe(info: Info) -> None:
        route = UNMATCHED if info.modified_handler == "none" else info.modified_handler
        labels = (service, info.method, route, info.modified_status)
        HTTP_REQUESTS.labels(*labels).inc()
        HTTP_SECONDS.labels(*labels).observe(info.modified_duration)
        scope = info.request.scope
        client = scope.get("client")
        access_log.info(
            '%s "%s %s HTTP/%s" %s %.1fms',
            f"{client[0]}:{client[1]}" if client else "-",
            info.method,
            scope.get("root_path", "") + scope["path"],
            scope.get("http_version", "1.1"),
            info.modified_status,
            info.modified_duration * 1000,
        )

    Instrumentator(should_group_status_codes=False, should_group_untemplated=True).add(observe).instrument(
        app
    )


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every worker's values, read from the shared directory at each scrape.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


router = APIRouter(tags=["service"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics() -> Response:
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
