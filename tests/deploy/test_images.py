"""What each image's final stage copies is enough to run it: the files its Dockerfile COPYs are laid
out as in the image (WORKDIR /app, PYTHONPATH=/app) and the image's entry points import and build
from that tree alone, with none of the rest of the repository on the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import exec_form, instructions

ROOT = Path(__file__).resolve().parents[2]


def image_tree(dockerfile: Path, into: Path) -> Path:
    """Lay out the final stage's COPYs from the build context (the repository root) under `into`;
    returns the WORKDIR inside it."""
    steps = instructions(dockerfile)
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    workdir = Path("/")
    for keyword, args in steps[last_from + 1 :]:
        if keyword == "WORKDIR":
            workdir = workdir / args
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, dest = args.split()
        target = into / (workdir / dest).relative_to("/")
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target / src.name)
            else:
                shutil.copy(src, target)
    return into / workdir.relative_to("/")


def run_in(app: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(app)}
    return subprocess.run(
        [sys.executable, *argv], cwd=app, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("name", ["query", "ingest"])
def test_service_image_builds_its_app_and_gunicorn_config(name: str, tmp_path: Path) -> None:
    dockerfile = ROOT / "deploy" / name / "Dockerfile"
    app = image_tree(dockerfile, tmp_path)
    cmd = exec_form(dockerfile, "CMD")
    conf, target = cmd[2], cmd[3]
    assert (app / conf).is_file()
    module, factory = target.removesuffix("()").split(":")
    code = (
        "import runpy, sys\n"
        f"opts = runpy.run_path({conf!r})\n"
        "assert opts['worker_class'] == 'uvicorn_worker.UvicornWorker', opts['worker_class']\n"
        f"from {module} import {factory}\n"
        f"app = {factory}()\n"
        "assert not any(p.startswith(" + repr(str(ROOT)) + ") for p in sys.modules['services'].__path__)\n"
        "print(opts['bind'], type(app).__name__)\n"
    )
    result = run_in(app, "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    # The last line: a library may print a first-run notice before it.
    assert result.stdout.splitlines()[-1].split() == [
        f"0.0.0.0:{8000 if name == 'query' else 8001}",
        "FastAPI",
    ]
    other = "ingest" if name == "query" else "query"
    assert not (app / "services" / other).exists()  # each image carries its own service only


TOOLS = [
    "training.train",
    "training.evaluate",
    "training.eval_served",
    "training.reindex",
    "services.loader.cli",
]


def test_trainer_image_carries_every_tool(tmp_path: Path) -> None:
    dockerfile = ROOT / "deploy" / "trainer" / "Dockerfile"
    app = image_tree(dockerfile, tmp_path)
    cmd = exec_form(dockerfile, "CMD")
    assert cmd[:3] == ["python", "-m", "training.train"]
    code = (
        "import importlib\n"
        f"mods = [importlib.import_module(m) for m in {TOOLS!r}]\n"
        "from training.train import parse_args\n"
        f"parse_args({cmd[3:]!r})\n"  # the image's own arguments parse
        "print(len(mods))\n"
    )
    result = run_in(app, "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == str(len(TOOLS))
