"""Open-set features (seed 002, section 3.4.4; Du et al., soft large-margin centralised cosine loss), arrays in.

A feature network (a registered classifier's layers below ``logits``, then a dense ``embedding``) is trained on the
known classes so that its features have large inter-class and small intra-class variance; particles of classes
never trained on then form their own clusters, and ``tomoflow cluster`` groups them.

* ``loss="cosface"``: the embedding is L2-normalised (``embedding_norm``), the class weights too, and the logits are
  s * cos(theta_j), with the margin m taken off the true class's cosine in training: softmax cross-entropy on
  s * (cos(theta_y) - m) (large-margin cosine loss, CosFace). An optional centre loss (``center_weight``) adds the
  squared distance of each normalised feature to a learnt centre of its class.
* ``loss="softmax"``: the same network with a plain dense + softmax head on the raw embedding (the baseline).

Training is ``fit`` on a two-input model (subtomogram, one-hot class: the margin needs the class) with standard
losses only, so any Keras 3 backend runs it. The model saved holds standard layers only (the normalised class
weights times s baked into a bias-free ``logits`` layer), so :func:`tomoflow.ml.features.cached_feature_model`
loads it anywhere; its features are the output of :func:`feature_layer`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..params import OpenSetParams
from .training import TRAIN, VALIDATION, _batch, _read_state, _training_key, save_trained, stream_batches


def feature_layer(params: OpenSetParams) -> str:
    """The layer whose output is the open-set feature: the normalised embedding (cosface) or the raw one."""
    return "embedding_norm" if params.loss == "cosface" else "embedding"


def _layer_classes():
    import keras

    ops = keras.ops

    @keras.saving.register_keras_serializable(package="tomoflow")
    class MarginCosine(keras.layers.Layer):
        """[normalised features, one-hot class] -> s * (cos(theta_j) - m [j = class]); ``weights``: (F, n)."""

        def __init__(self, n_classes: int, scale: float, margin: float, **kw):
            super().__init__(**kw)
            self.n_classes, self.scale, self.margin = int(n_classes), float(scale), float(margin)

        def build(self, shapes):
            self.w = self.add_weight(shape=(int(shapes[0][-1]), self.n_classes), initializer="glorot_uniform",
                                     name="class_weights")

        def call(self, inputs):
            z, y = inputs
            w = self.w / ops.sqrt(ops.sum(ops.square(self.w), axis=0, keepdims=True) + 1e-12)
            return self.scale * (ops.matmul(ops.cast(z, "float32"), w) - self.margin * ops.cast(y, "float32"))

        def compute_output_shape(self, shapes):
            return (shapes[0][0], self.n_classes)

        def get_config(self):
            return {**super().get_config(), "n_classes": self.n_classes, "scale": self.scale, "margin": self.margin}

    @keras.saving.register_keras_serializable(package="tomoflow")
    class CentreDistance(keras.layers.Layer):
        """[features, one-hot class] -> squared distance of each feature to its class's learnt centre."""

        def __init__(self, n_classes: int, **kw):
            super().__init__(**kw)
            self.n_classes = int(n_classes)

        def build(self, shapes):
            self.c = self.add_weight(shape=(self.n_classes, int(shapes[0][-1])), initializer="zeros", name="centres")

        def call(self, inputs):
            z, y = inputs
            centre = ops.matmul(ops.cast(y, "float32"), self.c)
            return ops.sum(ops.square(ops.cast(z, "float32") - centre), axis=-1, keepdims=True)

        def compute_output_shape(self, shapes):
            return (shapes[0][0], 1)

        def get_config(self):
            return {**super().get_config(), "n_classes": self.n_classes}

    return {"MarginCosine": MarginCosine, "CentreDistance": CentreDistance}


_CLASSES: dict = {}


def custom_objects() -> dict:
    if not _CLASSES:
        _CLASSES.update(_layer_classes())
    return _CLASSES


