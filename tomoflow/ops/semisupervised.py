"""``semisupervised``: the autoencoding classifier (seed 002, 3.4.3) on a particle set, its split recorded.

Particles with a true class are split into train and test (stratified, from the seed); of each class's train
members ``labelled_fraction`` keep their label for the classifier. Particles without a true class (-1) are
unlabelled training data. The table records it all: ``split`` (train / test) and ``labelled`` (1 where the label
was used, 0 elsewhere), so reports and later stages see which particles taught the classifier. The decoder trains
on every train-split particle; the test split is never looked at in training. The saved model is a plain classifier
(``logits``, ``probabilities``; the shared encoder's features are the layer the metadata names in
``feature_layer``, ``fc2`` for DSRF3D): ``tomoflow features --model`` gives its
predictions and features through the engine like any trained CNN. On a cluster the training is one task, on a GPU
worker when there is one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import run_task
from ..errors import InputError
from ..ml.autoencoder import labelled_part, train_semisupervised as train_ml
from ..ml.training import TRAIN, stratified_split
from ..params import SemiSupervisedParams
from ..store import ParticleSet, Store


def assign_labelled(ps: ParticleSet, params: SemiSupervisedParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, split, labelled) of ``ps``, the split and the labelled part written to the table."""
    labels = ps.rows(slice(0, ps.n), ["true_class"])["true_class"].astype(np.int64)
    known = labels >= 0
    if not known.any():
        raise InputError(ps.name, "particle set has no particle with a true class: nothing to teach the classifier")
    if len(np.unique(labels[known])) < 2:
        raise InputError(ps.name, "particle set has labels of one class only: a classifier needs two or more")
    split = np.full(ps.n, TRAIN, np.int8)  # unlabelled particles are training data for the decoder
    split[known] = stratified_split(labels[known], params.train_fraction, params.seed)
    labelled = labelled_part(labels, split, params.labelled_fraction, params.seed)
    ps.set_columns({"split": split, "labelled": labelled.astype(np.int8)})
    return labels, split, labelled


def _train(store: Store, set_name: str, out: str | Path, params: SemiSupervisedParams, progress: bool,
           resume: bool) -> dict:
    ps = ParticleSet(store, set_name)
    labels, split, labelled = assign_labelled(ps, params)
    n_cls = int(labels.max()) + 1
    names = ps.class_names or [str(c) for c in range(n_cls)]
    return train_ml(ps, labels, names, split, labelled, out, params,
                    info={"voxel_size": ps.voxel_size, "set": set_name}, progress=progress, resume=resume)


def _task(store_path: str, set_name: str, out: str, params: SemiSupervisedParams, resume: bool) -> dict:
    return _train(Store.open(store_path), set_name, out, params, False, resume)


def train_semisupervised(store: Store, set_name: str, out: str | Path,
                         params: SemiSupervisedParams = SemiSupervisedParams(), *, client=None, progress: bool = True,
                         resume: bool = False) -> dict:
    """Train the semi-supervised autoencoding classifier on ``set_name``; save the classifier to ``out`` (.keras);
    returns its metadata (test accuracy on the test split, how many labelled)."""
    from ..ml.precision import resolve_precision

    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    resolve_precision(params.precision)  # refused before the split is written
    from ..ml.models import MODELS

    if params.model.lower().replace("-", "_") not in MODELS:
        raise InputError(params.model, f"unknown model (have: {', '.join(MODELS)})")
    labels = ps.rows(slice(0, ps.n), ["true_class"])["true_class"]
    if (labels >= 0).sum() == 0 or len(np.unique(labels[labels >= 0])) < 2:
        raise InputError(set_name, "particle set needs true classes (labels) of two or more classes on some "
                                   "particles")
    if client is None:
        return _train(store, set_name, out, params, progress, resume)
    return run_task(client, _task, str(store.path), set_name, str(out), params, resume, gpu=True,
                    key=f"semisupervised-{set_name}", stage="semisupervised")
