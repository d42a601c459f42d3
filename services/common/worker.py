"""The gunicorn worker class both services run: uvicorn's, with httptools and uvloop required and
the request head bounded.

uvicorn quietly falls back to its slower pure-Python parser and asyncio's loop when httptools or
uvloop is missing; naming them makes an image built without them fail at start instead.

uvicorn's httptools protocol bounds neither the request line nor the headers (gunicorn's
`limit_request_*` do not reach a uvicorn worker), so a head of many megabytes would be buffered with
the event loop, and `/healthz`, busy meanwhile. `BoundedHttpToolsProtocol` answers 431 and closes
the connection as soon as the head passes `MAX_HEAD_BYTES`, or one line `MAX_LINE_BYTES`, before any
middleware or route runs. Hand-written: uvicorn has no such option for httptools.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

# Imported here, not only named below: a missing one fails as the worker class loads, and the image
# test (tests/deploy/test_images.py) sees them among what the service imports from its lock.
import httptools
import uvloop  # noqa: F401
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn_worker import UvicornWorker

log = logging.getLogger(__name__)

# Request line and headers together; nginx's default (4 buffers of 8 KiB) is half of it.
MAX_HEAD_BYTES = 64 * 1024
# The request line, or one header (name and value).
MAX_LINE_BYTES = 8 * 1024


class HeadTooLargeError(Exception):
    """Raised from a parser callback; `feed_data` raises httptools' own error with it as context."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head bounded (431, then the connection closed)."""

    _head_bytes = 0  # bytes received since the current request head began
    _parsed_bytes = 0  # bytes of the current request's headers parsed so far
    _in_head = True  # no request yet on this connection, or its headers not complete
    _head_started = 0.0  # time.monotonic() when it began
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            if not self._head_bytes:
                self._head_started = time.monotonic()
            self._head_bytes += len(data)
        # uvicorn's own data_received, but for the error the callbacks below raise (httptools wraps
        # it in a parser error, which uvicorn would answer with a 400).
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, HeadTooLargeError):
                self._refuse(str(exc.__context__))
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # Checked after parsing: a chunk that completes a small head may carry a large body.
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(f"request line and headers are larger than {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        self._parsed_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_LINE_BYTES:
            raise HeadTooLargeError(f"request line is longer than {MAX_LINE_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Exact where the chunk count above is not: the head may end inside the last chunk.
        size = len(name) + len(value)
        self._parsed_bytes += size + 4  # ": " and CRLF
        if size > MAX_LINE_BYTES:
            raise HeadTooLargeError(f"a header is longer than {MAX_LINE_BYTES} bytes")
        if self._parsed_bytes + len(self.url) > MAX_HEAD_BYTES:
            raise HeadTooLargeError(f"request line and headers are larger than {MAX_HEAD_BYTES} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def _refuse(self, reason: str) -> None:
        self._refused = True
        client = "%s:%d" % self.client if self.client else "-"  # noqa: UP031
        took_ms = (time.monotonic() - self._head_started) * 1000
        log.warning("431 to %s, %.1f ms after the head began: %s", client, took_ms, reason)
        body = reason.encode("ascii")
        self.transport.write(
            STATUS_LINE[431]
            + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        self.transport.close()


class ServiceWorker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "uvloop", "http": BoundedHttpToolsProtocol}
