"""OpenVINO as a second runtime of the exported fp32 graphs on CPU (the int8 graphs are quantized for
ONNX Runtime's kernels), for `OnnxEncoder`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


class OpenVinoSession:
    """One graph compiled by OpenVINO for the CPU: `get_inputs` as ONNX Runtime's InferenceSession
    has it, and `run_all` for the chunks of one encode call. OpenVINO picks the precision (bfloat16
    where the CPU computes it natively, else fp32); its threads are not pinned to the shared cores.

    One Python thread at a time calls into OpenVINO: `streams` infer requests run side by side on
    OpenVINO's own threads. (Two Python threads, each on its own request, deadlocked inside its
    Python binding.)"""

    def __init__(self, path: Path, threads: int, streams: int = 1, precision: str | None = None) -> None:
        try:
            import openvino
        except ImportError as exc:
            raise RuntimeError(
                "the openvino backend needs the `openvino` package (requirements/ingest.in: the ingestion "
                "image has it, the query image does not); install it, or run the graphs on ONNX Runtime "
                "(*_ONNX_BACKEND=onnxruntime)"
            ) from exc
        core = openvino.Core()
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": streams}
        config["ENABLE_CPU_PINNING"] = False
        if precision:  # unset: OpenVINO's choice (bfloat16 where the CPU has it natively)
            config["INFERENCE_PRECISION_HINT"] = precision
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self._inputs = [SimpleNamespace(name=port.get_any_name()) for port in self._compiled.inputs]
        self._requests = [self._compiled.create_infer_request() for _ in range(streams)]
        self._lock = threading.Lock()

    def get_inputs(self) -> list[SimpleNamespace]:
        return self._inputs

    def run_all(self, output_name: str, feeds: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """`output_name` for every feed, in order; up to `streams` feeds run at once."""
        results: list[np.ndarray] = []
        with self._lock:
            n = len(self._requests)
            for i, feed in enumerate(feeds):
                request = self._requests[i % n]
                if i >= n:  # the request's previous feed, i - n, is collected first
                    results.append(self._collect(request, output_name))
                request.start_async(feed)
            for i in range(max(0, len(feeds) - n), len(feeds)):
                results.append(self._collect(self._requests[i % n], output_name))
        return results

    @staticmethod
    def _collect(request: Any, output_name: str) -> np.ndarray:
        request.wait()
        # The request reuses its output memory on its next run.
        return np.array(request.get_tensor(output_name).data)