def build_openset(params: OpenSetParams, box: int, n_classes: int, precision: str = "float32"):
    """(training model: [subtomogram, one-hot] -> {"margin": logits[, "centre": distance]}, the model saved:
    subtomogram -> softmax ``probabilities``). Both share every layer; the trunk computes at ``precision``, the
    heads in float32."""
    import keras

    from .models import build_model
    from .precision import with_precision

    L = keras.layers
    c = custom_objects()
    full = build_model(params.model, box, n_classes)
    trunk = with_precision(keras.Model(full.inputs, full.get_layer("logits").input, name="trunk"), precision)
    x = keras.Input((box, box, box, 1), name="subtomogram")
    y = keras.Input((n_classes,), name="class")
    emb = L.Dense(params.embedding, name="embedding", dtype="float32")(trunk(x))
    outputs = {}
    if params.loss == "cosface":
        z = L.UnitNormalization(name="embedding_norm", dtype="float32")(emb)
        outputs["margin"] = L.Identity(name="margin", dtype="float32")(
            c["MarginCosine"](n_classes, params.scale, params.margin, name="cosine", dtype="float32")([z, y]))
        logits = L.Dense(n_classes, use_bias=False, name="logits", dtype="float32")(z)  # set from "cosine" after
    else:
        z = emb
        logits = L.Dense(n_classes, name="logits", dtype="float32")(emb)
        outputs["margin"] = L.Identity(name="margin", dtype="float32")(logits)
    if params.center_weight > 0:
        outputs["centre"] = L.Identity(name="centre", dtype="float32")(
            c["CentreDistance"](n_classes, name="centres", dtype="float32")([z, y]))
    probs = L.Activation("softmax", name="probabilities", dtype="float32")(logits)
    return keras.Model([x, y], outputs, name="openset_training"), keras.Model(x, probs, name=f"openset_{params.loss}")


def _bake(training, saved, params: OpenSetParams) -> None:
    """Copy the trained cosine head into the saved model's plain ``logits`` layer: s * W / |W| (no margin)."""
    if params.loss != "cosface":
        return
    w = np.asarray(training.get_layer("cosine").w, np.float32)
    saved.get_layer("logits").set_weights([params.scale * w / np.sqrt((w ** 2).sum(0, keepdims=True) + 1e-12)])


def _two_inputs(batches, centre: bool):
    for x, y in batches:
        targets = {"margin": y}
        if centre:
            targets["centre"] = np.zeros((len(y), 1), np.float32)  # the loss is the distance itself
        yield (x, y), targets


def _distance(_, d):
    import keras

    return keras.ops.mean(d, axis=-1)


