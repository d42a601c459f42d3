"""Publishing a model version and exporting its towers to ONNX (needs PyTorch and `onnx`; serving doesn't).

    python -m twotower.engine.export --weights-dir weights [--version V]   export a published version
    python -m twotower.engine.export --base --out DIR                      publish the untrained base

Each tower becomes one graph computing what `DualTowerWithFC.encode_queries` / `encode_documents`
compute, with dynamic batch and sequence axes, plus an int8 graph (`--no-int8` to skip). The files
(`onnx_format`) appear atomically in `<version>/onnx/`, and an export is kept only once checked
against the PyTorch towers (the int8 graphs against the fp32 ones).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from twotower.artifacts import load, model_version, save
from twotower.config import PACKAGED_BASE_MODEL, ModelConfig
from twotower.engine import Tower
from twotower.engine.batching import INPUTS
from twotower.engine.onnx_engine import OnnxEncoder
from twotower.engine.onnx_format import (
    FFN_DOWN_PROJECTION,
    INT8_RECIPE,
    MANIFEST_FILE,
    ONNX_DIR,
    ONNX_FORMAT,
    TOKENIZER_FILE,
    has_onnx,
    kept_fp32,
    sha256_file,
    tower_file,
)
from twotower.model import DualTowerWithFC, TowerHead, mean_pooled, offsets_tokenizer, unsupported_backbone
from twotower.registry import LATEST_FILE, ArtifactError, find_version, latest_version, read_config

log = logging.getLogger(__name__)

OPSET = 17
# Texts the export is checked on: short and long, so the check covers padding and truncation.
CHECK_TEXTS = [
    "how do vaccines trigger immunity",
    "Sleep consolidates memories formed during the day, " * 3,
    "A list comprehension builds a list from an iterable in a single expression. " * 40,
]
MIN_COSINE = 0.999
# int8 graphs against fp32 ones: quantization moves vectors a little, a broken one far more.
MIN_COSINE_INT8 = 0.98


class TowerGraph(nn.Module):
    """One tower end to end, from token ids to its unit-length embedding."""

    def __init__(self, model: DualTowerWithFC, head: TowerHead) -> None:
        super().__init__()
        self.transformer = cast(nn.Module, model.backbone[0].auto_model)
        self.head = head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        return self.head(mean_pooled(hidden, attention_mask))


def _export_tower(model: DualTowerWithFC, head: TowerHead, path: Path) -> None:
    graph = TowerGraph(model, head).eval()
    # Two rows, the second padded, so the traced mask arithmetic is the general one.
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    with warnings.catch_warnings(), torch.inference_mode():
        # The TorchScript exporter warns of traced shape checks; the check against PyTorch counts.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (ids, mask, torch.zeros_like(ids)),
            str(path),
            input_names=list(INPUTS),
            output_names=["embedding"],
            dynamic_axes={**dynamic, "embedding": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Weights int8 per output channel, activations on the fly: weight MatMuls only, less kept_fp32.
    graph = onnx.load(str(source)).graph
    weights = {init.name for init in graph.initializer}
    excluded = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and (n.input[1] not in weights or kept_fp32(n.name))
    ]
    if not any(kept_fp32(n.name) for n in graph.node):
        raise ArtifactError(f"{source}: no feed-forward MatMul named like {FFN_DOWN_PROJECTION.pattern}")
    # onnxruntime logs on the root logger a line per tensor left in fp32 (by design here) and advice
    # on pre-processing: keep its errors only.
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=excluded,
        )
    finally:
        root.setLevel(level)


def _write_export(model: DualTowerWithFC, version: str, target: Path, int8: bool) -> None:
    target.mkdir()
    heads: dict[Tower, TowerHead] = {"query": model.query_head, "document": model.doc_head}
    for tower, head in heads.items():
        _export_tower(model, head, target / tower_file(tower))
        if int8:
            _quantize(target / tower_file(tower), target / tower_file(tower, "int8"))
    offsets_tokenizer(model).save(str(target / TOKENIZER_FILE))
    files = sorted(p.name for p in target.iterdir())
    manifest = {
        "format": ONNX_FORMAT,
        "version": version,
        "dim": model.config.embedding_dim,
        "max_seq_length": model.config.max_seq_length,
        "pad_token_id": int(model.backbone.tokenizer.pad_token_id or 0),
        "inputs": list(INPUTS),
        "opset": OPSET,
        "torch": torch.__version__,
        "files": {name: sha256_file(target / name) for name in files},
    }
    if int8:
        manifest["int8_recipe"] = INT8_RECIPE
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).min())


def check_export(model: DualTowerWithFC, version_dir: Path, texts: Sequence[str] = CHECK_TEXTS) -> float:
    """The smallest cosine between the ONNX and PyTorch towers' vectors on `texts`; raises below
    0.999, or when int8 graphs were exported and stray from the fp32 ones (below 0.98)."""
    with closing(OnnxEncoder(version_dir, device="cpu", variant="fp32")) as fp32:
        queries, documents = fp32.encode_queries(texts), fp32.encode_documents(texts)
    worst = min(
        min_cosine(queries, model.encode_queries(texts)),
        min_cosine(documents, model.encode_documents(texts)),
    )
    if worst < MIN_COSINE:
        raise ArtifactError(f"{version_dir}: ONNX towers disagree with PyTorch (cosine {worst:.5f})")
    if has_onnx(version_dir, "int8"):
        with closing(OnnxEncoder(version_dir, device="cpu", variant="int8")) as int8:
            quantized = min(
                min_cosine(int8.encode_queries(texts), queries),
                min_cosine(int8.encode_documents(texts), documents),
            )
        if quantized < MIN_COSINE_INT8:
            raise ArtifactError(f"{version_dir}: int8 towers stray from fp32 (cosine {quantized:.5f})")
        log.info("int8 graphs: cosine to fp32 >= %.5f", quantized)
    return worst


def export_onnx(model: DualTowerWithFC, version_dir: str | Path, *, int8: bool = True) -> Path:
    """Write `<version_dir>/onnx/` for `model`, which must be the version stored in `version_dir`."""
    version_dir = Path(version_dir)
    version = read_config(version_dir)["version"]
    if model_version(model) != version:
        raise ArtifactError(f"{version_dir}: the model given is not version {version}")
    if unsupported := unsupported_backbone(model):
        raise ArtifactError(
            f"ONNX export supports a Transformer + mean Pooling (+ Normalize) backbone, not {unsupported}"
        )
    # Exported from a CPU copy: the graph is the same on every device; the caller's model stays as is.
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    cpu_model.device_name = "cpu"
    # Plain attention rather than SDPA's traced decomposition: the same numbers, faster on CPU.
    transformer: Any = cpu_model.backbone[0].auto_model
    transformer.set_attn_implementation("eager")
    staging = Path(tempfile.mkdtemp(prefix=".onnx-", dir=version_dir))
    try:
        _write_export(cpu_model, version, staging / ONNX_DIR, int8)
        if (version_dir / ONNX_DIR).exists():  # an earlier export (without int8, or --force)
            os.replace(version_dir / ONNX_DIR, staging / "replaced")
        os.replace(staging / ONNX_DIR, version_dir / ONNX_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        cosine = check_export(cpu_model, version_dir)
    except BaseException:
        shutil.rmtree(version_dir / ONNX_DIR, ignore_errors=True)
        raise
    log.info("exported version %s to ONNX (cosine to PyTorch >= %.5f)", version, cosine)
    return version_dir / ONNX_DIR


def is_exported(version_dir: Path, int8: bool) -> bool:
    """Whether the version has its ONNX export, with the int8 graphs of the current recipe if `int8`."""
    return has_onnx(version_dir) and (not int8 or has_onnx(version_dir, "int8"))


def export_published(
    roots: Sequence[str | Path], version: str, *, force: bool = False, int8: bool = True
) -> Path:
    """Export a published version that lacks ONNX or current int8 graphs (any, with `force`)."""
    directory = find_version(version, roots)
    if is_exported(directory, int8) and not force:
        log.info("version %s already has an ONNX export in %s", version, directory / ONNX_DIR)
        return directory / ONNX_DIR
    return export_onnx(load(directory, device="cpu"), directory, int8=int8)


def publish(
    model: DualTowerWithFC,
    root: str | Path,
    metadata: dict[str, Any] | None = None,
    *,
    onnx: bool = True,
    int8: bool = True,
) -> str:
    """Write `root/<version>/` (with its ONNX export unless `onnx=False`, int8 graphs unless
    `int8=False`), then point `root/LATEST` at it; return the version. Both appear atomically
    (renamed into place), so readers never see a half-written version."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        version = save(model, staging, metadata)
        target = root / version
        if target.exists():
            log.info("version %s already published; reusing it", version)
            shutil.rmtree(staging)
            if onnx and not is_exported(target, int8):
                export_onnx(model, target, int8=int8)
        else:
            if onnx:
                export_onnx(model, staging, int8=int8)
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer = root / f".{LATEST_FILE}.{os.getpid()}.tmp"
    pointer.write_text(version + "\n")
    os.replace(pointer, root / LATEST_FILE)
    return version


