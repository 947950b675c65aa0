"""Deep structural features (seed 000, section 2.3) of a particle set, through the engine.

For every particle chunk a task standardises the subtomograms, runs the trained network once, and
writes by region into per-particle arrays of the set:

* ``<name>``: the output of ``layer`` (default ``logits``: the last layer's linear activation, the
  softmax removed), shape (N, F);
* ``<name>_probabilities``: the softmax output, (N, L);
* ``<name>_class``: the predicted class index (argmax), (N,), -1 where not computed.

The model is loaded once per worker process and kept (keyed by the file's path, size and mtime and the
layer), not once per task. When the cluster has workers started with ``--resources GPU=n`` the chunks
go to them (``resources={"GPU": 1}``; Keras uses the GPU of whatever backend is installed there: set
``KERAS_BACKEND=jax`` or ``torch`` where TensorFlow is absent); otherwise they run on the CPU workers.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path

import numpy as np

from .engine import run_chunks
from .store import ParticleSet, Store
from .training import standardize


_MODELS: dict = {}  # per process: (path, size, mtime, layer) -> (keras model with two outputs, metadata)
_LOCK = threading.Lock()
_LOADS = [0]  # models loaded by this process


def models_loaded() -> int:
    """How many models this process has loaded (``client.run(models_loaded)`` asks every worker)."""
    return _LOADS[0]


def _model_key(path: str | Path, layer: str):
    p = Path(path).resolve()
    st = p.stat()
    return str(p), st.st_size, st.st_mtime_ns, layer


def cached_feature_model(path: str | Path, layer: str = "logits"):
    """(model mapping subtomograms to [layer output, probabilities], metadata), loaded once per process."""
    key = _model_key(path, layer)
    with _LOCK:
        if key not in _MODELS:
            import keras

            from .training import load_trained

            model, meta = load_trained(path)
            try:
                out = model.get_layer(layer).output
            except ValueError:
                from .errors import InputError

                names = ", ".join(lay.name for lay in model.layers)
                raise InputError(str(path), f"model has no layer '{layer}' (have: {names})") from None
            _MODELS[key] = (keras.Model(model.inputs, [out, model.output], name="features"), meta)
            _LOADS[0] += 1
        return _MODELS[key]


def compute_features(model, volumes: np.ndarray, batch_size: int = 64):
    """(features, probabilities) of a batch of (n, D, D, D) subtomograms; fixed batches of
    ``batch_size`` so the result does not depend on how many particles came together."""
    feats, probs = [], []
    for i in range(0, len(volumes), batch_size):
        f, p = model.predict_on_batch(standardize(volumes[i:i + batch_size]))
        feats.append(np.asarray(f, np.float32).reshape(len(f), -1))
        probs.append(np.asarray(p, np.float32))
    return np.concatenate(feats), np.concatenate(probs)


def _features_task(store_path: str, chunk: int, *, set_name: str, model_path: str, layer: str, name: str,
                   batch_size: int) -> None:
    ps = ParticleSet(Store.open(store_path), set_name)
    model, _ = cached_feature_model(model_path, layer)
    sl = ps.chunk_slice(chunk)
    feats, probs = compute_features(model, ps.read_volumes(sl), batch_size)
    ps.array(name)[sl] = feats
    ps.array(f"{name}_probabilities")[sl] = probs
    ps.array(f"{name}_class")[sl] = np.argmax(probs, axis=1).astype(np.int32)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def extract_features(store: Store, set_name: str, model_path: str | Path, *, layer: str = "logits",
                     name: str = "features", batch_size: int = 64, client=None, overwrite: bool = False,
                     progress: bool | None = None) -> dict:
    """Compute the features of every particle of ``set_name`` with the model saved by ``tomoflow train``.

    Resumable: a rerun with the same model file and layer computes only the chunks not yet finished;
    with another model or layer it is refused unless ``overwrite``.
    """
    from .errors import InputError
    from .engine import gpu_workers

    ps = ParticleSet(store, set_name)
    model_path = Path(model_path)
    model, meta = cached_feature_model(model_path, layer)  # validates the file and layer here, before any work
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    if int(meta["box_size"]) != ps.box_size:
        raise InputError(str(model_path), f"model takes {meta['box_size']}^3 boxes but particle set "
                                          f"'{set_name}' has {ps.box_size}^3")
    n_feat = int(np.prod(model.outputs[0].shape[1:]))
    n_cls = int(model.outputs[1].shape[-1])
    params = {"model": _file_digest(model_path), "layer": layer, "batch": batch_size}
    stage = f"features.{set_name}.{name}"
    fresh = overwrite or name not in ps.arrays()
    if fresh:
        attrs = {"model": str(model_path.resolve()), "layer": layer, "class_names": meta["class_names"]}
        ps.create_array(name, (n_feat,), "float32", overwrite=True, attrs=attrs)
        ps.create_array(f"{name}_probabilities", (n_cls,), "float32", overwrite=True, attrs=attrs)
        ps.create_array(f"{name}_class", (), "int32", fill_value=-1, overwrite=True, attrs=attrs)
    gpus = gpu_workers(client)
    task = functools.partial(_features_task, set_name=set_name, model_path=str(model_path.resolve()), layer=layer,
                             name=name, batch_size=batch_size)
    run = run_chunks(store, stage, ps.n_chunks, task, params=params, client=client, restart=fresh, progress=progress,
                     gpu=True)
    return {"particles": ps.n, "features": n_feat, "classes": n_cls, "chunks": run.n_chunks,
            "computed": run.computed, "skipped": run.skipped, "gpu_workers": len(gpus)}
