"""Hostile-request probes shared by `make compose-test` and tests/services (stdlib only)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

# The worker's log line for a refused head, with the server's time from its first byte to the 431.
REFUSED = re.compile(r"431 to \S+, ([0-9.]+) ms after the head began")


def huge_header(port: int, path: str, size: int) -> tuple[bytes, float, bool]:
    """POST with an `X-Request-ID` of `size` bytes on a raw socket: the answer (b"" if closed without
    one), the seconds from the first byte to it or the close, and whether every byte went out."""
    chunk, sent_all, answer = b"x" * (1 << 20), False, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server closed: read what it answered
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Request-ID: ".encode())
            for start in range(0, size, len(chunk)):
                sock.sendall(chunk[: size - start])
            sock.sendall(b"\r\n\r\n")
            sent_all = True
        with contextlib.suppress(OSError):
            answer = sock.recv(100)
        return answer, time.monotonic() - started, sent_all


@contextlib.contextmanager
def healthz_timed(*urls: str) -> Iterator[dict[str, list[float]]]:
    """Each base URL's /healthz polled in a thread while the block runs: the seconds of each answer
    (10 for one that is not a 200 within 10 s)."""
    times: dict[str, list[float]] = {url: [] for url in urls}
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.01):
            for url in urls:
                started, ok = time.monotonic(), False
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/healthz", timeout=10) as r:
                    ok = r.status == 200
                times[url].append(time.monotonic() - started if ok else 10.0)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield times
    finally:
        done.set()
        thread.join(15)
