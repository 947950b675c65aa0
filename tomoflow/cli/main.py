"""The ``tomoflow`` command line.

Every command that writes to a store either completes or leaves the store exactly as it was;
bad input is reported as one line ``tomoflow: error: <file>: <problem>`` with exit status 2.
Heavy libraries are imported inside the commands so that ``tomoflow info`` starts fast. Each verb group
lives in its own module (``store_cmds``, ``simulate_cmds``, ``tomogram_cmds``, ``picking_cmds``,
``learning_cmds``, ``recovery_cmds``, ``pipeline_cmds``, ``copick_cmds``); their options come from the Params classes
(:mod:`tomoflow.params`) through :mod:`tomoflow.options`.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import TomoflowError
from ..params import ParamError
from . import (copick_cmds, learning_cmds, picking_cmds, pipeline_cmds, recovery_cmds, simulate_cmds, store_cmds,
               tomogram_cmds)
from .common import EXIT_INPUT

GROUPS = (store_cmds, simulate_cmds, tomogram_cmds, picking_cmds, learning_cmds, recovery_cmds, pipeline_cmds,
          copick_cmds)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tomoflow", description="Batch engine for cryo-electron tomography on Dask.")
    p.add_argument("--version", action="version", version=f"tomoflow {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TomoflowError as exc:
        print(f"tomoflow: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except ParamError as exc:  # a value out of its bounds found past the command line (a metadata file, a stage)
        print(f"tomoflow: error: {exc.name}: {exc.problem}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:  # the environment, not the code: a missing folder, a full disk, a read-only store
        where = exc.filename or "file system"
        print(f"tomoflow: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("tomoflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
