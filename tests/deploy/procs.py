"""Compose services started as processes in tests, the way the local stack starts them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess


def resolve(argv: list[str], env: dict[str, str]) -> list[str]:
    """The executable found on the environment's PATH (the venv first, as the local stack puts it)."""
    found = shutil.which(argv[0], path=env["PATH"])
    assert found is not None, f"{argv[0]} not on PATH"
    return [found, *argv[1:]]


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM to a process started with start_new_session and its group, SIGKILL after `timeout`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
