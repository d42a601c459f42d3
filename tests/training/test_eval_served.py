"""eval_served through the real services (real HTTP, real Chroma, the packaged model) agrees with
the in-process evaluation of the same model on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.ingest.config import Settings as IngestSettings
from services.ingest.main import create_app as create_ingest
from services.query.config import Settings as QuerySettings
from services.query.main import create_app as create_query
from tests.conftest import LiveServer
from tests.training.conftest import cut
from training.eval_served import ServedEvalError, evaluate_served
from training.evaluate import evaluate


@pytest.fixture(scope="module")
def mini_test_split(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 test claims, their abstracts and 30 other abstracts."""
    return cut(scifact_dir, tmp_path_factory.mktemp("mini-scifact-test"), "test", 10, 30)


@pytest.mark.slow  # both services in-process, the split ingested and evaluated twice: `make test-slow`
def test_served_metrics_match_in_process(
    chroma_server: Any, mini_test_split: Path, published_base: Path, tmp_path: Path
) -> None:
    common = {
        "chroma_host": chroma_server.host,
        "chroma_port": chroma_server.port,
        "collection_prefix": "evalserved",
        "weights_dir": published_base,  # the untrained base model, served by the default engine
    }
    with (
        LiveServer(create_ingest(IngestSettings(**common))) as ingest,
        LiveServer(create_query(QuerySettings(**common))) as query,
    ):
        report = evaluate_served(
            mini_test_split, "test", ingest.url, query.url, batch_size=16, modes=("dense", "hybrid")
        )
        assert report["ingested"] == len((mini_test_split / "corpus.jsonl").read_text().splitlines())
        again = evaluate_served(mini_test_split, "test", ingest.url, query.url, skip_ingest=True)
    local = evaluate(mini_test_split, "test", ["base"], weights_dir=tmp_path / "weights")["systems"]["base"]
    assert report["model_version"] == local["version"]
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        assert report["served"][metric] == pytest.approx(local[metric], abs=0.005), metric
    metrics = ("ndcg@10", "recall@100", "mrr@10")
    assert {m: again["served"][m] for m in metrics} == {m: report["dense"][m] for m in metrics}
    assert report["served"]["ndcg@10"] > 0.5  # the base model does retrieve these claims' abstracts
    assert report["hybrid"]["ndcg@10"] > 0.5 and report["hybrid"]["took_ms_p50"] > 0


def test_unreachable_service_is_a_clear_error(mini_test_split: Path) -> None:
    with pytest.raises(ServedEvalError, match="unreachable"):
        evaluate_served(mini_test_split, "test", "http://127.0.0.1:9", "http://127.0.0.1:9")
