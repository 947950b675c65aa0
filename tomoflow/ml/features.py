"""Deep structural features (seed 000, section 2.3) of subtomograms, arrays in.

:func:`compute_features` standardises a batch of subtomograms and runs the trained network once, giving
the output of a layer (default ``logits``: the last layer's linear activation, the softmax removed) and
the softmax probabilities. :func:`cached_feature_model` loads a model once per process (keyed by the
file's path, size and mtime and the layer), so engine tasks (:mod:`tomoflow.ops.features`) do not reload
it per chunk.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .training import standardize


_MODELS: dict = {}  # per process: (path, size, mtime, layer, precision) -> (keras model with two outputs, metadata)
_LOCK = threading.Lock()
_LOADS = [0]  # models loaded by this process


def models_loaded() -> int:
    """How many models this process has loaded (``client.run(models_loaded)`` asks every worker)."""
    return _LOADS[0]


def _model_key(path: str | Path, layer: str, precision: str):
    p = Path(path).resolve()
    st = p.stat()
    return str(p), st.st_size, st.st_mtime_ns, layer, precision


def cached_feature_model(path: str | Path, layer: str = "logits", precision: str = "float32"):
    """(model mapping subtomograms to [layer output, probabilities], metadata), loaded once per process, computing
    at ``precision`` (a resolved policy, see :func:`tomoflow.ml.precision.resolve_precision`)."""
    if not Path(path).is_file():
        from ..errors import InputError

        raise InputError(str(path), "no such model file")
    key = _model_key(path, layer, precision)
    with _LOCK:
        if key not in _MODELS:
            import keras

            from .training import load_trained

            model, meta = load_trained(path, precision)
            try:
                out = model.get_layer(layer).output
            except ValueError:
                from ..errors import InputError

                names = ", ".join(lay.name for lay in model.layers)
                raise InputError(str(path), f"model has no layer '{layer}' (have: {names})") from None
            _MODELS[key] = (keras.Model(model.inputs, [out, model.output], name="features"), meta)
            _LOADS[0] += 1
        return _MODELS[key]


def compute_features(model, volumes: np.ndarray, batch_size: int = 64):
    """(features, probabilities) of a batch of (n, D, D, D) subtomograms, float32 whatever precision the model
    computes at (a hidden layer's output is bf16 / fp16 under a mixed policy); fixed batches of ``batch_size`` so the
    result does not depend on how many particles came together."""
    feats, probs = [], []
    for i in range(0, len(volumes), batch_size):
        f, p = model.predict_on_batch(standardize(volumes[i:i + batch_size]))
        feats.append(np.asarray(f, np.float32).reshape(len(f), -1))
        probs.append(np.asarray(p, np.float32))
    return np.concatenate(feats), np.concatenate(probs)
