"""A bulk import: a corpus file embedded into the served version, shard by shard (`twotower.index.bulk`).

Every document goes through `IndexWriter.add_new`, the ingestion API's own write path (same ids,
passages, metadata and bounds, read by `twotower.corpus` as the loader reads them; to the served
version, and the target too while a rollout migrates, with the rollout's intents), except that it
only adds: a document the index holds already, because a content pipeline wrote it through the API
or an earlier run imported it, is left as it is. So an import never replaces a newer write, and
running it again, or a shard of it, stores nothing twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from twotower.corpus import batches, open_corpus
from twotower.index import bulk
from twotower.index.documents import Document
from twotower.index.migration import IndexWriter


def import_key(path: str) -> str:
    """An import's name in the shard ledger: its file as it is now (path, size, modification time),
    so running the same command again resumes it and a changed file is a new import."""
    location = Path(path).resolve()
    corpus = location / "corpus.jsonl" if location.is_dir() else location
    stat = corpus.stat()
    digest = hashlib.blake2b(f"{corpus}|{stat.st_size}|{stat.st_mtime_ns}".encode(), digest_size=8)
    return f"import-{digest.hexdigest()}"


@dataclass(frozen=True)
class ImportJob:
    """One shard of a corpus file: its documents whose id falls in the shard, added where missing."""

    path: str
    key: str
    batch_size: int = 64
    unit: str = "doc"

    def run(self, ctx: bulk.Context, shard: int, shards: int, advance: bulk.Advance) -> int:
        writer = IndexWriter(ctx.store, ctx.encoder_for, ctx.passage_config)
        corpus = open_corpus(self.path)
        mine = (d for d in corpus.documents if bulk.shard_of(d["id"], shards) == shard)
        count = 0
        for batch in batches(mine, self.batch_size):
            unique = {d["id"]: d for d in reversed(batch)}  # an id twice in a batch: its first row
            docs = [
                Document(d["id"], d["text"], d.get("title"), d.get("metadata", {})) for d in unique.values()
            ]
            writer.add_new(docs)
            advance(len(batch))
            count += len(batch)
        return count
