"""Map chunk kernels over a store, resuming where a previous run stopped.

A *chunk task* is a picklable callable ``task(store_path, chunk_index)`` that reads its inputs from
the store and writes its results into the store by region; it may return a small array (a block's
peak list), which is kept beside the stage record (:meth:`StageRecord.results`). :func:`run_chunks` runs the chunks a stage has not finished yet, one task per chunk (never
one per particle), either in this process or on a Dask ``distributed`` client, and records
each chunk as finished right after its task returns. A rerun after a crash or a killed client
recomputes only the chunks not recorded.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from .store import Store

ChunkTask = Callable[[str, int], None]


@dataclass(frozen=True)
class StageRun:
    stage: str
    n_chunks: int
    computed: int  # chunks computed by this run
    skipped: int  # chunks already finished by an earlier run


def _run_and_mark(store_path: str, stage: str, chunk: int, task: ChunkTask) -> int:
    """Worker side: compute one chunk, then record it as finished."""
    from .store.stages import StageRecord

    result = task(store_path, chunk)
    record = StageRecord.open(Store.open(store_path), stage)
    if result is not None:  # a small result (e.g. a peak list) is kept before the chunk counts as done
        record.save_result(chunk, result)
    record.mark_done(chunk)
    return chunk


def gpu_workers(client) -> list[str]:
    """Addresses of the workers that advertise a GPU resource (started with ``--resources GPU=n``)."""
    if client is None:
        return []
    return [a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()
            if w.get("resources", {}).get("GPU", 0) > 0]


def gpu_resources(client, stage: str) -> dict | None:
    """Task resources for a GPU stage: ``{"GPU": 1}`` when the cluster has GPU workers; otherwise None
    (the stage runs on the CPU workers) with a warning."""
    if client is None:
        return None
    if gpu_workers(client):
        return {"GPU": 1}
    warnings.warn(f"stage '{stage}': no GPU workers (start them with --resources GPU=1); running on the CPU workers",
                  RuntimeWarning, stacklevel=3)
    return None


def _window(client, n: int) -> int:
    """Tasks kept in flight at once: enough to keep every worker thread busy, few enough that the
    scheduler's memory does not grow with the number of chunks."""
    threads = sum(client.nthreads().values()) or 1
    return max(16, 4 * threads) if n else 0


def run_chunks(store: Store, stage: str, n_chunks: int, task: ChunkTask, *, params: dict | None = None,
               client=None, restart: bool = False, retries: int = 2, resources: dict | None = None,
               gpu: bool = False, progress: bool | None = None) -> StageRun:
    """Run ``task`` on every unfinished chunk of ``stage``.

    ``params`` identify the stage's work: a rerun with other params is refused unless ``restart``.
    With a ``distributed.Client`` each chunk is one task (with ``retries`` and optional worker
    ``resources``; ``gpu=True`` routes to GPU workers when there are any, see :func:`gpu_resources`),
    submitted through a sliding window of a few tasks per worker thread, so the scheduler holds
    O(workers) tasks whatever the number of chunks; without a client the chunks run here.
    """
    from tqdm.auto import tqdm

    record = store.stage(stage, n_chunks, params, restart=restart)
    pending = record.pending()
    skipped = n_chunks - len(pending)
    bar = tqdm(total=n_chunks, initial=skipped, desc=stage, unit="chunk", leave=False,
               disable=None if progress is None else not progress)
    path = str(store.path)
    try:
        if client is None:
            for chunk in pending:
                _run_and_mark(path, stage, chunk, task)
                bar.update(1)
        else:
            import uuid

            from distributed import as_completed

            if gpu and resources is None:
                resources = gpu_resources(client, stage)
            run_id = uuid.uuid4().hex[:8]  # task keys read "<stage>-<chunk>-<run>" on the dashboard
            todo = iter(pending)

            def submit(chunk):
                return client.submit(_run_and_mark, path, stage, chunk, task, key=f"{stage}-{chunk}-{run_id}",
                                     retries=retries, resources=resources, pure=False)

            first = [submit(c) for _, c in zip(range(_window(client, len(pending))), todo)]
            queue = as_completed(first)
            for fut in queue:
                fut.result()  # re-raises a task's error here
                fut.release()
                bar.update(1)
                nxt = next(todo, None)
                if nxt is not None:
                    queue.add(submit(nxt))
    finally:
        bar.close()
    return StageRun(stage, n_chunks, len(pending), skipped)


