"""The ONNX engine: exported towers match PyTorch, files are checked, it runs without PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import twotower
from tests.model.heads import with_moved_heads
from twotower import ArtifactError, DualTowerWithFC
from twotower.beir import load_queries
from twotower.corpus import open_corpus
from twotower.engine import open_encoder
from twotower.engine.export import main as export_cli
from twotower.engine.onnx_engine import OnnxEncoder
from twotower.engine.onnx_format import FP32_FFN_LAYERS, INT8_RECIPE, MANIFEST_FILE, ONNX_DIR, has_onnx
from twotower.registry import latest_version

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[DualTowerWithFC, Path]:
    """A model whose heads are far from the identity, published without ONNX and then exported by
    the CLI, as an operator exports a version published before the ONNX engine existed."""
    model = with_moved_heads(seed=7)
    root = tmp_path_factory.mktemp("trained")
    version = twotower.publish(model, root, onnx=False)
    assert not has_onnx(root / version)
    assert export_cli(["--weights-dir", str(root), "--int8"]) == 0
    return model, root / version


@pytest.fixture(scope="module")
def scifact_texts(scifact_dir: Path) -> tuple[list[str], list[str]]:
    claims = list(islice(load_queries(scifact_dir).values(), 32))
    corpus = open_corpus(str(scifact_dir), 12)
    abstracts = [twotower.format_document(d["text"], d.get("title")) for d in corpus.documents]
    return claims, abstracts


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def test_fp32_towers_match_pytorch_on_scifact(
    trained: tuple[DualTowerWithFC, Path], scifact_texts: tuple[list[str], list[str]]
) -> None:
    model, directory = trained
    claims, abstracts = scifact_texts
    encoder = OnnxEncoder(directory, threads=2)
    q_onnx, d_onnx = encoder.encode_queries(claims), encoder.encode_documents(abstracts)
    assert q_onnx.dtype == np.float32 and q_onnx.shape == (len(claims), 384)
    assert cosines(q_onnx, model.encode_queries(claims)).min() >= 0.999
    assert cosines(d_onnx, model.encode_documents(abstracts)).min() >= 0.999
    # Each graph carries its own head: the towers disagree on the same text as PyTorch's do.
    assert cosines(encoder.encode_documents(claims[:8]), q_onnx[:8]).max() < 0.99
    # A text alone and in a padded batch give the same vector.
    alone = np.vstack([encoder.encode_documents([t]) for t in abstracts[:3] + claims[:2]])
    batched = encoder.encode_documents(abstracts[:3] + claims[:2])
    np.testing.assert_allclose(alone, batched, atol=1e-4)


def test_int8_graphs_stay_close_to_fp32_and_each_text_gets_its_own_vector(
    trained: tuple[DualTowerWithFC, Path], scifact_texts: tuple[list[str], list[str]]
) -> None:
    _, directory = trained
    claims, abstracts = scifact_texts
    fp32 = OnnxEncoder(directory, threads=2)
    int8 = open_encoder([directory.parent], directory.name, engine="onnx", threads=2, variant="int8")
    assert fp32.variant == "fp32" and int8.variant == "int8"  # type: ignore[attr-defined]
    q8, d8 = int8.encode_queries(claims), int8.encode_documents(abstracts)
    q32, d32 = fp32.encode_queries(claims), fp32.encode_documents(abstracts)
    assert cosines(q8, q32).min() >= 0.98 and cosines(d8, d32).min() >= 0.98
    assert cosines(d8, d32).mean() >= 0.99
    # Close, but quantized: not the fp32 graphs under another name.
    assert cosines(d8, d32).min() < 0.99999
    # A text's int8 vector is the same alone and among others (its activations are not scaled
    # by its batch mates'): micro-batched queries and chunked documents are answered as if alone.
    np.testing.assert_allclose(np.vstack([int8.encode_queries([c]) for c in claims[:8]]), q8[:8], atol=1e-6)
    np.testing.assert_allclose(
        np.vstack([int8.encode_documents([a]) for a in abstracts[:6]]), d8[:6], atol=1e-6
    )


def test_openvino_runs_the_fp32_graphs_like_onnxruntime(
    trained: tuple[DualTowerWithFC, Path],
    scifact_texts: tuple[list[str], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backend ingestion runs by default: in bfloat16 where the CPU has it, still within the
    cosine >= 0.999 of PyTorch; chunked documents as if each were alone."""
    model, directory = trained
    claims, abstracts = scifact_texts
    encoder = OnnxEncoder(directory, threads=2, backend="openvino")
    assert encoder.backend == "openvino"
    q, d = encoder.encode_queries(claims), encoder.encode_documents(abstracts)
    assert q.dtype == np.float32 and d.shape == (len(abstracts), 384)
    assert cosines(q, model.encode_queries(claims)).min() >= 0.999
    assert cosines(d, model.encode_documents(abstracts)).min() >= 0.999
    assert cosines(encoder.encode_documents(claims[:8]), q[:8]).max() < 0.99  # the document head
    alone = np.vstack([encoder.encode_documents([t]) for t in abstracts[:3] + claims[:2]])
    assert cosines(alone, encoder.encode_documents(abstracts[:3] + claims[:2])).min() >= 0.9999
    # Chunks are padded to widths in steps of 16 (OpenVINO keeps memory per input shape it ran).
    session, widths = encoder._session("document"), []
    run_all = session.run_all

    def recording(name: str, feeds: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
        widths.extend(feed["input_ids"].shape[1] for feed in feeds)
        return run_all(name, feeds)

    monkeypatch.setattr(session, "run_all", recording)
    np.testing.assert_allclose(
        encoder.encode_documents(abstracts + claims),
        np.vstack([d, encoder.encode_documents(claims)]),
        atol=1e-5,
    )
    assert widths and all(w % 16 == 0 and w <= encoder.max_seq_length for w in widths), widths
    encoder.close()


def test_openvino_serves_concurrent_callers(published_base: Path) -> None:
    """Ingestion requests encode from several threads at once; each gets its own texts' vectors."""
    encoder = OnnxEncoder.open(
        [published_base], latest_version(published_base), towers=("document",), backend="openvino", threads=2
    )
    texts = [
        [f"caller {i}, text {j}: " + "cells divide and proteins fold " * (j + 1) for j in range(9)]
        for i in range(4)
    ]
    expected = [encoder.encode_documents(t) for t in texts]
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(4)}

    def work(i: int) -> None:
        for _ in range(3):
            results[i].append(encoder.encode_documents(texts[i]))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "concurrent encodes did not finish"
    for i in range(4):
        assert len(results[i]) == 3
        for got in results[i]:
            np.testing.assert_allclose(got, expected[i], atol=1e-5)
    encoder.close()


