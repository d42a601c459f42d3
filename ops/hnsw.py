"""Show, or change, the HNSW settings Chroma holds for each model version's collection.

    python -m ops.hnsw                          # every collection under the prefix, its HNSW settings
    python -m ops.hnsw --ef-search 64           # set ef_search on the served version's collection
    python -m ops.hnsw --ef-search 64 --version 9f8e7d6c5b4a

A collection is created with the creating service's INGEST_HNSW_* settings (twotower.index.store.
HnswSettings); ef_search is the one parameter Chroma changes afterwards. Chroma 1.5 records the new
value at once but searches with it only once it loads the index again: restart Chroma after changing
it (measured: docs/scaling.md). ef_construction and max_neighbors (M) need a new collection.
"""

from __future__ import annotations

import argparse
import json
import logging

from twotower.index.serving import ServingPointer
from twotower.index.store import ChromaStore, CollectionMissing, StoreUnavailable

log = logging.getLogger("ops.hnsw")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.hnsw", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chroma-host", default="localhost")
    parser.add_argument("--chroma-port", type=int, default=8002)
    parser.add_argument("--collection-prefix", default="docs")
    parser.add_argument("--ef-search", type=int, help="set this ef_search (1-10000)")
    parser.add_argument("--version", help="the model version whose collection to change (default: served)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    store = ChromaStore(args.chroma_host, args.chroma_port, args.collection_prefix)
    try:
        if args.ef_search is not None:
            if not 1 <= args.ef_search <= 10_000:
                parser.error("--ef-search must be between 1 and 10000")
            pointer = ServingPointer(store).read()
            version = args.version or (pointer.version if pointer else None)
            if version is None:
                parser.error("nothing is served yet: name the collection's --version")
            store.set_ef_search(version, args.ef_search)
            log.info("%s: ef_search %d", store.collection_name(version), args.ef_search)
        for name in store.names():
            if "model_version" in (store.collection(name).metadata or {}):  # not the pointer's, intents'
                log.info("%s %s", store.collection_name(name), json.dumps(store.hnsw_of(name)))
    except CollectionMissing as exc:
        raise SystemExit(str(exc)) from exc
    except StoreUnavailable as exc:
        raise SystemExit(f"Chroma at {store.address}: {exc}") from exc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
