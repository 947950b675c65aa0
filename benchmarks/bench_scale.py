"""Scale (issue 8): a 100k-particle end-to-end run, and the cost curve of clustering + per-cluster averaging
from 10^4 to 10^6 particles; wall time and peak memory per worker process.

    python benchmarks/bench_scale.py --part e2e   [--workers 2] [--out DIR]
    python benchmarks/bench_scale.py --part curve [--workers 2] [--out DIR] [--sizes 10000,100000,1000000]
                                              [--stages cluster,average]

``e2e`` runs ``pipelines/scale_100k.yaml`` (simulate 1,000 + 100,000 subtomograms, train DSRF3D, deep
features of all 100,000, k-means k = 100, averages of the 2 largest clusters) with ``tomoflow.pipeline``
against a LocalCluster of ``workers`` single-threaded worker processes started here.

``curve`` needs the e2e store. For each size N it makes a set of N particles from the e2e set (the first N
rows; above 10^5 the 10^5 set repeated, i.e. real simulated subtomograms and their real deep features, the
features with a 1% jitter so no two points coincide; simulating 10^6 tilt series would take ~2.5 h here), then
runs the same two stages on it: ``cluster`` with k = N / 1000 (about 1,000 particles per cluster, the
over-partition into many small groups that the method relies on) and ``average`` of the 2 largest clusters
(one alignment pass). So the members aligned stay ~2,000 at every N while everything that touches all N
particles (reading features, k-means, assigning, scanning the chunks for members) grows with N.

Memory: a thread here samples the resident set size (RSS) of each worker process, the scheduler and this
(client) process every 0.2 s; a stage's peak is the maximum over its wall-time window.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class RssSampler:
    """Peak RSS per process over time windows (psutil, every ``period`` s)."""

    def __init__(self, pids: dict[str, int], period: float = 0.2):
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.samples: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._t.start()

    def _run(self, period):
        while not self._stop.is_set():
            row = {}
            for name, p in self.procs.items():
                try:
                    row[name] = p.memory_info().rss
                except Exception:  # noqa: BLE001 - a process that went away reads as 0
                    row[name] = 0
            self.samples.append((time.perf_counter(), row))
            self._stop.wait(period)

    def peak(self, t0: float, t1: float) -> dict[str, float]:
        rows = [r for t, r in self.samples if t0 <= t <= t1] or [self.samples[-1][1]]
        return {n: max(r.get(n, 0) for r in rows) / 2**20 for n in self.procs}

    def stop(self):
        self._stop.set()
        self._t.join()


def start_cluster(workers: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=":0", memory_limit=0)
    client = Client(cluster)
    pids = {f"worker{i}": pid for i, pid in enumerate(client.run(os.getpid).values())}
    pids["scheduler"] = os.getpid()  # LocalCluster's scheduler runs in this process
    return cluster, client, pids


def run_stages(pipeline_doc: dict, out: Path, address: str, sampler: RssSampler) -> list[dict]:
    """Run the pipeline stage by stage (one run record per stage) so each stage has its own memory window."""
    from tomoflow.pipeline.runner import run_pipeline
    from tomoflow.pipeline.schema import parse_pipeline

    rows = []
    for i, st in enumerate(pipeline_doc["stages"]):
        (stype, params), = st.items()
        doc = {"name": f"{pipeline_doc['name']}-{i}-{stype}", "store": pipeline_doc["store"], "stages": [st]}
        t0 = time.perf_counter()
        rec = run_pipeline(parse_pipeline(doc, "bench_scale"), out=out, scheduler=address, progress=False,
                           performance_report=False)
        t1 = time.perf_counter()
        peak = sampler.peak(t0, t1)
        worker_peak = max(v for k, v in peak.items() if k.startswith("worker"))
        rows.append({"stage": stype, "params": params, "seconds": round(t1 - t0, 1),
                     "peak_worker_mb": round(worker_peak), "peak_client_scheduler_mb": round(peak["scheduler"]),
                     "summary": rec["stages"][0]["summary"]})
        print(f"  {stype:24s} {t1 - t0:8.1f} s   peak worker RSS {worker_peak:7.0f} MB   "
              f"client+scheduler {peak['scheduler']:6.0f} MB", flush=True)
    return rows


def part_e2e(a, client, address, sampler) -> dict:
    import yaml

    doc = yaml.safe_load(Path(a.pipeline).read_text())
    doc["store"] = str(Path(a.out) / "scale.zarr")
    t0 = time.perf_counter()
    rows = run_stages(doc, Path(a.out), address, sampler)
    total = time.perf_counter() - t0
    feats = next(r for r in rows if r["stage"] == "features")
    from tomoflow.store import ParticleSet, Store

    n = ParticleSet(Store.open(doc["store"]), "particles").n
    rate = n / feats["seconds"]
    print(f"end to end: {total:.0f} s; features {rate:.0f} subtomograms/s (16^3) -> 10^6 in "
          f"{1e6 / rate / 3600:.2f} h on this machine")
    return {"total_s": round(total, 1), "stages": rows, "features_per_s": round(rate, 1)}


def _copy_task(store_path: str, chunk: int, *, src: str, dst: str, n_src: int, jitter: float, seed: int) -> None:
    """Engine task: rows [chunk*c, chunk*(c+1)) of ``dst`` = rows (i mod n_src) of ``src`` (volumes, features)."""
    from tomoflow.store import ParticleSet, Store

    store = Store.open(store_path)
    s, d = ParticleSet(store, src), ParticleSet(store, dst)
    sl = d.chunk_slice(chunk)
    a = sl.start % n_src
    b = a + (sl.stop - sl.start)
    assert b <= n_src, "target chunks must not straddle the end of the source"
    d.write_volumes(sl.start, s.read_volumes(slice(a, b)))
    f = np.asarray(s.array("features")[a:b])
    if sl.start >= n_src:  # repeated rows: jitter the features so no two points coincide
        rng = np.random.default_rng(np.random.SeedSequence([seed, chunk]))
        f = f + rng.normal(0, jitter, f.shape).astype(f.dtype)
    d.array("features")[sl] = f


def make_set(store, n: int, client, chunk: int = 1000) -> str:
    """Particle set ``scale.n<N>`` from the e2e set ``particles`` (see the module docstring)."""
    import functools

    from tomoflow.engine import run_chunks
    from tomoflow.store import ParticleSet, create_particle_set

    src = ParticleSet(store, "particles")
    name = f"scale.n{n}"
    if store.has("particles", name) and ParticleSet(store, name).info.get("bench_complete"):
        return name
    t = src.table_frame()
    keep = [c for c in t.columns if c not in ("cluster", "score")]
    idx = np.arange(n) % src.n
    table = {c: t[c].to_numpy()[idx] for c in keep}
    create_particle_set(store, name, table, box_size=src.box_size, chunk=chunk, voxel_size=src.voxel_size,
                        class_names=src.class_names, overwrite=True)
    dst = ParticleSet(store, name)
    fshape = src.array("features").shape[1:]
    dst.create_array("features", fshape, "float32", overwrite=True)
    jitter = 0.01 * float(np.asarray(src.array("features")[:10000]).std())
    task = functools.partial(_copy_task, src="particles", dst=name, n_src=src.n, jitter=jitter, seed=0)
    run_chunks(store, f"bench.copy.{name}", dst.n_chunks, task, client=client, restart=True, progress=False)
    dst.set_attrs({"bench_complete": True})
    return name


def part_curve(a, client, address, sampler) -> dict:
    from tomoflow.store import ParticleSet, Store

    store = Store.open(Path(a.out) / "scale.zarr")
    n_e2e = ParticleSet(store, "particles").n
    out = {}
    for n in [int(x) for x in a.sizes.split(",")]:
        t0 = time.perf_counter()
        name = "particles" if n == n_e2e else make_set(store, n, client)
        made = time.perf_counter() - t0
        k = max(10, n // 1000)
        stages = [{"cluster": {"set": name, "k": k}},
                  {"average": {"set": name, "name": f"curve{n}.average", "largest": 2, "classes": 1, "iterations": 1}}]
        doc = {"name": f"curve-{n}", "store": str(store.path),
               "stages": [s for s in stages if next(iter(s)) in a.stages.split(",")]}
        print(f"N = {n:,} (set {name}, made in {made:.0f} s), k = {k}", flush=True)
        rows = run_stages(doc, Path(a.out), address, sampler)
        avg = [r for r in rows if r["stage"] == "average"]
        res = avg[0]["summary"].get("results") if avg else None
        members = sum(r["members"] for r in res) if res else None
        out[n] = {"k": k, "stages": rows, "members_averaged": members}
    ns = sorted(out)
    for stage in a.stages.split(","):
        secs = [next(r["seconds"] for r in out[n]["stages"] if r["stage"] == stage) for n in ns]
        mem = [next(r["peak_worker_mb"] for r in out[n]["stages"] if r["stage"] == stage) for n in ns]
        per = [s / n * 1e6 for s, n in zip(secs, ns)]
        print(f"{stage:8s}: " + "; ".join(f"N={n:,}: {s:.1f} s ({p:.1f} us/particle), peak worker {m} MB"
                                          for n, s, p, m in zip(ns, secs, per, mem)))
    return {str(n): v for n, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("e2e", "curve"), required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "scale-run"))
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--stages", default="cluster,average", help="for --part curve: which of cluster,average to run")
    ap.add_argument("--pipeline", default=str(ROOT / "pipelines" / "scale_100k.yaml"), help="for --part e2e")
    a = ap.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    cluster, client, pids = start_cluster(a.workers)
    sampler = RssSampler(pids)
    print(f"{platform.node()}: {os.cpu_count()} CPUs; {a.workers} worker processes x 1 thread; "
          f"dashboard {client.dashboard_link}", flush=True)
    try:
        res = (part_e2e if a.part == "e2e" else part_curve)(a, client, cluster.scheduler_address, sampler)
    finally:
        sampler.stop()
        client.close()
        cluster.close()
    tag = "" if a.part == "e2e" or a.stages == "cluster,average" else "-" + a.stages.replace(",", "-")
    path = Path(a.out) / f"bench-scale-{a.part}{tag}.json"
    path.write_text(json.dumps(res, indent=1, default=str))
    print(f"record: {path}")


if __name__ == "__main__":
    main()
