"""RIF-SVM baseline: spherical-harmonic shell powers are rotation-invariant (and translation-invariant in
Fourier space), tell structures apart, and the SVM classifies a simulated set on the table's split."""

import numpy as np
import pytest

from tomoflow.kernels.geometry import rotate_volume
from tomoflow.kernels.rotations import random_rotations
from tomoflow.kernels.rif import rif_features
from tomoflow.ops.rif import compute_rif, svm_classify
from tomoflow.params import RifParams
from tomoflow.simulate.density import density_map
from tomoflow.simulate.structures import resolve_structure
from tomoflow.ops.simulate import simulate_dataset
from tomoflow.params import DatasetSpec
from tomoflow.store import ParticleSet, Store
from tomoflow.ops.train import assign_split
from conftest import run_cli


@pytest.fixture(scope="module")
def maps():
    return {s: density_map(resolve_structure(s), 32, 9.2, 18.4) for s in ("4v8r", "6wg6", "3enl")}


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("space", ["fourier", "real"])
def test_features_of_rotated_copies_match_and_differ_between_structures(maps, space):
    p = RifParams(space=space)
    rots = random_rotations(4, np.random.default_rng(7))
    for name, m in maps.items():
        f = rif_features(m, p)
        assert max(_rel(rif_features(rotate_volume(m, A, order=3), p), f) for A in rots) < 0.02
        assert min(_rel(rif_features(o, p), f) for k, o in maps.items() if k != name) > 0.15


def test_fourier_features_ignore_shifts_and_real_ones_do_not(maps):
    m = maps["4v8r"]
    shifted = np.roll(m, (3, -2, 4), axis=(0, 1, 2))
    assert _rel(rif_features(shifted), rif_features(m)) < 1e-5
    assert _rel(rif_features(shifted, RifParams(space="real")), rif_features(m, RifParams(space="real"))) > 0.1


def test_rif_svm_on_a_simulated_set_and_cli(tmp_path, capsys):
    store = Store.create(tmp_path / "s.zarr")
    spec = DatasetSpec(classes=("4v8r", "6wg6", "3enl"), per_class=24, snrs=(10.0,), box=24, voxel_size=9.2,
                       resolution=18.4, seed=2)
    simulate_dataset(store, "d", spec, chunk=32)
    ps = ParticleSet(store, "d")
    assign_split(ps, 0.5, seed=1)
    r = compute_rif(store, "d", progress=False)
    assert r["computed"] == ps.n_chunks and ps.array("rif").shape == (ps.n, r["features"])
    s = svm_classify(store, "d")
    assert s["n_train"] == s["n_test"] == 48
    assert s["accuracy"] > 0.9  # four classes (with empty): chance is 0.25; measured 1.0
    pred = np.asarray(ps.array("rif_svm_class")[:])
    assert ((pred >= 0) & (pred < 4)).all()
    code, out, _ = run_cli(capsys, "rif-svm", store.path, "d", "--workers", "0")
    assert code == 0 and "RBF SVM" in out and "trained on 48" in out and "0 chunks" not in out
    code, _, err = run_cli(capsys, "rif-svm", store.path, "missing", "--workers", "0")
    assert code == 2 and "no particle set named 'missing'" in err
