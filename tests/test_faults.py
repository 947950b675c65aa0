"""Faults and resume on a real cluster of separate processes (a scheduler and 3 workers): a worker
killed mid-stage, and a client killed mid-run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from proc_cluster import ProcCluster, wait_idle
from tomoflow.ops.simulate import simulate_dataset
from tomoflow.params import DatasetSpec
from tomoflow.store import ParticleSet, Store
from tomoflow.store.stages import StageRecord

SPEC = DatasetSpec(classes=("6zu5", "4v8r", "5cvz"), per_class=48, box=32, voxel_size=12.0, resolution=24.0,
                   include_empty=True, seed=5)
CHUNK = 16  # 192 particles -> 12 chunks


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The undisturbed result, computed in one process."""
    store = Store.create(tmp_path_factory.mktemp("ref") / "ref.zarr")
    simulate_dataset(store, "d", SPEC, chunk=CHUNK, progress=False)
    return ParticleSet(store, "d").read_volumes(slice(0, None))


def _when_done(store_path, stage, n, action, timeout=300):
    """Run ``action`` once ``n`` chunks of ``stage`` are recorded (polled from another thread)."""
    def watch():
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if StageRecord.open(Store.open(store_path), stage).n_done() >= n:
                    break
            except Exception:
                pass
            time.sleep(0.02)
        action()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_worker_killed_mid_stage_run_completes_bit_identical(tmp_path, reference):
    store = Store.create(tmp_path / "s.zarr")
    with ProcCluster(tmp_path / "cluster", 3) as cluster, cluster.client() as client:
        killed = []
        watcher = _when_done(store.path, "simulate.d", 2, lambda: (cluster.kill_worker(0), killed.append(time.time())))
        run = simulate_dataset(store, "d", SPEC, chunk=CHUNK, client=client, progress=False)
        watcher.join(5)
        assert killed, "the worker was not killed during the stage"
        assert cluster.workers[0].poll() is not None
        assert run.computed == 12 and StageRecord.open(store, "simulate.d").finished
    got = ParticleSet(Store.open(store.path), "d").read_volumes(slice(0, None))
    assert np.array_equal(got, reference)


@pytest.mark.slow
def test_client_killed_mid_run_rerun_computes_only_the_rest(tmp_path, reference):
    pipe = tmp_path / "sim.yaml"
    pipe.write_text("store: s.zarr\nstages:\n  - simulate_subtomograms: {set: d, structures: [6zu5, 4v8r, 5cvz], "
                    "per_class: 48, box: 32, voxel_size: 12.0, resolution: 24.0, snr: 0.1, empty: true, chunk: 16, "
                    "seed: 5}\n")
    out = tmp_path / "run"
    with ProcCluster(tmp_path / "cluster", 3) as cluster, cluster.client() as client:
        cmd = [sys.executable, "-m", "tomoflow", "run", str(pipe), "--out", str(out), "--scheduler", cluster.address,
               "--no-performance-report"]
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _when_done(out / "s.zarr", "simulate.d", 3, first.kill).join(300)
        assert first.wait(30) != 0, "the first client was not killed mid-run"
        def n_done():
            return StageRecord.open(Store.open(out / "s.zarr"), "simulate.d").n_done()

        wait_idle(client, n_done)  # tasks the killed client left running finish (and are recorded) or are dropped
        done_before = n_done()
        assert 3 <= done_before < 12
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads((out / "run-sim.json").read_text())["stages"][0]["summary"]
    assert summary["skipped"] == done_before and summary["computed"] == 12 - done_before
    got = ParticleSet(Store.open(out / "s.zarr"), "d").read_volumes(slice(0, None))
    assert np.array_equal(got, reference)


def test_relative_paths_work_with_workers_started_in_another_folder(tmp_path):
    """A scheduler and workers started by hand in one folder, the client in another with a relative --out:
    every path is made absolute on the client before it goes to the workers (issue 20: "run2/tiny.zarr: no such
    store" on the workers)."""
    (tmp_path / "nodes").mkdir()
    (tmp_path / "me").mkdir()
    (tmp_path / "me" / "tiny.yaml").write_text(
        "store: tiny.zarr\nstages:\n  - simulate_subtomograms: {set: d, structures: [4v8r], per_class: 6, box: 16, "
        "voxel_size: 24, resolution: 48, snr: 1.0, empty: false, chunk: 2}\n")
    with ProcCluster(tmp_path / "cluster", 2, cwd=tmp_path / "nodes") as cluster, cluster.client():
        r = subprocess.run([sys.executable, "-m", "tomoflow", "run", "tiny.yaml", "--out", "run2", "--scheduler",
                            cluster.address, "--no-performance-report"], cwd=tmp_path / "me", capture_output=True,
                           text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ps = ParticleSet(Store.open(tmp_path / "me" / "run2" / "tiny.zarr"), "d")
    assert ps.volume_chunks_written() == 3 and not (tmp_path / "nodes" / "run2").exists()
