"""Request ids: every response carries `X-Request-ID`, every log line of that request shows it.

The id is the client's own (`X-Request-ID` on the request) when it is sane, else a new one. It
lives in a context variable for the duration of the request; `RequestIdFilter`, on the log
handler, copies it onto every record (`%(request_id)s` in the format, "-" outside a request).
Context variables follow the request into the thread pool where sync handlers run.

The middleware also writes the access log line, because uvicorn's own access log is written
outside the request's context and could not show the id (gunicorn_common turns uvicorn's off).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
NO_REQUEST = "-"
# Long enough for a UUID, a W3C trace id or a base64 token; nothing that could break a log line
# or a header (no spaces, quotes or control characters).
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

request_id_var: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST)
access_log = logging.getLogger("services.access")


def current_request_id() -> str:
    return request_id_var.get()


def accept_or_generate(given: str | None) -> str:
    if given is not None and _SANE_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record that passes the handler it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): the context variable is set around the whole request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = accept_or_generate(given)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # An unhandled error: Starlette's outer error middleware answers 500 without our header,
            # so answer here (it sees the response started and only re-raises, for the traceback).
            if not response_started:
                await _internal_error(send_with_id)
            raise
        finally:
            _log_access(scope, status, time.perf_counter() - started)
            request_id_var.reset(token)


async def _internal_error(send: Send) -> None:
    body = b"Internal Server Error"
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]}" if client else "-"
    path = scope.get("root_path", "") + scope["path"]
    access_log.info(
        '%s "%s %s HTTP/%s" %d %.1fms',
        peer,
        scope["method"],
        path,
        scope.get("http_version", "1.1"),
        status,
        seconds * 1000,
    )
