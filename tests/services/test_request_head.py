"""The request head is bounded (services/common/worker.py): a request line, a header or a whole head
over its limit is a 431 and a closed connection, before the app sees the request; heads within the
limits, keep-alive and large bodies are served as before. Real sockets against uvicorn running the
protocol class the gunicorn workers run (tests/services/test_hostile_gunicorn.py: the real services)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from services.common.worker import MAX_HEAD_BYTES, MAX_LINE_BYTES, BoundedHttpToolsProtocol, ServiceWorker
from tests.conftest import free_port

seen: list[str] = []  # paths the app was called with


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    seen.append(scope["path"])
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, http=BoundedHttpToolsProtocol, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)


def send_head(port: int, head: bytes, filler: int = 0) -> tuple[bytes, float]:
    """Send `head`, then `filler` bytes of one header value (stopping if the server closes), then the
    end of the head; the answer's first bytes (b"" when closed without one) and the seconds taken."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head)
            chunk = b"x" * (1 << 20)
            for start in range(0, filler, len(chunk)):
                sock.sendall(chunk[: filler - start])
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # closed by the server: what is answered is read below
        try:
            answer = sock.recv(100)
        except OSError:
            answer = b""
    return answer, time.monotonic() - started


def test_the_worker_runs_the_bounded_protocol() -> None:
    assert ServiceWorker.CONFIG_KWARGS["http"] is BoundedHttpToolsProtocol


@pytest.mark.parametrize("size", [1 << 20, 128_000_000])
def test_a_huge_header_is_431_without_reading_it(port: int, size: int) -> None:
    seen.clear()
    answer, seconds = send_head(port, b"POST /documents HTTP/1.1\r\nHost: x\r\nX-Request-ID: ", size)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer
    # 128 MB could not even be sent in that time: the server stopped reading and closed.
    assert seconds < 5, seconds
    assert seen == []


@pytest.mark.parametrize(
    "head",
    [
        b"GET /" + b"a" * (MAX_LINE_BYTES + 1) + b" HTTP/1.1\r\nHost: x",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * MAX_LINE_BYTES,
        # Every header small, too many of them.
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"\r\n".join(b"X-%d: %s" % (i, b"a" * 1000) for i in range(70)),
    ],
    ids=["request-line", "one-header", "many-headers"],
)
def test_a_head_over_a_limit_is_431(port: int, head: bytes) -> None:
    seen.clear()
    answer, _ = send_head(port, head)
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert seen == []


def test_heads_within_the_limits_keep_alive_and_large_bodies_are_served(port: int) -> None:
    near_limit = b"\r\n".join(b"X-%d: %s" % (i, b"a" * 1000) for i in range(MAX_HEAD_BYTES // 1100))
    body = b"z" * (4 * MAX_HEAD_BYTES)  # far more than a head may hold, after a small head
    requests = [
        b"GET /a HTTP/1.1\r\nHost: x\r\n" + near_limit + b"\r\n\r\n",
        *[b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"] * 50,
        b"POST /c HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\n\r\n" % len(body) + body,
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for request in requests:
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b"ok"):
                answer += sock.recv(1000)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
