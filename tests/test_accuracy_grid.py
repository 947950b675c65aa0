"""Seed 000 Table 2 machinery on a tiny grid: cells computed once and resumed, the table beside the paper's."""

import json

import pytest

pytest.importorskip("keras")

from tomoflow.accuracy_grid import GridParams, PAPER, bar, markdown_table, run_grid  # noqa: E402
from tomoflow.store import Store  # noqa: E402


def test_tiny_grid_runs_resumes_and_tabulates(tmp_path):
    store = Store.create(tmp_path / "g.zarr")
    p = GridParams(snrs=(1000.0, 0.5), tilts=(60.0,), structures=("6zu5", "3o21"), models=("dsrf3d",),
                   per_class=8, epochs=2, box=16, voxel_size=18.4, seed=1)
    cells = run_grid(store, p, tmp_path / "grid", log=lambda m: None)
    assert [(c["snr"], c["tilt"]) for c in cells] == [(1000.0, 60.0), (0.5, 60.0)]
    for c in cells:
        assert c["n"] == 24 and 0 <= c["dsrf3d"] <= 1 and 0 <= c["rif_svm"] <= 1
    assert cells[0]["rif_svm"] >= 0.75  # noise-free: the rotation-invariant baseline separates 3 classes
    again = run_grid(store, p, tmp_path / "grid", log=lambda m: (_ for _ in ()).throw(AssertionError(m)))
    assert again == json.loads((tmp_path / "grid" / "grid-cells.json").read_text())["cells"]  # nothing recomputed
    table = markdown_table(cells, ("dsrf3d",))
    assert f"({PAPER[(0.5, 60)][1]:.3f})" in table and table.count("\n") == 3
    b = bar(cells)
    assert b["dsrf3d_snr0.1_60"] is None and b["dsrf3d_bar_met"] is False
