"""``features``: deep structural features (seed 000, section 2.3) of a particle set, through the engine.

For every particle chunk a task runs :func:`tomoflow.ml.features.compute_features` and writes by region into
per-particle arrays of the set:

* ``<name>``: the output of ``layer`` (default ``logits``), shape (N, F);
* ``<name>_probabilities``: the softmax output, (N, L);
* ``<name>_class``: the predicted class index (argmax), (N,), -1 where not computed.

The model is loaded once per worker process. When the cluster has workers started with ``--resources GPU=n``
the chunks go to them (``resources={"GPU": 1}``; Keras uses the GPU of whatever backend is installed there:
set ``KERAS_BACKEND=jax`` or ``torch`` where TensorFlow is absent); otherwise they run on the CPU workers.
The network computes at ``precision`` (:mod:`tomoflow.ml.precision`; recorded in the stage and the arrays' attributes);
the arrays are float32 whatever it is.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from ..engine import gpu_workers
from ..errors import InputError
from ..ml.features import cached_feature_model, compute_features
from ..store import ParticleSet, Store, check_name
from .common import fresh_arrays


def _features_task(store_path: str, chunk: int, *, set_name: str, model_path: str, layer: str, name: str,
                   batch_size: int, precision: str = "float32") -> None:
    ps = ParticleSet(Store.open(store_path), set_name)
    model, _ = cached_feature_model(model_path, layer, precision)
    sl = ps.chunk_slice(chunk)
    feats, probs = compute_features(model, ps.read_volumes(sl), batch_size)
    ps.array(name)[sl] = feats
    ps.array(f"{name}_probabilities")[sl] = probs
    ps.array(f"{name}_class")[sl] = np.argmax(probs, axis=1).astype(np.int32)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def extract_features(store: Store, set_name: str, model_path: str | Path, *, layer: str = "logits",
                     name: str = "features", batch_size: int = 64, precision: str = "auto", client=None,
                     overwrite: bool | str = False, progress: bool | None = None) -> dict:
    """Compute the features of every particle of ``set_name`` with the model saved by ``tomoflow train``.

    Resumable: a rerun with the same model file and layer computes only the chunks not yet finished;
    with another model, layer or precision it is refused unless ``overwrite`` (True: always recompute; "changed":
    recompute when the model, layer, batch or precision differ from the recorded ones, as a pipeline rerun after
    retraining needs).
    """
    ps = ParticleSet(store, set_name)
    for array in (name, f"{name}_probabilities", f"{name}_class"):  # every name checked before anything is written
        check_name(array, "array name")
    model_path = Path(model_path)
    from ..ml.precision import resolve_precision

    # resolved here, once, so every worker computes at the same precision and the record says which
    precision = resolve_precision(precision)
    model, meta = cached_feature_model(model_path, layer, precision)  # validates the file and layer before any work
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    if int(meta["box_size"]) != ps.box_size:
        raise InputError(str(model_path), f"model takes {meta['box_size']}^3 boxes but particle set "
                                          f"'{set_name}' has {ps.box_size}^3")
    n_feat = int(np.prod(model.outputs[0].shape[1:]))
    n_cls = int(model.outputs[1].shape[-1])
    params = {"model": file_digest(model_path), "layer": layer, "batch": batch_size}
    if precision != "float32":  # float32 records (all made before the option) stay valid
        params["precision"] = precision
    attrs = {"model": str(model_path.resolve()), "layer": layer, "class_names": meta["class_names"],
             "precision": precision}
    gpus = gpu_workers(client)
    task = functools.partial(_features_task, set_name=set_name, model_path=str(model_path.resolve()), layer=layer,
                             name=name, batch_size=batch_size, precision=precision)
    stage = f"features.{set_name}.{name}"
    if overwrite == "changed":
        from .common import stage_params_changed

        overwrite = stage_params_changed(store, stage, params)
    run = fresh_arrays(store, ps, stage, params,
                       [(name, (n_feat,), "float32", 0, attrs), (f"{name}_probabilities", (n_cls,), "float32", 0, attrs),
                        (f"{name}_class", (), "int32", -1, attrs)], task, client=client, progress=progress,
                       fresh=overwrite or name not in ps.arrays(), gpu=True)
    return {"particles": ps.n, "features": n_feat, "classes": n_cls, "chunks": run.n_chunks,
            "computed": run.computed, "skipped": run.skipped, "gpu_workers": len(gpus), "precision": precision}
