"""Batched alignment (issue 22): one coarse search and one local search for a batch of particles, on numpy or torch,
and the averaging stages routed to GPU workers."""

import numpy as np
import pytest

from tomoflow.kernels.align import Reference, align, align_batch, coarse_scores, local_search
from tomoflow.kernels.geometry import rotate_volume
from tomoflow.kernels.rotations import random_rotations, rotation_angle
from tomoflow.kernels.wedge import particle_wedge
from tomoflow.simulate.templates import structure_template


def _particles(k, seed=0, noise=2.0):
    true = structure_template("6zu5", 12.0, 32, resolution=24.0)
    rng = np.random.default_rng(seed)
    w = particle_wedge(32, -60, 60)
    out = []
    for a in random_rotations(k, rng):
        p = rotate_volume(true, a, rng.uniform(-2, 2, 3), order=3)
        p = np.fft.fftshift(np.fft.ifftn(np.fft.fftn(np.fft.ifftshift(p)) * np.fft.ifftshift(w)).real)
        out.append((p + noise * p.std() * rng.standard_normal(p.shape)).astype(np.float32))
    return true, np.stack(out), w


def test_a_batch_aligns_each_particle_as_alone():
    true, parts, w = _particles(4)
    ref = Reference(true)
    batch = align_batch(parts, [w] * 4, ref)
    for p, (a, t, s) in zip(parts, batch):
        a1, t1, s1 = align(p, w, ref)
        assert np.allclose(a, a1, atol=1e-9) and np.allclose(t, t1) and s == pytest.approx(s1, rel=1e-6)


def test_numpy_and_torch_give_the_same_scores_and_poses():
    torch = pytest.importorskip("torch", reason="the torch path of alignment needs PyTorch")
    true, parts, w = _particles(5, seed=1)
    ref = Reference(true, observed=particle_wedge(32, -70, 70))  # with the reference's observed region too
    small = [ref.small.particle(np.asarray(p, np.float64), w) for p in parts]
    a = coarse_scores(ref, small)
    b = coarse_scores(ref, small, torch.device("cpu"))
    assert a.shape == (5, len(ref.rotations)) and np.abs(a).max() > 0.1
    np.testing.assert_allclose(a, b, atol=1e-5)
    for (ra, ta, sa), (rb, tb, sb) in zip(align_batch(parts, [w] * 5, ref),
                                          align_batch(parts, [w] * 5, ref, torch.device("cpu"))):
        assert rotation_angle(ra, rb) < 0.1 and np.abs(ta - tb).max() < 0.01 and sa == pytest.approx(sb, abs=1e-5)


def test_the_local_search_scores_the_reference_rotated_in_fourier_space():
    """The local search samples the reference's spectrum at A^T k instead of rotating it in real space: a
    noise-free, wedge-free particle made by rotating the reference by A (real space, cubic) and shifting it by a
    fraction of a voxel scores ~1 at A, with that shift, and far less at A^T (the convention turned round)."""
    true = structure_template("6zu5", 12.0, 32, resolution=24.0)
    rng = np.random.default_rng(3)
    a = random_rotations(1, rng)[0]
    shift = np.array([1.3, -0.6, 2.25])  # x, y, z
    part = rotate_volume(true, a, shift, order=3)
    ref = Reference(true, observed=np.ones((32,) * 3))
    for level, scale in ((ref.full, 1.0), (ref.small, 0.5)):
        prep = level.particle(np.asarray(part if level.n == 32 else _crop(part, level.n), np.float64),
                              np.ones((32,) * 3))
        rots, s, t = local_search(level, [prep], np.array([0, 0]), np.stack([a, a.T]), 1.0, 2.0)  # no step taken
        assert s[0] > 0.85 and s[1] < 0.6, s  # measured 0.96 / 0.91 (full / half size), 0.42 / 0.42
        assert np.abs(t[0][::-1] - scale * shift).max() < 0.1, t[0]
        assert np.allclose(rots, np.stack([a, a.T]))


