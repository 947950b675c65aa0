"""The graph at a million particles: one task per chunk (never per particle), a bounded number of
tasks in flight, and a scheduler whose memory does not grow with N (separate-process cluster)."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import pytest

from proc_cluster import ProcCluster
from tomoflow.ops.cluster import assign_clusters
from tomoflow.store import Store, create_particle_set

N, CHUNK, F, K = 1_000_000, 1000, 22, 50


@pytest.mark.slow
def test_million_particle_stage_submits_one_task_per_chunk_with_bounded_scheduler(tmp_path):
    rng = np.random.default_rng(0)
    store = Store.create(tmp_path / "big.zarr")
    ps = create_particle_set(store, "big", {"tomogram": np.full(N, "t0", dtype=object),
                                            "x": rng.uniform(0, 1e4, N), "y": rng.uniform(0, 1e4, N),
                                            "z": rng.uniform(0, 2e3, N)}, chunk=CHUNK)
    centres = rng.normal(size=(K, F)).astype(np.float32) * 5
    truth = rng.integers(0, K, N)
    feats = ps.create_array("features", (F,), "float32")
    feats[...] = centres[truth] + rng.normal(size=(N, F)).astype(np.float32) * 0.5
    n_chunks = -(-N // CHUNK)

    with ProcCluster(tmp_path / "cluster", 2) as cluster, cluster.client() as client:
        sched = psutil.Process(cluster.scheduler.pid)
        started = set()
        peak = {"futures": 0, "rss": 0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak["futures"] = max(peak["futures"], len(client.futures))
                peak["rss"] = max(peak["rss"], sched.memory_info().rss)
                time.sleep(0.05)

        submit = client.submit

        def counting_submit(*args, **kwargs):  # every task the engine sends to the scheduler
            started.add(kwargs.get("key"))
            return submit(*args, **kwargs)

        client.submit = counting_submit
        rss0 = sched.memory_info().rss
        t = threading.Thread(target=sample, daemon=True)
        t.start()
        t0 = time.perf_counter()
        run = assign_clusters(store, "big", centres, client=client, progress=False)
        print(f"assign stage over {N} particles: {time.perf_counter() - t0:.1f} s")
        stop.set()
        t.join()
    assert run.computed == n_chunks == 1000  # one task per chunk of 1000 particles, never one per particle
    assert len(started) == n_chunks and all(k.startswith("assign.big.features-") for k in started)
    threads = 2
    assert peak["futures"] <= max(16, 4 * threads) + 2  # a bounded window in flight (+ the one just finished)
    assert peak["rss"] - rss0 < 150e6, f"scheduler grew by {(peak['rss'] - rss0) / 1e6:.0f} MB"
    got = ps.array("cluster_assigned")[...]
    assert (got >= 0).all()
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth[:20000], got[:20000]) > 0.99

