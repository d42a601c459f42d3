"""Import a corpus into the served version of a running stack: `make import CORPUS=<path>`.

    python -m ops.bulk_import --corpus data/scifact              # a BEIR folder (its corpus.jsonl)
    python -m ops.bulk_import --corpus docs.jsonl --workers 2    # JSONL rows: id/_id, text, title, metadata
    python -m ops.bulk_import --corpus docs.jsonl --shard 3      # one shard (a pod of an Indexed Job)

The documents are embedded here, by the served version's document tower, and written through the
index layer the ingestion API writes through (twotower.index.importing), straight to Chroma: the
same ids, passages, metadata and bounds as `python -m services.loader` posting them, at the speed
of this machine's cores (or GPU) rather than of the ingestion service. A document the index holds
already (written by a content pipeline meanwhile, or imported before) is left as it is, and while a
rollout migrates both versions get every document. Killed half-way, the same command resumes
(shards finished are recorded in Chroma); `--restart` imports the file again from its start.
"""

from __future__ import annotations

import argparse
import logging

from ops.rollout import add_bulk_args, batch_size, fanout
from twotower.corpus import open_corpus
from twotower.index import bulk
from twotower.index.importing import ImportJob, import_key
from twotower.index.serving import ServingPointer
from twotower.index.store import ChromaStore, StoreUnavailable
from twotower.registry import ArtifactError

log = logging.getLogger("ops.bulk_import")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ops.bulk_import",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--corpus", required=True, help="a BEIR folder (corpus.jsonl) or a .jsonl file")
    parser.add_argument("--shard", type=int, default=None, help="import only this shard, then exit")
    parser.add_argument("--restart", action="store_true", help="forget the shards an earlier run finished")
    add_bulk_args(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace, store: ChromaStore) -> str:
    """Do the import; return the one-line summary."""
    corpus = open_corpus(args.corpus)  # first: a wrong path fails at once
    pointer = ServingPointer(store).read()
    if pointer is None:
        raise StoreUnavailable("no serving pointer: start the services first (they create it), then import")
    job = ImportJob(args.corpus, import_key(args.corpus), batch_size(args))
    if args.restart:
        bulk.Ledger(store, job.key).clear()
    plan = fanout(args, only=() if args.shard is None else (args.shard,))
    assert plan.setup is not None
    summary = bulk.run(job, plan.setup.open(), plan, total=corpus.total)
    now = ServingPointer(store).read() or pointer
    into = f"{now.version}" + (f" (and {now.target}, being rolled out)" if now.target else "")
    return f"{summary.line()}; into {into}: documents it already held were left as they were"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    store = ChromaStore(args.chroma_host, args.chroma_port, args.collection_prefix)
    try:
        log.info(run(args, store))
    except (ArtifactError, StoreUnavailable, OSError, ValueError) as exc:
        log.error("import: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
