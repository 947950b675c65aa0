"""A separate virtual environment for tools that cannot be installed beside tomoflow (copick 1.x and zarr 2).

Built once from ``tests/interop-requirements.txt`` into ``.venv-interop`` at the repository root (about 45 s and
800 MB from PyPI) and reused while the requirements are unchanged. Tests call :func:`run_python` to run a short
script with that interpreter and read its JSON answer. Without network the tests skip, except under CI
(``CI=true``), where a missing interpreter is a failure: CI must never pass by skipping them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = Path(__file__).resolve().parent / "interop-requirements.txt"
VENV = REPO / ".venv-interop"


def _digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]


def _give_up(why: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"interop environment unavailable under CI: {why}")
    pytest.skip(f"interop environment unavailable: {why}")


def interop_python() -> Path:
    """The interop interpreter, built on first use (a file lock keeps parallel test processes from racing)."""
    import fcntl

    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements-digest"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(REPO / ".venv-interop.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == _digest():
            return python
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, capture_output=True,
                           timeout=300)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True,
                           capture_output=True, text=True, timeout=900)
        except subprocess.CalledProcessError as e:
            _give_up(f"pip failed: {(e.stderr or '')[-500:]}")
        except (subprocess.TimeoutExpired, OSError) as e:
            _give_up(str(e))
        stamp.write_text(_digest())
    return python


def run_python(script: str, *args, timeout: float = 300) -> object:
    """Run ``script`` with the interop interpreter (arguments in ``sys.argv[1:]``); it prints one JSON value last."""
    python = interop_python()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run([str(python), "-c", script, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if r.returncode != 0:
        raise AssertionError(f"interop script failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])
