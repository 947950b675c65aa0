"""Stage records and resume: finished chunks are skipped on a rerun, serially and on a local cluster."""

import functools
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from tomoflow.engine import run_chunks
from tomoflow.errors import StoreError
from tomoflow.store import ParticleSet, Store, create_particle_set

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # worker processes cannot import tests/

N, CHUNK = 1000, 128  # 8 chunks, the last one partial


def fill_chunk(store_path, chunk, *, log, fail_at=None):
    """A chunk kernel: writes rows of its chunk by region, logs that it ran."""
    ps = ParticleSet(Store.open(store_path), "a")
    sl = ps.chunk_slice(chunk)
    rows = np.arange(sl.start, sl.stop)
    ps.array("out")[sl] = np.stack([rows * 2.0, np.sqrt(rows)], axis=1)
    ps.write_columns(sl.start, {"score": (rows % 7).astype(np.float32)})
    if chunk == fail_at:
        raise RuntimeError(f"injected failure in chunk {chunk}")
    with open(log, "a") as f:
        f.write(f"{chunk}\n")


def _store(tmp_path, name="s.zarr"):
    store = Store.create(tmp_path / name)
    ps = create_particle_set(store, "a", {"x": np.zeros(N), "tomogram": ["t"] * N}, chunk=CHUNK)
    ps.create_array("out", (2,))
    return store, ps


def _runs(log):
    return [int(v) for v in Path(log).read_text().split()] if Path(log).exists() else []


def _expected():
    rows = np.arange(N)
    return np.stack([rows * 2.0, np.sqrt(rows)], axis=1).astype(np.float32)


def test_rerun_skips_finished_chunks(tmp_path):
    store, ps = _store(tmp_path)
    log = tmp_path / "log"
    r = run_chunks(store, "fill", ps.n_chunks, functools.partial(fill_chunk, log=log), params={"v": 1})
    assert (r.computed, r.skipped) == (8, 0) and sorted(_runs(log)) == list(range(8))
    r = run_chunks(store, "fill", ps.n_chunks, functools.partial(fill_chunk, log=log), params={"v": 1})
    assert (r.computed, r.skipped) == (0, 8) and len(_runs(log)) == 8
    assert np.array_equal(ps.array("out")[...], _expected())


def test_resume_after_failure_computes_only_the_rest(tmp_path):
    store, ps = _store(tmp_path)
    log = tmp_path / "log"
    with pytest.raises(RuntimeError, match="chunk 3"):
        run_chunks(store, "fill", ps.n_chunks, functools.partial(fill_chunk, log=log, fail_at=3), params={"v": 1})
    assert store.stage("fill", ps.n_chunks, {"v": 1}).pending() == [3, 4, 5, 6, 7]
    r = run_chunks(store, "fill", ps.n_chunks, functools.partial(fill_chunk, log=log), params={"v": 1})
    assert (r.computed, r.skipped) == (5, 3)
    assert sorted(_runs(log)) == list(range(8))  # every chunk finished exactly once
    undisturbed, ps2 = _store(tmp_path, "ref.zarr")
    run_chunks(undisturbed, "fill", ps2.n_chunks, functools.partial(fill_chunk, log=tmp_path / "log2"), params={"v": 1})
    assert np.array_equal(ps.array("out")[...], ps2.array("out")[...])
    assert np.array_equal(ps.table(["score"]).score.values, ps2.table(["score"]).score.values)


def test_other_parameters_need_a_restart(tmp_path):
    store, ps = _store(tmp_path)
    log = tmp_path / "log"
    run_chunks(store, "fill", ps.n_chunks, functools.partial(fill_chunk, log=log), params={"v": 1})
    with pytest.raises(StoreError, match="other parameters"):
        run_chunks(store, "fill", ps.n_chunks, functools.partial(fill_chunk, log=log), params={"v": 2})
    r = run_chunks(store, "fill", ps.n_chunks, functools.partial(fill_chunk, log=log), params={"v": 2}, restart=True)
    assert r.computed == 8 and len(_runs(log)) == 16


def test_local_cluster_of_processes_resumes_and_matches_serial(tmp_path):
    from distributed import Client

    from tomoflow.engine import local_cluster

    store, ps = _store(tmp_path)
    log = tmp_path / "log"
    record = store.stage("fill", ps.n_chunks, {"v": 1})
    for chunk in (0, 5):  # finished by an "earlier run"
        fill_chunk(str(store.path), chunk, log=log)
        record.mark_done(chunk)
    with local_cluster(2, dashboard=False) as cluster, Client(cluster) as client:
        with pytest.warns(RuntimeWarning, match="no GPU workers"):  # a GPU stage falls back to the CPU workers
            r = run_chunks(store, "fill", ps.n_chunks, functools.partial(fill_chunk, log=log), params={"v": 1},
                           client=client, gpu=True)
        workers = len(client.scheduler_info()["workers"])
    assert workers == 2 and (r.computed, r.skipped) == (6, 2)
    assert sorted(_runs(log)) == list(range(8))
    assert np.array_equal(ps.array("out")[...], _expected())
    assert store.stage("fill", ps.n_chunks, {"v": 1}).finished
