"""Seed 000's Table 2: classification accuracy over a grid of SNR x tilt range, for CNNs and RIF-SVM.

For every cell a dataset is simulated (the given structures plus the empty class, uniform random
rotations and shifts), split 50/50 by class, each CNN is trained on one half and scored on the other
(on a GPU worker when the cluster has one), and RIF-SVM is scored on the same split. Cells are
computed in order and recorded in ``<workdir>/grid-cells.json`` as they finish (with the settings they
were made with), so an interrupted run resumes at the first unfinished cell, and inside it at the last finished
epoch of the model it was training (``train_model(resume=True)``; a model the cell finished is kept). The CNNs
run at ``precision`` (``auto``: bf16 where the hardware computes it natively, see :mod:`tomoflow.ml.precision`);
the resolved policy is part of the grid's key and of each cell's record. Two scales:

* ``small``: 16^3 boxes of 24 Å (a 384 Å box holds the ribosome), 200 subtomograms per class, and the four
  structures of >= 0.26 MDa (6ZU5, 4V8R, 5CVZ, 6WG6) plus empty: at 24 Å a 100-160 kDa complex is 3-4 voxels
  across, too small to tell apart. With 450 training subtomograms the paper's SGD (lr 0.01) makes ~200 noisy
  steps and stalls (DSRF3D 0.706 at SNR 0.1); Adam at lr 1e-3 for 40 epochs (DSRF3D) and 20 (Inception3D,
  3x the FLOPs) trains them (DSRF3D 0.97). About an hour on 2 CPU cores;
* ``paper``: the paper's 40^3 boxes of 9.2 Å, 1000 per class, 20 epochs, batch 64, SGD (lr 0.01, Nesterov),
  the seven structures of >= 107 kDa plus empty (a GPU, or a CPU with bf16 units: issue 23 estimated ~1 h of
  training per model per cell on 2 such cores; not run yet).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ..params import MODEL_NAMES, PRECISION_HELP, PRECISIONS, opt


# the shared structures large enough to tell apart at the paper's 9.2 Å (>= ~100 kDa); at 24 Å, the first four
# particles per chunk of the grid's and leave-one-out's simulated sets (the shuffle buffer of training mixes chunks)
SET_CHUNK = 128
STRUCTURES = ("6zu5", "4v8r", "5cvz", "6wg6", "3o21", "2nwl", "7cfn")
SCALES = {  # epochs: one number for every model, or {model: epochs}
    "small": {"box": 16, "voxel_size": 24.0, "per_class": 200, "epochs": {"inception3d": 20, "dsrf3d": 40},
              "batch_size": 32, "optimizer": "adam", "learning_rate": 1e-3, "structures": STRUCTURES[:4]},
    "paper": {"box": 40, "voxel_size": 9.2, "per_class": 1000, "epochs": 20, "batch_size": 64,
              "optimizer": "sgd", "learning_rate": 0.01, "structures": STRUCTURES},
}
PAPER = {  # seed 000 Table 2: (Inception3D, DSRF3D, RIF-SVM) per (SNR, tilt)
    (1000, 60): (0.993, 0.990, 0.992), (1000, 50): (0.994, 0.978, 0.983), (1000, 40): (0.983, 0.991, 0.967),
    (0.5, 60): (0.975, 0.972, 0.929), (0.5, 50): (0.964, 0.967, 0.885), (0.5, 40): (0.931, 0.951, 0.857),
    (0.1, 60): (0.851, 0.891, 0.762), (0.1, 50): (0.807, 0.873, 0.633), (0.1, 40): (0.809, 0.866, 0.649),
    (0.05, 60): (0.757, 0.767, 0.592), (0.05, 50): (0.682, 0.728, 0.455), (0.05, 40): (0.637, 0.684, 0.468),
    (0.03, 60): (0.608, 0.658, 0.446), (0.03, 50): (0.516, 0.604, 0.319), (0.03, 40): (0.473, 0.556, 0.341),
}


SCALE_NAMES = tuple(SCALES)


@dataclass(frozen=True)
class GridParams:
    snrs: tuple[float, ...] = opt((1000.0, 0.5, 0.1, 0.05, 0.03), help="SNRs of the grid")
    tilts: tuple[float, ...] = opt((60.0, 50.0, 40.0), help="half tilt ranges of the grid, degrees")
    structures: tuple[str, ...] = opt((), metavar="NAME", help="structures (default: the scale's)")  # (): the scale's
    models: tuple[str, ...] = opt(("inception3d", "dsrf3d"), metavar="MODEL", choices=MODEL_NAMES,
                                  help="CNNs to train")
    rif_svm: bool = opt(True, help="also score RIF-SVM")
    scale: str = opt("small", choices=SCALE_NAMES, help="settings: small (CPU) or the paper's")
    per_class: int = opt(0, help="subtomograms per class (0: the scale's)")  # 0: the scale's
    epochs: int = opt(0, help="training epochs (0: the scale's)")
    box: int = opt(0, help="box edge, voxels (0: the scale's)")
    voxel_size: float = opt(0.0, help="Å per voxel (0: the scale's)")
    seed: int = opt(0, help="random seed")
    # TrainParams.rotate: the share of training draws rotated in the wedge
    rotate: float = opt(0.0, help="share of training draws rotated in their wedge")
    precision: str = opt("auto", choices=PRECISIONS, help=PRECISION_HELP)

    def resolved(self) -> dict:
        return scale_settings(self)


def scale_settings(p) -> dict:
    """``p.scale``'s settings with ``p``'s non-empty overrides (per_class, epochs, box, voxel_size, structures)."""
    s = dict(SCALES[p.scale])
    for k in ("per_class", "epochs", "box", "voxel_size", "structures"):
        if getattr(p, k):
            s[k] = getattr(p, k)
    return s


def train_params(s: dict, model: str, **kw):
    """The :class:`~tomoflow.params.TrainParams` of resolved scale settings ``s`` for ``model``."""
    from ..params import TrainParams

    epochs = s["epochs"][model] if isinstance(s["epochs"], dict) else s["epochs"]
    return TrainParams(model=model, epochs=int(epochs), batch_size=s["batch_size"], optimizer=s["optimizer"],
                       learning_rate=s["learning_rate"], **kw)


def precision_key(precision: str) -> dict:
    """The precision's part of a resume key: the resolved policy (a run resumed where ``auto`` resolves otherwise
    starts over rather than mix precisions), none for float32 (keys recorded before the option stay valid)."""
    from ..ml.precision import resolve_precision

    resolved = resolve_precision(precision)
    return {} if resolved == "float32" else {"precision": resolved}


def cell_name(snr: float, tilt: float) -> str:
    return f"grid.snr{snr:g}.tilt{tilt:g}"


def model_path(workdir, snr: float, tilt: float, model: str):
    """Where a cell's trained ``model`` is saved."""
    return workdir / f"{cell_name(snr, tilt)}.{model}.keras"