def test_int8_graphs_and_a_gpu_run_on_onnxruntime_whatever_the_backend(
    trained: tuple[DualTowerWithFC, Path],
) -> None:
    _, directory = trained
    int8 = OnnxEncoder(directory, threads=1, variant="int8", backend="openvino")
    assert (int8.variant, int8.backend) == ("int8", "onnxruntime")
    assert isinstance(int8._session("query"), ort.InferenceSession)
    with pytest.raises(ValueError, match="choose onnxruntime or openvino"):
        OnnxEncoder(directory, backend="tensorrt")  # type: ignore[arg-type]


@pytest.mark.slow  # an fp32 export and two int8 exports: `make test-slow`
def test_a_version_without_int8_graphs_is_served_in_fp32(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = DualTowerWithFC(device="cpu")
    version = twotower.publish(model, tmp_path, int8=False)
    assert has_onnx(tmp_path / version) and not has_onnx(tmp_path / version, "int8")
    with caplog.at_level("WARNING", logger="twotower.engine.onnx_engine"):
        encoder = open_encoder([tmp_path], version, engine="onnx", variant="int8")
    assert encoder.variant == "fp32"  # type: ignore[attr-defined]
    assert "no int8 graphs" in caplog.text and "twotower.engine.export" in caplog.text
    encoder.close()
    # Exporting the published version again adds them (what the warning says to run).
    assert export_cli(["--weights-dir", str(tmp_path), "--version", version]) == 0
    assert has_onnx(tmp_path / version, "int8")
    encoder = open_encoder([tmp_path], version, engine="onnx", variant="int8")
    assert encoder.variant == "int8"  # type: ignore[attr-defined]
    encoder.close()

    # int8 graphs of an older recipe (every weight MatMul int8) count as missing: served in fp32
    # until the export, run again as the warning says, replaces them.
    manifest_path = tmp_path / version / "onnx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "int8_recipe": 1}))
    caplog.clear()
    with caplog.at_level("WARNING", logger="twotower.engine.onnx_engine"):
        encoder = open_encoder([tmp_path], version, engine="onnx", variant="int8")
    assert encoder.variant == "fp32" and "current recipe" in caplog.text  # type: ignore[attr-defined]
    encoder.close()
    assert export_cli(["--weights-dir", str(tmp_path), "--version", version]) == 0
    assert json.loads(manifest_path.read_text())["int8_recipe"] == INT8_RECIPE


def test_int8_graphs_keep_the_first_feed_forward_projections_in_fp32(
    trained: tuple[DualTowerWithFC, Path],
) -> None:
    """The recipe of the int8 graphs: every weight MatMul quantized except the feed-forward
    down-projections of the first FP32_FFN_LAYERS layers, which the served nDCG measurements kept."""
    import onnx

    _, version_dir = trained
    for tower in ("query", "document"):
        nodes = onnx.load(str(version_dir / "onnx" / f"{tower}.int8.onnx")).graph.node
        plain = {n.name for n in nodes if n.op_type == "MatMul"}
        ffn = [f"/transformer/encoder/layer.{i}/output/dense/MatMul" for i in range(6)]
        assert [name in plain for name in ffn] == [i < FP32_FFN_LAYERS for i in range(6)], tower
        # The other weight MatMuls are quantized.
        assert any(n.op_type in {"MatMulInteger", "DynamicQuantizeMatMul"} for n in nodes)


def test_published_base_serves_like_the_torch_base(published_base: Path) -> None:
    version = latest_version(published_base)
    assert version is not None
    texts = ["effects of sleep on memory", "A list comprehension builds a list in one expression."]
    onnx = open_encoder([published_base], version, engine="onnx")
    torch_base = open_encoder([], None, engine="torch", device="cpu")
    assert onnx.version == torch_base.version == version  # the same content-derived version
    assert cosines(onnx.encode_queries(texts), torch_base.encode_queries(texts)).min() >= 0.999
    torch_base.close()


def test_concurrent_encodes_are_correct(published_base: Path) -> None:
    encoder = OnnxEncoder(published_base / str(latest_version(published_base)), threads=1)
    texts = [f"question number {i} about cells and proteins" for i in range(16)]
    expected = encoder.encode_queries(texts)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = encoder.encode_queries([texts[i]])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    np.testing.assert_allclose(np.vstack([results[i] for i in range(len(texts))]), expected, atol=1e-5)


def test_loads_only_the_towers_asked_and_refuses_after_close(published_base: Path) -> None:
    encoder = OnnxEncoder(published_base / str(latest_version(published_base)), towers=("query",))
    assert set(encoder._sessions) == {"query"}
    assert encoder.encode_documents([]).shape == (0, 384)
    encoder.encode_documents(["loaded on first use"])
    assert set(encoder._sessions) == {"query", "document"}
    # The tokenizer handed out for passages neither truncates nor pads.
    assert len(encoder.tokenizer.encode("word " * 600).ids) > 600
    encoder.close()
    with pytest.raises(RuntimeError, match="released"):
        encoder.encode_queries(["too late"])


def _copy_version(source: Path, target: Path) -> Path:
    """A copy of a version directory whose big files are hard links (cheap, same bytes)."""
    (target / ONNX_DIR).mkdir(parents=True)
    for path in source.rglob("*"):
        if path.is_file():
            os.link(path, target / path.relative_to(source))
    return target


def test_manifest_checks_every_file_and_the_version(published_base: Path, tmp_path: Path) -> None:
    version = str(latest_version(published_base))
    copy = _copy_version(published_base / version, tmp_path / version)
    manifest_path = copy / ONNX_DIR / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())

    tampered = {**manifest, "files": {**manifest["files"], "query.onnx": "0" * 64}}
    manifest_path.unlink()  # a hard link: replace it, never write through it
    manifest_path.write_text(json.dumps(tampered))
    with pytest.raises(ArtifactError, match=r"query\.onnx: sha256"):
        OnnxEncoder(copy, towers=("query",))

    manifest_path.write_text(json.dumps({**manifest, "version": "0123456789ab"}))
    with pytest.raises(ArtifactError, match="exported from version '0123456789ab'"):
        OnnxEncoder(copy)

    manifest_path.unlink()
    with pytest.raises(ArtifactError, match="no ONNX export"):
        OnnxEncoder(copy)


