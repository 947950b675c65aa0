import hashlib
from contextlib import contextmanager
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


@contextmanager
def gpu_and_cpu_workers():
    """A cluster of one worker started with ``--resources GPU=1`` and one plain worker (a separate process):
    yields (client, the GPU worker's address) to check where GPU stages run."""
    import subprocess
    import sys
    import time

    from distributed import Client

    from tomoflow.engine import gpu_workers, local_cluster

    with local_cluster(1, dashboard=False, resources={"GPU": 1}) as cluster, Client(cluster) as client:
        plain = subprocess.Popen([sys.executable, "-m", "dask", "worker", cluster.scheduler_address, "--nthreads",
                                  "1", "--no-dashboard", "--host", "127.0.0.1"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
                time.sleep(0.2)
            gpus = gpu_workers(client)
            assert len(client.scheduler_info()["workers"]) == 2 and len(gpus) == 1
            yield client, gpus
        finally:
            plain.terminate()
            plain.wait(timeout=30)
