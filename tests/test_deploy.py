"""deploy/: a TLS scheduler refuses a plain client and serves a TLS one; the SLURM job scripts and the
Kubernetes manifests say what the README says they do: each SLURM pool runs its own venv's Python, cluster.py
puts both pools on one scheduler (against a stand-in sbatch), and every manifest validates against the Dask
operator's CRD schemas (vendored in tests/data/deploy/, see its README)."""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
CRD_DIR = Path(__file__).resolve().parent / "data" / "deploy"
SCHED = "tcp://10.0.0.1:8786"


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


SBATCH = sorted((DEPLOY / "slurm").glob("*.sbatch"))


def test_the_sbatch_scripts_are_there():
    assert {f.name for f in SBATCH} >= {"scheduler.sbatch", "cpu-workers.sbatch", "gpu-workers.sbatch"}


@pytest.mark.parametrize("script", SBATCH, ids=lambda f: f.name)
def test_sbatch_script_parses(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_slurm_job_scripts_share_one_scheduler_and_gpu_jobs_advertise_the_gpu():
    cpu = (DEPLOY / "slurm" / "cpu-workers.sbatch").read_text()
    gpu = (DEPLOY / "slurm" / "gpu-workers.sbatch").read_text()
    assert "--scheduler-file" in cpu and "--scheduler-file" in gpu
    assert "--gres=gpu:1" in gpu and "--resources GPU=1" in gpu and "GPU" not in cpu.split("exec", 1)[1]


def _cluster_module():
    spec = importlib.util.spec_from_file_location("slurm_cluster", DEPLOY / "slurm" / "cluster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _jobqueue_flat(**overrides) -> dict:
    """deploy/slurm/jobqueue.yaml as dask config keys; ``overrides``: {section: {key: value}} laid over it."""
    conf = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]
    for sec, d in overrides.items():
        conf[sec.replace("_", "-")].update(d)
    return {f"jobqueue.{sec}.{k}": v for sec, d in conf.items() for k, v in d.items()}


def _worker_line(script: str) -> str:
    (line,) = [ln for ln in script.splitlines() if " -m distributed.cli.dask_worker " in ln]
    return line


def _activated_venv(script: str) -> str:
    (venv,) = re.findall(r"^source (\S+)/bin/activate\b", script, flags=re.M)
    return venv


def test_jobqueue_config_renders_cpu_and_gpu_pools(tmp_path):
    pytest.importorskip("dask_jobqueue")
    import dask
    from dask_jobqueue.slurm import SLURMJob

    conf = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]
    # both pools name their interpreter: with none, dask-jobqueue writes this process's sys.executable
    assert conf["slurm"].get("python") == "$HOME/tomoflow/.venv/bin/python"
    assert conf["slurm-gpu"].get("python") == "$HOME/tomoflow/.venv-gpu/bin/python"
    mod = _cluster_module()
    with dask.config.set(_jobqueue_flat()):
        gpu = mod.gpu_job_script(SCHED)
        cpu = SLURMJob(scheduler=SCHED, name="cpu-0", config_name="slurm").job_script()
    assert "#SBATCH --gres=gpu:1" in gpu and "--resources GPU=1" in gpu and SCHED in gpu
    assert "KERAS_BACKEND=torch" in gpu
    assert SCHED in cpu and "--resources" not in cpu and "--nworkers 32" in cpu and "--gres" not in cpu
    for script, venv in ((cpu, "$HOME/tomoflow/.venv"), (gpu, "$HOME/tomoflow/.venv-gpu")):
        worker = _worker_line(script)
        # each pool starts its own venv's Python, the venv its prologue activates; never the submitter's
        assert shlex.split(worker)[0] == f"{venv}/bin/python", worker
        assert _activated_venv(script) == venv
        assert sys.executable not in script
        f = tmp_path / "job.sh"
        f.write_text(script)
        r = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert "--resources GPU=1" in _worker_line(gpu) and "--resources" not in _worker_line(cpu)


