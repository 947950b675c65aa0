"""Deep structural features through the engine: equal on a 2-process cluster and in one process, the model
loaded once per worker, GPU workers preferred, resumable, clear errors."""

import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("keras")

from tomoflow.errors import StoreError  # noqa: E402
from tomoflow.ml.features import models_loaded  # noqa: E402
from tomoflow.ops.features import extract_features  # noqa: E402
from tomoflow.ops.simulate import simulate_dataset  # noqa: E402
from tomoflow.params import DatasetSpec  # noqa: E402
from tomoflow.store import ParticleSet, Store  # noqa: E402
from tomoflow.ops.training import train  # noqa: E402
from tomoflow.params import TrainParams  # noqa: E402
from conftest import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("f")
    store = Store.create(d / "s.zarr")
    spec = DatasetSpec(classes=("6zu5", "3o21"), per_class=10, snrs=(1.0,), box=16, voxel_size=18.4,
                       resolution=18.4, seed=4)
    simulate_dataset(store, "d", spec, chunk=6)  # 30 particles in 5 chunks
    train(store, "d", d / "m.keras", TrainParams(epochs=2, batch_size=8), progress=False)
    return store, d / "m.keras"


def test_features_in_process_then_resume_and_refuse_other_layer(trained):
    store, model = trained
    r = extract_features(store, "d", model, batch_size=4, overwrite=True, progress=False)
    assert (r["particles"], r["features"], r["classes"], r["computed"]) == (30, 3, 3, 5)
    ps = ParticleSet(store, "d")
    f, p, c = (np.asarray(ps.array(n)[:]) for n in ("features", "features_probabilities", "features_class"))
    e = np.exp(f - f.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), p, rtol=1e-4, atol=1e-6)  # logits = softmax removed
    assert (c == p.argmax(1)).all() and np.isfinite(f).all()
    again = extract_features(store, "d", model, batch_size=4, progress=False)
    assert (again["computed"], again["skipped"]) == (0, 5)
    with pytest.raises(StoreError, match="other parameters"):
        extract_features(store, "d", model, layer="fc2", batch_size=4, progress=False)
    hidden = extract_features(store, "d", model, layer="fc2", name="fc2", batch_size=4, progress=False)
    assert hidden["features"] == 512 and ps.array("fc2").shape == (30, 512)


def test_features_on_two_workers_equal_one_process_and_gpu_workers_take_the_work(trained):
    from distributed import Client, get_task_stream

    from tomoflow.engine import local_cluster
    from tomoflow.engine import gpu_workers

    store, model = trained
    extract_features(store, "d", model, name="serial", progress=False)
    ps = ParticleSet(store, "d")
    with local_cluster(2, dashboard=False) as cluster, Client(cluster) as client:
        r = extract_features(store, "d", model, name="dist", client=client, progress=False)
        loads = client.run(models_loaded)  # a function of the package: runs against the worker's own module
        assert r["computed"] == 5 and r["gpu_workers"] == 0
        assert sorted(loads.values()) in ([1, 1], [0, 1])  # once per worker, not per task (5 tasks)
        gpu = subprocess.Popen([sys.executable, "-m", "dask", "worker", cluster.scheduler_address, "--nthreads", "1",
                                "--no-dashboard", "--host", "127.0.0.1", "--resources", "GPU=1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while len(gpu_workers(client)) < 1 and time.time() < deadline:
                time.sleep(0.2)
            with get_task_stream(client) as ts:
                g = extract_features(store, "d", model, name="gpu", client=client, progress=False)
            ran_on = {t["worker"] for t in ts.data if str(t["key"]).startswith("features.d.gpu")}
            assert g["gpu_workers"] == 1 and ran_on == set(gpu_workers(client))
        finally:
            gpu.terminate()
            gpu.wait(timeout=30)
    for name in ("features", "features_probabilities", "features_class"):
        serial = np.asarray(ps.array(name.replace("features", "serial"))[:])
        for other in ("dist", "gpu"):
            np.testing.assert_array_equal(np.asarray(ps.array(name.replace("features", other))[:]), serial)


def test_cli_features_and_bad_inputs(trained, capsys, tmp_path):
    store, model = trained
    code, out, _ = run_cli(capsys, "features", store.path, "d", "--model", model, "--name", "cli", "--workers", "0")
    assert code == 0 and "of 30 particles of 'd' on CPU: 5 chunks computed" in out
    code, _, err = run_cli(capsys, "features", store.path, "d", "--model", model, "--layer", "nope", "--workers", "0")
    assert code == 2 and "m.keras: model has no layer 'nope'" in err
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    code, _, err = run_cli(capsys, "features", store.path, "d", "--model", bad, "--workers", "0")
    assert code == 2 and "bad.keras: not a .keras model saved by tomoflow" in err
    assert "bad" not in ParticleSet(store, "d").arrays() and "features_class" in ParticleSet(store, "d").arrays()
