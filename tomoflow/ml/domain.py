"""Adversarial domain adaptation of a subtomogram classifier (seed 002, section 3.4.1; Lin et al. 2019), arrays in.

Three stages, as the seed describes them:

1. the classifier is trained on the labelled *source* set (:func:`tomoflow.ml.training.train_model`, its own
   file: the "without adaptation" model);
2. the feature extractor (every layer below ``logits``) is trained against a domain discriminator on source vs
   *target* features: the discriminator learns to tell the domains apart (its input held constant), the extractor
   learns to make its output 1/2 on both (the discriminator's weights held constant; :func:`adversarial_model`),
   while the source class loss keeps the features discriminative. Both sides are one model with one optimizer
   and ``fit``, the two halves of the game separated by ``keras.ops.stop_gradient``, so it runs on any Keras 3
   backend; alternating GAN updates would need a backend's own gradient API or ``trainable`` toggling, which
   Keras 3 does not honour after compile;
3. the adapted classifier predicts the target.

The target is read only as volumes: no label of it is passed in. A batch is half source, half target; target rows
carry an all-zero class target, and the class loss (``source_crossentropy``, the mean over the source rows) gives
them zero loss and zero gradient, so only the domain terms (and ``information_weight``) see them. Before 2026-12-02
the class loss was Keras' ``categorical_crossentropy``, whose fused TensorFlow gradient is not zero on an all-zero
row (benchmarks/notes_domain.md): that hidden target term, not more source training, was the "control"'s lift.
The extractor's side is weighted by Ganin's ramp 2 / (1 + exp(-10 p)) - 1 over training progress p, times
``domain_weight``. No target labels means no way to pick an epoch by target accuracy: the last epoch is kept.

``conditioning`` chooses what the discriminator sees: "none", the features (marginal alignment, DANN-style); "cdan",
their multilinear map with the class probabilities, f (x) p (Long et al. 2018: conditional alignment, meant to keep
classes from being mixed), the probabilities' gradient stopped; "cdan_e", cdan with each row's domain loss weighted
by 1 + exp(-H(p)) (confident rows count more), normalised within each domain.

``information_weight`` (default 1; 0: off) adds information maximisation on the target rows (mean prediction
entropy minus the entropy of the mean prediction; the target's own labels never enter). On the issue-24 benchmark
(benchmarks/notes_domain.md, 3 seeds) it, not the adversarial term, lifts the WBP / defocus -2 um target over the same
schedule without it (+0.13 at Adam 1e-5 x 10 epochs, +0.26 at the defaults' 1e-4 x 20; +0.005 on the WBP / defocus
-5 um target, already at 0.95). At 1e-5 x 10 the adversarial term, marginal or conditional (cdan, cdan_e), changed
the target accuracy by less than seed-to-seed noise; at the defaults' 1e-4 x 20 the marginal term (domain_weight 1)
added +0.064 over information maximisation alone (every seed positive), while cdan never measurably beat the marginal
discriminator at equal weight, and domain_weight 10 was unstable there. Hence the defaults: domain_weight 1,
information_weight 1, conditioning "none"."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..params import CONDITIONINGS, DomainParams
from .training import TRAIN, _read_state, _training_key, load_trained, save_trained, standardize, stream_batches


def _layer_classes():
    import keras

    ops = keras.ops

    @keras.saving.register_keras_serializable(package="tomoflow")
    class GradientScale(keras.layers.Layer):
        """Identity forward; the gradient times ``weight`` backward (a variable the ramp sets)."""

        def __init__(self, **kw):
            super().__init__(**kw)
            self.weight = self.add_weight(shape=(), initializer="zeros", trainable=False, name="scale")

        def call(self, x):
            w = ops.cast(self.weight, x.dtype)

            @ops.custom_gradient
            def scale(v):
                def grad(*args, upstream=None):
                    if upstream is None:
                        (upstream,) = args
                    return upstream * w

                return v * 1, grad  # a new tensor with the same values

            return scale(x)

        def compute_output_shape(self, shape):
            return shape

    @keras.saving.register_keras_serializable(package="tomoflow")
    class Discriminator(keras.layers.Layer):
        """P(source) from a feature vector: two ReLU layers of ``width`` and a sigmoid. Called with ``learn`` its
        weights learn and its input is held constant; otherwise its weights are held constant and the gradient
        reaches the input (the extractor's side of the game)."""

        def __init__(self, width: int = 128, **kw):
            super().__init__(**kw)
            self.width = int(width)

        def build(self, shape):
            dims = (int(shape[-1]), self.width, self.width, 1)
            self.ws = [self.add_weight(shape=(a, b), initializer="glorot_uniform", name=f"w{i}")
                       for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))]
            self.bs = [self.add_weight(shape=(b,), initializer="zeros", name=f"b{i}") for i, b in enumerate(dims[1:])]

        def call(self, x, learn: bool = True):
            hold = ops.stop_gradient
            if learn:
                x = hold(x)
            ws, bs = (self.ws, self.bs) if learn else ([hold(w) for w in self.ws], [hold(b) for b in self.bs])
            for w, b in zip(ws[:-1], bs[:-1]):
                x = ops.relu(ops.matmul(x, w) + b)
            return ops.sigmoid(ops.matmul(x, ws[-1]) + bs[-1])

        def compute_output_shape(self, shape):
            return (*shape[:-1], 1)

        def get_config(self):
            return {**super().get_config(), "width": self.width}

    @keras.saving.register_keras_serializable(package="tomoflow")
    def target_information(y_true, y_pred):
        """Information maximisation on the target rows (those whose ``y_true[:, 0]`` is 1; Shi & Sha 2012, Liang et
        al. 2020): their mean prediction entropy (confident predictions) minus the entropy of their mean prediction
        (classes kept apart, none collapsed). Per row, so that Keras's batch mean is exactly that sum; no target
        label is read, the mask only says which rows are target."""
        m = ops.cast(y_true[:, 0], "float32")
        p = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0)
        n = ops.maximum(ops.sum(m), 1.0)
        ent = -ops.sum(p * ops.log(p), axis=1)
        mean = ops.sum(m[:, None] * p, axis=0) / n
        diversity = ops.sum(mean * ops.log(mean))
        return m * ent * ops.cast(ops.shape(m)[0], "float32") / n + diversity

    @keras.saving.register_keras_serializable(package="tomoflow")
    def source_crossentropy(y_true, y_pred):
        """Categorical cross-entropy of the source rows (one-hot ``y_true``): :func:`~tomoflow.ml.autoencoder.
        masked_crossentropy`, which gives a target row (an all-zero ``y_true``) no loss *and no gradient* (Keras'
        own, on TensorFlow, takes the fused op's gradient softmax - labels: on a zero row a hidden unlabelled term
        that lowered the target's log-sum-exp of the logits), scaled so that Keras's batch mean is the mean over
        the source rows."""
        from .autoencoder import masked_crossentropy

        m = ops.cast(ops.sum(y_true, axis=1) > 0.5, "float32")
        return masked_crossentropy(y_true, y_pred) * ops.cast(ops.shape(m)[0], "float32") / ops.maximum(ops.sum(m), 1.0)

    @keras.saving.register_keras_serializable(package="tomoflow")
    class MultilinearMap(keras.layers.Layer):
        """CDAN's conditioning (Long et al. 2018): the flattened outer product f (x) p of a feature vector f (n, F) and
        the class probabilities p (n, C), (n, F * C), in float32. The gradient into p is stopped (as the paper's
        code detaches the softmax): the discriminator, and the extractor's side of the game, reach the features
        only; the classifier's own layer is not pushed by the domain terms through its probabilities."""

        def call(self, inputs):
            f, p = inputs
            f = ops.cast(f, "float32")
            p = ops.stop_gradient(ops.cast(p, "float32"))
            return ops.reshape(f[:, :, None] * p[:, None, :], (-1, int(f.shape[-1]) * int(p.shape[-1])))

        def compute_output_shape(self, shapes):
            (fs, ps) = shapes
            return (fs[0], int(fs[-1]) * int(ps[-1]))

    @keras.saving.register_keras_serializable(package="tomoflow")
    class EntropyWeight(keras.layers.Layer):
        """CDAN+E's per-row weight of the domain loss, 1 + exp(-H(p)) of the class probabilities p (gradient
        stopped: a constant weight, so confident rows, more likely right, count more), (n, 1) in float32."""

        def call(self, p):
            p = ops.clip(ops.stop_gradient(ops.cast(p, "float32")), 1e-7, 1.0)
            return 1.0 + ops.exp(ops.sum(p * ops.log(p), axis=1, keepdims=True))

        def compute_output_shape(self, shape):
            return (shape[0], 1)

    @keras.saving.register_keras_serializable(package="tomoflow")
    def weighted_domain_crossentropy(y_true, y_pred):
        """CDAN+E's domain loss: ``y_pred`` is (P(source), weight) per row, ``y_true`` (the row's target for
        P(source): 1 source, 0 target, or 1/2 on the confusion side; the row's domain, 1 source, 0 target). Each
        domain's weights are normalised to sum to 1 (source and target count equally, as in the paper's code), then
        the loss is sum(w * bce) / sum(w), written per row so that Keras's batch mean is exactly that."""
        t = ops.cast(y_true[:, 0], "float32")
        src = ops.cast(y_true[:, -1] > 0.5, "float32")
        d = ops.clip(ops.cast(y_pred[:, 0], "float32"), 1e-7, 1.0 - 1e-7)
        w = ops.cast(y_pred[:, 1], "float32")
        bce = -(t * ops.log(d) + (1.0 - t) * ops.log(1.0 - d))
        w = w * src / (ops.sum(w * src) + 1e-12) + w * (1.0 - src) / (ops.sum(w * (1.0 - src)) + 1e-12)
        n = ops.cast(ops.shape(t)[0], "float32")
        return n * w * bce / ops.sum(w)

    @keras.saving.register_keras_serializable(package="tomoflow")
    def first_column_accuracy(y_true, y_pred):
        """Domain accuracy of a (P(source), weight) output: P(source) > 1/2 against the domain target."""
        return ops.cast(ops.equal(ops.cast(y_pred[:, 0] > 0.5, "float32"), ops.cast(y_true[:, 0] > 0.5, "float32")),
                        "float32")

    return {"GradientScale": GradientScale, "Discriminator": Discriminator, "target_information": target_information,
            "source_crossentropy": source_crossentropy, "MultilinearMap": MultilinearMap,
            "EntropyWeight": EntropyWeight, "weighted_domain_crossentropy": weighted_domain_crossentropy,
            "first_column_accuracy": first_column_accuracy}


