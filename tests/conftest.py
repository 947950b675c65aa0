import hashlib
import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tomoflow.cli.main import main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def data_file(*parts) -> Path:
    """A small CC0 file vendored in tests/data (see tests/data/README.md); missing means a broken checkout."""
    p = DATA.joinpath(*parts)
    if not p.is_file():
        raise FileNotFoundError(f"test data file {p} is missing; it is part of the repository (tests/data)")
    return p


def snapshot(path) -> dict:
    """Every file and folder under ``path`` with a hash of its content (None for folders)."""
    path = Path(path)
    if not path.exists():
        return {}
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path) + "/"] = None
        for f in files:
            full = os.path.join(root, f)
            out[os.path.relpath(full, path)] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
    return out


def write_mrc(path, data, voxel_size=9.2, **header):
    with warnings.catch_warnings(), mrcfile.new(str(path), overwrite=True) as m:
        warnings.simplefilter("ignore")  # bad-input tests write NaN/Inf on purpose
        m.set_data(np.ascontiguousarray(data))
        if voxel_size is not None:
            m.voxel_size = voxel_size
        for k, v in header.items():
            setattr(m.header, k, v)
    return Path(path)


def run_cli(capsys, *args):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def volume(rng):
    return rng.normal(size=(40, 50, 60)).astype(np.float32)
