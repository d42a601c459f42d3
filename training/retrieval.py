"""Exhaustive dense retrieval and the BM25 baseline over an in-memory corpus (BM25 itself lives in
`twotower.lexical`, shared with the query service's hybrid mode so both tokenise alike)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from twotower import DualTowerWithFC
from twotower.beir import BeirDoc
from twotower.index.passages import PassageConfig, split
from twotower.model import offsets_tokenizer
from twotower.text import format_document


def top_k(query_emb: np.ndarray, doc_emb: np.ndarray, doc_ids: Sequence[str], k: int) -> list[list[str]]:
    """Exact cosine top-k (embeddings are unit length, so the dot product is the cosine)."""
    scores = torch.from_numpy(query_emb) @ torch.from_numpy(doc_emb).T
    idx = torch.topk(scores, min(k, len(doc_ids)), dim=1).indices.tolist()
    return [[doc_ids[i] for i in row] for row in idx]


# The ingestion service's defaults (INGEST_PASSAGE_TOKENS / INGEST_PASSAGE_OVERLAP).
SERVED_PASSAGES = PassageConfig()


def tower_inputs(
    model: DualTowerWithFC, docs: Sequence[BeirDoc], passages: PassageConfig | None
) -> tuple[list[str], list[int]]:
    """The document tower's inputs and, for each, the index of its document: one per document
    (truncated to the model's window) without `passages`, else one per passage, split exactly as
    the ingestion service splits them."""
    if passages is None:
        return [format_document(d.text, d.title or None) for d in docs], list(range(len(docs)))
    tokenizer, window = offsets_tokenizer(model), model.config.max_seq_length
    texts: list[str] = []
    owners: list[int] = []
    for n, doc in enumerate(docs):
        for start, end in split(doc.text, doc.title or None, tokenizer, window, passages):
            texts.append(format_document(doc.text[start:end], doc.title or None))
            owners.append(n)
    return texts, owners


def dense_search(
    model: DualTowerWithFC,
    queries: Sequence[str],
    doc_ids: Sequence[str],
    docs: Sequence[BeirDoc],
    k: int,
    batch_size: int = 64,
    progress: bool = False,
    passages: PassageConfig | None = SERVED_PASSAGES,
) -> list[list[str]]:
    """Embed the documents with the document tower and the queries with the query tower; rank.
    A document scores its best passage's cosine, as `/search` ranks them."""
    texts, owners = tower_inputs(model, docs, passages)
    passage_emb = model.encode_documents(texts, batch_size=batch_size, progress=progress)
    query_emb = model.encode_queries(queries, batch_size=batch_size)
    scores = torch.from_numpy(query_emb) @ torch.from_numpy(passage_emb).T
    index = torch.tensor(owners).expand(scores.shape[0], -1)
    best = torch.full((scores.shape[0], len(doc_ids)), -torch.inf).scatter_reduce(1, index, scores, "amax")
    idx = torch.topk(best, min(k, len(doc_ids)), dim=1).indices.tolist()
    return [[doc_ids[i] for i in row] for row in idx]
