"""The model package: towers, normalisation, untrained = base ranking, artifacts and versions."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import twotower
from tests.model.heads import with_moved_heads
from twotower import ArtifactError, DualTowerWithFC, ModelConfig
from twotower.beir import load_corpus, load_queries
from twotower.engine import torch_engine
from twotower.engine.torch_engine import TorchEncoder

QUERIES = ["how do vaccines trigger immunity", "python list comprehension", "effects of sleep on memory"]
DOCS = [
    "Vaccines expose the immune system to an antigen so that it learns to recognise the pathogen.",
    "A list comprehension builds a list from an iterable in a single expression.",
    "Sleep consolidates memories formed during the day.",
]


@pytest.fixture(scope="module")
def model() -> DualTowerWithFC:
    return DualTowerWithFC()


def test_towers_return_unit_float32_vectors(model: DualTowerWithFC) -> None:
    q = model.encode_queries(QUERIES)
    d = model.encode_documents(DOCS)
    assert q.shape == (3, 384) and d.shape == (3, 384)
    assert q.dtype == np.float32 and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    # Each query's own document is its nearest one.
    assert list((q @ d.T).argmax(axis=1)) == [0, 1, 2]
    assert model.encode_queries([]).shape == (0, 384)


def test_encoding_is_batch_independent(model: DualTowerWithFC) -> None:
    together = model.encode_documents(DOCS, batch_size=3)
    one_by_one = np.vstack([model.encode_documents([d], batch_size=1) for d in DOCS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_heads_are_separate_and_trainable(model: DualTowerWithFC) -> None:
    assert model.query_head is not model.doc_head
    names = {n for n, _ in model.query_head.named_parameters()}
    assert {"fc1.weight", "fc2.weight", "fc3.weight", "norm.weight"} <= names


def test_untrained_model_ranks_like_its_base_model(model: DualTowerWithFC, scifact_dir: Path) -> None:
    # Short real texts (SciFact claims) keep this cheap; the towers see them as queries and documents.
    texts = list(islice(load_queries(scifact_dir).values(), 300))
    base = model.embed_backbone(texts).cpu().numpy()
    towers = model.encode_documents(texts), model.encode_queries(texts)
    base_top = np.argsort(-(base @ base.T), axis=1)[:, 1:11]
    for emb in towers:
        top = np.argsort(-(emb @ emb.T), axis=1)[:, 1:11]
        agreement = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, base_top, strict=True)])
        assert agreement >= 0.99, f"top-10 neighbours agree only {agreement:.3f} with the base model"


def test_a_trained_head_changes_the_embedding(model: DualTowerWithFC, tmp_path: Path) -> None:
    trained = DualTowerWithFC(model.config, backbone=model.backbone)
    with torch.no_grad():
        trained.query_head.fc3.weight.normal_(0, 0.05)
    assert not np.allclose(trained.encode_queries(QUERIES), model.encode_queries(QUERIES), atol=1e-4)
    np.testing.assert_allclose(trained.encode_documents(DOCS), model.encode_documents(DOCS), atol=1e-6)
    assert twotower.model_version(trained) != twotower.model_version(model)


def _perturbed(model: DualTowerWithFC) -> DualTowerWithFC:
    other = DualTowerWithFC(model.config, backbone=model.backbone)
    with torch.no_grad():
        other.doc_head.fc3.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    return other


def test_save_load_reproduces_embeddings_exactly(model: DualTowerWithFC, tmp_path: Path) -> None:
    trained = _perturbed(model)
    version = twotower.save(trained, tmp_path / "artifact", metadata={"note": "test"})
    loaded = twotower.load(tmp_path / "artifact")
    assert twotower.model_version(loaded) == version
    np.testing.assert_array_equal(loaded.encode_documents(DOCS), trained.encode_documents(DOCS))
    np.testing.assert_array_equal(loaded.encode_queries(QUERIES), trained.encode_queries(QUERIES))
    config = json.loads((tmp_path / "artifact" / "config.json").read_text())
    assert config["version"] == version and config["metadata"] == {"note": "test"}


def test_versions_are_stable_and_content_derived(model: DualTowerWithFC) -> None:
    again = DualTowerWithFC(model.config, backbone=model.backbone)
    assert twotower.model_version(again) == twotower.model_version(model)
    reseeded = DualTowerWithFC(ModelConfig(init_seed=1), backbone=model.backbone)
    assert twotower.model_version(reseeded) != twotower.model_version(model)


@pytest.mark.slow  # two ONNX exports (fp32 and int8) of two versions: `make test-slow`
def test_publish_moves_latest_atomically(model: DualTowerWithFC, tmp_path: Path) -> None:
    root = tmp_path / "weights"
    assert twotower.latest_version(root) is None
    first = twotower.publish(model, root)
    assert twotower.latest_version(root) == first and (root / first / "model.safetensors").exists()
    second = twotower.publish(_perturbed(model), root)
    assert second != first and twotower.latest_version(root) == second
    assert twotower.publish(model, root) == first  # republishing identical content reuses the version
    assert sorted(p.name for p in root.iterdir()) == sorted(["LATEST", first, second])
    assert twotower.model_version(twotower.load_published(root, first)) == first


def test_missing_files_are_named(model: DualTowerWithFC, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"config\.json: missing"):
        twotower.load(tmp_path)
    with pytest.raises(ArtifactError, match="LATEST"):
        twotower.load_published(tmp_path / "empty")
    twotower.save(model, tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"model\.safetensors: missing"):
        twotower.load(tmp_path / "a")


def test_corrupt_weights_are_rejected(model: DualTowerWithFC, tmp_path: Path) -> None:
    twotower.save(model, tmp_path / "a")
    weights = tmp_path / "a" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"model\.safetensors: corrupt"):
        twotower.load(tmp_path / "a")


def test_tampered_weights_fail_the_version_check(model: DualTowerWithFC, tmp_path: Path) -> None:
    twotower.save(model, tmp_path / "a")
    weights = tmp_path / "a" / "model.safetensors"
    tensors = load_file(weights)
    tensors["doc_head.fc3.bias"] = tensors["doc_head.fc3.bias"] + 0.01
    save_file(tensors, weights)
    with pytest.raises(ArtifactError, match="content gives version"):
        twotower.load(tmp_path / "a")


def test_mismatched_weights_name_the_mismatch(model: DualTowerWithFC, tmp_path: Path) -> None:
    twotower.save(model, tmp_path / "a")
    config_path = tmp_path / "a" / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["hidden_dim"] = 256
    config_path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=r"shape mismatch.*fc1\.weight"):
        twotower.load(tmp_path / "a")

    twotower.save(model, tmp_path / "b")
    weights = tmp_path / "b" / "model.safetensors"
    tensors = load_file(weights)
    del tensors["query_head.fc2.bias"]
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, weights)
    with pytest.raises(ArtifactError, match=r"missing tensors \['query_head\.fc2\.bias'\].*unexpected"):
        twotower.load(tmp_path / "b")


def test_unknown_config_keys_and_formats_are_rejected(model: DualTowerWithFC, tmp_path: Path) -> None:
    twotower.save(model, tmp_path / "a")
    config_path = tmp_path / "a" / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["layers"] = 7
    config_path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="unknown model config keys: layers"):
        twotower.load(tmp_path / "a")
    config_path.write_text(json.dumps({"format": "pickle"}))
    with pytest.raises(ArtifactError, match="format"):
        twotower.load(tmp_path / "a")


def test_base_model_setting_accepts_local_paths_and_rejects_missing_packages(tmp_path: Path) -> None:
    from twotower.backbone import resolve_base_model

    assert Path(resolve_base_model(twotower.PACKAGED_BASE_MODEL)).is_dir()
    assert resolve_base_model(str(tmp_path)) == str(tmp_path)
    assert resolve_base_model("sentence-transformers/multi-qa-MiniLM-L6-cos-v1").startswith("sentence")
    with pytest.raises(ValueError, match="not installed"):
        resolve_base_model("pkg:no_such_model_package")


def test_the_torch_engines_direct_path_computes_what_encode_does(scifact_dir: Path) -> None:
    """`TorchEncoder.direct` (the Rust tokenizer and the towers run by hand: the default on a GPU,
    where it is all `make bench-gpu` can measure) gives the vectors `DualTowerWithFC.encode_*`
    gives, on heads far from the identity, long abstracts (truncated) and short claims alike."""
    trained = with_moved_heads(seed=3)
    corpus = load_corpus(scifact_dir)
    abstracts = [twotower.format_document(d.text, d.title) for d in islice(corpus.values(), 40)]
    claims = list(islice(load_queries(scifact_dir).values(), 40))
    direct, through_encode = TorchEncoder(trained, direct=True), TorchEncoder(trained, direct=False)
    direct.batch_size = 16  # several chunks, each padded to its own longest text
    assert direct.direct and not through_encode.direct
    for texts, encode in ((abstracts, "encode_documents"), (claims, "encode_queries")):
        got, want = getattr(direct, encode)(texts), getattr(through_encode, encode)(texts)
        assert got.dtype == np.float32 and got.shape == (40, 384)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert direct.encode_queries([]).shape == (0, 384)
    alone = np.vstack([direct.encode_documents([t]) for t in abstracts[:3]])
    np.testing.assert_allclose(alone, direct.encode_documents(abstracts[:3]), atol=1e-5)


class _EagerReplay:
    """`CapturedTower` without CUDA: runs the forward pass it was given on each feed, so that on a
    CPU everything around the graph (shapes, padding, which batches replay) runs as on a GPU."""

    def __init__(
        self,
        forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        example: dict[str, np.ndarray],
        device: str,
    ) -> None:
        self.forward, self.shapes = forward, {name: a.shape for name, a in example.items()}

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        assert {name: a.shape for name, a in feed.items()} == self.shapes  # a graph's shapes are fixed
        return self.forward({name: torch.from_numpy(a) for name, a in feed.items()}).numpy()


class _FailingCapture:
    def __init__(self, *args: object) -> None:
        raise RuntimeError("operation not permitted when stream is capturing")


def test_queries_padded_to_a_captured_graphs_shape_get_the_vectors_they_get_alone(
    scifact_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU the query tower replays CUDA graphs captured at fixed shapes, so a batch is padded
    to the nearest shape: more tokens (masked) and more rows (copies). The vectors must not move;
    batches too big for a graph, and a capture that fails, run eagerly."""
    trained = with_moved_heads(seed=5)
    claims = list(islice(load_queries(scifact_dir).values(), 11))
    eager = TorchEncoder(trained, direct=True)
    want = eager.encode_queries(claims)
    monkeypatch.setattr(torch_engine, "CapturedTower", _EagerReplay)
    graphed = TorchEncoder(trained, direct=True)
    assert not graphed.graphs  # off on a CPU; turned on here to run the padding around the graphs
    graphed.graphs = True
    for batch in ([claims[0]], claims[:3], claims[3:8]):
        np.testing.assert_allclose(graphed.encode_queries(batch), eager.encode_queries(batch), atol=1e-5)
    np.testing.assert_allclose(graphed.encode_queries(claims), want, atol=1e-5)  # 11 rows: eagerly
    long_query = " ".join(claims) * 2  # over 128 tokens: eagerly
    np.testing.assert_allclose(
        graphed.encode_queries([long_query]), eager.encode_queries([long_query]), atol=1e-5
    )
    # claims[0] has 15 tokens, claims[:3] at most 16 and claims[3:8] at most 28 (with [CLS], [SEP])
    assert graphed.captured_shapes == [(1, 16), (4, 16), (8, 32)]
    assert torch_engine.graph_shape(9, 10) is None and torch_engine.graph_shape(1, 129) is None

    monkeypatch.setattr(torch_engine, "CapturedTower", _FailingCapture)
    failing = TorchEncoder(trained, direct=True)
    failing.graphs = True
    np.testing.assert_allclose(
        failing.encode_queries(claims[:3]), eager.encode_queries(claims[:3]), atol=1e-5
    )
    assert not failing.graphs and failing.captured_shapes == []
