"""``train-openset``: open-set feature learning on a particle set (seed 002, section 3.4.4), through the store.

The split is ``train``'s (stratified by true class, written to the table's ``split`` column); the classes named in
``exclude`` are left out of training (the unseen classes; their particles keep their split but no label). The
network is :func:`tomoflow.ml.openset.train_openset`, one task (a GPU worker when present); its features of every
particle are then written by :func:`tomoflow.ops.features.extract_features` (one task per chunk) into the array
``params.name``, which ``tomoflow cluster --features <name>`` groups.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import run_task
from ..errors import InputError
from ..ml.openset import feature_layer, train_openset
from ..ml.training import TRAIN, VALIDATION, validation_part
from ..params import OpenSetParams
from ..store import ParticleSet, Store, check_name
from .features import extract_features
from .training import assign_split, check_model_name


def check_openset(store: Store, set_name: str, params: OpenSetParams) -> ParticleSet:
    """Every check before anything is written."""
    check_model_name(params.model)
    check_name(params.name, "array name")
    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    unknown = sorted(set(params.exclude) - set(ps.class_names))
    if unknown:
        raise InputError(set_name, f"cannot exclude {unknown}: the particle set has classes {ps.class_names}")
    if len(ps.class_names) - len(set(params.exclude)) < 2:
        raise InputError(set_name, "open-set training needs at least two classes that are not excluded")
    from ..ml.precision import resolve_precision

    resolve_precision(params.precision)
    return ps


def openset_features(store: Store, set_name: str, out: str | Path, params: OpenSetParams = OpenSetParams(), *,
                     client=None, progress: bool = True, resume: bool = False) -> dict:
    """Train the open-set network on ``set_name`` (without ``params.exclude``), save it to ``out`` (.keras) and
    write every particle's features into the array ``params.name``. Returns the model's metadata with the run."""
    ps = check_openset(store, set_name, params)
    names = [n for n in ps.class_names if n not in params.exclude]
    remap = np.array([names.index(n) if n in names else -1 for n in ps.class_names])
    split = assign_split(ps, params.train_fraction, params.seed).copy()
    labels = remap[ps.rows(slice(0, ps.n), ["true_class"])["true_class"].astype(int)]  # -1: an unseen class
    train_idx = np.flatnonzero((split == TRAIN) & (labels >= 0))
    _, val_idx = validation_part(train_idx, labels, params.validation_fraction, params.seed)
    if len(val_idx):
        split[val_idx] = VALIDATION
        ps.write_columns(0, {"split": split})
    args = (str(store.path), set_name, labels, split, str(out), params)
    if client is None:
        meta = _train_task(*args, progress, resume)
    else:
        meta = run_task(client, _train_task, *args, False, resume, gpu=True, key=f"train-openset-{set_name}",
                        stage="train_openset")
    run = extract_features(store, set_name, out, layer=feature_layer(params), name=params.name,
                           batch_size=params.batch_size, precision=params.precision, client=client,
                           overwrite="changed", progress=progress)
    ps.set_attrs({"openset": {"model_file": str(Path(out).resolve()), "array": params.name, "loss": params.loss,
                              "exclude": list(params.exclude), "test_accuracy": meta["test"]["accuracy"]}})
    return {**meta, "features_run": run}


def _train_task(store_path, set_name, labels, split, out, params, progress, resume):
    ps = ParticleSet(Store.open(store_path), set_name)
    return train_openset(ps, labels, [n for n in ps.class_names if n not in params.exclude], split, out, params,
                         info={"voxel_size": ps.voxel_size, "set": set_name}, progress=progress, resume=resume)
