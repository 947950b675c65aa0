"""Start a CPU pool and a GPU pool on SLURM that share one Dask scheduler, then run a pipeline on it.

    python deploy/slurm/cluster.py pipelines/demo.yaml --cpu-jobs 4 --gpu-jobs 2 --out /shared/run1

The CPU pool is a dask-jobqueue ``SLURMCluster`` (section ``jobqueue.slurm`` of jobqueue.yaml); it owns
the scheduler. GPU jobs are ``SLURMJob``s of section ``jobqueue.slurm-gpu`` added to the same cluster as
a second worker group, so they join that scheduler with ``--resources GPU=1``: tomoflow's GPU stages
(features, template matching, training) go to them, every other stage to any worker.
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


def make_cluster(cpu_jobs: int, gpu_jobs: int):
    from dask_jobqueue import SLURMCluster
    from dask_jobqueue.slurm import SLURMJob

    cluster = SLURMCluster(config_name="slurm")
    cluster.scale(jobs=cpu_jobs)
    for i in range(gpu_jobs):  # a second worker group in the same SpecCluster: same scheduler
        cluster.worker_spec[f"gpu-{i}"] = {"cls": SLURMJob, "options": {"config_name": "slurm", **gpu_options()}}
    cluster.sync(cluster._correct_state)
    return cluster


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
    a = ap.parse_args()
    from distributed import Client

    from tomoflow.pipeline import run_pipeline

    with make_cluster(a.cpu_jobs, a.gpu_jobs) as cluster, Client(cluster) as client:
        print(f"dashboard: {client.dashboard_link}")
        run_pipeline(a.pipeline, out=a.out, scheduler=cluster.scheduler_address)


if __name__ == "__main__":
    main()