def publish_base(
    out: str | Path, base_model: str = PACKAGED_BASE_MODEL, *, onnx: bool = True, int8: bool = True
) -> str:
    """Publish the untrained model on `base_model`, with its ONNX export unless `onnx=False`."""
    model = DualTowerWithFC(ModelConfig(base_model=base_model), device="cpu")
    return publish(model, out, {"base": True}, onnx=onnx, int8=int8)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twotower.engine.export", description=__doc__)
    parser.add_argument("--weights-dir", type=Path, default=Path("weights"))
    parser.add_argument("--version", help="published version to export (default: LATEST)")
    parser.add_argument("--force", action="store_true", help="export again even if one exists")
    parser.add_argument("--base", action="store_true", help="publish the untrained base model with ONNX")
    parser.add_argument("--base-model", default=PACKAGED_BASE_MODEL)
    parser.add_argument("--out", type=Path, help="with --base: the weights directory to publish into")
    int8_help = "write the int8 graphs the services run by default, or add them to an export (default: yes)"
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True, help=int8_help)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.base:
        out = args.out or args.weights_dir
        base = publish_base(out, args.base_model, int8=args.int8)
        log.info("published base model %s as version %s in %s (with ONNX)", args.base_model, base, out)
        return 0
    version: str | None = args.version or latest_version(args.weights_dir)
    if version is None:
        parser.error(f"nothing published in {args.weights_dir}; give --version, or --base to publish one")
    path = export_published([args.weights_dir], version, force=args.force, int8=args.int8)
    log.info("version %s: ONNX export in %s", version, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
