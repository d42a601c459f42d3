"""Roll a published model version out while the services keep serving: `make rollout VERSION=<v>`.

    python -m ops.rollout 9f8e7d6c5b4a            # migrate to it, online; resumes if interrupted
    python -m ops.rollout --status                # what is served, and the migration's progress
    python -m ops.rollout --abort                 # back to the served version (target kept)
    python -m ops.rollout --cleanup               # drop collections no version is served from

Publishing never changes what is served: this does (twotower.index.migration). From "migrating" on,
ingestion writes every document to both versions' collections while the served collection is copied
into the target's with its document tower (never overwriting a newer write); "finalizing" holds
writes for a moment, reconciles, and points every service at the target, which they switch to within
seconds, without a restart. Killed half-way, running it again resumes.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
from pathlib import Path

from tqdm import tqdm

from twotower.engine import Encoder, open_encoder
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
    parser.add_argument("--batch-size", type=int, default=64, help="documents embedded per step")
    parser.add_argument("--passage-tokens", type=int, default=PassageConfig.tokens)
    parser.add_argument("--passage-overlap", type=int, default=PassageConfig.overlap)
    args = parser.parse_args(argv)
    if not (args.abort or args.cleanup or args.status or args.version):
        parser.error("name a VERSION to roll out, or --abort, --cleanup or --status")
    if args.version and (args.abort or args.cleanup or args.status):
        parser.error("VERSION goes alone: --abort, --cleanup and --status take none")
    return args


def rollout(args: argparse.Namespace, store: ChromaStore) -> str:
    """Do what the arguments ask; return the one-line summary."""
    roots = [args.weights_dir] + ([args.models_dir] if args.models_dir else [])

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
    served = plan.read()
    if served is not None and not served.migrating and store.exists(served.version):
        store.hnsw = store.hnsw_settings_of(served.version)  # the target is built like the served one
    pointer = plan.start(args.version)
    if not pointer.migrating:
        return f"serving {pointer.version}: nothing to migrate"
    log.info("migrating %s -> %s; ingestion now writes to both", pointer.version, pointer.target)
    if pointer.state == "migrating":
        with tqdm(desc=f"backfill {pointer.version} -> {pointer.target}", unit="doc") as bar:

            def show(progress: Progress) -> None:
                bar.total = progress.total
                bar.n = progress.done
                bar.refresh()

            copied = plan.backfill(args.batch_size, show)
    else:
        copied = Progress(pointer.target, 0, 0)
    promoted = plan.finalize()
    return (
        f"serving {promoted.version} (was {promoted.previous}) after {time.monotonic() - started:.0f}s: "
        f"{copied.total} documents backfilled; the services switch within seconds. "
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
