"""The ONNX export's files: what `twotower.engine.export` writes and `onnx_engine` reads.

Standard library only, so that both import it. A version's export lives in `<version>/onnx/`:

    manifest.json      format, version, dim, max_seq_length, pad id, each file's sha256
    tokenizer.json     the backbone's tokenizer
    query.onnx         input_ids, attention_mask, token_type_ids -> embedding (unit length):
    document.onnx      backbone, mean pooling, normalize, the tower's head, normalize
    *.int8.onnx        the same graphs with most weight MatMuls int8 (`INT8_RECIPE`)
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from twotower.engine import TOWERS, Tower
from twotower.registry import ArtifactError, read_config

ONNX_DIR = "onnx"
MANIFEST_FILE = "manifest.json"
ONNX_FORMAT = "twotower-onnx/1"
TOKENIZER_FILE = "tokenizer.json"
Variant = Literal["fp32", "int8"]
# How the int8 graphs were quantized (in the manifest): 2 = weight MatMuls int8 but the first
# FP32_FFN_LAYERS layers' feed-forward down-projections. Another recipe's graphs count as missing.
INT8_RECIPE = 2
# The feed-forward down-projections take the widest activations (GELU's): int8 hurts most there.
FP32_FFN_LAYERS = 3
FFN_DOWN_PROJECTION = re.compile(r"/layer\.(\d+)/output/dense/MatMul$")


def kept_fp32(node_name: str) -> bool:
    """Whether an int8 graph of the current recipe keeps this weight MatMul in fp32."""
    match = FFN_DOWN_PROJECTION.search(node_name)
    return match is not None and int(match.group(1)) < FP32_FFN_LAYERS


def tower_file(tower: Tower, variant: Variant = "fp32") -> str:
    return f"{tower}.onnx" if variant == "fp32" else f"{tower}.{variant}.onnx"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_manifest(version_dir: str | Path) -> dict[str, Any]:
    """`<version>/onnx/manifest.json`, checked to belong to the version in `<version>/config.json`."""
    version_dir = Path(version_dir)
    path = version_dir / ONNX_DIR / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"{path}: missing: version {version_dir.name} has no ONNX export "
            f"(run `python -m twotower.engine.export --weights-dir {version_dir.parent} "
            f"--version {version_dir.name}`)"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != ONNX_FORMAT:
        raise ArtifactError(f"{path}: not a {ONNX_FORMAT} manifest")
    version = read_config(version_dir).get("version")
    if manifest.get("version") != version:
        raise ArtifactError(
            f"{path}: exported from version {manifest.get('version')!r}, but this is version {version!r}"
        )
    return manifest


def has_onnx(version_dir: str | Path, variant: Variant = "fp32") -> bool:
    """Whether the version was exported (with this variant's graphs)."""
    path = Path(version_dir) / ONNX_DIR / MANIFEST_FILE
    return path.is_file() and lists_variant(json.loads(path.read_text()), variant)


def lists_variant(manifest: dict[str, Any], variant: Variant) -> bool:
    """Whether the manifest lists both towers' graphs of `variant` (int8: of the current recipe)."""
    files = manifest.get("files", {})
    listed = all(tower_file(t, variant) in files for t in TOWERS)
    return listed and (variant != "int8" or manifest.get("int8_recipe") == INT8_RECIPE)


def verified_file(version_dir: Path, manifest: dict[str, Any], name: str) -> Path:
    """The path of an exported file whose content matches the manifest's sha256."""
    path = version_dir / ONNX_DIR / name
    expected = manifest.get("files", {}).get(name)
    if expected is None:
        raise ArtifactError(
            f"{version_dir / ONNX_DIR / MANIFEST_FILE}: lists no {name} (export again: "
            f"python -m twotower.engine.export --version {version_dir.name} --force)"
        )
    try:
        actual = sha256_file(path)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: missing") from exc
    if actual != expected:
        raise ArtifactError(f"{path}: sha256 {actual[:12]}… does not match the manifest ({expected[:12]}…)")
    return path
