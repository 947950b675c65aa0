"""``rif-svm``: the rotation-invariant-feature baseline of seed 000 over a particle set.

Features (:func:`tomoflow.kernels.rif.rif_features`) run through the engine, one task per particle chunk,
into the per-particle array ``rif``; the RBF SVM is trained and tested on the table's split (the CNNs').
"""

from __future__ import annotations

import functools
from dataclasses import asdict

import numpy as np

from ..errors import InputError
from ..kernels.rif import rif_batch, rif_features, svm_train_test
from ..ml.training import TEST, TRAIN, VALIDATION
from ..params import RifParams
from ..store import ParticleSet, Store
from .common import fresh_arrays


def _rif_task(store_path: str, chunk: int, *, set_name: str, name: str, params: dict) -> None:
    ps = ParticleSet(Store.open(store_path), set_name)
    sl = ps.chunk_slice(chunk)
    ps.array(name)[sl] = rif_batch(ps.read_volumes(sl), RifParams(**params))


def compute_rif(store: Store, set_name: str, params: RifParams = RifParams(), *, name: str = "rif", client=None,
                overwrite: bool = False, progress: bool | None = None) -> dict:
    """Rotation-invariant features of every particle of ``set_name`` into the per-particle array ``name``."""
    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    n_feat = rif_features(np.zeros((ps.box_size,) * 3), params).size
    task = functools.partial(_rif_task, set_name=set_name, name=name, params=asdict(params))
    run = fresh_arrays(store, ps, f"rif.{set_name}.{name}", asdict(params),
                       [(name, (n_feat,), "float32", 0, {"rif": asdict(params)})], task, client=client,
                       progress=progress, fresh=overwrite or name not in ps.arrays())
    return {"particles": ps.n, "features": n_feat, "computed": run.computed, "skipped": run.skipped}


def svm_classify(store: Store, set_name: str, *, features: str = "rif", seed: int = 0, out: str | None = None) -> dict:
    """RBF SVM trained on the ``train`` and ``validation`` splits of ``features`` (the half a CNN trained on)
    and tested on the ``test`` split. Predicted classes of every particle go into the array ``out`` (default
    ``<features>_svm_class``)."""
    ps = ParticleSet(store, set_name)
    x = np.asarray(ps.array(features)[:])
    t = ps.rows(slice(0, ps.n), ["split", "true_class"])
    train, test = np.isin(t["split"], (TRAIN, VALIDATION)), t["split"] == TEST
    if not train.any() or not test.any():
        raise InputError(set_name, "particle set has no train/test split (train a CNN first, or assign one)")
    y = t["true_class"]
    if (y[train | test] < 0).any():
        raise InputError(set_name, "particle set has particles without a true class in its split")
    pred, res = svm_train_test(x, y, train, test, max(len(ps.class_names), int(y.max()) + 1), seed)
    out = out or f"{features}_svm_class"
    ps.create_array(out, (), "int32", fill_value=-1, overwrite=True,
                    attrs={"svm": {k: str(v) for k, v in res["best_params"].items()}})
    ps.array(out)[:] = pred
    return {**res, "n_train": int(train.sum()), "n_test": int(test.sum()), "array": out}
