"""Roll a published model version out while the services keep serving: `make rollout VERSION=<v>`.

    python -m ops.rollout 9f8e7d6c5b4a            # migrate to it, online; resumes if interrupted
    python -m ops.rollout --status                # what is served, and the migration's progress
    python -m ops.rollout --abort                 # back to the served version (target kept)
    python -m ops.rollout --cleanup               # drop collections no version is served from
    python -m ops.rollout 9f8e7d6c5b4a --begin    # start migrating only; then, per pod of an
    python -m ops.rollout 9f8e7d6c5b4a --shard 3  #   Indexed Job, one shard of the backfill

Publishing never changes what is served: this does (twotower.index.migration). From "migrating" on,
ingestion writes every document to both versions' collections while the served collection is copied
into the target's with its document tower (never overwriting a newer write); "finalizing" holds
writes for a moment, reconciles, and points every service at the target, which they switch to within
seconds, without a restart. Killed half-way, running it again resumes.

The backfill is a sharded job (twotower.index.bulk): `--workers` processes here (default: one per
core; one on a GPU), or one pod per shard (deploy/k8s/backfill-job.yaml), below search's priority
(`--nice`, and Linux's SCHED_IDLE) and, with `--max-docs-per-s`, at a capped rate. `python -m ops.bulk_import` shares the
options below the first group.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
from pathlib import Path

from twotower.engine import Encoder, available_cpus, open_encoder
from twotower.index import bulk
from twotower.index.migration import Progress, Rollout, RolloutError
from twotower.index.passages import PassageConfig
from twotower.index.store import ChromaStore, StoreUnavailable
from twotower.registry import ArtifactError

log = logging.getLogger("ops.rollout")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ops.rollout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("version", nargs="?", help="the published model version to serve")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--abort", action="store_true", help="stop the migration, keep serving the current version"
    )
    action.add_argument("--cleanup", action="store_true", help="drop the collections of versions not served")
    action.add_argument("--status", action="store_true", help="print the serving pointer and progress")
    action.add_argument("--begin", action="store_true", help="start migrating to VERSION, backfill nothing")
    parser.add_argument(
        "--shard",
        type=int,
        default=None,
        help="backfill only this shard of the migration under way, then exit",
    )
    add_bulk_args(parser)
    args = parser.parse_args(argv)
    if not (args.abort or args.cleanup or args.status or args.version):
        parser.error("name a VERSION to roll out, or --abort, --cleanup or --status")
    if args.version and (args.abort or args.cleanup or args.status):
        parser.error("VERSION goes alone: --abort, --cleanup and --status take none")
    if (args.begin or args.shard is not None) and not args.version:
        parser.error("--begin and --shard name the VERSION being rolled out")
    return args


def add_bulk_args(parser: argparse.ArgumentParser) -> None:
    """Where Chroma and the weights are, how documents are embedded, and how the work fans out."""
    parser.add_argument("--weights-dir", type=Path, default=Path("weights"))
    parser.add_argument("--models-dir", type=Path, default=None, help="also look for versions here")
    parser.add_argument("--chroma-host", default="localhost")
    parser.add_argument("--chroma-port", type=int, default=8002)
    parser.add_argument("--collection-prefix", default="docs")
    embedding = parser.add_argument_group(
        "how documents are embedded",
        "Backfilled vectors must be those the ingestion service computes for new documents: by default "
        "its engine, variant and backend (INGEST_ENGINE, INGEST_ONNX_VARIANT, INGEST_ONNX_BACKEND).",
    )
    env, shown = os.environ.get, "default: %(default)s"
    engine = env("INGEST_ENGINE", "onnx")
    embedding.add_argument("--engine", choices=["torch", "onnx"], default=engine, help=shown)
    variant = env("INGEST_ONNX_VARIANT", "auto")
    embedding.add_argument("--onnx-variant", choices=["auto", "fp32", "int8"], default=variant, help=shown)
    backend = env("INGEST_ONNX_BACKEND", "auto")
    embedding.add_argument(
        "--onnx-backend", choices=["auto", "onnxruntime", "openvino"], default=backend, help=shown
    )
    embedding.add_argument("--device", default=None)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"documents embedded per step (default: {bulk.CPU_BATCH}; {bulk.GPU_BATCH} on a GPU)",
    )
    fan = parser.add_argument_group("fanning out (twotower.index.bulk)")
    fan.add_argument("--workers", type=int, default=0, help="processes (default: one per core; 1 on a GPU)")
    fan.add_argument(
        "--shards",
        type=int,
        default=0,
        help=f"the job's shards on its first run (default: {bulk.SHARDS_PER_WORKER} per worker)",
    )
    fan.add_argument(
        "--max-docs-per-s", type=float, default=0.0, help="cap on the embedding rate (default: none)"
    )
    fan.add_argument(
        "--nice",
        type=int,
        default=10,
        help="niceness added to this process and its workers; the embedding also runs as SCHED_IDLE "
        "where Linux grants it (search keeps priority)",
    )
    parser.add_argument("--passage-tokens", type=int, default=PassageConfig.tokens)
    parser.add_argument("--passage-overlap", type=int, default=PassageConfig.overlap)


def _gpu(args: argparse.Namespace) -> bool:
    return bool(args.device and args.device.startswith("cuda"))


def batch_size(args: argparse.Namespace) -> int:
    return args.batch_size or (bulk.GPU_BATCH if _gpu(args) else bulk.CPU_BATCH)


def fanout(args: argparse.Namespace, only: tuple[int, ...] = ()) -> bulk.Fanout:
    """The `Fanout` the arguments ask for; lowers this process's priority (the workers inherit it)."""
    os.nice(args.nice)
    gpu = _gpu(args)
    workers = 1 if only else args.workers or (1 if gpu else available_cpus())
    setup = bulk.Setup(
        args.chroma_host,
        args.chroma_port,
        args.collection_prefix,
        tuple(str(r) for r in roots_of(args)),
        engine=args.engine,
        variant=args.onnx_variant,
        backend=args.onnx_backend,
        device=args.device,
        threads=None if gpu else max(1, available_cpus() // workers),
        passage_config=PassageConfig(args.passage_tokens, args.passage_overlap),
    )
    return bulk.Fanout(workers, args.shards, only, args.max_docs_per_s, setup)


def roots_of(args: argparse.Namespace) -> list[Path]:
    return [args.weights_dir] + ([args.models_dir] if args.models_dir else [])


def rollout(args: argparse.Namespace, store: ChromaStore) -> str:
    """Do what the arguments ask; return the one-line summary."""
    roots = roots_of(args)

    @functools.cache
    def encoder_for(version: str) -> Encoder:
        return open_encoder(
            roots,
            version,
            engine=args.engine,
            device=args.device,
            variant=args.onnx_variant,
            backend=args.onnx_backend,
        )

    plan = Rollout(store, encoder_for, PassageConfig(args.passage_tokens, args.passage_overlap))
    if args.status:
        pointer, progress = plan.read(), plan.pointer.progress()
        if pointer is None:
            return "no serving pointer yet: the services create it when they first start"
        if not pointer.migrating:
            return f"serving {pointer.version} (epoch {pointer.epoch})"
        done = (
            f", {progress.done}/{progress.total} backfilled"
            if progress and progress.target == pointer.target
            else ""
        )
        return f"serving {pointer.version}, {pointer.state} to {pointer.target}{done}"
    if args.abort:
        back = plan.abort()
        return f"aborted: serving {back.version}; run --cleanup to drop the target's collection"
    if args.cleanup:
        dropped = plan.cleanup()
        return f"dropped {len(dropped)} collections: {', '.join(dropped) or 'none'}"

    started = time.monotonic()
    if args.shard is not None:
        # A pod of the Indexed Job: joins the migration under way (backfill refuses when none is).
        plan.backfill(batch_size(args), fanout=fanout(args, only=(args.shard,)))
        return f"shard {args.shard} of the backfill to {args.version} done"
    served = plan.read()
    if served is not None and not served.migrating and store.exists(served.version):
        store.hnsw = store.hnsw_settings_of(served.version)  # the target is built like the served one
    pointer = plan.start(args.version)
    if not pointer.migrating:
        return f"serving {pointer.version}: nothing to migrate"
    log.info("migrating %s -> %s; ingestion now writes to both", pointer.version, pointer.target)
    if args.begin:
        return f"migrating {pointer.version} -> {pointer.target}: backfill it (--shard), then run this again"
    if pointer.state == "migrating":
        copied = plan.backfill(batch_size(args), fanout=fanout(args))
    else:
        copied = Progress(pointer.target, 0, 0)
    promoted = plan.finalize()
    return (
        f"serving {promoted.version} (was {promoted.previous}) after {time.monotonic() - started:.0f}s: "
        f"{copied.total} records backfilled; the services switch within seconds. "
        f"{promoted.previous}'s collection is kept until --cleanup"
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    store = ChromaStore(args.chroma_host, args.chroma_port, args.collection_prefix)
    try:
        log.info(rollout(args, store))
    except (RolloutError, ArtifactError, StoreUnavailable) as exc:
        log.error("rollout: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