def run_cell(store, snr: float, tilt: float, p: GridParams, workdir, *, client=None, progress=None,
             cell: dict | None = None) -> dict:
    """Simulate, train and score one cell; returns {method: accuracy, ...}. With ``cell`` (a finished cell's
    record) only the methods it lacks are run, on the dataset it simulated."""
    from ..ops.rif import compute_rif, svm_classify
    from ..ops.simulate import simulate_dataset
    from ..ops.training import train_on
    from ..params import DatasetSpec

    s = p.resolved()
    name = cell_name(snr, tilt)
    spec = DatasetSpec(classes=tuple(s["structures"]), per_class=s["per_class"], snrs=(float(snr),),
                       tilt_ranges=(float(tilt),), box=s["box"], voxel_size=s["voxel_size"],
                       resolution=2 * s["voxel_size"], include_empty=True, seed=p.seed + int(1000 * snr) + int(tilt))
    if cell is None:
        t0 = time.perf_counter()
        simulate_dataset(store, name, spec, chunk=SET_CHUNK, client=client, progress=progress, overwrite=True)
        out = {"snr": snr, "tilt": tilt, "n": int(spec.n), "simulate_s": time.perf_counter() - t0}
    else:
        out = dict(cell)
    for model in (m for m in p.models if m not in out):
        tp = train_params(s, model, seed=p.seed, rotate=p.rotate, precision=p.precision)
        path = str(model_path(workdir, snr, tilt, model))
        t0 = time.perf_counter()
        # resume: a cell stopped in a model's training continues from its last epoch; a model it finished is kept
        meta = train_on(client, store, name, path, tp, key=f"train-{name}-{model}", progress=False, resume=True)
        out[model] = meta["test"]["accuracy"]
        out["precision"] = meta["precision"]
        if "accuracy_turns" in meta["test"]:
            out[f"{model}_turns"] = meta["test"]["accuracy_turns"]
        out[f"{model}_s"] = time.perf_counter() - t0
    if p.rif_svm and "rif_svm" not in out:
        t0 = time.perf_counter()
        compute_rif(store, name, client=client, progress=progress)
        out["rif_svm"] = svm_classify(store, name, features="rif", seed=p.seed)["accuracy"]
        out["rif_svm_s"] = time.perf_counter() - t0
    return out


