"""bench.corpus: real sentences first, then pairs, deterministic, unique ids, never runs dry."""

from __future__ import annotations

import json
from pathlib import Path

from bench import corpus


def _beir(folder: Path, abstracts: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i, text in abstracts.items():
            f.write(json.dumps({"_id": i, "title": f"t{i}", "text": text}) + "\n")
    return folder


def test_rows_in_order_of_kind_and_deterministic(tmp_path: Path) -> None:
    a = _beir(
        tmp_path / "a",
        {
            "1": "One two three four five. Six seven eight nine ten! Too short. Eleven twelve thirteen fourteen fifteen?",
            "2": "Alpha beta gamma delta epsilon. Zeta eta theta iota kappa.",
        },
    )
    rows = list(corpus.rows([a], 40))
    kinds = [r["metadata"]["kind"] for r in rows]
    assert kinds == sorted(kinds), "kinds come in order 1, 2, 3, 4"
    singles = [r["text"] for r in rows if r["metadata"]["kind"] == 1]
    assert singles == [
        "One two three four five.",
        "Six seven eight nine ten!",
        "Eleven twelve thirteen fourteen fifteen?",
        "Alpha beta gamma delta epsilon.",
        "Zeta eta theta iota kappa.",
    ]
    assert kinds.count(2) == 3 and kinds.count(3) == 1  # (1,2) (2,3) (α,ζ); then (1,3)
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40, "kind 4 keeps going, ids unique"
    pair = next(r for r in rows if r["metadata"]["kind"] == 4)
    assert pair["metadata"]["abstract"] in {"1", "2"}
    assert [r["text"] for r in corpus.rows([a], 40)] == [r["text"] for r in rows]


def test_cli_writes_jsonl_the_loader_reads(tmp_path: Path) -> None:
    from twotower.corpus import open_corpus

    a = _beir(tmp_path / "a", {"1": "One two three four five. Six seven eight nine ten."})
    b = _beir(tmp_path / "b", {"9": "Solo sentence with enough words here."})
    out = tmp_path / "c.jsonl"
    corpus.main(["--n", "3", "--out", str(out), "--data", f"{a},{b}"])
    docs = list(open_corpus(str(out), None).documents)
    assert [d["metadata"]["corpus"] for d in docs] == ["a", "a", "b"]
    assert docs[2]["text"] == "Solo sentence with enough words here."
