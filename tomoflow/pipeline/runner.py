"""``tomoflow run``: check a pipeline file, connect to (or start) a Dask cluster, run the stages in
order, and keep a record of the run.

* Cluster: ``scheduler`` (an address, ``tcp://`` or ``tls://``) uses a running cluster whose workers
  share the store's file system; otherwise a LocalCluster on 127.0.0.1 of ``local`` (or the file's
  ``workers``, or one per core) single-threaded worker processes, with the dashboard; its URL is
  printed first. ``local=0`` runs everything in this process.
* Each stage prints one line when it starts and one when it ends; long stages show a progress bar per
  engine stage. Stages are resumable (finished chunks are recorded in the store), so running the same
  file again after a crash or a killed client recomputes only what is missing.
* With a cluster, a Dask performance report (HTML: task stream, worker profiles, bandwidth) is saved
  as ``<out>/dask-report-<pipeline>-<time>.html``; ``<out>/run-<pipeline>.json`` holds each stage's
  parameters, summary and wall time.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from .schema import Pipeline, load_pipeline, stage_params
from .stages import STAGES, Context


def _say(msg: str) -> None:
    print(f"tomoflow: {msg}", file=sys.stderr, flush=True)


def run_pipeline(pipeline: Pipeline | str | Path, *, out: str | Path | None = None, scheduler: str | None = None,
                 local: int | None = None, security=None, only: list[str] | None = None, progress: bool = True,
                 performance_report: bool = True) -> dict:
    """Run a pipeline; returns the run record (also written to ``<out>/run-<name>.json``)."""
    from ..engine import cluster_client
    from ..store.core import writable_store

    p = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    out = (Path(out) if out is not None else Path.cwd()).absolute()  # workers may run in another folder
    out.mkdir(parents=True, exist_ok=True)
    stages = [s for s in p.stages if not only or s.type in only]
    store_path = Path(p.store) if Path(p.store).is_absolute() else out / p.store
    workers = local if local is not None else p.workers
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record = {"pipeline": p.name, "file": p.path, "store": str(store_path), "started": stamp, "stages": []}
    t_run = time.perf_counter()
    with ExitStack() as stack:
        store = stack.enter_context(writable_store(store_path))  # a new store a failed run left empty is removed
        client = stack.enter_context(cluster_client(scheduler, workers, security=security, quiet=True))
        if client is not None:
            where = scheduler or f"local cluster of {len(client.scheduler_info(n_workers=-1)['workers'])} workers"
            _say(f"pipeline '{p.name}' on {where}; dashboard {client.dashboard_link}")
            if performance_report:
                from distributed import performance_report as perf

                report = out / f"dask-report-{p.name}-{stamp}.html"
                stack.enter_context(perf(filename=str(report)))
                record["performance_report"] = str(report)
        else:
            _say(f"pipeline '{p.name}' in this process")
        ctx = Context(store=store, client=client, out=out, progress=progress)
        for i, s in enumerate(stages, 1):
            _say(f"[{i}/{len(stages)}] {s.type} ...")
            t0 = time.perf_counter()
            params, keys = stage_params(s.type, s.params)
            summary = STAGES[s.type].run(ctx, params, keys)
            dt = time.perf_counter() - t0
            record["stages"].append({"type": s.type, "params": s.params, "seconds": round(dt, 2),
                                     "summary": summary})
            _say(f"[{i}/{len(stages)}] {s.type} done in {dt:.1f} s: {_short(summary)}")
            (out / f"run-{p.name}.json").write_text(json.dumps(record, indent=2, default=str))
    record["seconds"] = round(time.perf_counter() - t_run, 2)
    (out / f"run-{p.name}.json").write_text(json.dumps(record, indent=2, default=str))
    _say(f"pipeline '{p.name}' finished in {record['seconds']:.0f} s; record {out / f'run-{p.name}.json'}")
    return record


def _short(summary: dict) -> str:
    parts = []
    for k, v in summary.items():
        if isinstance(v, float):
            parts.append(f"{k} {v:.3g}")
        elif isinstance(v, (int, str)) and len(str(v)) < 60:
            parts.append(f"{k} {v}")
    return ", ".join(parts[:6]) or "ok"
