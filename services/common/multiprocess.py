"""gunicorn server hooks that give the workers one shared Prometheus metrics directory.

prometheus_client chooses between in-process and multi-process values when it is first imported,
by `PROMETHEUS_MULTIPROC_DIR`. The master sets it in `on_starting`, before any worker is forked and
imports the app; this module therefore never imports prometheus_client at module level.

- on_starting: use the operator's `PROMETHEUS_MULTIPROC_DIR` (its old `*.db` files removed: values of
  a previous run must not be added to this one's), else a fresh temporary directory.
- child_exit: a worker died; its live gauges (the served model version) no longer count.
- on_exit: remove the temporary directory, if this run created it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"
_created: list[Path] = []


def prepare_metrics_dir(server: Any = None) -> Path:
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="twotower-metrics-"))
        _created.append(path)
        os.environ[ENV] = str(path)
    return path


def mark_worker_dead(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    if os.environ.get(ENV):
        multiprocess.mark_process_dead(worker.pid)


def remove_metrics_dir(server: Any = None) -> None:
    while _created:
        shutil.rmtree(_created.pop(), ignore_errors=True)
