"""`make feedback-sim`: the feedback loop measured end to end, through the product only.

    search → click → POST /feedback → make train --source feedback → make rollout → /search again

1. A stack (its own Chroma, ingestion and query under gunicorn) serves the untrained base model;
   SciFact's corpus goes in through `make eval-served`, which also scores the base on SciFact test.
2. For each noise level, a simulated population sends every SciFact *train* query through
   `/search` (`--sessions` times, the API's default mode) and clicks by a position-based model:
   a result at rank r is examined with probability (1/r)^eta, and an examined result is clicked
   with probability `--p-relevant` if the qrels call it relevant, else `noise`. Each search with a
   click sends one `POST /feedback`. Nothing else about the qrels reaches the product.
3. For each noise level, `make train --source feedback` on that level's time window of the stored
   feedback (no qrels), `make rollout` of the published version, and SciFact test through
   `/search` in both modes (`make eval-served --skip-ingest`); NPL, never trained on, in-process
   (`make eval --no-passages`, as the reference scores), beside the base model.

Every step's result is written to `--out` as it is measured, so an interrupted run keeps what it
measured. Benchmarks reach the product through HTTP and Makefile targets only.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from bench.stack import ROOT, Stack, running_stack
from twotower.beir import load_qrels, load_queries
from twotower.registry import latest_version

log = logging.getLogger("bench.feedback_sim")
# Cheap enough for two noise levels on a CPU (training/feedback.py, docs/training.md): the heads on
# the frozen backbone, 5 epochs, WiSE 0.4; a click counts once two searches of its query repeat it.
DEFAULT_RECIPE = "--no-train-backbone --epochs 5 --wise-ratio 0.4 --min-clicks 2"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.feedback_sim", description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="holds scifact/ and npl/ (BEIR layout)")
    p.add_argument("--work", type=Path, required=True, help="Chroma, logs and weights of the run")
    p.add_argument("--noise", default="0.1,0.3", help="click probability on a non-relevant examined result")
    p.add_argument("--p-relevant", type=float, default=0.9, help="click probability on a relevant one")
    p.add_argument("--eta", type=float, default=1.0, help="examination at rank r: (1/r)^eta")
    p.add_argument("--k", type=int, default=10, help="results shown per search")
    p.add_argument("--sessions", type=int, default=8, help="searches of each train query per noise level")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help="make train ARGS besides the feedback source")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "feedback-sim.json")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep what --out already measured (base scores, captured feedback) and the Chroma data in --work",
    )
    return p.parse_args(argv)


def make(target: str, *args: str, **variables: str) -> None:
    argv = ["make", "--no-print-directory", target, *[f"{k}={v}" for k, v in variables.items()]]
    if args:
        argv.append("ARGS=" + shlex.join(args))
    log.info("$ %s", shlex.join(argv))
    subprocess.run(argv, cwd=ROOT, check=True)


def simulate(
    stack: Stack,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    noise: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The population's searches and clicks for one noise level; what was sent and acknowledged."""
    rng = random.Random(f"{args.seed}-{noise}")
    order = [q for q in sorted(qrels) for _ in range(args.sessions)]
    rng.shuffle(order)
    counts = {"searches": 0, "with_clicks": 0, "clicks": 0, "relevant_clicks": 0, "acknowledged": 0}
    with httpx.Client(base_url=stack.query.url, timeout=60) as http:
        for qid in tqdm(order, desc=f"clicks (noise {noise})", unit="search"):
            answer = http.post("/search", json={"query": queries[qid], "k": args.k})
            answer.raise_for_status()
            body = answer.json()
            counts["searches"] += 1
            clicked = []
            for rank, hit in enumerate(body["results"], start=1):
                relevant = qrels[qid].get(hit["id"], 0) > 0
                examined = rng.random() < (1.0 / rank) ** args.eta
                if examined and rng.random() < (args.p_relevant if relevant else noise):
                    clicked.append(hit["id"])
                    counts["relevant_clicks"] += relevant
            if not clicked:
                continue
            counts["with_clicks"] += 1
            counts["clicks"] += len(clicked)
            sent = http.post("/feedback", json={"search_id": body["search_id"], "clicked": clicked})
            sent.raise_for_status()
            counts["acknowledged"] += 1
    return counts


