"""bench.bulk's CPU accounting: the cores each part of a run kept busy, from the stack's processes,
the ops commands it waited for and its own client threads."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

from bench.bulk import Cores


class _Idle:
    def cpu_seconds(self) -> float:
        return 0.0


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cores_counts_this_process_and_the_commands_it_waited_for() -> None:
    stack: Any = SimpleNamespace(chroma=_Idle(), query=_Idle(), ingest=_Idle())
    cores = Cores(stack)
    _spin(0.3)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time() + 0.3\nwhile time.process_time() < t: pass",
        ],
        check=True,
    )
    busy = cores.busy()
    assert busy["chroma"] == busy["query"] == busy["ingest"] == 0.0
    assert busy["bench_clients"] > 0.2
    assert busy["ops_command"] > 0.2
    assert abs(busy["total"] - sum(v for k, v in busy.items() if k != "total")) < 0.01
    assert busy["total"] <= 1.05  # one thread at a time here: at most one core over the window
