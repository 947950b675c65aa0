"""What every command shares: the store it writes (removed again on failure if it made it), the cluster it
runs on, Params from its options, and the one shape of a command (open the store, check names, connect, call)."""

from __future__ import annotations

import argparse
from contextlib import contextmanager

from ..errors import InputError

EXIT_INPUT = 2


@contextmanager
def writable_store(path):
    """:func:`tomoflow.store.core.writable_store`, imported when a command runs (the parser stays light)."""
    from ..store.core import writable_store as open_for_writing

    with open_for_writing(path) as store:
        yield store


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
