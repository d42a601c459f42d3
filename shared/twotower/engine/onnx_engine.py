"""The ONNX Runtime engine: each tower as one exported graph (`onnx_format`), run with the Rust
`tokenizers`; no PyTorch, so the serving images can leave it out.

`backend` picks the runtime of the fp32 graphs on CPU: onnxruntime or OpenVINO. A GPU runs the
fp32 graphs (ONNX Runtime's CUDA provider has no int8 kernels), and so does a version exported
without int8 graphs (with a warning).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from twotower.engine import TOWERS, Engine, Tower, available_cpus
from twotower.engine.batching import length_sorted_chunks, pack
from twotower.engine.onnx_format import (
    TOKENIZER_FILE,
    Variant,
    lists_variant,
    read_manifest,
    tower_file,
    verified_file,
)
from twotower.engine.openvino_session import OpenVinoSession
from twotower.registry import ArtifactError, find_version

log = logging.getLogger(__name__)

Backend = Literal["onnxruntime", "openvino"]
Session: TypeAlias = "ort.InferenceSession | OpenVinoSession"


def providers_for(device: str | None) -> list[Any]:
    """ONNX Runtime execution providers for a device setting: unset = CUDA when onnxruntime has it."""
    available = ort.get_available_providers()
    if device is None:
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError(f"device {device!r}: this onnxruntime has no CUDA provider ({available})")
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ValueError(f"device {device!r}: the onnx engine runs on cpu or cuda[:N]")


class OnnxEncoder:
    """One version's towers in ONNX Runtime; thread-safe. Each tower's session is made once, on first
    use unless preloaded (a query service never loads the document graph, ingestion the query one)."""

    engine: Engine = "onnx"

    def __init__(
        self,
        directory: str | Path,
        *,
        threads: int | None = None,
        device: str | None = None,
        towers: Sequence[Tower] = TOWERS,
        variant: Variant = "fp32",
        batch_size: int | None = None,
        backend: Backend = "onnxruntime",
        openvino_precision: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._manifest = read_manifest(self.directory)
        self.version: str = self._manifest["version"]
        self.dim: int = int(self._manifest["dim"])
        self.max_seq_length: int = int(self._manifest["max_seq_length"])
        self.threads = threads or available_cpus()
        self.providers = providers_for(device)
        self.device = "cuda" if self.providers[0] != "CPUExecutionProvider" else "cpu"
        self.variant = self._servable(variant)
        self.backend = self._runnable(backend)
        self.openvino_precision = openvino_precision  # unset: OpenVINO's (bf16 where the CPU has it)
        # OpenVINO keeps kernels and buffers per input shape: widths rounded up to 16s bound its memory.
        self._width_step = 16 if self.backend == "openvino" else 1
        # Length-sorted chunks: small on CPU (activations stay in cache), big on a GPU (fill the chip).
        self.batch_size = batch_size or (256 if self.device == "cuda" else 4)
        if self.variant == "int8":
            # int8 scales activations by the batch's range: one text a run keeps vectors batch-free.
            self.batch_size = 1
        # On CPU queries spread over all threads (latency); documents run as parallel 1-thread chunks.
        self._parallel_chunks = self.device == "cpu" and self.threads > 1
        self._pool: ThreadPoolExecutor | None = None
        self._pad_id = int(self._manifest.get("pad_token_id", 0))
        tokenizer_path = verified_file(self.directory, self._manifest, TOKENIZER_FILE)
        self._encoding = Tokenizer.from_file(str(tokenizer_path))
        self._encoding.no_padding()
        self._encoding.enable_truncation(self.max_seq_length)
        self._plain: Tokenizer | None = None
        self._sessions: dict[Tower, Session] = {}
        self._lock = threading.Lock()
        self._runs = threading.Lock()
        self._closed = False
        for tower in towers:
            self._session(tower)

    def _servable(self, variant: Variant) -> Variant:
        """`variant`, or fp32 where int8 cannot run (a GPU) or was not exported (with a warning)."""
        if variant == "fp32":
            return variant
        if self.device == "cuda":
            log.info("onnx on a GPU runs the fp32 graphs (no int8 kernels there)")
            return "fp32"
        if not lists_variant(self._manifest, variant):
            log.warning(
                "version %s has no %s graphs of the current recipe: serving fp32 (export them: "
                "python -m twotower.engine.export --version %s)",
                self.version,
                variant,
                self.version,
            )
            return "fp32"
        return variant

    def _runnable(self, backend: Backend) -> Backend:
        """`backend`, or onnxruntime where OpenVINO would not run the graphs (a GPU, int8 ones)."""
        if backend not in ("onnxruntime", "openvino"):
            raise ValueError(f"unknown onnx backend {backend!r}: choose onnxruntime or openvino")
        if backend == "openvino" and (self.device != "cpu" or self.variant != "fp32"):
            log.info(
                "openvino runs the fp32 graphs on CPU: the %s graphs on %s run on onnxruntime",
                self.variant,
                self.device,
            )
            return "onnxruntime"
        return backend

    @classmethod
    def open(
        cls,
        roots: Sequence[str | Path],
        version: str | None,
        *,
        base_model: str | None = None,
        **options: Any,
    ) -> OnnxEncoder:
        if version is None:
            searched = ", ".join(str(r) for r in roots) or "(no model directories configured)"
            raise ArtifactError(
                f"the onnx engine serves published versions only, and none is published in {searched}: "
                "publish the base model with `python -m twotower.engine.export --base --out <weights dir>` "
                "or serve with the torch engine"
            )
        return cls(find_version(version, roots), **options)

    def _session(self, tower: Tower) -> Session:
        loaded = self._sessions.get(tower)
        if loaded is not None:
            return loaded
        with self._lock:
            if self._closed:
                raise RuntimeError(f"model version {self.version} has been released")
            if tower not in self._sessions:
                path = verified_file(self.directory, self._manifest, tower_file(tower, self.variant))
                chunked = tower == "document" and self._parallel_chunks
                if self.backend == "openvino":
                    # One single-threaded stream per parallel chunk, else one over all threads.
                    session: Session = OpenVinoSession(
                        path, self.threads, self.threads if chunked else 1, self.openvino_precision
                    )
                    runtime = f"openvino {session.precision}"
                else:
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = 1 if chunked else self.threads
                    options.inter_op_num_threads = 1
                    # Idle pool threads sleep instead of spinning: the services share their cores.
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                    session = ort.InferenceSession(str(path), options, providers=self.providers)
                    runtime = "onnxruntime"
                self._sessions[tower] = session
                log.info(
                    "onnx %s tower of %s loaded (%s, %s, %s, %d threads)",
                    tower,
                    self.version,
                    self.variant,
                    self.device,
                    runtime,
                    self.threads,
                )
            return self._sessions[tower]

    @property
    def tokenizer(self) -> Tokenizer:
        if self._plain is None:
            plain = Tokenizer.from_str(self._encoding.to_str())
            plain.no_truncation()
            plain.no_padding()
            self._plain = plain
        return self._plain

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode("query", texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode("document", texts)

    def _encode(self, tower: Tower, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        session = self._session(tower)
        wanted = {i.name for i in session.get_inputs()}
        encodings = self._encoding.encode_batch(list(texts))
        chunks = length_sorted_chunks(encodings, self.batch_size)

        def feed_of(chunk: np.ndarray) -> dict[str, np.ndarray]:
            longest = len(encodings[chunk[0]].ids)  # longest first
            rounded = -(-longest // self._width_step) * self._width_step
            width = max(longest, min(rounded, self.max_seq_length))  # never past the window
            return pack(encodings, chunk, names=wanted, pad_id=self._pad_id, width=width)

        feeds = [feed_of(chunk) for chunk in chunks]
        if isinstance(session, OpenVinoSession):
            # OpenVINO runs the chunks side by side on its own threads (an infer request a stream).
            results = session.run_all("embedding", feeds)
        else:

            def run(feed: dict[str, np.ndarray]) -> np.ndarray:
                return np.asarray(session.run(["embedding"], feed)[0])

            if tower == "document" and self._parallel_chunks and len(chunks) > 1:
                results = list(self._chunk_pool().map(run, feeds))  # ONNX Runtime releases the GIL
            else:
                # One run at a time: each spreads over workers × threads ≈ cores, and more at once
                # would oversubscribe them, starving the event loop that answers /healthz.
                with self._runs:
                    results = [run(feed) for feed in feeds]
        for chunk, vectors in zip(chunks, results, strict=True):
            out[chunk] = vectors
        return out

    def _chunk_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"model version {self.version} has been released")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=f"onnx-{self.version}")
            return self._pool

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._sessions.clear()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        gc.collect()