def test_cluster_py_uses_no_private_api():
    import ast

    tree = ast.parse((DEPLOY / "slurm" / "cluster.py").read_text())
    private = sorted({n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")})
    assert private == [], private  # e.g. cluster._correct_state: scale() and Client.wait_for_workers do it


FAKE_SBATCH = """#!/usr/bin/env bash
# stand-in for SLURM's sbatch: keep the job script, run it in its own session, print what sbatch prints
set -euo pipefail
job=$(mktemp "$FAKE_SLURM_DIR/job-XXXXXX")
cp "$1" "$job.sh"
setsid bash "$job.sh" >"$job.log" 2>&1 </dev/null &
echo "$!" >>"$FAKE_SLURM_DIR/pids"
echo "Submitted batch job $!"
"""
FAKE_SCANCEL = """#!/usr/bin/env bash
kill -TERM -- "-$1" 2>/dev/null || true
"""
# the venvs' Python: the test's own, telling the worker which path started it (os.environ of the worker)
FAKE_PYTHON = """#!/bin/sh
export TOMOFLOW_TEST_PYTHON="$0"
exec {python} "$@"
"""


def _fake_home(home: Path) -> None:
    for venv in (".venv", ".venv-gpu"):
        bin_ = home / "tomoflow" / venv / "bin"
        bin_.mkdir(parents=True)
        (bin_ / "activate").write_text(f"export TOMOFLOW_TEST_VENV={venv}\n")
        (bin_ / "python").write_text(FAKE_PYTHON.format(python=shlex.quote(sys.executable)))
        (bin_ / "python").chmod(0o755)


def _kill_jobs(slurm_dir: Path) -> None:
    pids = slurm_dir / "pids"
    for pid in pids.read_text().split() if pids.exists() else []:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)


def test_cluster_py_puts_both_pools_on_one_scheduler(tmp_path, monkeypatch):
    """make_cluster with public API only: a stand-in sbatch runs the jobs here; every worker of both pools joins
    the cluster's one scheduler, the GPU pool's with the GPU resource and the GPU venv's Python."""
    pytest.importorskip("dask_jobqueue")
    if shutil.which("setsid") is None:
        pytest.skip("the stand-in sbatch needs setsid (util-linux)")
    import dask
    from distributed import Client

    slurm_dir, bin_dir, home = tmp_path / "slurm", tmp_path / "bin", tmp_path / "home"
    for d in (slurm_dir, bin_dir, tmp_path / "tmp"):
        d.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scancel", FAKE_SCANCEL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    _fake_home(home)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("FAKE_SLURM_DIR", str(slurm_dir))
    small = _jobqueue_flat(slurm={"cores": 2, "processes": 2, "memory": "2GB", "death-timeout": 20,
                                  "scheduler-options": {"dashboard_address": ":0"}},
                           slurm_gpu={"cores": 1, "processes": 1, "memory": "1GB", "death-timeout": 20})
    mod = _cluster_module()
    try:
        with dask.config.set(small), mod.make_cluster(cpu_jobs=1, gpu_jobs=1) as cluster, \
                Client(cluster) as client:
            assert mod.expected_workers(cluster) == 3  # one CPU job of 2 processes, one GPU job of 1
            client.wait_for_workers(3, timeout=60)
            info = client.scheduler_info(n_workers=-1)["workers"]
            env = client.run(lambda: (os.environ.get("TOMOFLOW_TEST_PYTHON"), os.environ.get("TOMOFLOW_TEST_VENV")))
            pools = {}
            for addr, w in info.items():
                python, venv = env[addr]
                pool = "gpu" if w["resources"].get("GPU") == 1 else "cpu"
                pools.setdefault(pool, []).append(w["name"])
                want = ".venv-gpu" if pool == "gpu" else ".venv"
                want_python = str(home / "tomoflow" / want / "bin" / "python")
                assert python == want_python and venv == want, (w["name"], env[addr])
            assert len(pools["gpu"]) == 1 and len(pools["cpu"]) == 2, pools
            assert pools["gpu"][0].startswith("gpu-"), pools
            assert len(list(slurm_dir.glob("job-*.sh"))) == 2  # two submissions, no more
    finally:
        _kill_jobs(slurm_dir)


def test_kubernetes_manifests_have_a_gpu_worker_group_on_the_same_cluster():
    cluster = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    group = yaml.safe_load((DEPLOY / "kubernetes" / "gpu-workergroup.yaml").read_text())
    assert cluster["kind"] == "DaskCluster" and group["kind"] == "DaskWorkerGroup"
    assert group["spec"]["cluster"] == cluster["metadata"]["name"]
    c = group["spec"]["worker"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1" and "GPU=1" in c["args"]
    assert (DEPLOY / "kubernetes" / "Dockerfile").read_text().startswith("# tomoflow")


# --- the Dask operator's CRD schemas (tests/data/deploy/README.md) and a validator for what they use ---------------

SCHEMA_KEYWORDS = {"type", "properties", "required", "items", "additionalProperties", "nullable", "format", "default",
                   "description", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
                   "x-kubernetes-map-type", "x-kubernetes-list-type", "x-kubernetes-list-map-keys"}
PY_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}
INT_FORMATS = {"int32": 2**31, "int64": 2**63}


def schema_errors(value, schema: dict, path: str = "") -> list[str]:
    """Errors of ``value`` against a Kubernetes structural (OpenAPI v3) schema, as the API server with strict field
    validation (kubectl's default) reports them: wrong types (an integer is not a string), missing required fields,
    unknown fields. A schema keyword outside SCHEMA_KEYWORDS fails the test rather than going unchecked. Stricter
    than the server in one point: a null where the schema does not say ``nullable`` is an error (it prunes it)."""
    unknown = set(schema) - SCHEMA_KEYWORDS
    assert not unknown, f"{path or '/'}: schema keywords this validator does not check: {sorted(unknown)}"
    where = path or "/"
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null"]
    t = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return [f"{where}: {value!r} is neither an integer nor a string"]
    elif t == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: {value!r} ({type(value).__name__}) is not of type integer"]
        bound = INT_FORMATS.get(schema.get("format"))
        if bound and not -bound <= value < bound:
            return [f"{where}: {value} is out of the {schema['format']} range"]
    elif t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{where}: {value!r} ({type(value).__name__}) is not of type number"]
    elif t is not None:
        if not isinstance(value, PY_TYPES[t]) or (t != "boolean" and isinstance(value, bool)):
            return [f"{where}: {value!r} ({type(value).__name__}) is not of type {t}"]
    errors = []
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", False)
        errors += [f"{where}: required field {k!r} is missing" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                errors += schema_errors(v, props[k], f"{path}/{k}")
            elif isinstance(extra, dict):
                errors += schema_errors(v, extra, f"{path}/{k}")
            elif not (extra is True or schema.get("x-kubernetes-preserve-unknown-fields")):
                errors.append(f"{where}: unknown field {k!r}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            errors += schema_errors(v, schema.get("items", {}), f"{path}/{i}")
        if schema.get("x-kubernetes-list-type") == "set" and len({repr(v) for v in value}) != len(value):
            errors.append(f"{where}: duplicate items in a list of type set")
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema["x-kubernetes-list-map-keys"]
            seen = [tuple(repr(v.get(k)) for k in keys) for v in value if isinstance(v, dict)]
            if len(set(seen)) != len(seen):
                errors.append(f"{where}: duplicate {keys} in a list of type map")
    return errors


@functools.lru_cache(maxsize=1)
def _crd_schemas() -> dict:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the vendored CRDs (read once: 0.9 MB)."""
    out = {}
    for f in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.load(f.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        assert crd["kind"] == "CustomResourceDefinition", f
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                key = (f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])
                out[key] = v["schema"]["openAPIV3Schema"]
    return out


DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# resource.Quantity's serialised form (k8s.io/apimachinery/pkg/api/resource): a decimal, then a binary suffix
# (Ki..Ei), a decimal suffix (n, u, m, "", k, M, G, T, P, E) or an exponent
QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$")


def manifest_errors(doc, schemas: dict) -> list[str]:
    """A manifest's errors: a Dask operator resource against its CRD schema, any other resource its basic structure;
    then every resources.limits/requests quantity in it (what the API server checks when the operator makes pods)."""
    if not isinstance(doc, dict):
        return [f"not a mapping: {doc!r}"]
    errors = [f"{k!r} is missing" for k in ("apiVersion", "kind", "metadata") if k not in doc]
    if errors:
        return errors
    name = (doc["metadata"] or {}).get("name")
    if not (isinstance(name, str) and len(name) <= 253 and DNS_1123_SUBDOMAIN.match(name)):
        errors.append(f"/metadata/name: {name!r} is not a DNS-1123 subdomain")
    if doc["apiVersion"].split("/")[0] == "kubernetes.dask.org":
        schema = schemas.get((doc["apiVersion"], doc["kind"]))
        if schema is None:
            return errors + [f"no CRD for {doc['kind']} {doc['apiVersion']} in {CRD_DIR}"]
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}  # the server's part
        errors += schema_errors(body, schema)

    def quantities(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("limits", "requests") and path.endswith("/resources") and isinstance(v, dict):
                    for res, q in v.items():
                        if not (isinstance(q, str) and QUANTITY.match(q)):
                            errors.append(f"{path}/{k}/{res}: {q!r} is not a quantity string")
                else:
                    quantities(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                quantities(v, f"{path}/{i}")

    quantities(doc, "")
    return errors


MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def test_the_vendored_crds_are_the_operators_v1_kinds():
    schemas = _crd_schemas()
    assert set(schemas) == {("kubernetes.dask.org/v1", k) for k in ("DaskCluster", "DaskWorkerGroup", "DaskJob")}
    for schema in schemas.values():
        assert schema["type"] == "object" and "spec" in schema["properties"]
    assert (CRD_DIR / "LICENSE.dask-kubernetes").read_text().startswith("BSD 3-Clause License")
    # byte-identical copies: the hashes in the README's table
    row = r"^\| `(\w+\.yaml)` \| \w+ \| `([0-9a-f]{64})` \|$"
    listed = dict(re.findall(row, (CRD_DIR / "README.md").read_text(), re.M))
    assert listed and listed == {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in CRD_DIR.glob("*.yaml")}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda f: f.name)
def test_kubernetes_manifest_validates_against_the_dask_operator_crds(manifest):
    schemas = _crd_schemas()
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d is not None]
    assert docs, f"{manifest.name}: no resource"
    for doc in docs:
        assert manifest_errors(doc, schemas) == [], f"{manifest.name}: {doc.get('kind')}"
    jsonschema = _maybe_import("jsonschema")
    if jsonschema is not None:  # a second opinion where installed (it ignores the x-kubernetes-* keywords)
        for doc in docs:
            if (doc["apiVersion"], doc["kind"]) in schemas:
                body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
                jsonschema.validate(body, schemas[(doc["apiVersion"], doc["kind"])])


def _maybe_import(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _gpu_group():
    return yaml.safe_load((DEPLOY / "kubernetes" / "gpu-workergroup.yaml").read_text())


def _gpu_container(doc):
    return doc["spec"]["worker"]["spec"]["containers"][0]


def _int_gpu(doc):
    _gpu_container(doc)["resources"]["limits"]["nvidia.com/gpu"] = 1


def _int_cpu(doc):
    _gpu_container(doc)["resources"]["requests"]["cpu"] = 4


def _typo(doc):
    _gpu_container(doc)["resource"] = _gpu_container(doc).pop("resources")


def _no_container_name(doc):
    del _gpu_container(doc)["name"]


def _int_arg(doc):
    _gpu_container(doc)["args"][5] = 1  # --nthreads 1 unquoted: args are strings


def _bad_quantity(doc):
    _gpu_container(doc)["resources"]["limits"]["memory"] = "64 GiB"


def _duplicate_port(doc):
    _gpu_container(doc)["ports"] = [{"containerPort": 8788, "protocol": "TCP"}] * 2


def _no_worker(doc):
    del doc["spec"]["worker"]["spec"]


def _wrong_version(doc):
    doc["apiVersion"] = "kubernetes.dask.org/v2"


@pytest.mark.parametrize("mutate", [_int_gpu, _int_cpu, _typo, _no_container_name, _int_arg, _bad_quantity,
                                    _duplicate_port, _no_worker, _wrong_version], ids=lambda f: f.__name__[1:])
def test_the_manifest_check_catches(mutate):
    doc = _gpu_group()
    assert manifest_errors(doc, _crd_schemas()) == []
    bad = copy.deepcopy(doc)  # the cached schemas are never changed: only the manifest
    mutate(bad)
    assert manifest_errors(bad, _crd_schemas()), mutate.__name__


def test_non_dask_manifests_get_a_structure_check():
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "tomoflow-data"},
           "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}}}
    assert manifest_errors(pvc, {}) == []
    assert manifest_errors({**pvc, "metadata": {"name": "Tomoflow_Data"}}, {})
    assert manifest_errors({k: v for k, v in pvc.items() if k != "kind"}, {})
    bad = copy.deepcopy(pvc)
    bad["spec"]["resources"]["requests"]["storage"] = 1
    assert manifest_errors(bad, {})