def served(stack: Stack, version: str, timeout_s: float = 120) -> None:
    """Until both services answer with `version` (they follow the pointer within a second or so)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        versions = {
            httpx.get(p.url + "/", timeout=10).json()["model_version"] for p in (stack.query, stack.ingest)
        }
        if versions == {version}:
            return
        time.sleep(1)
    raise TimeoutError(f"the services do not serve {version} after {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    scifact, npl = args.data / "scifact", args.data / "npl"
    weights, work = args.work / "weights", args.work
    weights.mkdir(parents=True, exist_ok=True)
    if latest_version(weights) is None:
        subprocess.run(
            [sys.executable, "-m", "twotower.engine.export", "--base", "--out", str(weights)],
            cwd=ROOT,
            check=True,
        )
    base = latest_version(weights)
    assert base is not None
    previous = json.loads(args.out.read_text()) if args.resume and args.out.exists() else {}
    report: dict[str, Any] = {
        "click_model": {"examination": f"(1/rank)^{args.eta}", "p_relevant": args.p_relevant, "k": args.k},
        "sessions_per_query": args.sessions,
        "recipe": args.recipe,
        "base_version": base,
        "runs": previous.get("runs", {}),
    }
    if "base" in previous:
        report["base"] = previous["base"]

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    def eval_served(name: str, stack: Stack, *extra: str) -> dict[str, Any]:
        out = work / f"served-{name}.json"
        urls = ("--ingest-url", stack.ingest.url, "--query-url", stack.query.url)
        make("eval-served", *urls, "--modes", "dense,hybrid", "--out", str(out), *extra, DATA=str(args.data))
        result = json.loads(out.read_text())
        return {
            mode: {m: result[mode][m] for m in ("ndcg@10", "recall@100", "mrr@10")}
            for mode in ("dense", "hybrid")
        }

    def eval_npl(system: str, version: str) -> float:
        out = work / f"npl-{version}.json"
        flags = (
            "--data",
            str(npl),
            "--systems",
            system,
            "--version",
            version,
            "--no-passages",
            "--out",
            str(out),
        )
        make("eval", *flags, WEIGHTS_DIR=str(weights), DATA=str(args.data))
        return float(json.loads(out.read_text())["systems"][system]["ndcg@10"])

    train_queries, train_qrels = load_queries(scifact), load_qrels(scifact, "train")
    levels = [float(n) for n in args.noise.split(",")]
    extra = {"QUERY_FEEDBACK_RATE_PER_S": "1000"}  # one simulated client sends all feedback
    with running_stack("onnx", weights, work / "stack", query_workers=1, extra=extra) as stack:
        chroma = ["--chroma-host", "127.0.0.1", "--chroma-port", str(stack.chroma_port)]
        chroma += ["--collection-prefix", stack.prefix]
        if "base" not in report:
            report["base"] = {"scifact_test": eval_served("base", stack)}
            save()
        for noise in levels:
            if "window" in report["runs"].get(str(noise), {}):
                continue  # captured by the run resumed
            started = time.time()
            counts = simulate(stack, train_queries, train_qrels, noise, args)
            report["runs"][str(noise)] = {
                "noise": noise,
                "feedback": counts,
                "window": [started, time.time()],
            }
            save()
        for noise in levels:
            run = report["runs"][str(noise)]
            if "scifact_test" in run:
                continue
            since, until = run["window"]
            window = ("--feedback-since", str(since), "--feedback-until", str(until))
            recipe = shlex.split(args.recipe)
            make(
                "train",
                "--source",
                "feedback",
                *chroma,
                *window,
                *recipe,
                WEIGHTS_DIR=str(weights),
                DATA=str(args.data),
            )
            version = latest_version(weights)
            assert version is not None
            if version != base:
                make("rollout", *chroma, VERSION=version, WEIGHTS_DIR=str(weights))
                served(stack, version)
            run.update({"version": version, "scifact_test": eval_served(version, stack, "--skip-ingest")})
            save()
            run["npl_test_ndcg@10"] = eval_npl("latest", version)
            if "npl_test_ndcg@10" not in report["base"]:
                report["base"]["npl_test_ndcg@10"] = eval_npl("base", base)
            save()
    for noise, run in report["runs"].items():
        if "scifact_test" in run:
            gain = (
                run["scifact_test"]["dense"]["ndcg@10"] - report["base"]["scifact_test"]["dense"]["ndcg@10"]
            )
            npl_delta = run["npl_test_ndcg@10"] - report["base"]["npl_test_ndcg@10"]
            log.info(
                f"noise {noise}: {run['version']} SciFact test dense nDCG@10 {gain:+.4f} vs base, NPL {npl_delta:+.4f}"
            )
    log.info("feedback-sim: %d noise levels measured; wrote %s", len(report["runs"]), args.out)


if __name__ == "__main__":
    main()
