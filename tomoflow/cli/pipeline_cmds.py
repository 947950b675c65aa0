"""``tomoflow run PIPELINE.yaml`` and ``tomoflow demo`` (the embedded demo pipeline)."""

from __future__ import annotations

from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "data" / "pipelines" / "demo.yaml"


def _security(a):
    if not (a.tls_ca_file or a.tls_cert or a.tls_key):
        return None
    from distributed.security import Security

    from ..errors import InputError

    for f in (a.tls_ca_file, a.tls_cert, a.tls_key):
        if not f or not Path(f).is_file():
            raise InputError(f or "--tls-*", "TLS needs --tls-ca-file, --tls-cert and --tls-key, all existing files")
    return Security(tls_ca_file=a.tls_ca_file, tls_client_cert=a.tls_cert, tls_client_key=a.tls_key,
                    require_encryption=True)


def cmd_run(a) -> int:
    from ..pipeline import load_pipeline, run_pipeline

    security = _security(a)
    if security is not None and a.scheduler is None:
        from ..errors import InputError

        raise InputError("--tls-*", "TLS settings need --scheduler tls://HOST:PORT (a local cluster here is "
                                    "loopback-only and would not use them)")
    p = load_pipeline(a.pipeline)  # the whole file is checked before anything starts
    run_pipeline(p, out=a.out, scheduler=a.scheduler, local=a.local, security=security, only=a.only,
                 performance_report=not a.no_performance_report)
    return 0


def cmd_demo(a) -> int:
    from ..pipeline import load_pipeline, run_pipeline

    rec = run_pipeline(load_pipeline(DEMO), out=a.out, scheduler=a.scheduler, local=a.workers)
    page = Path(a.out) / "report.html"
    print(f"demo finished in {rec['seconds'] / 60:.1f} min: open {page.resolve()}")
    return 0


def add_parsers(sub) -> None:
    r = sub.add_parser("run", help="run a pipeline file (YAML) on a Dask cluster")
    r.add_argument("pipeline", help="pipeline file, e.g. pipelines/demo.yaml")
    r.add_argument("--out", default=".", help="output folder: store, model, reports (default: current folder)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://HOST:PORT or tls://HOST:PORT)")
    g.add_argument("--local", type=int, metavar="N", help="local cluster of N worker processes (0: this process)")
    r.add_argument("--only", nargs="+", metavar="STAGE", help="run only stages of these types")
    r.add_argument("--no-performance-report", action="store_true", help="do not save Dask's performance report")
    t = r.add_argument_group("TLS (for tls:// schedulers)")
    t.add_argument("--tls-ca-file")
    t.add_argument("--tls-cert")
    t.add_argument("--tls-key")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="the full chain on a small simulated dataset; writes report.html")
    d.add_argument("--out", default="tomoflow-demo", help="output folder (default ./tomoflow-demo)")
    d.add_argument("--workers", type=int, help="local cluster worker processes (default: one per core)")
    d.add_argument("--scheduler", help="address of a running Dask scheduler")
    d.set_defaults(func=cmd_demo)
