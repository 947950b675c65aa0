"""Table 2 cells under other settings than the grid's (issue 8): does the CNN's gap to RIF-SVM close with more
subtomograms per class, on a harder class set, or with training subtomograms rotated in the wedge?

    python benchmarks/bench_table2_variants.py --tag pc400 --per-class 400 --epochs 20 --cells 0.1,40 0.05,50
    python benchmarks/bench_table2_variants.py --tag s7 --structures 7 --cells 0.1,40 0.05,50
    python benchmarks/bench_table2_variants.py --tag rot --rotate 0.5 --cells 0.5,60 0.1,40

Each cell is :func:`tomoflow.experiments.accuracy_grid.run_cell` (simulate, 50/50 split, train, score with and without
test-time turns, RIF-SVM on the same split) with the small scale's settings overridden by the options; one
JSON line per cell is printed and all cells go to ``<out>/<tag>/cells.json``. No cluster: one process.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path


def main(argv=None) -> None:
    from tomoflow.experiments.accuracy_grid import STRUCTURES, GridParams, run_cell
    from tomoflow.store import Store

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", required=True, help="name of this variant (a folder under --out)")
    ap.add_argument("--out", default="benchmark-runs/table2-variants")
    ap.add_argument("--cells", nargs="+", default=["0.1,40"], help="SNR,tilt pairs")
    ap.add_argument("--models", default="dsrf3d", help="comma-separated CNNs")
    ap.add_argument("--per-class", type=int, default=0, help="0: the small scale's (200)")
    ap.add_argument("--epochs", type=int, default=0, help="0: the small scale's per model")
    ap.add_argument("--box", type=int, default=0)
    ap.add_argument("--voxel-size", type=float, default=0.0)
    ap.add_argument("--structures", type=int, default=0, help="the first N of accuracy_grid.STRUCTURES; 0: scale's")
    ap.add_argument("--rotate", type=float, default=0.0, help="share of training draws rotated in the wedge")
    a = ap.parse_args(argv)
    if not 0 <= a.structures <= len(STRUCTURES):
        ap.error(f"--structures must be 0..{len(STRUCTURES)}")
    workdir = Path(a.out) / a.tag
    store = Store.open(workdir / "variants.zarr", create=True)
    p = GridParams(models=tuple(a.models.split(",")), per_class=a.per_class, epochs=a.epochs, box=a.box,
                   voxel_size=a.voxel_size, structures=STRUCTURES[:a.structures] if a.structures else (),
                   rotate=a.rotate)
    record = {"settings": {**vars(a), **p.resolved()}, "date": str(date.today()),
              "machine": f"{platform.machine()}, {platform.python_version()}", "cells": []}
    for cell in a.cells:
        snr, tilt = (float(v) for v in cell.split(","))
        t0 = time.perf_counter()
        r = run_cell(store, snr, tilt, p, workdir)
        r["seconds"] = time.perf_counter() - t0
        record["cells"].append(r)
        print(json.dumps(r), flush=True)
        (workdir / "cells.json").write_text(json.dumps(record, indent=1, default=list))


if __name__ == "__main__":
    main()