_CLASSES: dict = {}


def custom_objects() -> dict:
    if not _CLASSES:
        _CLASSES.update(_layer_classes())
    return _CLASSES


def adversarial_model(classifier, width: int = 128, conditioning: str = "none"):
    """(joint model: subtomogram -> [class probabilities, P(source), P(source) seen by the extractor, class
    probabilities again (the information term's output)], the gradient-scale layer of the extractor's side). The
    joint model shares every layer of ``classifier``; the discriminator (computed in float32) reads the input of
    ``logits`` (``conditioning`` "none": marginal alignment, DANN-style) or its multilinear map with the class
    probabilities, f (x) p of width features x classes, the probabilities' gradient stopped ("cdan", "cdan_e":
    conditional alignment, Long et al. 2018). With "cdan_e" the two domain outputs are (P(source), 1 + exp(-H(p)))
    per row, the weight that :func:`joint_losses`' weighted loss reads.

    The extractor's side is the confusion loss (Tzeng et al. 2015): the discriminator's output, with its weights
    held, is pulled towards 1/2 for both domains. This is the adversarial objective with a floor; maximising the
    discriminator's loss instead (plain gradient reversal) has none, and on these small sets it drove the features
    to grow until both losses diverged."""
    import keras

    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {CONDITIONINGS}, not {conditioning!r}")
    c = custom_objects()
    feats = classifier.get_layer("logits").input
    disc = c["Discriminator"](width, name="discriminator", dtype="float32")
    scale = c["GradientScale"](name="confusion_scale", dtype="float32")
    if conditioning != "none":
        feats = c["MultilinearMap"](name="multilinear_map", dtype="float32")([feats, classifier.output])
    domain, confusion = disc(feats, learn=True), disc(scale(feats), learn=False)
    if conditioning == "cdan_e":
        w = c["EntropyWeight"](name="entropy_weight", dtype="float32")(classifier.output)
        domain = keras.layers.Concatenate(name="domain_weighted", dtype="float32")([domain, w])
        confusion = keras.layers.Concatenate(name="confusion_weighted", dtype="float32")([confusion, w])
    domain = keras.layers.Identity(name="domain", dtype="float32")(domain)
    confusion = keras.layers.Identity(name="confusion", dtype="float32")(confusion)
    info = keras.layers.Identity(name="target_information", dtype="float32")(classifier.output)
    return keras.Model(classifier.inputs, [classifier.output, domain, confusion, info], name="domain_adversarial"), scale



