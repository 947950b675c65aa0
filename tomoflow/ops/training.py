"""``train``: a CNN on a particle set of the store, its split recorded in the table (seed 000, section 3.2.1).

The split (train / validation / test, stratified by true class, from the seed) is written to the table's
``split`` column, so later stages (RIF-SVM, reports) and other tools see which particles were trained on;
the training itself is :func:`tomoflow.ml.training.train_model` on the set's chunks. On a cluster the whole
training is one task, on a GPU worker when there is one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import run_task
from ..errors import InputError
from ..kernels.wedge import wedge_of
from ..ml.training import TRAIN, VALIDATION, stratified_split, train_model, validation_part
from ..params import TrainParams
from ..store import ParticleSet, Store


def assign_split(ps: ParticleSet, train_fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """Stratified random train/test split by true class; written to the table's ``split`` column."""
    cls = ps.rows(slice(0, ps.n), ["true_class"])["true_class"]
    if (cls < 0).any():
        raise InputError(ps.name, "particle set has particles without a true class (labels); cannot train or split")
    split = stratified_split(cls, train_fraction, seed)
    ps.write_columns(0, {"split": split})
    return split


def train(store: Store, set_name: str, out: str | Path, params: TrainParams = TrainParams(), *,
          progress: bool = True, resume: bool = False) -> dict:
    """Train ``params.model`` on the train split of ``set_name``; save to ``out`` (.keras); returns its metadata.
    ``resume``: continue a training of the same key stopped part-way (see :func:`~tomoflow.ml.training.train_model`)."""
    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    if not 0 <= params.rotate <= 1:
        raise ValueError(f"rotate is a share of the draws in [0, 1], got {params.rotate}")
    from ..ml.precision import resolve_precision

    resolve_precision(params.precision)  # refused here (e.g. mixed_float16 without a GPU) before the split is written
    unknown = sorted(set(params.exclude) - set(ps.class_names))
    if unknown:
        raise InputError(set_name, f"cannot exclude {unknown}: the particle set has classes {ps.class_names}")
    names = [n for n in ps.class_names if n not in params.exclude]
    remap = np.array([names.index(n) if n in names else -1 for n in ps.class_names] or [-1])
    split = assign_split(ps, params.train_fraction, params.seed).copy()
    labels = remap[ps.rows(slice(0, ps.n), ["true_class"])["true_class"].astype(int)]  # -1: left out
    train_idx = np.flatnonzero((split == TRAIN) & (labels >= 0))
    _, val_idx = validation_part(train_idx, labels, params.validation_fraction, params.seed)
    if len(val_idx):
        split[val_idx] = VALIDATION
        ps.write_columns(0, {"split": split})
    wedges = None
    if params.augment and params.rotate:
        wedges = wedge_of(ps.rows(slice(0, ps.n), ["tilt_min", "tilt_max", "tilt_axis"]))
    return train_model(ps, labels, names, split, out, params, wedges=wedges,
                       info={"voxel_size": ps.voxel_size, "set": set_name}, progress=progress, resume=resume)


def _train_task(store_path: str, set_name: str, out: str, params: TrainParams, resume: bool = False) -> dict:
    return train(Store.open(store_path), set_name, out, params, progress=False, resume=resume)


def train_on(client, store: Store, set_name: str, out: str | Path, params: TrainParams, *, key: str | None = None,
             progress: bool = True, resume: bool = False) -> dict:
    """:func:`train` here without a client; with one, as one task on a GPU worker when the cluster has one
    (else on a CPU worker, with a warning). Returns the metadata."""
    if client is None:
        return train(store, set_name, out, params, progress=progress, resume=resume)
    return run_task(client, _train_task, str(store.path), set_name, str(out), params, resume, gpu=True,
                    key=key or f"train-{set_name}", stage="train")


def check_model_name(model: str) -> None:
    from ..ml.models import MODELS

    if model.lower().replace("-", "_") not in MODELS:
        raise InputError(model, f"unknown model (have: {', '.join(MODELS)})")
