"""Start a CPU pool and a GPU pool on SLURM that share one Dask scheduler, then run a pipeline on it.

    python deploy/slurm/cluster.py pipelines/demo.yaml --cpu-jobs 4 --gpu-jobs 2 --out /shared/run1

The CPU pool is a dask-jobqueue ``SLURMCluster`` (section ``jobqueue.slurm`` of jobqueue.yaml); it owns
the scheduler. GPU jobs are ``SLURMJob``s of section ``jobqueue.slurm-gpu`` added to the same cluster as
a second worker group, so they join that scheduler with ``--resources GPU=1``: tomoflow's GPU stages
(features, template matching, training) go to them, every other stage to any worker. The pipeline starts once
every worker of both pools has joined (``--wait-timeout`` to give up); only public dask-jobqueue/distributed API
is used (``worker_spec``, ``new_spec``, ``scale``, ``Client.wait_for_workers``).

Do not call ``cluster.scale``/``cluster.adapt`` on the result yourself: they count jobs of both pools together
and add only CPU jobs, and scaling down may drop GPU jobs that have not started yet.
"""

from __future__ import annotations

import argparse


def gpu_options() -> dict:
    """SLURMJob keyword arguments of the GPU pool: section ``jobqueue.slurm-gpu`` over the ``slurm`` defaults."""
    import dask

    section = dict(dask.config.get("jobqueue.slurm-gpu", default={}) or {})
    opts = {k.replace("-", "_"): v for k, v in section.items() if v is not None and k != "name"}
    if section.get("name"):
        opts["job_name"] = section["name"]
    return opts


def job_processes(cluster, spec: dict) -> int:
    """Dask workers that one job of worker-spec entry ``spec`` starts (``processes`` of its config section)."""
    return spec["cls"](scheduler=cluster.scheduler_address, name="probe", **spec["options"]).worker_processes


def gpu_worker_spec(cluster) -> dict:
    """The worker-spec entry of one GPU job: the cluster's own job options (config section, interface, protocol,
    security), with section ``jobqueue.slurm-gpu`` over them."""
    spec = {"cls": cluster.new_spec["cls"], "options": {**cluster.new_spec["options"], **gpu_options()}}
    processes = job_processes(cluster, spec)
    if processes > 1:  # as dask-jobqueue names a job's workers: <job>-0, <job>-1, ...
        spec["group"] = [f"-{i}" for i in range(processes)]
    return spec


def make_cluster(cpu_jobs: int, gpu_jobs: int):
    """One scheduler, ``cpu_jobs`` CPU-pool jobs and ``gpu_jobs`` GPU-pool jobs, all submitted (not yet running)."""
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(config_name="slurm")
    for i in range(gpu_jobs):  # a second worker group in the same SpecCluster: same scheduler
        cluster.worker_spec[f"gpu-{i}"] = gpu_worker_spec(cluster)
    # scale counts jobs already in worker_spec: it keeps the GPU entries, adds cpu_jobs CPU jobs from section
    # "slurm", and submits every job that is not running yet
    cluster.scale(jobs=cpu_jobs + gpu_jobs)
    return cluster


def expected_workers(cluster) -> int:
    """Dask workers that the cluster's jobs start, both pools (a job of ``processes: 32`` starts 32). Not
    ``len(cluster.plan)``: dask-jobqueue groups a job's workers only when ``processes`` is a keyword, not config."""
    return sum(job_processes(cluster, spec) for spec in cluster.worker_spec.values())


def gpu_job_script(scheduler_address: str) -> str:
    """The batch script of one GPU-pool job (what ``sbatch`` receives)."""
    from dask_jobqueue.slurm import SLURMJob

    return SLURMJob(scheduler=scheduler_address, name="gpu-0", config_name="slurm", **gpu_options()).job_script()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pipeline")
    ap.add_argument("--cpu-jobs", type=int, default=2)
    ap.add_argument("--gpu-jobs", type=int, default=1)
    ap.add_argument("--out", default=".")
    ap.add_argument("--wait-timeout", type=float, default=None,
                    help="seconds to wait for every worker of both pools (default: as long as the queue takes)")
    a = ap.parse_args()
    if a.cpu_jobs < 0 or a.gpu_jobs < 0 or a.cpu_jobs + a.gpu_jobs < 1:
        ap.error("--cpu-jobs and --gpu-jobs: at least one job, none negative")
    from distributed import Client

    from tomoflow.pipeline import run_pipeline

    with make_cluster(a.cpu_jobs, a.gpu_jobs) as cluster, Client(cluster) as client:
        n = expected_workers(cluster)
        print(f"dashboard: {client.dashboard_link}; waiting for {n} workers "
              f"({a.cpu_jobs} CPU jobs, {a.gpu_jobs} GPU jobs)", flush=True)
        try:
            client.wait_for_workers(n, timeout=a.wait_timeout)
        except TimeoutError as e:  # distributed's WorkerStartTimeoutError; leaving the block cancels the jobs
            raise SystemExit(f"cluster.py: {e}") from None
        run_pipeline(a.pipeline, out=a.out, scheduler=cluster.scheduler_address)


if __name__ == "__main__":
    main()
