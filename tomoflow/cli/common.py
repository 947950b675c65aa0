"""What every command shares: the store it writes (removed again on failure if it made it), the cluster it
runs on, Params from its options, and the one shape of a command (open the store, check names, connect, call)."""

from __future__ import annotations

import argparse
import shutil
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError

EXIT_INPUT = 2


@contextmanager
def writable_store(path: str):
    """Open (or create) a store for writing. A store created here is removed again on failure only while it
    holds no entry at all: finished work (this command's resumable chunks, or what another command wrote into
    the new store meanwhile) is never deleted."""
    from ..store import Store

    p = Path(path)
    existed = p.exists()
    try:
        yield Store.open(p, create=True)
    except BaseException:
        if not existed and p.exists() and _holds_nothing(p):
            shutil.rmtree(p, ignore_errors=True)
        raise


def _holds_nothing(path: Path) -> bool:
    """True if the store at ``path`` has no entry of any kind and nothing staged (a store as ``Store.create`` left it)."""
    from ..store.core import KINDS, STAGING

    def entries(folder: Path):
        return [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []

    return not any(entries(path / kind) for kind in KINDS) and not (
        (path / STAGING).is_dir() and any((path / STAGING).iterdir()))


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where to run")
    g.add_argument("--workers", type=int, help="local cluster worker processes (default: all cores; 0 = in this "
                                                "process)")
    g.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:port)")


def add_params(p: argparse.ArgumentParser, cls, *, exclude=(), title: str | None = None) -> None:
    """The options of Params class ``cls`` (:mod:`tomoflow.options`), in their own group when ``title``."""
    from .. import options

    options.add_arguments(p.add_argument_group(title) if title else p, cls, exclude=exclude)


def params(cls, a, **overrides):
    """The ``cls`` instance the options in ``a`` give; a value the class rejects is one line of bad input."""
    from .. import options

    from ..params import ParamError

    try:
        return options.from_namespace(cls, a, **overrides)
    except ParamError as exc:
        raise InputError("--" + exc.name.replace("_", "-"), exc.problem) from None
    except ValueError as exc:
        raise InputError("options", str(exc)) from None


@contextmanager
def store_and_cluster(a, *, mode: str = "r+", sets=(), tomograms=(), cluster: bool = True):
    """The shape of a command: open ``a.store``, check that the named ``sets`` and ``tomograms`` exist (before
    any work or any cluster starts), then connect to ``a.scheduler`` or start ``a.workers`` local workers.
    Yields (store, client); client is None for ``--workers 0`` or ``cluster=False``."""
    from ..engine import cluster_client
    from ..store import ParticleSet, Store

    store = Store.open(a.store, mode=mode)
    for s in sets:
        ParticleSet(store, s)
    for t in tomograms:
        store.require("tomograms", t)
    if not cluster:
        yield store, None
        return
    with cluster_client(getattr(a, "scheduler", None), getattr(a, "workers", None)) as client:
        yield store, client
