"""Simulated datasets and crowded tomograms in the store: determinism, tables, resume, ground truth."""

import numpy as np
import pytest

from tomoflow.kernels.geometry import relion_matrix
from tomoflow.ops.simulate import simulate_tomogram
from tomoflow.params import CrowdedSpec
from tomoflow.simulate.crowded import mass_radius, _densities
from tomoflow.ops.simulate import simulate_dataset
from tomoflow.params import DatasetSpec
from tomoflow.store import ParticleSet, Store, open_level
from conftest import run_cli, snapshot

SPEC = DatasetSpec(classes=("4v8r", "3o21"), per_class=6, snrs=(0.5, 0.1), tilt_ranges=(60.0, 40.0), box=24,
                   seed=7)


def _volumes(store, name):
    ps = ParticleSet(store, name)
    return ps.read_volumes(slice(0, ps.n))


def test_same_seed_same_bits_whatever_the_chunking_and_workers(tmp_path):
    from distributed import Client

    from tomoflow.engine import local_cluster

    a = Store.create(tmp_path / "a.zarr")
    simulate_dataset(a, "d", SPEC, chunk=5)
    b = Store.create(tmp_path / "b.zarr")
    with local_cluster(2, dashboard=False) as cluster, Client(cluster) as client:
        run = simulate_dataset(b, "d", SPEC, chunk=16, client=client)
    assert run.computed == 5
    va, vb = _volumes(a, "d"), _volumes(b, "d")
    assert va.shape == (SPEC.n, 24, 24, 24) == (72, 24, 24, 24)
    assert va.tobytes() == vb.tobytes()
    c = Store.create(tmp_path / "c.zarr")
    from dataclasses import replace

    simulate_dataset(c, "d", replace(SPEC, seed=8), chunk=16)
    assert not np.array_equal(_volumes(c, "d"), va)


