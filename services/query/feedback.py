"""Search ids and feedback: what `POST /feedback` checks before it stores an event.

A search id is the search itself, signed: itsdangerous' URL-safe timed serializer (HMAC-SHA256,
zlib-compressed JSON, a timestamp) over the query, mode, model version and the shown ids in rank
order. So the service keeps nothing per search and writes nothing on `/search`; only feedback that
names a genuine, recent search, and only ids that search showed, reach the store (Chroma,
`twotower.index.feedback`). The HMAC key is `QUERY_FEEDBACK_SECRET`, or one made once and kept in
Chroma: every replica and worker signs and verifies with the same key without configuration.

Bounds: the body (QUERY_MAX_BODY_BYTES, before it is read), the id's length and the ids per list
(the schema), feedback per second per worker (a token bucket in FeedbackGate, 429 before any other middleware), events stored
(QUERY_FEEDBACK_MAX_RECORDS, 503), and their age (QUERY_FEEDBACK_RETENTION_DAYS: each worker
deletes older events at most once a minute, after a write).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any

from fastapi import Request
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from services.query.config import Settings
from services.query.schemas import FeedbackRequest, FeedbackResponse, SearchResponse
from twotower.index.feedback import FeedbackEvent, FeedbackLog
from twotower.index.store import ChromaStore

log = logging.getLogger(__name__)
SALT = "twotower.search-id"
RATE_LIMITED = Counter(
    "twotower_feedback_rate_limited_total", "POST /feedback refused by the rate limit (429)"
)
_TOO_FAST = b'{"detail":"too much feedback; slow down (QUERY_FEEDBACK_RATE_PER_S)"}'
SWEEP_INTERVAL_S = 60.0


class FeedbackRefused(Exception):  # noqa: N818 - named for what clients see
    """The feedback is not stored: `status` (4xx, or 503 when the store is full) and why."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class TokenBucket:
    """`rate` events per second, bursts up to `burst`: one per worker, so a flood costs the
    service a refusal per request, decided before any work. (A shared limit across replicas
    would need a shared counter on every request; the per-worker bound is what protects a worker.)"""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class Feedback:
    """One per app: signs search ids and stores feedback through the app's Chroma store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter = TokenBucket(settings.feedback_rate_per_s, 2 * settings.feedback_rate_per_s)
        self._lock = threading.Lock()
        self._serializer: URLSafeTimedSerializer | None = None
        self._log: FeedbackLog | None = None
        self._count: int | None = None  # events stored, as of the last sweep, plus this worker's writes
        self._swept = 0.0

    def _store_log(self, store: ChromaStore) -> FeedbackLog:
        if self._log is None:
            self._log = FeedbackLog(store)
        return self._log

    def serializer(self, store: ChromaStore) -> URLSafeTimedSerializer:
        if self._serializer is None:
            secret = self.settings.feedback_secret
            key = secret.get_secret_value().encode() if secret else self._store_log(store).signing_key()
            with self._lock:
                self._serializer = URLSafeTimedSerializer(
                    key, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
                )
        return self._serializer

    def search_id(self, store: ChromaStore, response: SearchResponse) -> str | None:
        if not self.settings.feedback:
            return None
        payload = {
            "q": response.query,
            "m": response.mode,
            "v": response.model_version,
            "ids": [hit.id for hit in response.results],
        }
        return str(self.serializer(store).dumps(payload))

    def admit(self) -> None:
        """Before any work (the rate limit came earlier: FeedbackGate)."""
        if not self.settings.feedback:
            raise FeedbackRefused(404, "feedback is turned off on this service (QUERY_FEEDBACK)")

    def accept(self, store: ChromaStore, body: FeedbackRequest) -> FeedbackResponse:
        """Check and store (blocking: Chroma); raises FeedbackRefused."""
        return self.store(store, self.check(store, body))

    def check(self, store: ChromaStore, body: FeedbackRequest) -> FeedbackEvent:
        """The event to store; raises FeedbackRefused. Cheap: no request to Chroma once the key is known."""
        try:
            payload, signed_at = self.serializer(store).loads(
                body.search_id, max_age=self.settings.feedback_max_age_s, return_timestamp=True
            )
        except SignatureExpired as exc:
            raise FeedbackRefused(
                410, "the search is too old for feedback (QUERY_FEEDBACK_MAX_AGE_S): search again"
            ) from exc
        except BadData as exc:
            raise FeedbackRefused(404, "unknown search_id: not one this service issued") from exc
        shown = _shown(payload)
        named = {*body.clicked, *body.relevant, *body.not_relevant}
        if unknown := sorted(named - set(shown)):
            raise FeedbackRefused(422, f"ids not among that search's results: {unknown[:5]}")
        canonical = json.dumps(body.model_dump(), sort_keys=True).encode()
        return FeedbackEvent(
            search=hashlib.sha256(body.search_id.encode()).hexdigest()[:32],
            searched_at=signed_at.timestamp(),
            at=time.time(),
            query=str(payload["q"]) if self.settings.feedback_store_queries else "",
            mode=str(payload["m"]),
            version=str(payload["v"]),
            shown=tuple(shown),
            clicked=tuple(dict.fromkeys(body.clicked)),
            relevant=tuple(dict.fromkeys(body.relevant)),
            not_relevant=tuple(dict.fromkeys(body.not_relevant)),
            id=hashlib.sha256(canonical).hexdigest()[:32],
        )

    def store(self, store: ChromaStore, event: FeedbackEvent) -> FeedbackResponse:
        """Write the event (returns once Chroma acknowledged it); raises FeedbackRefused when full."""
        events = self._store_log(store)
        if self._count is None:
            self._count = events.count()
        if self._count >= self.settings.feedback_max_records:
            self._sweep(events)
            if self._count >= self.settings.feedback_max_records:
                raise FeedbackRefused(
                    503,
                    "the feedback store is full (QUERY_FEEDBACK_MAX_RECORDS); older feedback is "
                    "deleted after QUERY_FEEDBACK_RETENTION_DAYS",
                    {"Retry-After": str(int(SWEEP_INTERVAL_S))},
                )
        events.record(event)
        self._count += 1
        if time.monotonic() - self._swept > SWEEP_INTERVAL_S:
            self._sweep(events)
        named = {*event.clicked, *event.relevant, *event.not_relevant}
        return FeedbackResponse(id=event.id, stored=len(named))

    def _sweep(self, events: FeedbackLog) -> None:
        self._swept = time.monotonic()
        events.delete_older_than(time.time() - self.settings.feedback_retention_days * 86_400)
        self._count = events.count()


def _shown(payload: Any) -> list[str]:
    if not isinstance(payload, dict) or not isinstance(payload.get("ids"), list):
        raise FeedbackRefused(404, "unknown search_id: not one this service issued")
    return [str(i) for i in payload["ids"]]


class FeedbackGate:
    """The outermost middleware: a POST /feedback over this worker's rate is answered 429 before
    anything else runs (request id, HTTP metrics, body, validation), so a flood costs a refusal as
    little as one can; `twotower_feedback_rate_limited_total` counts them."""

    def __init__(self, app: ASGIApp, feedback: Feedback) -> None:
        self.app, self.limiter = app, feedback.limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/feedback"
            and scope["method"] == "POST"
            and not self.limiter.take()
        ):
            RATE_LIMITED.inc()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_TOO_FAST)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),  # the body is not read
            ]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": _TOO_FAST})
            return
        await self.app(scope, receive, send)


def feedback_of(request: Request) -> Feedback:
    feedback: Feedback = request.app.state.feedback
    return feedback