def run_task(client, fn, *args, gpu: bool = False, key: str | None = None, stage: str = "task"):
    """One whole-job task (e.g. training a model): here without a client; with one, as a single task, on a
    GPU worker when ``gpu`` and the cluster has one (else on a CPU worker, with a warning). Returns its result."""
    if client is None:
        return fn(*args)
    resources = gpu_resources(client, stage) if gpu else None
    return client.submit(fn, *args, pure=False, resources=resources, key=key).result()


class ResidentBlocks:
    """Blocks of data loaded once and kept where they were loaded (numpy arrays in this process without a
    client; futures held in the workers' memory with one), with the same calls either way: iterative
    algorithms (k-means) send only small arrays to the blocks each iteration and gather small results."""

    def __init__(self, client, loaders):
        self.client = client
        if client is None:
            self.data = [fn() for fn in loaders]
        else:
            self.data = [client.submit(fn, pure=False) for fn in loaders]

    def map(self, fn, *args):
        """``[fn(block, *args) for block]``; large numpy arguments are broadcast to the workers once."""
        if self.client is None:
            return [fn(d, *args) for d in self.data]
        import numpy as np

        args = [self.client.scatter(a, broadcast=True) if isinstance(a, np.ndarray) and a.nbytes > 1 << 16 else a
                for a in args]
        return self.client.gather([self.client.submit(fn, d, *args, pure=False) for d in self.data])

    def map_indexed(self, fn, extra):
        """``[fn(extra[i], block_i)]``: per-block arguments (block bounds, block index)."""
        if self.client is None:
            return [fn(e, d) for d, e in zip(self.data, extra)]
        return self.client.gather([self.client.submit(fn, e, d, pure=False) for d, e in zip(self.data, extra)])


# Distributed's nanny sets MALLOC_TRIM_THRESHOLD_, which turns off glibc's dynamic mmap threshold:
# every temporary array over 128 KB is then a fresh mmap with page faults, and FFT-heavy kernels run
# ~2x slower in workers than in a plain process (measured: 0.22 vs 0.11 s per simulated
# subtomogram). A fixed 64 MB mmap threshold restores the speed; cluster deployments should set it.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20)}


def local_cluster(n_workers: int, *, dashboard: bool = True, **kwargs):
    """A LocalCluster of single-threaded worker processes on 127.0.0.1, with :data:`WORKER_ENV`."""
    import dask
    from distributed import LocalCluster

    env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENV}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address="127.0.0.1:0" if dashboard else None, **kwargs)


@contextmanager
def cluster_client(scheduler: str | None = None, workers: int | None = None, *, security=None,
                   quiet: bool = False):
    """A ``distributed`` client: connected to ``scheduler`` if given (with ``security``, a
    ``distributed.Security``, for ``tls://`` clusters), else a LocalCluster of ``workers``
    single-threaded worker processes bound to 127.0.0.1 (dashboard URL printed). ``workers=0`` yields
    None: run in this process."""
    import os
    import sys

    if scheduler is None and workers == 0:
        yield None
        return
    from distributed import Client

    if scheduler is not None:
        with Client(scheduler, security=security) as client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    with local_cluster(n) as cluster, Client(cluster) as client:
        if not quiet:
            print(f"tomoflow: local cluster of {n} workers, dashboard {client.dashboard_link}", file=sys.stderr)
        yield client
