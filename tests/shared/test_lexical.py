"""twotower.lexical: the hybrid mode's BM25 over candidates scores exactly as bm25s (what training's
BM25 uses) on real texts, and reciprocal rank fusion adds up reciprocal ranks."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from twotower.beir import load_corpus, load_queries
from twotower.lexical import (
    BM25,
    TOKEN,
    _stemmer,
    bm25_scores,
    rank_by_bm25,
    reciprocal_rank_fusion,
    term_stats,
    token_counts,
    tokenize,
)


def test_bm25_over_candidates_scores_as_bm25s_does(scifact_dir: Path) -> None:
    corpus = list(load_corpus(scifact_dir).values())
    queries = list(load_queries(scifact_dir).values())
    rng = random.Random(0)
    for query in rng.sample(queries, 12):
        texts = [f"{d.title} {d.text}"[: rng.randint(200, 2000)] for d in rng.sample(corpus, 100)]
        index = BM25([str(i) for i in range(len(texts))], texts)
        expected = index.retriever.get_scores(_query_tokens(query))
        np.testing.assert_allclose(bm25_scores(query, texts), expected, rtol=1e-5, atol=1e-6)
        ranked = rank_by_bm25(query, texts)
        assert all(bm25_scores(query, texts)[i] > 0 for i in ranked)


def test_stored_stats_score_exactly_as_the_texts(scifact_dir: Path) -> None:
    """Term statistics computed once (at ingestion) stand in for the texts: the same scores to the
    last bit, whether every candidate, some or none has them (passages stored before stats)."""
    corpus = list(load_corpus(scifact_dir).values())
    queries = list(load_queries(scifact_dir).values())
    rng = random.Random(1)
    for query in [*rng.sample(queries, 20), "the of", "Naïve T-cells_2 東京", "cells cells"]:
        texts = [f"{d.title} {d.text}"[: rng.randint(200, 2000)] for d in rng.sample(corpus, 100)]
        texts += ["", "the and of", "Naïve t-cells_2 über 東京 cells"]
        stats = [term_stats(t) for t in texts]
        expected = bm25_scores(query, texts)
        assert bm25_scores(query, [None] * len(texts), stats).tolist() == expected.tolist()
        some = [s if i % 3 else None for i, s in enumerate(stats)]
        assert bm25_scores(query, texts, some).tolist() == expected.tolist()
        assert rank_by_bm25(query, texts, some) == rank_by_bm25(query, texts)


def test_stored_stats_read_exactly_at_the_edges() -> None:
    """Every candidate's statistics are searched together: a stem must count only where it is a
    whole stem (not a prefix of another, not the length in front), in the candidate that holds it."""
    texts = ["24 cells 24 cell", "cells_x cell", "", "the of", "24", "x1 cellular 24"]
    stats = [term_stats(t) for t in texts]
    for query in ["24", "cell", "cells_x", "24 cell cells_x", "cellular", "lular", "absent"]:
        for given in (stats, [None, *stats[1:]], [*stats[:-1], None]):
            expected = bm25_scores(query, texts)
            assert bm25_scores(query, texts, given).tolist() == expected.tolist(), (query, given)


def test_term_stats_layout() -> None:
    assert term_stats("") == "0"
    length, *pairs = term_stats("The cells, the Cells and a cell: dying cells_x").split(" ")
    assert int(length) == 5  # cells cells cell dying cells_x ("the", "and", "a" are not counted)
    assert dict(p.split(":") for p in pairs) == {"cell": "3", "die": "1", "cells_x": "1"}


def test_stemming_never_changes_a_words_first_letter(scifact_dir: Path) -> None:
    """bm25_scores stems only the candidates' words that start like a query stem: it relies on this."""
    vocab = sorted(
        {w for d in load_corpus(scifact_dir).values() for w in TOKEN.findall(f"{d.title} {d.text}".lower())}
    )
    vocab += ["dying", "lying", "tying", "skies", "ies", "ied", "yelling", "œuvre", "__init__", "1st"]
    stems = _stemmer().stemWords(vocab)
    assert len(vocab) > 20_000
    assert [(w, s) for w, s in zip(vocab, stems, strict=True) if s[:1] != w[:1]] == []


def test_bm25_matches_bm25s_on_awkward_text() -> None:
    """Tokens at the edges: underscores, digits, single letters, accents, other scripts, hyphens,
    apostrophes, stopwords, a query term repeated."""
    texts = [
        "Naïve B-cells_and T-cells: the café's IL-2 (interleukin_2) at 37°C, x y z.",
        "Über-große Zellen; ČESKÝ text, 東京 タワー and the the the cells cells",
        "it is what it is: a an the of",
        "cells",
        "Interleukin-2 signalling in naïve T cells, 2x2 design, p<0.05",
        "",
    ]
    for query in ["naïve cells cells", "interleukin_2 IL-2 37°C", "東京 über cells", "the of it"]:
        index = BM25([str(i) for i in range(len(texts))], texts)
        tokens = _query_tokens(query)  # bm25s cannot score a query of stopwords only: all zero
        expected = index.retriever.get_scores(tokens) if tokens else np.zeros(len(texts))
        np.testing.assert_allclose(bm25_scores(query, texts), expected, rtol=1e-5, atol=1e-6)


def test_token_counts_are_the_regex_tokens_counted(scifact_dir: Path) -> None:
    """token_counts splits without the regex where it can: it must find exactly what bm25s's
    pattern finds, on real abstracts (a fifth of them with non-ASCII characters) and at the edges."""
    texts = [f"{d.title} {d.text}" for d in load_corpus(scifact_dir).values()]
    assert sum(not t.isascii() for t in texts) > 500
    texts += [
        "a\u00a0non-breaking\u2009thin\u3000ideographic spaces, zero\u200bwidth, e\u0301t\u00e9",
        "\u0130stanbul x\u00b2 10\u2076 \u00bd \u2013 en\u2014dash \u00b5g/ml \u03b2-cells \u00e6\u00f0",
        "tab\tnew\nline\x1cfile\x1dsep\x85nel \ufeffbom _ __ a_b I O 7 Ω",
        "",
    ]
    assert [t for t in texts if token_counts(t) != Counter(TOKEN.findall(t.lower()))] == []


def _query_tokens(query: str) -> list[str]:
    """The query's tokens as bm25s makes them (stemmed strings)."""
    tokens = tokenize([query])
    words = {i: w for w, i in tokens.vocab.items()}
    return [words[i] for i in tokens.ids[0]]


def test_no_shared_term_means_no_lexical_rank() -> None:
    texts = ["thyroid volume after radioiodine", "a recipe for bread", "goitre and the thyroid"]
    assert sorted(rank_by_bm25("radioiodine goitre", texts)) == [0, 2]
    assert rank_by_bm25("quantum chromodynamics", texts) == []
    assert rank_by_bm25("anything", []) == []


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([[0, 1, 2], [2, 0]], k=60)
    assert [i for i, _ in fused] == [0, 2, 1]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1][1] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2][1] == pytest.approx(1 / 62)
