"""Run a few long-lived processes side by side, the way a foreground `docker compose up` does.

Each child gets its own process group (so a terminal's Ctrl-C reaches only the supervisor, which
then stops the children in reverse start order), its output prefixed with its name, and the last
lines of that output kept, to show when it dies.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

TAIL_LINES = 40
COLORS = ("\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m")
RESET = "\033[0m"


class ServiceExitedError(Exception):
    def __init__(self, name: str, returncode: int, tail: Sequence[str]) -> None:
        self.name, self.returncode, self.tail = name, returncode, list(tail)
        super().__init__(f"{name} exited with status {returncode}")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None


class Supervisor:
    def __init__(self, out: TextIO | None = None, color: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.color = self.out.isatty() if color is None else color
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._width = 6

    def write(self, name: str, line: str) -> None:
        prefix = f"{name:>{self._width}} |"
        if self.color:
            names = [c.name for c in self.children]
            color = COLORS[names.index(name) % len(COLORS)] if name in names else ""
            prefix = f"{color}{prefix}{RESET}"
        with self._lock:
            self.out.write(f"{prefix} {line}\n")
            self.out.flush()

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Child:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name, proc)
        self.children.append(child)
        self._width = max(self._width, len(name))
        child.reader = threading.Thread(target=self._pump, args=(child,), name=f"log-{name}", daemon=True)
        child.reader.start()
        return child

    def _pump(self, child: Child) -> None:
        assert child.proc.stdout is not None
        for raw in child.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            child.tail.append(line)
            self.write(child.name, line)

    def check(self) -> None:
        """Raise ServiceExitedError for the first child that has exited."""
        for child in self.children:
            if child.proc.poll() is not None:
                if child.reader is not None:
                    child.reader.join(timeout=2)  # let the last lines in
                raise ServiceExitedError(child.name, child.proc.returncode, child.tail)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll `ready` until it is true; fail early when a child dies, late on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
            time.sleep(0.5)

    def wait_http(self, url: str, timeout: float, status: int = 200) -> None:
        def ready() -> bool:
            try:
                return httpx.get(url, timeout=5).status_code == status
            except httpx.HTTPError:
                return False

        self.wait_until(url, ready, timeout)

    def watch(self, poll: float = 0.5) -> None:
        """Block until a child dies (raises ServiceExitedError) or the caller is interrupted."""
        while True:
            self.check()
            time.sleep(poll)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM each child, newest first, and wait for it; SIGKILL what does not stop."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.terminate()
                try:
                    child.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.write(child.name, f"did not stop within {timeout:.0f}s; killing it")
                    child.proc.kill()
                    child.proc.wait()
            if child.reader is not None:
                child.reader.join(timeout=2)