def joint_losses(params: DomainParams) -> tuple[dict, dict]:
    """(losses, loss weights) of the joint model's four outputs, as :func:`adapt` compiles it. The extractor's side
    of the game is weighted by the gradient-scale layer (the ramp times ``domain_weight``), not here."""
    c = custom_objects()
    dom = c["weighted_domain_crossentropy"] if params.conditioning == "cdan_e" else "binary_crossentropy"
    return ({"probabilities": c["source_crossentropy"], "domain": dom,
             "confusion": dom, "target_information": c["target_information"]},
            {"probabilities": 1.0, "domain": 1.0, "confusion": 1.0, "target_information": params.information_weight})


def domain_metrics(params: DomainParams) -> dict:
    """The domain accuracy metric (history key ``domain_accuracy`` whatever the conditioning)."""
    import keras

    if params.conditioning == "cdan_e":
        return {"domain": [keras.metrics.MeanMetricWrapper(custom_objects()["first_column_accuracy"],
                                                           name="accuracy")]}
    return {"domain": ["accuracy"]}


def mixed_batches(source, src_idx, labels, n_classes, target, tgt_idx, half: int, rng, *, augment: bool,
                  weighted: bool = False):
    """Endless ({x}, {probabilities, domain}) batches: ``half`` source particles with their one-hot classes and
    domain 1, ``half`` target particles with an all-zero class row and domain 0. ``weighted`` (CDAN+E's loss):
    the domain and confusion targets get the row's domain as a second column."""
    src = stream_batches(source, src_idx, labels, n_classes, half, rng, augment=augment)
    no_labels = np.zeros(target.n, np.int64)  # the target's labels are never read: stream_batches wants a column
    tgt = stream_batches(target, tgt_idx, no_labels, 1, half, rng, augment=augment)
    while True:
        xs, ys = next(src)
        xt, _ = next(tgt)
        x = np.concatenate([xs, xt])
        y = np.concatenate([ys, np.zeros((len(xt), n_classes), np.float32)])
        dom = np.concatenate([np.ones(len(xs)), np.zeros(len(xt))]).astype(np.float32)[:, None]
        conf = np.full_like(dom, 0.5)
        if weighted:
            conf, dom_y = np.concatenate([conf, dom], 1), np.concatenate([dom, dom], 1)
        else:
            dom_y = dom
        yield x, {"probabilities": y, "domain": dom_y, "confusion": conf, "target_information": 1 - dom}


