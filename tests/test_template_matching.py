"""Template matching: rotation sampling, exact pose recovery, chunking independence, picking real data."""

import numpy as np
import pytest

from tomoflow.geometry import relion_matrix, rotate_volume
from tomoflow.store import ParticleSet, Store, import_mrc, open_level
from tomoflow.template_matching import (MatchParams, match_block, pick_template, prepared_templates,
                                        structure_template, uniform_rotations)
from conftest import run_cli, write_mrc


def _angle(a, b):
    return np.degrees(np.arccos(np.clip((np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


def test_rotation_sampling_is_uniform_and_fine_enough():
    rots = uniform_rotations(30)
    assert len(rots) == 551 and np.allclose(np.linalg.det(rots), 1)
    probes = np.stack([relion_matrix(*a) for a in np.random.default_rng(0).uniform([0, 0, 0], [360, 180, 360],
                                                                                    (200, 3))])
    nearest = np.array([_angle(rots, p).min() for p in probes])
    assert nearest.max() < 30 and nearest.mean() < 18  # every orientation within the step


def test_match_finds_position_and_rotation():
    box = 16
    rng = np.random.default_rng(1)
    template = np.zeros((box,) * 3, np.float32)
    template[5:11, 7:9, 4:12] = 1.0  # an asymmetric "L"
    template[5:7, 7:13, 4:6] = 1.0
    rots = uniform_rotations(40)
    truth = 17
    vol = rng.normal(scale=0.2, size=(40, 44, 48)).astype(np.float32)
    placed = rotate_volume(template, rots[truth], order=1)
    vol[10:26, 20:36, 6:22] += placed  # centre at (18, 28, 14)
    score, arg = match_block(vol, prepared_templates(template, rots, None))
    peak = np.unravel_index(np.argmax(score), score.shape)
    assert peak == (18, 28, 14) and arg[peak] == truth and score[peak] > 0.6


def test_score_map_does_not_depend_on_chunking(tmp_path):
    rng = np.random.default_rng(2)
    vol = rng.normal(size=(40, 48, 56)).astype(np.float32)
    template = structure_template("3o21", 9.2, 12, microscope=False)
    maps = []
    for chunk in (16, 32):
        s = Store.create(tmp_path / f"s{chunk}.zarr")
        import_mrc(s, write_mrc(tmp_path / "t.mrc", vol), chunk=chunk)
        pick_template(s, "t", "tm", template, MatchParams(angular_step=60, threshold=4, level=0), workdir=tmp_path)
        maps.append(open_level(s, "tm_scores")[...])
    np.testing.assert_allclose(maps[0], maps[1], atol=2e-5)


def test_template_matching_picks_a_simulated_tomogram(tmp_path, capsys):
    from tomoflow.evaluate import evaluate_picks
    from tomoflow.simulate.crowded import CrowdedSpec, simulate_tomogram

    s = Store.create(tmp_path / "c.zarr")
    simulate_tomogram(s, "c", CrowdedSpec(classes=("4v8r", "5cvz"), shape=(64, 160, 160), n_particles=14, snr=0.1,
                                          box=32, seed=2))
    code, out, _ = run_cli(capsys, "pick", "template", s.path, "c", "--out", "tm", "--template", "4v8r",
                           "--template-box", "20", "--workers", "0")
    assert code == 0 and "551 rotations" in out
    truth = ParticleSet(s, "c_truth")
    res = evaluate_picks(ParticleSet(s, "tm").table_frame(), truth.table_frame(), 80.0, truth.class_names)
    assert res["f1"] >= 0.9, res
    t = ParticleSet(s, "tm").table_frame()
    assert np.isfinite(t[["rot", "tilt", "psi"]].to_numpy()).all() and (t.score > 0.2).all()
