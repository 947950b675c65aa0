"""deploy/: a TLS scheduler refuses a plain client and serves a TLS one; the SLURM job scripts and the
Kubernetes manifests say what the README says they do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_tls_scheduler_refuses_a_plain_client_and_serves_a_tls_one():
    pytest.importorskip("cryptography")
    from distributed import Client, LocalCluster
    from distributed.security import Security

    sec = Security.temporary()  # a self-signed certificate; require_encryption is set
    assert sec.require_encryption
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1", security=sec,
                      dashboard_address=None) as cluster:
        addr = cluster.scheduler_address
        assert addr.startswith("tls://")
        with pytest.raises(Exception):  # no certificate: refused
            Client(addr, timeout=3)
        with pytest.raises(Exception):  # plain TCP to the TLS port: no handshake
            Client(addr.replace("tls://", "tcp://"), timeout=3)
        with Client(addr, security=sec, timeout=10) as c:
            assert c.submit(sum, [1, 2, 3]).result() == 6


def test_tomoflow_run_takes_tls_files(tmp_path, capsys):
    from tomoflow.cli.main import main

    code = main(["run", str(DEPLOY.parent / "pipelines" / "demo.yaml"), "--scheduler", "tls://127.0.0.1:1",
                 "--tls-ca-file", str(tmp_path / "missing.pem"), "--tls-cert", "x", "--tls-key", "y"])
    assert code == 2 and "missing.pem" in capsys.readouterr().err


def test_slurm_job_scripts_share_one_scheduler_and_gpu_jobs_advertise_the_gpu():
    for f in sorted((DEPLOY / "slurm").glob("*.sbatch")):
        subprocess.run(["bash", "-n", str(f)], check=True)
    cpu = (DEPLOY / "slurm" / "cpu-workers.sbatch").read_text()
    gpu = (DEPLOY / "slurm" / "gpu-workers.sbatch").read_text()
    assert "--scheduler-file" in cpu and "--scheduler-file" in gpu
    assert "--gres=gpu:1" in gpu and "--resources GPU=1" in gpu and "GPU" not in cpu.split("exec", 1)[1]


def test_jobqueue_config_renders_cpu_and_gpu_pools():
    pytest.importorskip("dask_jobqueue")
    import dask
    import importlib.util

    conf = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())
    spec = importlib.util.spec_from_file_location("slurm_cluster", DEPLOY / "slurm" / "cluster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    flat = {f"jobqueue.{sec}.{k}": v for sec, d in conf["jobqueue"].items() for k, v in d.items()}
    with dask.config.set(flat):
        script = mod.gpu_job_script("tcp://10.0.0.1:8786")
        from dask_jobqueue.slurm import SLURMJob

        cpu = SLURMJob(scheduler="tcp://10.0.0.1:8786", name="cpu-0", config_name="slurm").job_script()
    assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script and "tcp://10.0.0.1:8786" in script
    assert "KERAS_BACKEND=torch" in script
    assert "tcp://10.0.0.1:8786" in cpu and "--resources" not in cpu and "--nworkers 32" in cpu


def test_kubernetes_manifests_have_a_gpu_worker_group_on_the_same_cluster():
    cluster = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    group = yaml.safe_load((DEPLOY / "kubernetes" / "gpu-workergroup.yaml").read_text())
    assert cluster["kind"] == "DaskCluster" and group["kind"] == "DaskWorkerGroup"
    assert group["spec"]["cluster"] == cluster["metadata"]["name"]
    c = group["spec"]["worker"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and "GPU=1" in c["args"]
    assert (DEPLOY / "kubernetes" / "Dockerfile").read_text().startswith("# tomoflow")