def test_table_records_every_parameter(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    simulate_dataset(store, "d", SPEC, chunk=16)
    ps = ParticleSet(store, "d")
    assert ps.class_names == ["4v8r", "3o21", "empty"] and ps.voxel_size == SPEC.voxel_size
    t = ps.table_frame()
    assert np.bincount(t.true_class) .tolist() == [24, 24, 24]
    assert sorted(set(t.snr)) == [0.1, 0.5] and sorted(set(t.tilt_max)) == [40.0, 60.0]
    assert (t.tilt_min == -t.tilt_max).all()
    shift = np.sqrt(t.true_shift_x**2 + t.true_shift_y**2 + t.true_shift_z**2) / SPEC.voxel_size
    assert shift.max() <= 4.0 + 1e-9 and shift.min() >= 0
    assert np.allclose(np.linalg.det(relion_matrix(t.true_rot, t.true_tilt, t.true_psi)), 1.0)
    # the truth is in the answer key only: the pose columns methods read are left at "no pose" (0)
    assert (t[["rot", "tilt", "psi"]].to_numpy() == 0).all() and "shift_x" not in t.columns
    assert ps.info["simulation"]["spec"] == SPEC.to_json()


def test_empty_class_is_noise_at_the_dataset_snr(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    simulate_dataset(store, "d", SPEC, chunk=16)
    ps = ParticleSet(store, "d")
    t = ps.table_frame()
    v = _volumes(store, "d").reshape(len(t), -1)
    refvar = ps.info["simulation"]["reference_variance"]
    empty = t.index[t.true_class == 2]
    for i in empty:
        assert v[i].var() == pytest.approx(refvar[str(t.tilt_max[i])] / t.snr[i], rel=1e-4)
    # particles of one class at SNR 0.5 resemble each other more than empty ones do: the mean pairwise correlation
    # of the low-passed volumes (random orientations and shifts leave the low resolutions alike) is about 0.45
    # (4v8r) and 0.35 (3o21) against 0.0 for the empty class. Fails if the signal is left out of the volume
    # (`vol = scale * noise` in TiltSeriesSimulator.simulate) or every particle gets the same noise.
    from scipy.ndimage import gaussian_filter

    def resemblance(rows):
        c = np.corrcoef([gaussian_filter(v[i].reshape((SPEC.box,) * 3), 2.0).ravel() for i in rows])
        return c[np.triu_indices(len(rows), 1)].mean()

    noise = resemblance(t.index[(t.true_class == 2) & (t.snr == 0.5)])
    for c in (0, 1):
        assert resemblance(t.index[(t.true_class == c) & (t.snr == 0.5)]) > noise + 0.2, c
    assert abs(noise) < 0.05
    assert abs(v[empty].mean()) < 0.2 * v[empty].std()


def test_rerun_resumes_and_other_specs_are_refused(tmp_path, capsys):
    store = Store.create(tmp_path / "s.zarr")
    r1 = simulate_dataset(store, "d", SPEC, chunk=16)
    r2 = simulate_dataset(store, "d", SPEC, chunk=16)
    assert (r1.computed, r2.computed, r2.skipped) == (5, 0, 5)
    from dataclasses import replace
    from tomoflow.errors import StoreError

    with pytest.raises(StoreError, match="another simulation spec"):
        simulate_dataset(store, "d", replace(SPEC, per_class=3), chunk=16)


def test_cli_unknown_structure_touches_nothing(tmp_path, capsys):
    store = Store.create(tmp_path / "s.zarr")
    before = snapshot(store.path)
    code, _, err = run_cli(capsys, "simulate", "subtomograms", store.path, "--set", "x", "--structures", "4v8r",
                           "no_such_thing", "--workers", "0")
    assert code == 2 and "no_such_thing: neither an embedded structure" in err
    assert snapshot(store.path) == before


def test_cli_simulate_subtomograms(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "simulate", "subtomograms", tmp_path / "s.zarr", "--set", "x", "--structures",
                           "3o21", "--per-class", "3", "--snr", "inf", "--box", "16", "--workers", "0")
    assert code == 0 and "6 subtomograms of 16^3 (2 classes" in out
    v = _volumes(Store.open(tmp_path / "s.zarr"), "x")
    assert v[:3].std() > 0 and np.all(v[3:] == 0)  # noise-free: the empty class is empty


def test_crowded_tomogram(tmp_path):
    spec = CrowdedSpec(classes=("4v8r", "3o21"), shape=(48, 96, 112), n_particles=12, snr=np.inf, box=24,
                       tilt_step=3.0, seed=3)
    store = Store.create(tmp_path / "s.zarr")
    info = simulate_tomogram(store, "crowd", spec)
    truth = ParticleSet(store, "crowd_truth")
    t = truth.table_frame()
    assert info["placed"] == len(t) >= 8
    assert truth.tomogram_geometry("crowd") == {"shape": [48, 96, 112], "voxel_size": spec.voxel_size}
    xyz = t[["x", "y", "z"]].to_numpy() / spec.voxel_size
    radii = np.array([mass_radius(d) for d in _densities(spec.to_json())])[t.true_class]
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=2)
    assert np.all(d[np.triu_indices(len(t), 1)] >= (radii[:, None] + radii[None])[np.triu_indices(len(t), 1)])
    assert np.all(xyz - radii[:, None] >= 0) and np.all(xyz + radii[:, None] <= [112, 96, 48])
    vol = open_level(store, "crowd")[...]
    assert vol.shape == (48, 96, 112) and store.attrs("tomograms", "crowd")["tilt_range"] == [-60.0, 60.0]
    idx = np.round(xyz[:, ::-1]).astype(int)
    at_particles = np.abs(vol[idx[:, 0], idx[:, 1], idx[:, 2]]).mean()
    rng = np.random.default_rng(0)
    probe = np.stack([rng.integers(0, s, 2000) for s in vol.shape], 1)
    far = np.min(np.linalg.norm(probe[:, None, ::-1] - xyz[None], axis=2), axis=1) > radii.max() + 3
    background = np.abs(vol[tuple(probe[far].T)])
    assert at_particles > 5 * background.mean()  # particles stand out where the truth says they are
    series = store.attrs("tiltseries", "crowd")
    assert len(series["angles"]) == 41 and series["noise_sigma"] == 0.0
    again = Store.create(tmp_path / "again.zarr")
    simulate_tomogram(again, "crowd", spec)
    assert np.array_equal(open_level(again, "crowd")[...], vol)  # deterministic from the seed
