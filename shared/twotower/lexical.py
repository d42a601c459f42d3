"""Lexical ranking: BM25 with bm25s, English stopwords and the Snowball stemmer (the reference
setup), shared by training's baseline (training/retrieval.py) and the query service's hybrid mode,
so both tokenise alike; and reciprocal rank fusion.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Sequence

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

# bm25s.tokenize's default pattern, r"(?u)\b\w\w+\b" (on lower-cased text), finds every maximal run
# of two or more word characters; so does this, a quarter faster without the boundary checks.
TOKEN = re.compile(r"\w\w+")
# The same tokens without a regex scan where a text allows it (`token_counts`): the ASCII
# characters \w matches (letters, digits, "_"), and every other ASCII byte turned into a space.
_ASCII_WORD = frozenset(chr(c) for c in range(128) if chr(c).isalnum() or chr(c) == "_")
_ASCII_GAPS = bytes(c if c >= 128 or chr(c) in _ASCII_WORD else 32 for c in range(256))
STOPWORDS = frozenset(STOPWORDS_EN)  # bm25s's "en" list
STOPWORDS_LIST = sorted(STOPWORDS)
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al.): 1 / (RRF_K + rank)

_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    # PyStemmer's stemmers keep a cache and are not safe to share between threads.
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def tokenize(texts: Sequence[str]) -> bm25s.tokenization.Tokenized:
    return bm25s.tokenize(list(texts), stopwords="en", stemmer=_stemmer(), show_progress=False)


class BM25:
    """A BM25 index over `texts` (ids alongside), searched by query text."""

    def __init__(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.doc_ids = list(doc_ids)
        self.retriever = bm25s.BM25()
        self.retriever.index(tokenize(texts), show_progress=False)

    def scores(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) of the top `k` documents per query, best first."""
        k = min(k, len(self.doc_ids))
        indices, scores = self.retriever.retrieve(tokenize(queries), k=k, show_progress=False)
        return np.asarray(indices), np.asarray(scores)

    def search(self, queries: Sequence[str], k: int) -> list[list[str]]:
        indices, _ = self.scores(queries, k)
        return [[self.doc_ids[int(i)] for i in row] for row in indices]


def token_counts(text: str) -> Counter[str]:
    """How often each token of `text` occurs: the tokens of `TOKEN.findall(text.lower())`, which
    bm25s's pattern finds, counted. Splitting at ASCII non-word characters and Unicode whitespace
    (neither is ever part of a \\w run) takes about a third of the regex's time; the few pieces
    with non-ASCII characters in them are then tokenised by the regex, and one-letter pieces dropped
    (the pattern wants two or more word characters)."""
    lowered = text.lower()
    counts = Counter(lowered.encode().translate(_ASCII_GAPS).decode().split())
    if not lowered.isascii():
        for piece in [p for p in counts if not p.isascii()]:
            n = counts.pop(piece)
            for token in TOKEN.findall(piece):
                counts[token] += n
    for letter in _ASCII_WORD.intersection(counts):
        del counts[letter]
    return counts


def bm25_scores(query: str, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """BM25 score of each of `texts` for `query`, with `texts` as the whole collection: the same
    tokens and the same formula as bm25s (its default pattern, English stopwords, the Snowball
    stemmer, Lucene's idf and term-frequency parts), computed for the query's terms only. It is on
    every hybrid search's path, so the per-word work stays in C (regex, Counter, set union, the
    stemmer): Python loops only over each text's distinct words that stem to a query term.
    tests/shared/test_lexical.py holds it to bm25s's scores."""
    n = len(texts)
    scores = np.zeros(n)
    terms = [w for w in TOKEN.findall(query.lower()) if w not in STOPWORDS]
    if n == 0 or not terms:
        return scores
    counts = [token_counts(t) for t in texts]
    # A text's length is its number of tokens that are not stopwords (as bm25s counts it).
    lengths = np.array(
        [c.total() - sum(filter(None, map(c.get, STOPWORDS_LIST))) for c in counts], dtype=float
    )
    if lengths.sum() == 0:
        return scores
    stemmer = _stemmer()
    weight = Counter(stemmer.stemWords(terms))  # a term the query repeats counts as often (as bm25s)
    # Stemming every distinct word of the candidates was the largest cost here (about 3,700 words
    # in 100 SciFact passages, many missing from the stemmer's cache on a large corpus). The
    # Snowball English stemmer changes a word's ending only (its exceptions too: dying -> die),
    # never its first letter (not once among the 41,673 distinct words of SciFact and NPL; a test
    # holds it to that): only words that start like a query stem can stem to one.
    initials = tuple({stem[0] for stem in weight})
    vocab = [w for w in set().union(*counts) - STOPWORDS if w.startswith(initials)]
    surfaces: dict[str, list[str]] = {}  # query stem -> the words of the texts that stem to it
    for word, stem in zip(vocab, stemmer.stemWords(vocab), strict=True):
        if stem in weight:
            surfaces.setdefault(stem, []).append(word)
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    for stem, words in surfaces.items():
        tf = np.array([sum(filter(None, map(c.get, words))) for c in counts], dtype=float)
        df = int((tf > 0).sum())
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        scores += weight[stem] * idf * tf / (tf + norm)
    return scores


def rank_by_bm25(query: str, texts: Sequence[str]) -> list[int]:
    """Indices of `texts` that share a term with `query`, by BM25 computed over `texts` alone,
    best first (texts without a query term are left out: they have no lexical rank)."""
    scores = bm25_scores(query, texts)
    return [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Items of several rankings (lists of item indices, best first) by their summed 1 / (k + rank),
    best first, with that score. Ties keep the order of the first ranking."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    first = {item: pos for pos, item in enumerate(rankings[0])} if rankings else {}
    return sorted(scores.items(), key=lambda kv: (-kv[1], first.get(kv[0], len(first))))
