"""A Dask cluster of separate OS processes (a scheduler and N workers, each in its own session so that
a test can kill one with everything it started), as on a real deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tomoflow.engine import WORKER_ENV


class ProcCluster:
    def __init__(self, workdir: Path, n_workers: int = 3, worker_args=(), cwd: Path | None = None):
        """``cwd``: the folder the scheduler and workers run in (as on nodes started by hand elsewhere)."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file = self.dir / "scheduler.json"
        env = {**os.environ, **WORKER_ENV, "PYTHONUNBUFFERED": "1"}
        self.log = open(self.dir / "cluster.log", "w")
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(self.file)], env=env, stdout=self.log, stderr=self.log,
            start_new_session=True, cwd=cwd)
        deadline = time.time() + 60
        while not self.file.exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(self.file.read_text())["address"]
        self.workers = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1", "--nworkers", "1",
             "--no-dashboard", "--memory-limit", "4GB", *worker_args], env=env, stdout=self.log, stderr=self.log,
            start_new_session=True, cwd=cwd) for _ in range(n_workers)]

    def client(self, n_workers: int | None = None):
        from distributed import Client

        c = Client(self.address, timeout=60)
        c.wait_for_workers(len(self.workers) if n_workers is None else n_workers, timeout=120)
        return c

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` and its nanny: a lost node."""
        os.killpg(self.workers[i].pid, signal.SIGKILL)
        self.workers[i].wait()

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_idle(client, count=lambda: 0, timeout: float = 180, quiet_s: float = 5.0) -> None:
    """Until no worker is processing anything and ``count()`` (e.g. finished chunks) has not changed for
    ``quiet_s`` seconds: tasks a killed client left behind have finished or been dropped."""
    deadline = time.time() + timeout
    last, since = None, time.time()
    while time.time() < deadline:
        now = (count(), any(client.processing().values()))
        if now != last:
            last, since = now, time.time()
        elif not now[1] and time.time() - since >= quiet_s:
            return
        time.sleep(0.2)
    raise TimeoutError("the cluster did not become idle")