def _ramp_class():
    import keras

    class Ramp(keras.callbacks.Callback):
        """Sets the extractor side's gradient weight before each batch: domain_weight * (2 / (1 + exp(-10 p)) - 1)."""

        def __init__(self, layer, weight: float, total: int, done: int):
            super().__init__()
            self.layer, self.w, self.total, self.step = layer, weight, max(1, total), done

        def on_train_batch_begin(self, batch, logs=None):
            p = self.step / self.total
            self.layer.weight.assign(self.w * (2.0 / (1.0 + np.exp(-10.0 * p)) - 1.0))
            self.step += 1

    return Ramp


def adapt(source_model: str | Path, source, labels: np.ndarray, split: np.ndarray, target, out: str | Path,
          params: DomainParams = DomainParams(), *, info: dict | None = None, progress: bool = True,
          resume: bool = False) -> dict:
    """Stage 2 and the model of stage 3: adapt the classifier saved at ``source_model`` (stage 1) to the
    particles of ``target`` (any source-like object; only its volumes are read), training on the ``source``
    particles whose ``split`` is TRAIN (labels >= 0); save the adapted classifier to ``out`` (.keras, the same
    layers as a supervised model: ``tomoflow features`` applies it). Returns the metadata saved.

    A checkpoint per epoch (the joint model with its optimizer, and a JSON record keyed by the settings, the
    source model and the data) lets ``resume`` continue from the last finished epoch."""
    import keras

    from .precision import resolve_precision
    from .training import _EpochRecord, make_optimizer

    if source.box_size != target.box_size:
        raise ValueError(f"source boxes are {source.box_size}^3 but target boxes {target.box_size}^3")
    keras.utils.set_random_seed(params.seed)
    precision = resolve_precision(params.precision)
    classifier, smeta = load_trained(source_model, precision)
    names = smeta["class_names"]
    train_idx = np.flatnonzero((split == TRAIN) & (labels >= 0))
    tgt_idx = np.arange(target.n)
    out = Path(out)
    ckpt, state_path = out.with_suffix(".adapt.keras"), out.with_suffix(".adapt.json")
    key = _key(params, precision, smeta, train_idx, labels, source, target)
    state = _read_state(state_path) if resume and ckpt.is_file() else None
    half = max(1, params.batch_size // 2)
    steps = -(-len(train_idx) // half)
    if state is not None and state.get("key") == key and 0 < state["epoch"] < params.adapt_epochs:
        joint = keras.models.load_model(ckpt, custom_objects=custom_objects())
        rev, first = joint.get_layer("confusion_scale"), int(state["epoch"])
    else:
        state = {"key": key, "epoch": 0, "history": {}, "best_epoch": 0, "best_val_loss": None}
        first = 0
        joint, rev = adversarial_model(classifier, params.discriminator_width, params.conditioning)
        opt = make_optimizer(params.adapt_training())
        if precision == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        losses, weights = joint_losses(params)
        joint.compile(optimizer=opt, loss=losses, loss_weights=weights, metrics=domain_metrics(params))
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, 0xADA7, first]))
    callbacks = [_ramp_class()(rev, params.domain_weight, steps * params.adapt_epochs, steps * first),
                 keras.callbacks.ModelCheckpoint(str(ckpt)), _EpochRecord(state, state_path, out.with_suffix(".h5"))]
    if first < params.adapt_epochs:
        joint.fit(mixed_batches(source, train_idx, labels, len(names), target, tgt_idx, half, rng,
                                augment=params.augment, weighted=params.conditioning == "cdan_e"),
                  steps_per_epoch=steps, epochs=params.adapt_epochs, initial_epoch=first,
                  verbose=2 if progress else 0, shuffle=False, callbacks=callbacks)
    # the classifier's own layers, now adapted: the discriminator is not on the path to the output, so not saved
    adapted = keras.Model(joint.inputs, joint.outputs[0], name=f"{classifier.name}_adapted")
    meta = {**smeta, **(info or {}), "params": asdict(params), "precision": precision, "adapted": True,
            "source_training": {k: smeta.get(k) for k in ("n_train", "n_validation", "best_epoch", "test")},
            "adaptation_history": state["history"], "n_target": int(target.n), "adapt_key": key}
    if first:
        meta["resumed_at_epoch"] = first
    save_trained(adapted, out, meta)
    for f in (ckpt, state_path):
        f.unlink(missing_ok=True)
    return meta


def _key(params, precision, smeta, train_idx, labels, source, target) -> str:
    """:func:`~tomoflow.ml.training._training_key` of the source particles trained on, with a sample of both
    domains' volumes, plus the stage-1 model and the target's size."""
    sample = (source.read_rows(train_idx[:32]), target.read_rows(np.arange(min(32, target.n))))
    base = json.loads(_training_key(params, precision, smeta["class_names"], source.box_size, labels, train_idx,
                                    train_idx[:0], sample))
    return json.dumps({**base, "source": smeta.get("training_key"), "n_target": int(target.n),
                       "class_loss": "source_crossentropy"},  # a checkpoint of the old (fused) loss is not resumed
                      sort_keys=True, default=list)


def predict(model, volumes: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class indices of (n, D, D, D) subtomograms."""
    out = [np.argmax(model.predict_on_batch(standardize(volumes[i:i + batch_size])), axis=1)
           for i in range(0, len(volumes), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)
