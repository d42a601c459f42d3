"""The launcher's process supervision, with small stand-in processes instead of the services."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import pytest

from deploy.local.supervisor import ServiceExitedError, Supervisor

ROOT = Path(__file__).resolve().parents[2]


def py(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def test_output_is_prefixed_per_service_and_stop_ends_every_child() -> None:
    out = io.StringIO()
    sup = Supervisor(out=out, color=False)
    a = sup.start("query", py("print('hello from a'); import time; time.sleep(60)"), os.environ, ROOT)
    b = sup.start("chroma", py("print('hello from b'); import time; time.sleep(60)"), os.environ, ROOT)
    sup.wait_until(
        "both printed", lambda: "hello from b" in out.getvalue() and "hello from a" in out.getvalue(), 30
    )
    sup.check()  # both alive: no error
    sup.stop(timeout=10)
    assert a.proc.returncode is not None and b.proc.returncode is not None
    lines = out.getvalue().splitlines()
    assert " query | hello from a" in lines
    assert "chroma | hello from b" in lines


def test_a_dead_child_is_reported_with_its_status_and_last_lines() -> None:
    sup = Supervisor(out=io.StringIO(), color=False)
    sup.start("ok", py("import time; time.sleep(60)"), os.environ, ROOT)
    sup.start("bad", py("print('loading'); print('fatal: no model'); raise SystemExit(3)"), os.environ, ROOT)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceExitedError) as err:
            sup.wait_until("never", lambda: False, timeout=60)  # fails on the death, not the timeout
    finally:
        sup.stop(timeout=10)
    assert time.monotonic() - started < 30
    assert err.value.name == "bad" and err.value.returncode == 3
    assert err.value.tail[-2:] == ["loading", "fatal: no model"]


def test_a_child_that_ignores_sigterm_is_killed() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    out = io.StringIO()
    sup = Supervisor(out=out, color=False)
    child = sup.start("stubborn", py(code), os.environ, ROOT)
    sup.wait_until("up", lambda: "up" in out.getvalue(), 30)
    sup.stop(timeout=1)
    assert child.proc.returncode == -9
    assert "killing it" in out.getvalue()
