"""Batched alignment (issue 22): one coarse search for a batch of particles, on numpy or torch, and the averaging
stages routed to GPU workers."""

import numpy as np
import pytest

from tomoflow.kernels.align import Reference, align, align_batch, coarse_scores
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


def test_averaging_goes_to_gpu_workers(tmp_path):
    """A cluster with one worker started with a GPU resource and one without: every averaging task runs on the
    first (a CPU worker stands in for a GPU node: without CUDA, device "auto" falls back to numpy there)."""
    import subprocess
    import sys
    import time

    from distributed import Client, get_task_stream

    from tomoflow.engine import gpu_workers, local_cluster
    from tomoflow.ops.average import classify
    from tomoflow.ops.simulate import simulate_dataset
    from tomoflow.params import AverageParams, DatasetSpec
    from tomoflow.store import Store

    store = Store.create(tmp_path / "s.zarr")
    simulate_dataset(store, "d", DatasetSpec(classes=("6zu5",), per_class=8, snrs=(1.0,), box=16, voxel_size=24.0,
                                             resolution=48.0, include_empty=False, seed=1), chunk=4)
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
            with get_task_stream(client) as ts:
                classify(store, "d", "g", AverageParams(classes=1, iterations=1), client=client, progress=False)
            ran_on = {t["worker"] for t in ts.data if str(t["key"]).startswith("average.")}
        finally:
            plain.terminate()
            plain.wait(timeout=30)
    assert ran_on == set(gpus)