def train_openset(source, labels: np.ndarray, names: list[str], split: np.ndarray, out: str | Path,
                  params: OpenSetParams = OpenSetParams(), *, info: dict | None = None, progress: bool = True,
                  resume: bool = False) -> dict:
    """Train the open-set feature network on the particles of ``source`` whose ``split`` is TRAIN (labels >= 0;
    -1 marks the classes left out), keep the epoch of lowest loss on those marked VALIDATION, report the
    accuracy of the cosine (or softmax) classifier on those marked TEST; save to ``out`` (.keras) with the
    metadata, which names the feature layer. Checkpoint per epoch and ``resume`` as
    :func:`tomoflow.ml.training.train_model`."""
    import keras

    from .precision import resolve_precision
    from .training import _EpochRecord, make_optimizer

    keras.utils.set_random_seed(params.seed)
    precision = resolve_precision(params.precision)
    n = len(names)
    train_idx = np.flatnonzero((split == TRAIN) & (labels >= 0))
    val_idx = np.flatnonzero((split == VALIDATION) & (labels >= 0))
    test_idx = np.flatnonzero((split == 3) & (labels >= 0))
    if len(train_idx) == 0 or len(np.unique(labels[train_idx])) < 2:
        raise ValueError("open-set training needs particles of at least two known classes in the train split")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt, state_path, best_path = (out.with_suffix(s) for s in (".checkpoint.keras", ".checkpoint.json",
                                                                 ".best.weights.h5"))
    eye = np.eye(n, dtype=np.float32)
    centre = params.center_weight > 0
    validation = None
    if len(val_idx):
        xv, yv = _batch(list(source.read_rows(val_idx)), list(labels[val_idx]), eye)
        validation = next(_two_inputs([(xv, yv)], centre))
    sample = [source.read_rows(train_idx[:64])] + ([validation[0][0]] if validation else [])
    key = _training_key(params, precision, names, source.box_size, labels, train_idx, val_idx, sample)
    training, saved = build_openset(params, source.box_size, n, precision)
    ckpt_weights = ckpt.with_suffix(".weights.h5")
    state = _read_state(state_path) if resume and ckpt_weights.is_file() else None
    if state is not None and state.get("key") == key and 0 < state["epoch"] < params.epochs:
        training.load_weights(ckpt_weights)  # the weights only: the optimizer's state starts afresh
        first = int(state["epoch"])
    else:
        state, first = {"key": key, "epoch": 0, "history": {}, "best_epoch": 0, "best_val_loss": None}, 0
    opt = make_optimizer(params)
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    losses = {"margin": keras.losses.CategoricalCrossentropy(from_logits=True)}
    weights = {"margin": 1.0}
    if centre:
        losses["centre"], weights["centre"] = _distance, params.center_weight
    training.compile(optimizer=opt, loss=losses, loss_weights=weights)
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, 0x0BE5, first]))
    steps = -(-len(train_idx) // params.batch_size)
    callbacks = [keras.callbacks.ModelCheckpoint(str(ckpt_weights), save_weights_only=True),
                 _EpochRecord(state, state_path, best_path)]
    if first < params.epochs:
        training.fit(_two_inputs(stream_batches(source, train_idx, labels, n, params.batch_size, rng,
                                                augment=params.augment), centre),
                     steps_per_epoch=steps, epochs=params.epochs, initial_epoch=first,
                     verbose=2 if progress else 0, shuffle=False, callbacks=callbacks, validation_data=validation,
                     validation_batch_size=params.batch_size)
    hist = state["history"]
    best_epoch = params.epochs
    if validation:
        best_epoch = int(np.argmin(hist["val_loss"])) + 1
        if best_epoch != params.epochs:
            training.load_weights(best_path)
    _bake(training, saved, params)
    test = _accuracy(saved, source, test_idx, labels, n, params.batch_size)
    meta = {"class_names": list(names), "box_size": source.box_size, **(info or {}), "params": asdict(params),
            "precision": precision, "feature_layer": feature_layer(params), "n_train": int(len(train_idx)),
            "n_validation": int(len(val_idx)), "n_test": int(len(test_idx)), "best_epoch": best_epoch,
            "history": hist, "test": test, "training_key": key}
    if first:
        meta["resumed_at_epoch"] = first
    save_trained(saved, out, meta)
    for f in (ckpt, ckpt_weights, state_path, best_path):
        f.unlink(missing_ok=True)
    return meta


def _accuracy(model, source, idx, labels, n, batch_size) -> dict:
    conf = np.zeros((n, n), np.int64)
    for x, y in stream_batches(source, np.sort(idx), labels, n, batch_size, np.random.default_rng(0), loop=False):
        np.add.at(conf, (np.argmax(y, 1), np.argmax(model.predict_on_batch(x), 1)), 1)
    total = int(conf.sum())
    return {"accuracy": float(np.trace(conf) / total) if total else float("nan"), "confusion": conf.tolist()}


def between_within_ratio(features: np.ndarray, classes: np.ndarray) -> float:
    """Trace of the between-class scatter over the trace of the within-class scatter (higher: classes apart)."""
    f = np.asarray(features, np.float64)
    mu = f.mean(0)
    between = within = 0.0
    for c in np.unique(classes):
        g = f[classes == c]
        between += len(g) * ((g.mean(0) - mu) ** 2).sum()
        within += ((g - g.mean(0)) ** 2).sum()
    return float(between / max(within, 1e-12))