def test_nothing_published_is_an_error_that_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"twotower\.engine\.export --base"):
        open_encoder([tmp_path], None, engine="onnx")


def test_serving_path_runs_without_pytorch(published_base: Path) -> None:
    """What the torch-free images run: the ONNX engine and both service apps, with torch,
    transformers and sentence-transformers unimportable."""
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {{"torch", "transformers", "sentence_transformers"}}:
            raise ImportError(f"{{name}} is blocked")
sys.meta_path.insert(0, Block())
from twotower.engine import open_encoder
from twotower.registry import latest_version
root = {str(published_base)!r}
encoder = open_encoder([root], latest_version(root), engine="onnx")
vector = encoder.encode_queries(["does it run without torch?"])
assert vector.shape == (1, 384), vector.shape
import services.query.main, services.ingest.main
services.query.main.create_app()
services.ingest.main.create_app()
print("ok", "torch" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["ok", "False"]


def test_concurrent_calls_run_the_query_graph_one_at_a_time(published_base: Path) -> None:
    """Requests encode from many threads at once; the engine runs one query-graph run at a time per
    encoder, so a worker computes on as many threads as it was given, not one per request."""
    encoder = OnnxEncoder.open([published_base], latest_version(published_base), towers=("query",))
    session = encoder._session("query")
    running, most = 0, 0
    count = threading.Lock()

    class Recording:
        def get_inputs(self) -> Sequence[object]:
            return session.get_inputs()

        def run(self, *args: object) -> object:
            nonlocal running, most
            with count:
                running += 1
                most = max(most, running)
            try:
                return session.run(*args)  # type: ignore[arg-type]
            finally:
                with count:
                    running -= 1

    encoder._sessions["query"] = Recording()  # type: ignore[assignment]
    start = threading.Barrier(6)

    def search(i: int) -> None:
        start.wait(timeout=10)
        for j in range(5):
            encoder.encode_queries([f"query {i} number {j} about sleep and memory"])

    threads = [threading.Thread(target=search, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    encoder.close()
    assert most == 1


def test_a_backbone_the_towers_cannot_run_by_hand_is_refused_by_export_and_encoded_by_torch(
    tmp_path: Path,
) -> None:
    """A module after the pooling other than Normalize (here a Dense layer) is not what `TowerGraph`
    and the torch engine's direct path compute: export refuses it by name, and the torch engine
    encodes it through sentence-transformers even when asked for the direct path."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    from twotower.engine.export import export_onnx
    from twotower.engine.torch_engine import TorchEncoder
    from twotower.model import unsupported_backbone

    base = DualTowerWithFC(device="cpu")
    assert unsupported_backbone(base) is None
    dense = SentenceTransformer(modules=[base.backbone[0], base.backbone[1], Dense(384, 384)], device="cpu")
    model = DualTowerWithFC(base.config, backbone=dense, device="cpu")
    assert "Dense" in (unsupported_backbone(model) or "")
    version = twotower.publish(model, tmp_path, onnx=False)
    with pytest.raises(ArtifactError, match=r"not \['Transformer', 'Pooling', 'Dense'\]"):
        export_onnx(model, tmp_path / version)
    assert not has_onnx(tmp_path / version)
    encoder = TorchEncoder(model, direct=True)
    assert not encoder.direct
    np.testing.assert_allclose(
        encoder.encode_queries(["sleep and memory"]), model.encode_queries(["sleep and memory"]), atol=1e-6
    )
