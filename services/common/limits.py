"""Checks that run before a request's body is read: the API key, then the body size.

`RequestGuard` is plain ASGI middleware because FastAPI reads and parses a body before any
dependency runs: a 200 MB POST without a key would be read before its 401. It answers 401 from the
headers (`authorize`), 413 for a `Content-Length` over `max_body_bytes`, and 413 as soon as a body
without one (chunked) passes the limit; the bytes read are then replayed to the app.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")
# (method, headers) → None when allowed, else the 401's reason.
Authorize = Callable[[str, Headers], str | None]


def grouped(items: Iterable[T], chars: int, size: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive items in groups of at most `chars` characters by `size` (a larger item goes alone)."""
    group: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if group and total + n > chars:
            yield group
            group, total = [], 0
        group.append(item)
        total += n
    if group:
        yield group


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The rest of the body is not read: the connection cannot be reused for another request.
    raw.append((b"connection", b"close"))
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        setting: str,
        authorize: Authorize | None = None,
    ) -> None:
        self.app, self.max_body_bytes, self.setting, self.authorize = app, max_body_bytes, setting, authorize

    def _too_large(self) -> str:
        return f"request body is larger than {self.max_body_bytes} bytes ({self.setting})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.authorize is not None:
            refused = self.authorize(scope["method"], headers)
            if refused is not None:
                await _answer(send, 401, refused, {"www-authenticate": "APIKey"})
                return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _answer(send, 413, self._too_large())
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _answer(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later calls wait for the disconnect, as the server's would

        await self.app(scope, replay, send)
