"""A tiny frozen-backbone training run: publishes a version that loads and reproduces its
embeddings; the same seed gives the same version; wandb leaves an offline run with its metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.train import TrainConfig, parse_args, train
from twotower import latest_version, load_published

QUERIES = ["aspirin and heart attacks", "gene expression in cancer cells"]
DOCS = ["Aspirin lowers the risk of myocardial infarction.", "Tumour cells express the gene at high levels."]


def tiny(data: Path, weights: Path, wandb_dir: Path, mode: str) -> TrainConfig:
    return TrainConfig(
        data=str(data),
        train_backbone=False,
        epochs=3,
        batch_size=16,
        neg_depth=3,
        val_depth=30,
        val_fraction=0.25,
        frozen_lr=3e-3,
        seed=7,
        weights_dir=str(weights),
        wandb_mode=mode,
        wandb_dir=str(wandb_dir),
    )


@pytest.fixture(scope="module")
def first_run(mini_scifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("train-a")
    result = train(tiny(mini_scifact, root / "weights", root, "offline"))
    result["root"] = root
    return result


@pytest.mark.slow  # training runs, each publishing with its ONNX export: `make test-slow`
def test_publishes_a_version_that_reloads_with_the_same_embeddings(first_run: dict[str, Any]) -> None:
    weights = first_run["root"] / "weights"
    version = first_run["version"]
    assert version and latest_version(weights) == version
    loaded = load_published(weights)
    model = first_run["model"]
    assert np.allclose(loaded.encode_queries(QUERIES), model.encode_queries(QUERIES), atol=1e-5)
    assert np.allclose(loaded.encode_documents(DOCS), model.encode_documents(DOCS), atol=1e-5)
    # the heads moved (training did something) but the backbone was frozen: not saved
    assert not loaded.backbone_trained
    assert first_run["metrics"]["best_epoch"] > 0
    assert float(loaded.query_head.fc3.weight.detach().abs().sum()) > 0
    metadata = json.loads((weights / version / "config.json").read_text())["metadata"]
    assert metadata["training"]["seed"] == 7 and "val_ndcg@10_published" in metadata["metrics"]


@pytest.mark.slow  # training runs, each publishing with its ONNX export: `make test-slow`
def test_same_seed_gives_the_same_version(
    first_run: dict[str, Any], mini_scifact: Path, tmp_path: Path
) -> None:
    again = train(tiny(mini_scifact, tmp_path / "weights", tmp_path, "disabled"))
    assert again["version"] == first_run["version"]
    assert again["metrics"]["val_ndcg@10_finetuned"] == first_run["metrics"]["val_ndcg@10_finetuned"]


@pytest.mark.slow  # training runs, each publishing with its ONNX export: `make test-slow`
def test_wandb_offline_run_has_the_logged_metrics(first_run: dict[str, Any]) -> None:
    runs = list((first_run["root"] / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # offline mode keeps the whole run (config, history, summary) in one protobuf log
    (log,) = runs[0].glob("run-*.wandb")
    data = log.read_bytes()
    for key in (b"val/ndcg@10", b"train/loss", b"lr", b"published_version", first_run["version"].encode()):
        assert key in data, key


def test_cli_settings() -> None:
    cfg = parse_args(["--no-train-backbone", "--loss", "triplet", "--margin", "0.3", "--epochs", "2"])
    assert (cfg.train_backbone, cfg.loss, cfg.margin, cfg.epochs) == (False, "triplet", 0.3, 2)
    with pytest.raises(SystemExit):
        parse_args(["--loss", "cosine"])
