"""Exhaustive dense retrieval and the BM25 baseline over an in-memory corpus (BM25 itself lives in
`twotower.lexical`, shared with the query service's hybrid mode so both tokenise alike)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from twotower import DualTowerWithFC


def top_k(query_emb: np.ndarray, doc_emb: np.ndarray, doc_ids: Sequence[str], k: int) -> list[list[str]]:
    """Exact cosine top-k (embeddings are unit length, so the dot product is the cosine)."""
    scores = torch.from_numpy(query_emb) @ torch.from_numpy(doc_emb).T
    idx = torch.topk(scores, min(k, len(doc_ids)), dim=1).indices.tolist()
    return [[doc_ids[i] for i in row] for row in idx]


def dense_search(
    model: DualTowerWithFC,
    queries: Sequence[str],
    doc_ids: Sequence[str],
    doc_texts: Sequence[str],
    k: int,
    batch_size: int = 64,
    progress: bool = False,
) -> list[list[str]]:
    """Embed the documents with the document tower and the queries with the query tower; rank."""
    doc_emb = model.encode_documents(doc_texts, batch_size=batch_size, progress=progress)
    query_emb = model.encode_queries(queries, batch_size=batch_size)
    return top_k(query_emb, doc_emb, doc_ids, k)
