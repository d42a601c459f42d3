"""`python -m bench.gpu` (`make bench-gpu`): the towers on a GPU, through the code ingestion runs.

Reports SciFact abstracts/s through `encode_documents` (in requests of `--request-size`), single
query latency through `encode_queries`, and the cosine of every GPU vector to the fp32 CPU vector
of the same text (must be >= 0.999). Engines: torch as served on CUDA and, for comparison, with
queries run eagerly, in fp32, and through sentence-transformers' `encode()`; onnx when this
onnxruntime has the CUDA provider. Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.load import percentiles
from bench.workload import DEFAULT_CORPUS

ROOT = Path(__file__).resolve().parents[1]
MIN_COSINE = 0.999
SERVED = "torch, as served (documents fp16 on CUDA, queries fp32 replaying CUDA graphs)"
EAGER_QUERIES = "torch, as served but queries run eagerly (no CUDA graphs)"
SENTENCE_TRANSFORMERS = "torch through sentence-transformers encode() (documents fp16 on CUDA)"
log = logging.getLogger("bench.gpu")


def gpu_available() -> str | None:
    """The GPU's name, or None. Asks torch (the torch engine is what runs there by default)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="BEIR folder")
    p.add_argument("--weights-dir", type=Path, default=ROOT / "weights", help="its LATEST, else the base")
    p.add_argument("--docs", type=int, default=0, help="abstracts to encode (0 = the whole corpus)")
    p.add_argument("--request-size", type=int, default=1000, help="documents per encode call (one POST)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--reference", type=int, default=512, help="texts encoded in fp32 on CPU to compare")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-gpu.json")
    # The whole script on the CPU: how the test suite checks the code only a GPU runs for real.
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _texts(corpus: str, n_docs: int, n_queries: int) -> tuple[list[str], list[str]]:
    from twotower import format_document
    from twotower.beir import load_corpus, load_queries

    docs = load_corpus(corpus)
    abstracts = [format_document(d.text, d.title) for d in docs.values()]
    queries = list(load_queries(corpus).values())
    return abstracts[: n_docs or None], queries[:n_queries]


def _ingest(encoder: Any, docs: list[str], request_size: int) -> tuple[float, np.ndarray]:
    """Seconds to encode `docs` in requests of `request_size`, as ingestion does, and the vectors."""
    started = time.perf_counter()
    vectors = [
        encoder.encode_documents(docs[i : i + request_size]) for i in range(0, len(docs), request_size)
    ]
    return time.perf_counter() - started, np.vstack(vectors)


def _measure(
    encoder: Any, docs: list[str], queries: list[str], request_size: int, device: str
) -> dict[str, Any]:
    import torch

    cuda = device.startswith("cuda")
    # A first pass, timed apart: a new batch shape costs kernel choices and allocations once.
    if cuda:
        torch.cuda.synchronize()
    first_seconds, _ = _ingest(encoder, docs, request_size)
    first_queries = []  # the first query of each shape captures its CUDA graph
    for q in queries:
        t0 = time.perf_counter()
        encoder.encode_queries([q])
        first_queries.append((time.perf_counter() - t0) * 1000)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds, vectors = _ingest(encoder, docs, request_size)
    latencies, query_vectors = [], []
    for q in queries:
        t0 = time.perf_counter()
        query_vectors.append(encoder.encode_queries([q]))
        latencies.append((time.perf_counter() - t0) * 1000)
    query = percentiles(latencies)
    peak: dict[str, Any] = {}
    if cuda:
        peak["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return {
        **peak,
        "docs_per_s": round(len(docs) / seconds, 1),
        "docs_seconds": round(seconds, 2),
        "docs_per_s_first_pass": round(len(docs) / first_seconds, 1),
        "query_p50_ms": query["p50_ms"],
        "query_p99_ms": query["p99_ms"],
        "query_first_pass_max_ms": round(max(first_queries, default=0.0), 1),
        "query_graph_shapes": [list(s) for s in getattr(encoder, "captured_shapes", [])],
        "_documents": vectors,
        "_queries": np.vstack(query_vectors),  # one at a time, as a search encodes them
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    gpu = gpu_available() if args.device.startswith("cuda") else f"{args.device} (dry run)"
    if gpu is None:
        log.info("bench-gpu: no GPU here (torch.cuda.is_available() is False): nothing to measure.")
        return 0
    device = args.device

    import torch

    from twotower.engine import open_encoder
    from twotower.engine.export import export_published, publish_base
    from twotower.engine.onnx_engine import OnnxEncoder, providers_for
    from twotower.engine.torch_engine import TorchEncoder
    from twotower.registry import find_version, latest_version

    begun = time.perf_counter()
    # The ONNX export (on the CPU, a minute with its int8 graphs) only where an onnx run will use it.
    try:
        providers_for(device)
        onnx_skipped = None
    except ValueError as exc:
        onnx_skipped = str(exc)
    weights, version = args.weights_dir, latest_version(args.weights_dir)
    if version is None:
        weights = ROOT / "runs" / "bench-gpu-weights"
        version = latest_version(weights) or publish_base(weights, onnx=onnx_skipped is None)
    if onnx_skipped is None:
        export_published([weights], version)
    docs, queries = _texts(args.corpus, args.docs, args.queries)
    log.info("bench-gpu: %s; version %s; %d abstracts, %d queries", gpu, version, len(docs), len(queries))

    # fp32 on the CPU: the reference every GPU vector is compared with.
    reference = docs[: args.reference]
    cpu = open_encoder([weights], version, engine="torch", device="cpu")
    ref_docs, ref_queries = cpu.encode_documents(reference), cpu.encode_queries(queries)
    cpu.close()

    results: dict[str, Any] = {"gpu": gpu, "version": version, "documents": len(docs), "runs": {}}
    names = [SERVED, EAGER_QUERIES, "torch fp32", SENTENCE_TRANSFORMERS]
    if onnx_skipped is None:
        names.append("onnx fp32")
    else:
        results["runs"]["onnx fp32"] = {"skipped": onnx_skipped}
    for name in names:
        if name.startswith("onnx"):
            encoder: Any = OnnxEncoder(find_version(version, [weights]), device=device)
        else:
            encoder = open_encoder([weights], version, engine="torch", device=device)
            assert isinstance(encoder, TorchEncoder)
            if name == "torch fp32":
                encoder.half = False
            if name == EAGER_QUERIES:
                encoder.graphs = False
            if name == SENTENCE_TRANSFORMERS:
                encoder.direct = encoder.graphs = False
        run = _measure(encoder, docs, queries, args.request_size, device)
        gpu_docs, gpu_queries = run.pop("_documents")[: len(reference)], run.pop("_queries")
        run["min_cosine_documents"] = round(float((gpu_docs * ref_docs).sum(axis=1).min()), 5)
        run["min_cosine_queries"] = round(float((gpu_queries * ref_queries).sum(axis=1).min()), 5)
        run["cosine_ok"] = min(run["min_cosine_documents"], run["min_cosine_queries"]) >= MIN_COSINE
        results["runs"][name] = run
        log.info("  %s: %s", name, run)
        encoder.close()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    results["duration_s"] = round(time.perf_counter() - begun, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log.info("bench-gpu: wrote %s in %s s", args.out, results["duration_s"])
    failed = [n for n, r in results["runs"].items() if r.get("cosine_ok") is False and n == SERVED]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
