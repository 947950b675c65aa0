"""``adapt-domain``: adversarial domain adaptation of a classifier from a labelled source set to an unlabelled target
set (seed 002, section 3.4.1), through the store.

Stage 1 is ``train`` on the source set (its split recorded in the source's table; the model kept beside ``out`` as
``<out>.source.keras``: the classifier without adaptation); stage 2 is :func:`tomoflow.ml.domain.adapt` on the
source's train split and every target particle; stage 3 applies the adapted model to the target through the engine
(:func:`tomoflow.ops.features.extract_features`: one task per chunk, GPU workers when present), writing
``<name>`` (logits), ``<name>_probabilities`` and ``<name>_class``; the unadapted model's predictions go beside them
as ``<name>_source*``. Only the target's volumes are read: never its table (its answer key stays unread).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import run_task
from ..errors import InputError
from ..ml.domain import adapt
from ..params import DomainParams
from ..store import ParticleSet, Store, check_name
from .features import extract_features
from .training import check_model_name, train


def source_model_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".source.keras")


def _check(store: Store, source: str, target: str, params: DomainParams) -> tuple[ParticleSet, ParticleSet]:
    check_model_name(params.model)
    for array in (params.name, f"{params.name}_source"):
        check_name(array, "array name")
    if source == target:
        raise InputError(target, "the target set must differ from the source set")
    ps, pt = ParticleSet(store, source), ParticleSet(store, target)
    for p in (ps, pt):
        if p.box_size is None:
            raise InputError(p.name, "particle set holds no volumes")
    if ps.box_size != pt.box_size:
        raise InputError(target, f"target boxes are {pt.box_size}^3 but source '{source}' boxes {ps.box_size}^3")
    from ..ml.precision import resolve_precision

    resolve_precision(params.precision)
    return ps, pt


def adapt_domain(store: Store, source: str, target: str, out: str | Path, params: DomainParams = DomainParams(), *,
                 client=None, progress: bool = True, resume: bool = False) -> dict:
    """Train on ``source`` (labelled), adapt to ``target`` (unlabelled), save the adapted classifier to ``out``
    (.keras) and write the target's predictions. Returns the adapted model's metadata with the feature runs."""
    ps, pt = _check(store, source, target, params)
    src_model = source_model_path(out)
    smeta = train(store, source, src_model, params.source_training(), progress=progress, resume=resume)
    split = ps.rows(slice(0, ps.n), ["split"])["split"]
    # the source's labels (its true classes: supervised, as train reads them)
    labels = ps.rows(slice(0, ps.n), ["true_class"])["true_class"].astype(int)
    meta = _adapt_here(store, source, target, str(src_model), labels, split, str(out), params, progress, resume,
                       client)
    feats = {}
    for name, model in ((params.name, out), (f"{params.name}_source", src_model)):
        feats[name] = extract_features(store, target, model, name=name, batch_size=params.batch_size,
                                       precision=params.precision, client=client, overwrite="changed",
                                       progress=progress)
    pt.set_attrs({"domain_adaptation": {"source": source, "model_file": str(Path(out).resolve()),
                                        "source_model_file": str(src_model.resolve()), "arrays": list(feats),
                                        "source_test_accuracy": smeta["test"]["accuracy"]}})
    return {**meta, "features": feats, "source_test_accuracy": smeta["test"]["accuracy"]}


def _adapt_task(store_path, source, target, src_model, labels, split, out, params, progress, resume):
    store = Store.open(store_path)
    return adapt(src_model, ParticleSet(store, source), labels, split, ParticleSet(store, target), out, params,
                 info={"source_set": source, "target_set": target}, progress=progress, resume=resume)


def _adapt_here(store, source, target, src_model, labels, split, out, params, progress, resume, client):
    """Stage 2 as one task: on a GPU worker when the cluster has one, else here."""
    args = (str(store.path), source, target, src_model, np.asarray(labels), np.asarray(split), out, params)
    if client is None:
        return _adapt_task(*args, progress, resume)
    return run_task(client, _adapt_task, *args, False, resume, gpu=True, key=f"adapt-{source}-{target}",
                    stage="adapt_domain")
