"""The ONNX Runtime engine: each tower as one exported graph, run with the Rust `tokenizers`.

Needs only onnxruntime, tokenizers and numpy (no PyTorch, no transformers, nothing else of this
package that imports them), so the serving images can leave PyTorch out. The graphs and the
tokenizer are written by `twotower.engine.export` into `<version>/onnx/`:

    onnx/manifest.json      format, the version exported from, dim, max_seq_length, pad id, and the
                            sha256 of every file below (checked when a file is loaded)
    onnx/tokenizer.json     the backbone's tokenizer
    onnx/query.onnx         input_ids, attention_mask, token_type_ids -> embedding (unit length):
    onnx/document.onnx      backbone, mean pooling, normalize, the tower's head, normalize
    onnx/*.int8.onnx        the same graphs with most weight matrices int8 (dynamic quantization,
                            written by every export unless `--no-int8`): a SciFact claim in
                            3.6 ms against 6.4 in fp32 (`make bench`, one thread). The query
                            service runs them by default (served nDCG@10 within 0.005 of fp32),
                            ingestion the fp32 ones (docs/benchmarks.md)

Two runtimes run the graphs (`backend`):

    onnxruntime  every graph, on CPU or GPU
    openvino     the fp32 graphs on CPU, in bfloat16 where the CPU computes it natively
                 (AVX512_BF16 or AMX; OpenVINO's default there), else in fp32. On the 2-core
                 AVX512_BF16 machine of docs/benchmarks.md it embedded SciFact abstracts about
                 twice as fast as ONNX Runtime fp32, at cosine 0.99997 to it: what ingestion runs.
                 The int8 graphs are quantized for ONNX Runtime's kernels (OpenVINO ran the
                 query one 3x slower), so int8, like a GPU, always runs on onnxruntime.

A GPU always runs the fp32 graphs (ONNX Runtime's CUDA provider has no kernels for the int8
ones), and a version exported without int8 graphs is served in fp32, with a warning.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from twotower.engine import TOWERS, Engine, Tower
from twotower.engine.batching import length_sorted_chunks, pack
from twotower.registry import ArtifactError, find_version, read_config

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
MANIFEST_FILE = "manifest.json"
ONNX_FORMAT = "twotower-onnx/1"
TOKENIZER_FILE = "tokenizer.json"
Variant = Literal["fp32", "int8"]
Backend = Literal["onnxruntime", "openvino"]
# How the int8 graphs were quantized (twotower.engine.export._quantize), in the manifest: 1 = every
# weight MatMul int8; 2 = the first three layers' feed-forward down-projections kept fp32.
INT8_RECIPE = 2


def tower_file(tower: Tower, variant: Variant = "fp32") -> str:
    return f"{tower}.onnx" if variant == "fp32" else f"{tower}.{variant}.onnx"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(version_dir: str | Path) -> dict[str, Any]:
    """`<version>/onnx/manifest.json`, checked to belong to the version in `<version>/config.json`."""
    version_dir = Path(version_dir)
    path = version_dir / ONNX_DIR / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"{path}: missing: version {version_dir.name} has no ONNX export "
            f"(run `python -m twotower.engine.export --weights-dir {version_dir.parent} "
            f"--version {version_dir.name}`)"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != ONNX_FORMAT:
        raise ArtifactError(f"{path}: not a {ONNX_FORMAT} manifest")
    version = read_config(version_dir).get("version")
    if manifest.get("version") != version:
        raise ArtifactError(
            f"{path}: exported from version {manifest.get('version')!r}, but this is version {version!r}"
        )
    return manifest


def has_onnx(version_dir: str | Path, variant: Variant = "fp32") -> bool:
    """Whether the version was exported (with this variant's graphs)."""
    path = Path(version_dir) / ONNX_DIR / MANIFEST_FILE
    return path.is_file() and lists_variant(json.loads(path.read_text()), variant)


def lists_variant(manifest: dict[str, Any], variant: Variant) -> bool:
    """Whether an export's manifest lists both towers' graphs of `variant` (int8 ones: of the
    current recipe; older int8 graphs count as missing, so they are exported again)."""
    files = manifest.get("files", {})
    listed = all(tower_file(t, variant) in files for t in TOWERS)
    return listed and (variant != "int8" or manifest.get("int8_recipe") == INT8_RECIPE)


def verified_file(version_dir: Path, manifest: dict[str, Any], name: str) -> Path:
    """The path of an exported file whose content matches the manifest's sha256."""
    path = version_dir / ONNX_DIR / name
    expected = manifest.get("files", {}).get(name)
    if expected is None:
        raise ArtifactError(
            f"{version_dir / ONNX_DIR / MANIFEST_FILE}: lists no {name} (export again: "
            f"python -m twotower.engine.export --version {version_dir.name} --force)"
        )
    try:
        actual = sha256_file(path)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: missing") from exc
    if actual != expected:
        raise ArtifactError(f"{path}: sha256 {actual[:12]}… does not match the manifest ({expected[:12]}…)")
    return path


def available_cpus() -> int:
    """The CPUs this process may run on (a container's cpuset, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


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
    """One version's towers in ONNX Runtime. Thread-safe: sessions and the (never reconfigured)
    tokenizer are shared by every thread; each tower's session is created once, on first use unless
    preloaded (a query service never loads the document graph, and ingestion never the query one)."""

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
        # OpenVINO keeps kernels and buffers for every input shape it has run, so a chunk's width is
        # rounded up to a multiple of this: 16 widths instead of 256 bound its memory (documents on
        # 2 threads: RSS flat at 376 MB after 2,560 SciFact abstracts, against 466 MB and still
        # growing unrounded), for 7% of its throughput. ONNX Runtime's memory stays flat unrounded.
        self._width_step = 16 if self.backend == "openvino" else 1
        # Texts of one encode call run in chunks of this many, sorted by length so that a chunk
        # pads little. On CPU, small chunks run faster per text than big ones (activations stay in
        # cache: docs/benchmarks.md); on a GPU, big ones fill the chip.
        self.batch_size = batch_size or (256 if self.device == "cuda" else 4)
        if self.variant == "int8":
            # Dynamic quantization scales activations by the whole input tensor's range, so a
            # text's int8 vector would depend on the texts batched with it (cosine down to 0.986
            # on SciFact claims): one text per run keeps each vector a function of its text alone.
            self.batch_size = 1
        # On CPU the two towers use the threads differently. The query tower serves one short text
        # at a time, so its session spreads each run over all threads (latency). The document
        # tower serves many texts per call, so its session runs single-threaded and `threads` chunks
        # run side by side (throughput: no intra-op synchronisation, no spinning threads).
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
                    # One stream per chunk run side by side, each on one thread; else one stream
                    # spread over the threads.
                    compiled = OpenVinoSession(
                        path, self.threads, self.threads if chunked else 1, self.openvino_precision
                    )
                    session: Session = compiled
                    runtime = f"openvino {compiled.precision}"
                else:
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = 1 if chunked else self.threads
                    options.inter_op_num_threads = 1
                    # Idle pool threads sleep instead of spinning: the services share their cores
                    # with Chroma and each other, and a spinning pool took twice the CPU for the
                    # same work.
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

        def run(chunk: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(["embedding"], feed_of(chunk))[0])

        if isinstance(session, OpenVinoSession):
            # OpenVINO runs the chunks side by side on its own threads (one infer request per
            # stream), started and collected from this thread alone.
            results = session.run_all("embedding", [feed_of(chunk) for chunk in chunks])
        elif tower == "document" and self._parallel_chunks and len(chunks) > 1:
            results = list(self._chunk_pool().map(run, chunks))  # ONNX Runtime releases the GIL
        else:
            # One such run at a time per encoder: each already spreads over the session's threads,
            # sized so that workers × threads ≈ cores. Concurrent requests running side by side
            # multiply that (16 search clients: 8 compute threads per 1-thread worker), and the event
            # loop answering /healthz waited behind them (`make loadtest`: p99 up to 124 ms, against
            # 57 with this lock). Its cost in queries/s at 8 clients (`make bench`) could not be told
            # from run-to-run noise (docs/benchmarks.md, "Engines").
            with self._runs:
                results = [run(chunk) for chunk in chunks]
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


class Session(Protocol):
    """What the engine calls on a loaded graph: ONNX Runtime's InferenceSession, or OpenVinoSession."""

    def get_inputs(self) -> Sequence[Any]: ...

    def run(self, output_names: list[str], input_feed: dict[str, np.ndarray]) -> Sequence[Any]: ...


class OpenVinoSession:
    """One graph compiled by OpenVINO for the CPU, behind the two InferenceSession methods the
    engine calls, plus `run_all`. OpenVINO picks the precision (bfloat16 where the CPU has it
    natively), and its threads are not pinned to cores, which the services share with Chroma and
    each other.

    Only one Python thread at a time calls into OpenVINO here: `streams` infer requests run side by
    side on OpenVINO's own threads, started and collected by that one thread. (Chunks run from two
    Python threads at once, each on its own infer request, deadlocked inside OpenVINO's Python
    binding: a rollout's backfill stopped with both threads in `InferRequest.infer`, one holding
    the GIL.)"""

    def __init__(self, path: Path, threads: int, streams: int = 1, precision: str | None = None) -> None:
        try:
            import openvino
        except ImportError as exc:
            raise RuntimeError(
                "the openvino backend needs the `openvino` package (pinned in requirements.txt); "
                "install it, or run the graphs on ONNX Runtime (*_ONNX_BACKEND=onnxruntime)"
            ) from exc
        core = openvino.Core()
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": streams}
        config["ENABLE_CPU_PINNING"] = False
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self._inputs = [SimpleNamespace(name=port.get_any_name()) for port in self._compiled.inputs]
        self._requests = [self._compiled.create_infer_request() for _ in range(streams)]
        self._lock = threading.Lock()

    def get_inputs(self) -> list[SimpleNamespace]:
        return self._inputs

    def run(self, output_names: list[str], input_feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            request = self._requests[0]
            request.start_async(input_feed)
            return self._collect(request, output_names)

    def run_all(self, output_name: str, feeds: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """`output_name` for every feed, in order; up to `streams` feeds run at once."""
        results: list[np.ndarray] = []
        with self._lock:
            n = len(self._requests)
            for i, feed in enumerate(feeds):
                request = self._requests[i % n]
                if i >= n:  # the request's previous feed, i - n, is collected first
                    results += self._collect(request, [output_name])
                request.start_async(feed)
            for i in range(max(0, len(feeds) - n), len(feeds)):
                results += self._collect(self._requests[i % n], [output_name])
        return results

    @staticmethod
    def _collect(request: Any, output_names: list[str]) -> list[np.ndarray]:
        request.wait()
        # The request reuses its output memory on its next run.
        return [np.array(request.get_tensor(name).data) for name in output_names]
