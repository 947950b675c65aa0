"""DoG picking, extraction and pick evaluation."""

import numpy as np
import pandas as pd
import pytest

from tomoflow.kernels.evaluate import evaluate_picks, match
from tomoflow.ops.extraction import extract
from tomoflow.kernels.peaks import non_maximum_suppression
from tomoflow.ops.pick import pick_dog
from tomoflow.params import DogParams
from tomoflow.store import ParticleSet, Store, create_particle_set, import_mrc
from conftest import run_cli, snapshot, write_mrc

VS = 10.0


def blobs(shape, centres, sigma=2.5, amplitude=1.0, noise=0.0, seed=0):
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    v = np.zeros(shape, np.float32)
    for z, y, x in centres:
        v += amplitude * np.exp(-((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    return v + noise * np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# blobs centred on chunk borders (chunk 32): on faces, an edge and a corner
BORDER = [(32, 20, 20), (20, 32, 45), (45, 45, 32), (32, 32, 12), (31.5, 31.5, 31.5), (12, 50, 50)]


def _store(tmp_path, vol, chunk, name="t"):
    s = Store.create(tmp_path / f"s{chunk}.zarr")
    import_mrc(s, write_mrc(tmp_path / f"{name}.mrc", vol, voxel_size=VS), chunk=chunk)
    return s


def _picks_zyx(s, name):
    t = ParticleSet(s, name).table_frame()
    return t[["z", "y", "x"]].to_numpy() / VS


@pytest.mark.parametrize("polarity, sign", [("bright", 1.0), ("dark", -1.0)])
def test_particles_on_chunk_borders_are_found_exactly_once(tmp_path, polarity, sign):
    vol = sign * blobs((64, 64, 64), BORDER, noise=0.02)
    s = _store(tmp_path, vol, 32)
    r = pick_dog(s, "t", "p", DogParams(sigma_A=25, polarity=polarity, threshold=3, min_distance_A=80, level=0))
    assert r["blocks"] == 8 and r["picked"] == len(BORDER)
    got = _picks_zyx(s, "p")
    for c in BORDER:
        assert np.sum(np.linalg.norm(got - c, axis=1) <= 1.0) == 1  # each blob once, within a voxel


def test_picks_do_not_depend_on_chunking(tmp_path):
    rng = np.random.default_rng(5)
    centres = rng.uniform(6, 58, size=(25, 3))
    vol = blobs((64, 64, 64), centres, noise=0.3, seed=1)
    results = []
    for chunk in (16, 32, 64):
        s = _store(tmp_path, vol, chunk)
        pick_dog(s, "t", "p", DogParams(sigma_A=25, polarity="bright", threshold=2, min_distance_A=60, level=0))
        results.append(ParticleSet(s, "p").table_frame()[["x", "y", "z", "score"]].to_numpy())
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_non_maximum_suppression():
    pts = np.array([[0, 0, 0], [0, 0, 3], [0, 0, 7], [10, 0, 0]], float)
    keep = non_maximum_suppression(pts, np.array([1.0, 2.0, 0.5, 0.1]), 5.0)
    assert sorted(keep.tolist()) == [1, 3]  # 1 beats 0 and 2 (within 5), 3 is far


def test_dog_picks_simulated_crowded_tomogram(tmp_path):
    """Real data: a crowded simulated tomogram at SNR 0.1, +-60 degrees, large complexes only."""
    from tomoflow.ops.simulate import simulate_tomogram
    from tomoflow.params import CrowdedSpec

    s = Store.create(tmp_path / "c.zarr")
    spec = CrowdedSpec(classes=("4v8r", "5cvz"), shape=(64, 160, 160), n_particles=14, snr=0.1, box=32, seed=2)
    simulate_tomogram(s, "c", spec)
    pick_dog(s, "c", "p", DogParams(level=1))
    truth = ParticleSet(s, "c_truth")
    res = evaluate_picks(ParticleSet(s, "p").table_frame(), truth.table_frame(), 80.0, truth.class_names)
    assert res["n_truth"] >= 10 and res["f1"] >= 0.85, res


def test_evaluation_counts():
    truth = pd.DataFrame({"tomogram": ["a"] * 4 + ["b"], "x": [0, 100, 200, 300, 0.0], "y": 0.0, "z": 0.0,
                          "true_class": [0, 0, 1, 1, 1]})
    pred = pd.DataFrame({"tomogram": ["a", "a", "a", "b", "a"], "x": [5, 104, 330, 3, 250.0], "y": 0.0, "z": 0.0})
    r = evaluate_picks(pred, truth, 20.0, ["big", "small"])
    assert r["true_positives"] == 3  # (5,0) (104,100) in a; (3,0) in b; 330 and 250 are > 20 from 300 and 200
    assert r["precision"] == pytest.approx(3 / 5) and r["recall"] == pytest.approx(3 / 5)
    assert r["per_class"] == {"big": {"n": 2, "recall": 1.0}, "small": {"n": 3, "recall": pytest.approx(1 / 3)}}
    pi, ti = match(np.array([[0, 0, 0.0], [1, 0, 0]]), np.array([[0.5, 0, 0.0]]), 1.0)
    assert len(pi) == 1  # one-to-one


def test_extraction_boxes_edges_and_levels(tmp_path):
    vol = np.arange(40 * 48 * 56, dtype=np.float32).reshape(40, 48, 56)
    s = _store(tmp_path, vol, 16)
    zyx = np.array([[20, 24, 28], [3, 24, 28], [20, 46, 10]])
    create_particle_set(s, "picks", {"tomogram": ["t"] * 3, "x": zyx[:, 2] * VS, "y": zyx[:, 1] * VS,
                                     "z": zyx[:, 0] * VS, "true_class": [0, 1, 2]})
    r = extract(s, "picks", "boxes", 10, edge="drop")
    assert (r["extracted"], r["dropped_at_edge"]) == (1, 2)
    box = ParticleSet(s, "boxes").read_volumes(slice(0, 1))[0]
    assert np.array_equal(box, vol[15:25, 19:29, 23:33])  # the centre voxel sits at box index 10 // 2
    extract(s, "picks", "padded", 10, edge="pad")
    b = ParticleSet(s, "padded").read_volumes(slice(1, 2))[0]
    inside = vol[0:8, 19:29, 23:33]
    assert np.array_equal(b[2:], inside) and np.allclose(b[:2], inside.mean())
    extract(s, "picks", "binned", 6, level=1, edge="drop")
    from tomoflow.store import open_level

    lb = ParticleSet(s, "binned").read_volumes(slice(0, 1))[0]
    assert np.array_equal(lb, open_level(s, "t", 1)[7:13, 9:15, 11:17])  # (20, 24, 28) -> ~(9.75, 11.75, 13.75)
    assert ParticleSet(s, "binned").voxel_size == 2 * VS


def test_cli_pick_extract_evaluate(tmp_path, capsys):
    vol = -blobs((64, 64, 64), BORDER, noise=0.02)
    s = _store(tmp_path, vol, 32)
    zyx = np.array(BORDER)
    create_particle_set(s, "truth", {"tomogram": ["t"] * len(zyx), "x": zyx[:, 2] * VS, "y": zyx[:, 1] * VS,
                                     "z": zyx[:, 0] * VS, "true_class": [0, 0, 0, 1, 1, 1]}, class_names=["a", "b"])
    code, out, _ = run_cli(capsys, "pick", "dog", s.path, "t", "--out", "p", "--sigma", "25", "--level", "0",
                           "--threshold", "3", "--min-distance", "80", "--workers", "0")
    assert code == 0 and f"picked {len(BORDER)} particles" in out
    code, out, _ = run_cli(capsys, "evaluate", "picks", s.path, "--picks", "p", "--truth", "truth", "--tolerance", "15")
    assert code == 0 and "precision 1.000, recall 1.000, F1 1.000" in out and "b: recall 1.000 of 3" in out
    code, out, _ = run_cli(capsys, "extract", s.path, "p", "--out", "boxes", "--box", "16", "--workers", "0")
    assert code == 0 and "dropped at the tomogram edge" in out
    before = snapshot(s.path)
    code, _, err = run_cli(capsys, "pick", "dog", s.path, "nope", "--out", "q", "--workers", "0")
    assert code == 2 and "no tomogram named 'nope'" in err and snapshot(s.path) == before
