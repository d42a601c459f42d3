"""What each image installs and copies is enough to run it. As the Dockerfile's build stage does, the
project is installed (`pip install --no-deps --no-build-isolation`) from exactly the files that stage
COPYs, here into a folder standing in for the image's site-packages; the final stage's COPYs are laid
out under its WORKDIR; and the image's entry points import and build from there alone, with none of
the repository on the path. (make compose-test builds and runs the real images.)"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.dockerfiles import exec_form, instructions
from tests.deploy.locks import LOCKS, canonical, read_lock

# Each image's install laid out with pip and its entry points run: `make test-stack`.
pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]


SERVICE_DOCKERFILE = ROOT / "deploy" / "service" / "Dockerfile"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def stages(dockerfile: Path, build_args: dict[str, str] | None = None) -> list[list[tuple[str, str]]]:
    """Each stage's instructions after its FROM."""
    steps = instructions(dockerfile, build_args)
    froms = [i for i, (kw, _) in enumerate(steps) if kw == "FROM"]
    assert len(froms) >= 2, f"{dockerfile}: expected build stages and a final stage"
    return [steps[a + 1 : b] for a, b in zip(froms, [*froms[1:], len(steps)], strict=True)]


def lay_out(steps: list[tuple[str, str]], into: Path) -> Path:
    """Lay out a stage's COPYs from the build context (the repository root) under `into`; returns
    the stage's WORKDIR inside it."""
    workdir = Path("/")
    for keyword, args in steps:
        if keyword == "WORKDIR":
            workdir = workdir / args
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, dest = args.split()
        target = into / (workdir / dest).relative_to("/")
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.whl", "*.egg-info")
                shutil.copytree(src, target, dirs_exist_ok=True, ignore=ignore)
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target / src.name)
            else:
                shutil.copy(src, target)
    (into / workdir.relative_to("/")).mkdir(parents=True, exist_ok=True)  # WORKDIR creates it
    return into / workdir.relative_to("/")


def install_project(dockerfile: Path, tmp_path: Path, build_args: dict[str, str] | None = None) -> Path:
    """The final stage's project install (`pip install --no-deps ... <dir>`), from the files that
    stage COPYs, into tmp_path/site; returns that folder."""
    steps = stages(dockerfile, build_args)[-1]
    context = tmp_path / "build"
    lay_out([(kw, a) for kw, a in steps if kw == "COPY"], context)
    (run,) = [args for kw, args in steps if kw == "RUN" and "--no-deps" in args]
    argv = shlex.split(run.split("&&")[0])
    assert argv[:2] == ["pip", "install"] and "--no-build-isolation" in argv, run
    source = context / argv[-1].lstrip("/")
    assert (source / "pyproject.toml").is_file(), f"{dockerfile}: pyproject.toml is not copied to {argv[-1]}"
    site = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            *argv[2:-1],
            "--no-compile",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return site


def run_in(site: Path, app: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # `site` stands in for the image's site-packages: first on the path, the repository nowhere.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *argv], cwd=app, env=env, capture_output=True, text=True, timeout=300
    )


LOADED_PROJECT_FILES = (
    "import json, os\n"
    "files = [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]\n"
    "site = os.environ['PYTHONPATH'] + '/'\n"
    "print('PROJECT', json.dumps(sorted(f for f in files if f.startswith(site))))\n"
)


def module_level_imports(path: Path) -> set[str]:
    """Top-level names a module imports when it is loaded (not inside functions or classes)."""
    names: set[str] = set()
    pending = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.If | ast.Try | ast.With):
            pending += [n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)]
            pending += [s for h in getattr(node, "handlers", []) for s in h.body]
    return names


def distributions_loaded_by(output: str) -> set[str]:
    """The distributions the project's loaded modules import at module level."""
    files = json.loads(output.split("PROJECT ", 1)[1].splitlines()[0])
    owners = importlib.metadata.packages_distributions()
    names = set().union(*(module_level_imports(Path(f)) for f in files)) - sys.stdlib_module_names
    found = {canonical(d) for name in names for d in owners.get(name, [])}
    # Here the full chromadb provides the module; the images install the thin client.
    return {"chromadb-client" if d == "chromadb" else d for d in found} - {"twotower-search"}