def test_the_local_search_score_is_the_masked_correlation_coefficient():
    """With the reference observed only within +-70 degrees, the local search's score of a rotation is the
    correlation over the components both observe (reference rotated in real space here, its mask with it, as
    the score's definition reads); counting the particle's components outside the reference's mask reads lower."""
    from tomoflow.kernels.fourier import centred_to_rfft, spectrum

    true, parts, w = _particles(2, seed=4, noise=1.0)
    obs = particle_wedge(32, -70, 70)
    ref = Reference(true, observed=obs)
    lev = ref.full
    for p in parts:
        a = align(p, w, ref)[0]
        prep = lev.particle(np.asarray(p, np.float64), w)
        got = local_search(lev, [prep], np.array([0]), a[None], 1.0, 2.0)[1][0]
        g = spectrum(rotate_volume(true, a, order=3)) * lev.keep
        m = prep[2] & (centred_to_rfft(rotate_volume(obs.astype(np.float32), a, order=1)) > 0.5)
        m &= np.isin(np.arange(m.size), lev.support).reshape(m.shape)  # at full size: within the Nyquist sphere
        num = np.fft.irfftn(prep[0] * m * np.conj(g), s=(32,) * 3).ravel()[lev.shifts[0]].max()
        want = num * 32**3 / np.sqrt((prep[1] * m).sum() * (np.abs(g) ** 2 * lev.hw * m).sum())
        assert got == pytest.approx(want, abs=0.02), (got, want)


def _crop(vol, m):
    from tomoflow.kernels.fourier import fourier_crop

    return fourier_crop(np.asarray(vol, np.float64), m)


def test_the_local_search_moves_each_item_on_its_own_and_numpy_equals_torch():
    """Items of different particles and starts, searched together (in chunks of 5 of the 24 pairs a round),
    end where each ends alone; numpy and CPU torch
    score every rotation alike (float32 both) and so take the same steps."""
    true, parts, w = _particles(3, seed=2, noise=1.0)
    ref = Reference(true, observed=particle_wedge(32, -70, 70) > 0.5)
    prep = [ref.full.particle(np.asarray(p, np.float64), w) for p in parts]
    starts = np.stack([align(p, w, ref)[0] for p in parts])
    from scipy.spatial.transform import Rotation

    off = Rotation.from_rotvec(np.deg2rad(6) * np.array([[1, 0, 0], [0, 0.6, 0.8], [0.8, 0, -0.6]])).as_matrix()
    owner = np.array([0, 1, 2, 0])
    starts = np.concatenate([off @ starts, off[1:2] @ off[1:2] @ starts[:1]])  # particle 0 twice, apart
    a, s, t = local_search(ref.full, prep, owner, starts, 4.0, 1.0, batch=5 * ref.full.keep.size)  # 5 pairs a chunk
    for i in range(len(owner)):
        a1, s1, t1 = local_search(ref.full, prep, owner[i:i + 1], starts[i:i + 1], 4.0, 1.0)
        assert np.allclose(a[i], a1[0], atol=1e-9) and np.allclose(t[i], t1[0]) and s[i] == pytest.approx(s1[0])
    assert all(s[i] > local_search(ref.full, prep, owner[i:i + 1], starts[i:i + 1], 0.5, 1.0)[1][0]
               for i in range(3))  # it climbed
    torch = pytest.importorskip("torch", reason="the torch path of alignment needs PyTorch")
    at, st, tt = local_search(ref.full, prep, owner, starts, 4.0, 1.0, torch.device("cpu"))
    np.testing.assert_allclose(st, s, atol=1e-5)
    np.testing.assert_allclose(tt, t, atol=1e-3)
    assert max(rotation_angle(x, y) for x, y in zip(a, at)) < 1e-4


def test_averaging_goes_to_gpu_workers(tmp_path):
    """A cluster with one worker started with a GPU resource and one without: every averaging task runs on the
    first (a CPU worker stands in for a GPU node: without CUDA, device "auto" falls back to numpy there)."""
    from distributed import get_task_stream

    from tomoflow.ops.average import classify
    from tomoflow.ops.simulate import simulate_dataset
    from tomoflow.params import AverageParams, DatasetSpec
    from tomoflow.store import Store

    store = Store.create(tmp_path / "s.zarr")
    simulate_dataset(store, "d", DatasetSpec(classes=("6zu5",), per_class=8, snrs=(1.0,), box=16, voxel_size=24.0,
                                             resolution=48.0, include_empty=False, seed=1), chunk=4)
    from conftest import gpu_and_cpu_workers

    with gpu_and_cpu_workers() as (client, gpus):
        with get_task_stream(client) as ts:
            classify(store, "d", "g", AverageParams(classes=1, iterations=1), client=client, progress=False)
        ran_on = {t["worker"] for t in ts.data if str(t["key"]).startswith("average.")}
    assert ran_on == set(gpus)
