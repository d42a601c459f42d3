"""`python -m bench.engines`: every runtime and precision of the onnx engine measured in one run,
beside the choice `twotower.engine.cpu` makes for this CPU (what that rule rests on).

For each variant — ONNX Runtime fp32 and int8, OpenVINO f32, and OpenVINO bf16 where the CPU has
bfloat16 — the document tower's docs/s over `--docs` SciFact abstracts (batches of 64) and the
query tower's p50 over `--queries` claims, one at a time, the variants taking turns round by
round so that background load weighs on all alike.

`--isa AVX2` measures as an AVX2-only CPU would run, as far as the runtimes allow: OpenVINO gets
oneDNN's `ONEDNN_MAX_CPU_ISA` (no AVX-512, no bfloat16) and the rule is asked for an AVX2 CPU;
ONNX Runtime has no such switch, so its numbers stay this CPU's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.workload import DEFAULT_CORPUS, load_workload
from twotower import format_document
from twotower.engine.cpu import BF16_FLAGS, VNNI_FLAGS, CpuFeatures, choose

log = logging.getLogger("bench.engines")

# name -> (variant, backend, OpenVINO precision hint)
VARIANTS: dict[str, tuple[str, str, str | None]] = {
    "onnxruntime fp32": ("fp32", "onnxruntime", None),
    "onnxruntime int8": ("int8", "onnxruntime", None),
    "openvino f32": ("fp32", "openvino", "f32"),
    "openvino bf16": ("fp32", "openvino", "bf16"),
}


def measure(
    weights: Path, version: str, documents: list[str], queries: list[str], threads: int, bf16: bool
) -> dict[str, dict[str, float]]:
    """docs/s of the document tower and p50 ms of the query tower, per variant."""
    from twotower.engine.onnx_engine import OnnxEncoder

    names = [n for n in VARIANTS if bf16 or not n.endswith("bf16")]
    encoders = {}
    for name in names:
        variant, backend, precision = VARIANTS[name]
        encoders[name] = OnnxEncoder.open(
            [weights],
            version,
            threads=threads,
            variant=variant,
            backend=backend,
            openvino_precision=precision,
        )
        encoders[name].encode_documents(documents[:8])  # compile, warm up
        encoders[name].encode_queries(queries[:4])
    docs_seconds = dict.fromkeys(names, 0.0)
    query_ms: dict[str, list[float]] = {n: [] for n in names}
    rounds = max(1, len(documents) // 64)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            started = time.perf_counter()
            encoders[name].encode_documents(documents[r * 64 : (r + 1) * 64])
            docs_seconds[name] += time.perf_counter() - started
            for query in queries[r::rounds]:
                started = time.perf_counter()
                encoders[name].encode_queries([query])
                query_ms[name].append((time.perf_counter() - started) * 1000)
    for encoder in encoders.values():
        encoder.close()
    return {
        n: {
            "document_docs_per_s": round(rounds * 64 / docs_seconds[n], 2),
            "query_p50_ms": round(statistics.median(query_ms[n]), 2),
        }
        for n in names
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    p.add_argument("--docs", type=int, default=256)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--isa", choices=["native", "AVX2"], default="native")
    p.add_argument("--weights", type=Path, help="a published model root (default: the base, published now)")
    p.add_argument("--out", type=Path, default=Path("runs") / "engines.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S")
    if args.isa == "AVX2" and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        # oneDNN reads it once, when OpenVINO loads: a fresh process.
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
        return subprocess.call([sys.executable, "-m", "bench.engines", *sys.argv[1:]], env=env)
    features = CpuFeatures.read()
    if args.isa == "AVX2":
        features = CpuFeatures(features.model, features.flags - {"avx512f"} - VNNI_FLAGS - BF16_FLAGS)
    report = run(args, features)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s\n%s", args.out, json.dumps(report, indent=2))
    return 0


def run(args: argparse.Namespace, features: CpuFeatures) -> dict[str, Any]:
    from twotower.engine import find_published
    from twotower.engine.export import publish_base

    work = load_workload(args.corpus, args.docs, args.queries)
    documents = [format_document(d["text"], d.get("title")) for d in work.documents]
    with tempfile.TemporaryDirectory(prefix="engines-") as tmp:
        weights = args.weights or Path(tmp) / "weights"
        version = find_published([weights]) if args.weights else publish_base(weights)
        assert version is not None, f"nothing published in {weights}"
        results = measure(weights, version, documents, work.queries, args.threads, features.bf16)
    chosen = {
        tower: choose((tower,), "auto", "auto", args.threads, features) for tower in ("document", "query")
    }
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": features.summary(),
        "isa": args.isa,
        "threads": args.threads,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "results": results,
        "rule": {t: f"{c.backend} {c.precision}" for t, c in chosen.items()},
    }


if __name__ == "__main__":
    raise SystemExit(main())
