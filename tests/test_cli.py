"""The command line: help, info, imports and exports, and the demo."""

import json
import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from tomoflow.store import Store, create_particle_set
from conftest import run_cli, write_mrc


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "tomoflow", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("info", "import-tomogram", "export-mrc", "export-star", "import-star", "demo"):
        assert cmd in out


def test_import_info_export(tmp_path, capsys, volume, rng):
    src = write_mrc(tmp_path / "tomo_a.mrc", volume, voxel_size=12.0)
    store = tmp_path / "p.zarr"
    code, out, _ = run_cli(capsys, "import-tomogram", store, src, "--tilt-range", "-50", "50", "--chunk", "16")
    assert code == 0 and "tomogram 'tomo_a': 60 x 50 x 40" in out
    s = Store.open(store)
    ps = create_particle_set(s, "set1", {"tomogram": ["tomo_a"] * 300, "x": np.zeros(300)}, box_size=8, chunk=100,
                             voxel_size=12.0, class_names=["ribosome", "empty"])
    v = rng.normal(size=(100, 8, 8, 8)).astype(np.float32)
    ps.write_volumes(100, v)
    rec = s.stage("features.set1", ps.n_chunks)
    rec.mark_done(0)
    s.write_map("avg", rng.normal(size=(2, 8, 8, 8)).astype(np.float32), 12.0)

    code, out, _ = run_cli(capsys, "info", store)
    assert code == 0
    assert "tomo_a: 60 x 50 x 40 (x, y, z), 12 A/voxel, float32, 3 levels" in out and "tilt -50..50 deg" in out
    assert "set1: 300 particles, box 8^3 float32" in out and "1/3 chunks of 100 written" in out
    assert "classes: ribosome, empty" in out and "features.set1: 1/3 chunks done (incomplete)" in out
    code, out, _ = run_cli(capsys, "info", store, "--json")
    info = json.loads(out)
    assert info["tomograms"][0]["shape_zyx"] == [40, 50, 60] and info["stages"][0]["done"] == 1

    assert run_cli(capsys, "export-mrc", store, "--tomogram", "tomo_a", "--level", "1", "-o", tmp_path / "b.mrc")[0] == 0
    with mrcfile.open(tmp_path / "b.mrc") as m:
        assert m.data.shape == (20, 25, 30) and m.voxel_size.x == pytest.approx(24.0)
    assert run_cli(capsys, "export-mrc", store, "--particles", "set1", "--index", "105", "-o", tmp_path / "p.mrc")[0] == 0
    with mrcfile.open(tmp_path / "p.mrc") as m:
        assert np.array_equal(m.data, v[5])
    code, _, err = run_cli(capsys, "export-mrc", store, "--map", "avg", "-o", tmp_path / "m.mrc")
    assert code == 2 and "choose one with --index" in err
    assert run_cli(capsys, "export-mrc", store, "--map", "avg", "--index", "1", "-o", tmp_path / "m.mrc")[0] == 0
