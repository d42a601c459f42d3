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

# The tokens of bm25s.tokenize's default pattern, r"(?u)\b\w\w+\b": maximal runs of two or more
# word characters (without its boundary checks, which such runs never need).
TOKEN = re.compile(r"\w\w+")
# The ASCII characters \w matches, and a table that turns every other ASCII byte into a space.
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
    """How often each token of `TOKEN.findall(text.lower())` occurs, found without the regex where
    it can: split at ASCII non-word characters and whitespace (never part of a \\w run); pieces
    with non-ASCII characters go through the regex, one-letter pieces are dropped."""
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


def term_stats(text: str) -> str:
    """What BM25 needs of `text`, computed once (at ingestion) instead of on every search: its
    length (tokens that are not stopwords, as bm25s counts it) and how often each stem occurs,
    as "<length> <stem>:<count> ...". Tokens are \\w runs, so a stem never holds " " or ":"."""
    counts = token_counts(text)
    for word in STOPWORDS.intersection(counts):
        del counts[word]
    stems: Counter[str] = Counter()
    for (_, n), stem in zip(counts.items(), _stemmer().stemWords(list(counts)), strict=True):
        stems[stem] += n
    return " ".join([str(counts.total()), *(f"{stem}:{n}" for stem, n in stems.items())])


def _stats_tf(stats: Sequence[str], stems: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(length of each, count of each of `stems` in each) read from `term_stats` strings. One
    string holds them all, each after a newline and before a space, so that every stem is one
    `find` per candidate holding it (not one per candidate): " stem:" never spans two of them,
    and a count always ends at a space."""
    lengths = np.array([int(stat.partition(" ")[0]) for stat in stats], dtype=float)
    tf = np.zeros((len(stems), len(stats)))
    blob = "\n" + " \n".join(stats) + " "
    starts = np.cumsum([0, *(len(stat) + 2 for stat in stats[:-1])])
    for j, stem in enumerate(stems):
        needle = f" {stem}:"
        at, found, counts = blob.find(needle), [], []
        while at >= 0:
            begin = at + len(needle)
            end = blob.find(" ", begin)
            found.append(at)
            counts.append(int(blob[begin:end]))
            at = blob.find(needle, end)
        if found:
            tf[j, np.searchsorted(starts, found, side="right") - 1] = counts
    return lengths, tf


def bm25_scores(
    query: str,
    texts: Sequence[str | None],
    stats: Sequence[str | None] | None = None,
    k1: float = 1.5,
    b: float = 0.75,
) -> np.ndarray:
    """BM25 score of each of `texts` for `query`, with `texts` as the whole collection: bm25s's
    tokens and formula (Lucene's idf and term frequency), for the query's terms only (a test holds
    it to bm25s's scores). `stats[i]`, where given, is `term_stats(texts[i])` and stands in for the
    text (which may then be None): each query stem's count is read, not tokenised and stemmed."""
    n = len(texts)
    scores = np.zeros(n)
    terms = [w for w in TOKEN.findall(query.lower()) if w not in STOPWORDS]
    if n == 0 or not terms:
        return scores
    stemmer = _stemmer()
    weight = Counter(stemmer.stemWords(terms))  # a term the query repeats counts as often (as bm25s)
    stems = list(weight)
    lengths = np.zeros(n)
    tf = np.zeros((len(stems), n))
    given = list(stats) if stats is not None else [None] * n
    stored = [i for i, stat in enumerate(given) if stat is not None]
    if stored:
        lengths[stored], tf[:, stored] = _stats_tf([str(given[i]) for i in stored], stems)
    for i in set(range(n)).difference(stored):
        lengths[i], tf[:, i] = _text_tf(texts[i] or "", stems, stemmer)
    if lengths.sum() == 0:
        return scores
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    for j, stem in enumerate(stems):
        df = int((tf[j] > 0).sum())
        if df:
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            scores += weight[stem] * idf * tf[j] / (tf[j] + norm)
    return scores


def _text_tf(text: str, stems: list[str], stemmer: Stemmer.Stemmer) -> tuple[int, list[int]]:
    """(length, count of each of `stems`) of a text with no stored stats. The Snowball English
    stemmer changes a word's ending only (its exceptions too: dying -> die), never its first letter
    (a test holds it to that): only words that start like a query stem are stemmed."""
    counts = token_counts(text)
    length = counts.total() - sum(filter(None, map(counts.get, STOPWORDS_LIST)))
    initials = tuple({stem[0] for stem in stems})
    words = [w for w in counts if w.startswith(initials) and w not in STOPWORDS]
    found: Counter[str] = Counter()
    for word, stem in zip(words, stemmer.stemWords(words), strict=True):
        found[stem] += counts[word]
    return length, [found[stem] for stem in stems]


def rank_by_bm25(
    query: str, texts: Sequence[str | None], stats: Sequence[str | None] | None = None
) -> list[int]:
    """Indices of `texts` that share a term with `query`, by BM25 computed over `texts` alone,
    best first (texts without a query term are left out: they have no lexical rank). `stats` as
    for `bm25_scores`."""
    scores = bm25_scores(query, texts, stats)
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
