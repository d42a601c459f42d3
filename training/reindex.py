"""Re-embed one model version's collection into another version's collection.

    python -m training.reindex --weights-dir weights                       # into LATEST's collection
    python -m training.reindex --from-version 1a2b3c4d5e6f --to-version 9f8e7d6c5b4a

Chroma keeps every document's text, title and metadata, so a new model version's collection is
rebuilt from the old one with the new document tower. Ids already in the target are skipped, so an
interrupted run resumes where it stopped. The target is marked incomplete while this runs (the query
service's /readyz reports it) and complete at the end.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from twotower import format_document, latest_version, load_published
from twotower.index.store import ChromaStore, CollectionMissing, StoreUnavailable

log = logging.getLogger("training.reindex")


class ReindexError(RuntimeError):
    """Nothing to reindex from, or the versions asked for do not exist."""


@dataclass
class ReindexResult:
    source: str
    target: str
    embedded: int
    skipped: int
    total: int
    seconds: float


def pick_source(store: ChromaStore, target: str, source: str | None) -> str:
    if source:
        return source
    others = [v for v in store.versions() if v != target]
    if not others:
        raise ReindexError(
            f"no collection of another model version under prefix {store.prefix!r} to reindex from"
        )
    if len(others) > 1:
        counts = ", ".join(f"{v} ({store.count(v)} docs)" for v in others)
        raise ReindexError(f"several collections to reindex from: {counts}; pick one with --from-version")
    return others[0]


def reindex(
    store: ChromaStore,
    weights_dir: str | Path,
    to_version: str | None = None,
    from_version: str | None = None,
    batch_size: int = 128,
    device: str | None = None,
    progress: bool = True,
) -> ReindexResult:
    started = time.monotonic()
    target = to_version or latest_version(weights_dir)
    if target is None:
        raise ReindexError(f"nothing published under {weights_dir}: no version to reindex into")
    source = pick_source(store, target, from_version)
    if source == target:
        raise ReindexError(f"source and target are the same version {target}")
    try:
        total = store.count(source)
    except CollectionMissing as exc:
        raise ReindexError(f"no collection for version {source}: {exc}") from exc
    model = load_published(weights_dir, target, device=device)

    store.mark_reindex(target, source, complete=False)
    present = store.ids(target)
    embedded = skipped = 0
    with tqdm(total=total, desc=f"reindex {source} -> {target}", unit="doc", disable=not progress) as bar:
        for page in store.iter_records(source, batch_size=batch_size):
            todo = [r for r in page if r.id not in present]
            skipped += len(page) - len(todo)
            if todo:
                embeddings = model.encode_documents([format_document(r.text, r.title) for r in todo])
                embedded += store.upsert(target, todo, embeddings)
            bar.update(len(page))
    store.mark_reindex(target, source, complete=True)
    return ReindexResult(source, target, embedded, skipped, total, round(time.monotonic() - started, 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights-dir", default="weights")
    parser.add_argument("--to-version", default=None, help="target version (default: LATEST)")
    parser.add_argument("--from-version", default=None, help="source version (default: the only other one)")
    parser.add_argument("--chroma-host", default="localhost")
    parser.add_argument("--chroma-port", type=int, default=8002)
    parser.add_argument("--collection-prefix", default="docs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = ChromaStore(args.chroma_host, args.chroma_port, args.collection_prefix)
    try:
        r = reindex(store, args.weights_dir, args.to_version, args.from_version, args.batch_size, args.device)
    except (ReindexError, StoreUnavailable) as exc:
        parser.exit(2, f"reindex: {exc}\n")
    print(
        f"reindexed {r.embedded} documents ({r.skipped} already there) of {r.total} from "
        f"{store.collection_name(r.source)} into {store.collection_name(r.target)} in {r.seconds:.0f}s"
    )


if __name__ == "__main__":
    main()