def run_grid(store, p: GridParams, workdir, *, client=None, progress=None, log=print) -> list[dict]:
    """Every cell not yet recorded, in order (tilt outer, SNR inner), and in recorded cells the methods they
    lack (a model added to ``models`` later is trained on the cell's dataset, nothing else reruns); the records
    of all cells."""
    from pathlib import Path

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # grids recorded before rotate and precision stay valid; the methods are not part of the key (cells record
    # which ones they ran, and get the missing ones added)
    fields = {k: v for k, v in p.__dict__.items()
              if k not in ("precision", "models", "rif_svm") and (k != "rotate" or v)}
    fields.update(precision_key(p.precision))
    key = json.dumps({**fields, **p.resolved()}, sort_keys=True, default=list)
    rec_path = workdir / "grid-cells.json"
    done = json.loads(rec_path.read_text()) if rec_path.exists() else {"key": key, "cells": []}
    if done.get("key") != key:
        done = {"key": key, "cells": []}
    have = {(c["snr"], c["tilt"]): i for i, c in enumerate(done["cells"])}
    if any([score_turns(store, c, p, workdir) for c in done["cells"]]):  # a list: score every cell
        rec_path.write_text(json.dumps(done, indent=1))
    wanted = (*p.models, *(("rif_svm",) if p.rif_svm else ()))
    for tilt in p.tilts:
        for snr in p.snrs:
            i = have.get((snr, tilt))
            if i is not None and all(m in done["cells"][i] for m in wanted):
                continue
            cell = run_cell(store, snr, tilt, p, workdir, client=client, progress=progress,
                            cell=None if i is None else done["cells"][i])
            if i is None:
                done["cells"].append(cell)
            else:
                done["cells"][i] = cell
            rec_path.write_text(json.dumps(done, indent=1))
            log(f"grid cell SNR {snr:g}, +-{tilt:g}: " + ", ".join(
                f"{m} {cell[m]:.3f}" for m in (*p.models, "rif_svm") if m in cell))
    return done["cells"]


def score_turns(store, cell: dict, p: GridParams, workdir) -> bool:
    """Add ``<model>_turns`` (test accuracy with the wedge-preserving turns averaged, see
    :func:`tomoflow.ml.training.evaluate`) to a cell recorded without it, from its saved models; True if added."""
    import numpy as np

    from ..ml.training import TEST, evaluate, load_trained
    from ..store import ParticleSet

    paths = {m: model_path(workdir, cell["snr"], cell["tilt"], m) for m in p.models
             if m in cell and f"{m}_turns" not in cell}
    paths = {m: path for m, path in paths.items() if path.exists()}
    if not paths:
        return False
    ps = ParticleSet(store, cell_name(cell["snr"], cell["tilt"]))
    t = ps.rows(slice(0, ps.n), ["true_class", "split"])
    for m, path in paths.items():
        model, meta = load_trained(path)
        labels = np.array([meta["class_names"].index(n) for n in ps.class_names])[t["true_class"].astype(int)]
        cell[f"{m}_turns"] = evaluate(model, ps, np.flatnonzero(t["split"] == TEST), labels, turns=True)[
            "accuracy_turns"]
    return True


def markdown_table(cells: list[dict], models=("inception3d", "dsrf3d"), snrs=(), tilts=(), *,
                   turns: bool = False) -> str:
    """Ours beside the paper's Table 2, one row per SNR, one column group per tilt range. ``snrs`` and
    ``tilts`` (the grid asked for) give rows and columns even where no cell was run ("not run"). With
    ``turns`` the CNN accuracies are those with test-time turns (``<model>_turns``; "-" where not scored)."""
    methods = [*models, "rif_svm"]
    label = {"inception3d": "Inception3D", "dsrf3d": "DSRF3D", "rif_svm": "RIF-SVM"}
    tilts = sorted({float(t) for t in tilts} | {c["tilt"] for c in cells}, reverse=True)
    snrs = sorted({float(x) for x in snrs} | {c["snr"] for c in cells}, reverse=True)
    by = {(c["snr"], c["tilt"]): c for c in cells}
    head = "| SNR | " + " | ".join(f"+-{t:g}: {label[m]}" for t in tilts for m in methods) + " |"
    lines = [head, "|" + "---|" * (1 + len(tilts) * len(methods))]
    for s in snrs:
        row = []
        for t in tilts:
            c = by.get((s, t))
            ref = PAPER.get((s, t))
            for m in methods:
                key = f"{m}_turns" if turns and m != "rif_svm" else m
                ours = "not run" if c is None else f"{c[key]:.3f}" if key in c else "-"
                paper = ""
                if ref and m in ("inception3d", "dsrf3d", "rif_svm"):
                    paper = f" ({ref[('inception3d', 'dsrf3d', 'rif_svm').index(m)]:.3f})"
                row.append(ours + paper)
        lines.append(f"| {s:g} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def bar(cells: list[dict]) -> dict:
    """The issue's bar: a CNN (the better of the two) >= RIF-SVM in every cell run; DSRF3D >= 0.85 at SNR 0.1,
    +-60. ``cells_run`` says how many cells that covers (the full grid: 15); ``..._turns``: the same with the
    CNNs' test-time-turn accuracies (None where a cell lacks them)."""
    def cnn_ge(suffix):
        best = [max(c.get(f"inception3d{suffix}", -1), c.get(f"dsrf3d{suffix}", -1)) for c in cells]
        if suffix and min(best, default=-1) < 0:
            return None
        return bool(cells) and all(b >= c.get("rif_svm", 1) for b, c in zip(best, cells))

    d = [c for c in cells if c["snr"] == 0.1 and c["tilt"] == 60]
    d0 = d[0].get("dsrf3d") if d else None
    return {"cells_run": len(cells), "cnn_ge_rif_every_cell": cnn_ge(""),
            "cnn_ge_rif_every_cell_turns": cnn_ge("_turns"), "dsrf3d_snr0.1_60": d0,
            "dsrf3d_bar_met": bool(d0 is not None and d0 >= 0.85)}
