"""Template matching: rotation sampling, exact pose recovery, chunking independence, picking real data."""

import numpy as np
import pytest

from tomoflow.kernels.geometry import relion_matrix, rotate_volume
from tomoflow.store import ParticleSet, Store, import_mrc, open_level
from tomoflow.kernels.rotations import uniform_rotations
from tomoflow.kernels.template_matching import match_block, prepared_templates
from tomoflow.ops.pick import pick_template
from tomoflow.params import MatchParams
from tomoflow.simulate.templates import structure_template
from conftest import gpu_and_cpu_workers, run_cli, write_mrc


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
    from tomoflow.kernels.evaluate import evaluate_picks
    from tomoflow.ops.simulate import simulate_tomogram
    from tomoflow.params import CrowdedSpec

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


def test_torch_path_equals_numpy_path():
    torch = pytest.importorskip("torch", reason="the torch (GPU) path of template matching needs PyTorch")
    from tomoflow.kernels.template_matching import torch_device

    rng = np.random.default_rng(4)
    vol = rng.normal(size=(30, 34, 38)).astype(np.float32)
    templates = prepared_templates(structure_template("3o21", 9.2, 12, microscope=False).astype(np.float64),
                                   uniform_rotations(60), (-60, 60))
    s_np, a_np = match_block(vol, templates)
    s_t, a_t = match_block(vol, templates, torch_device("cpu"))
    np.testing.assert_allclose(s_t, s_np, atol=1e-5)
    assert (a_t == a_np).mean() > 0.999  # near-ties may flip under different rounding
    assert torch_device("numpy") is None
    assert torch_device("auto") == (torch.device("cuda") if torch.cuda.is_available() else None)


def test_blocks_go_to_gpu_workers(tmp_path):
    """A cluster with one worker started with a GPU resource and one without: every block runs on the
    first (CPU workers stand in for GPU nodes here: without CUDA the kernel falls back to numpy)."""
    from distributed import get_task_stream

    from tomoflow.engine import gpu_workers

    rng = np.random.default_rng(2)
    s = Store.create(tmp_path / "s.zarr")
    import_mrc(s, write_mrc(tmp_path / "t.mrc", rng.normal(size=(24, 32, 32)).astype(np.float32)), chunk=16)
    template = structure_template("3o21", 9.2, 10, microscope=False)
    with gpu_and_cpu_workers() as (client, gpus):
        with get_task_stream(client) as ts:
            r = pick_template(s, "t", "tm", template, MatchParams(angular_step=90, level=0), client=client,
                              workdir=tmp_path)
        ran_on = {t["worker"] for t in ts.data if str(t["key"]).startswith("match.tm")}
    assert r["gpu_workers"] == 1 and r["blocks"] == 8
    assert ran_on == set(gpus)
    assert gpu_workers(None) == []
