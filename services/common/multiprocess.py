"""gunicorn server hooks that give the workers one shared Prometheus metrics directory.

prometheus_client picks in-process or multi-process values by `PROMETHEUS_MULTIPROC_DIR` when first
imported, so the master sets it in `on_starting`, before any worker imports the app, and this module
never imports prometheus_client at module level. An operator's directory is emptied of `*.db` (a
previous run's values must not add to this one's); else a temporary one is made, and removed on exit.
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