NOT_FROM_THE_REPOSITORY = (
    "import sys\n"
    "for name in ('twotower', 'services'):\n"
    f"    assert not sys.modules[name].__file__.startswith({str(ROOT)!r} + '/'), sys.modules[name].__file__\n"
)


@pytest.mark.parametrize("name", ["query", "ingest"])
def test_service_image_builds_its_app_and_gunicorn_config(name: str, tmp_path: Path) -> None:
    build = COMPOSE[name]["build"]  # the Dockerfile and build arguments compose builds the image with
    dockerfile, args = ROOT / build["dockerfile"], {k: str(v) for k, v in build["args"].items()}
    site = install_project(dockerfile, tmp_path, args)
    app = lay_out(stages(dockerfile, args)[-1], tmp_path / "image")
    conf, target = COMPOSE[name]["command"][2:4]
    assert (app / conf).is_file()
    module, factory = target.removesuffix("()").split(":")
    code = (
        "import runpy\n"
        f"opts = runpy.run_path({conf!r})\n"
        "assert opts['worker_class'] == 'services.common.worker.ServiceWorker', opts['worker_class']\n"
        # The worker runs on uvicorn's C parser and uvloop: the image must have them.
        "import httptools, uvloop\n"
        "from services.common.worker import ServiceWorker\n"
        f"from {module} import {factory}\n"
        f"app = {factory}()\n"
        + NOT_FROM_THE_REPOSITORY
        + LOADED_PROJECT_FILES
        + "print(opts['bind'], type(app).__name__)\n"
    )
    result = run_in(site, app, "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    # The last line: a library may print a first-run notice before it.
    assert result.stdout.splitlines()[-1].split() == [
        f"0.0.0.0:{8000 if name == 'query' else 8001}",
        "FastAPI",
    ]
    # What the service's own modules import at start is in the image's lock: a package locked only
    # for training would crash the container, yet pass here in the dev venv without this check.
    missing = distributions_loaded_by(result.stdout) - set(read_lock(LOCKS[name]))
    assert not missing, f"{name} imports {sorted(missing)} at start, which requirements/{name}.lock lacks"
    other = "ingest" if name == "query" else "query"
    assert not (site / "services" / other).exists()  # each image carries its own service only


def test_each_service_image_carries_only_the_runtimes_its_defaults_use() -> None:
    """Query runs ONNX Runtime; ingestion's documents run on OpenVINO by default, and the onnx engine
    imports ONNX Runtime; neither carries PyTorch."""
    runtimes = {"onnxruntime", "openvino", "torch"}
    assert runtimes & set(read_lock(LOCKS["query"])) == {"onnxruntime"}
    assert runtimes & set(read_lock(LOCKS["ingest"])) == {"onnxruntime", "openvino"}


TOOLS = [
    "training.train",
    "training.evaluate",
    "training.eval_served",
    "ops.rollout",
    "services.loader.cli",
]


def test_trainer_image_carries_every_tool(tmp_path: Path) -> None:
    dockerfile = ROOT / "deploy" / "trainer" / "Dockerfile"
    site = install_project(dockerfile, tmp_path)
    app = lay_out(stages(dockerfile)[-1], tmp_path / "image")
    cmd = exec_form(dockerfile, "CMD")
    assert cmd[:3] == ["python", "-m", "training.train"]
    code = (
        "import importlib\n"
        f"mods = [importlib.import_module(m) for m in {TOOLS!r}]\n"
        "from training.train import parse_args\n"
        f"parse_args({cmd[3:]!r})\n"  # the image's own arguments parse
        + NOT_FROM_THE_REPOSITORY
        + LOADED_PROJECT_FILES
        + "print(len(mods))\n"
    )
    result = run_in(site, app, "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == str(len(TOOLS))
    missing = distributions_loaded_by(result.stdout) - set(read_lock(LOCKS["train"]))
    assert not missing, f"the tools import {sorted(missing)}, which requirements/train.lock lacks"
