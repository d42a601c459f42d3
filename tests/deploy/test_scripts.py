"""deploy/ensure-env.sh (used by `make up` and `make run`): .env from .env.example, fresh key, never overwritten."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_env_file_gets_a_fresh_secret_key_and_is_kept(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "ensure-env.sh", tmp_path / "deploy")
    shutil.copy(ROOT / ".env.example", tmp_path)
    script = str(tmp_path / "deploy" / "ensure-env.sh")

    subprocess.run([script], check=True, capture_output=True)
    env = (tmp_path / ".env").read_text()
    (key,) = re.findall(r"^INGEST_API_KEY=(.*)$", env, re.MULTILINE)
    assert re.fullmatch(r"[0-9a-f]{48}", key)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    # Everything else is .env.example's.
    assert env.replace(key, "") == (ROOT / ".env.example").read_text()

    subprocess.run([script], check=True, capture_output=True)
    assert (tmp_path / ".env").read_text() == env  # an existing .env is never touched

    (tmp_path / ".env").unlink()
    subprocess.run([script], check=True, capture_output=True)
    assert key not in (tmp_path / ".env").read_text()  # a new key each time
