"""Training a classifier on subtomograms (seed 000, section 3.2.1), arrays in: no store here.

The data come from a *source*: anything with ``n``, ``box_size``, ``n_chunks``, ``chunk_slice(i)``,
``read_volumes(slice)`` and ``read_rows(indices)`` — a particle set of the store
(:class:`tomoflow.store.ParticleSet`, used by :mod:`tomoflow.ops.training`) or :class:`ArraySource` over a numpy array.

* The split (train / validation / test, stratified by true class, from a seed) is given by the caller
  (:func:`stratified_split`, :func:`validation_part`); the store driver records it in the table.
* Batches are streamed chunk by chunk: each epoch visits the chunks in a random order, loads one chunk,
  and passes its training members through a sliding shuffle buffer (``params.shuffle_mb``, 1,000 MB by default:
  a paper-scale set whole, drawn as a full shuffle).
* SGD with Nesterov momentum 0.9, learning rate 0.01 with decay 1e-6 per step (lr / (1 + 1e-6 t),
  Keras 2's ``decay``), batch 64, 20 epochs by default; a checkpoint per epoch.
* A validation part of the train split (``validation_fraction``, stratified, at most 2048 particles,
  held in memory) picks the epoch whose weights are kept (lowest validation loss): plain SGD on small
  sets can reach a good epoch and then diverge, and the last epoch is then a poor model. The test
  split is never looked at during training.
* A collapse (``params.recover``, on by default): the paper's SGD at lr 0.01 once sent a paper-scale DSRF3D to a
  constant guess at epoch 7 (training loss ln C, a uniform guess, for every later epoch). When an
  epoch's training loss is back within 5% of ln C after an earlier one was under 0.8 ln C, or is not finite, the
  training goes back to the best epoch's weights with a fresh optimizer at half the learning rate and spends the
  epochs left; each recovery is recorded (``recoveries`` in the model's metadata). A network can also die before it
  has learned anything (Adam at lr 1e-3 did in epoch 1 of a 2,000-a-class paper-scale training; the paper's SGD sat
  at ln C from epoch 2 of a 1,000-a-class one), where the loss rule cannot tell it from a slow start: after each
  epoch the logits of 64 training particles are computed, and identical logits for all of them (every path from the
  input dead, only the biases left, which gradients never revive) is a collapse too. A dead epoch is never kept
  as the best; when no live epoch exists yet the recovery starts from fresh weights (``from_epoch`` 0) at half the
  learning rate.
* The network computes at ``params.precision`` (:mod:`tomoflow.ml.precision`: float32 or a mixed bf16 / fp16
  policy; ``auto`` resolved by the hardware rule), its weights and outputs float32 either way.
* The saved ``.keras`` file carries an extra ``tomoflow.json`` entry with the class names, box size,
  voxel size, the precision trained at and the training record; :func:`load_trained` reads both.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..params import TrainParams
from .augment import rotate_in_wedge, wedge_preserving_turn

# the values of a particle table's ``split`` column (tomoflow.store.SPLITS: unassigned, train, validation, test)
UNASSIGNED, TRAIN, VALIDATION, TEST = 0, 1, 2, 3
# the training stream's default shuffle buffer (TrainParams.shuffle_mb)
SHUFFLE_BYTES = TrainParams().shuffle_mb * 1e6


class ArraySource:
    """Subtomograms (n, D, D, D) in memory, in chunks of ``chunk``: a training source without a store."""

    def __init__(self, volumes: np.ndarray, chunk: int = 256):
        self.volumes = np.asarray(volumes)
        self.n, self.chunk = len(self.volumes), int(chunk)
        self.box_size = int(self.volumes.shape[1])
        self.n_chunks = -(-self.n // self.chunk)

    def chunk_slice(self, i: int) -> slice:
        return slice(i * self.chunk, min((i + 1) * self.chunk, self.n))

    def read_volumes(self, sl: slice) -> np.ndarray:
        return np.asarray(self.volumes[sl], np.float32)

    def read_rows(self, idx) -> np.ndarray:
        return np.asarray(self.volumes[np.asarray(idx)], np.float32)


def stratified_split(true_class: np.ndarray, train_fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """Stratified random train/test split by true class: TRAIN or TEST per particle."""
    cls = np.asarray(true_class)
    if (cls < 0).any():
        raise ValueError("particles without a true class cannot be split for training")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5917]))
    split = np.full(len(cls), TEST, np.int8)
    for c in np.unique(cls):
        members = rng.permutation(np.flatnonzero(cls == c))
        split[members[: int(round(train_fraction * len(members)))]] = TRAIN
    return split


def stream_batches(ps, members: np.ndarray, labels: np.ndarray, n_classes: int, batch_size: int,
                   rng: np.random.Generator, *, loop: bool = True, buffer_bytes: float = SHUFFLE_BYTES,
                   augment: bool = False, rotate: float = 0.0, wedges: np.ndarray | None = None):
    """Yield (x, one-hot y) batches of the particles ``members`` (sorted indices) of the source ``ps``, read whole
    chunk by chunk.

    Chunks are visited in random order and their members enter a shuffle buffer of about ``buffer_bytes`` of
    float32 volumes (the whole set when it is smaller). Whenever the buffer is full, batches drawn at random from all
    it holds leave it until it is not (a sliding buffer, as tf.data's shuffle): sets stored class by class (as
    simulated ones are) would otherwise give one-class batches, on which SGD does not learn. A buffer emptied in one
    go whenever it fills (as this was until 2026-12-08) mixes only the chunks read since its last emptying: at 1,800
    training particles a class and 256 MB, 0.47 of its batches missed two or more of 8 classes, against 0.08 sliding
    (benchmarks/bench_batch_mix.py). The rest is drawn at the end of each pass, so a pass yields ceil(len(members)
    / batch_size) batches. With ``augment`` each particle is given a random :func:`wedge_preserving_turn` (or none)
    every time it is drawn, or, with probability ``rotate`` where ``wedges`` (n, 3) gives its tilt range,
    :func:`~tomoflow.ml.augment.rotate_in_wedge`."""
    rotating = augment and rotate > 0 and wedges is not None
    member = np.zeros(ps.n, bool)
    member[members] = True
    chunks = [i for i in range(ps.n_chunks) if member[ps.chunk_slice(i)].any()]
    eye = np.eye(n_classes, dtype=np.float32)
    cap = max(batch_size, int(buffer_bytes // (4 * (ps.box_size or 1) ** 3)))
    while True:
        xs, ys = [], []
        for c in rng.permutation(chunks):
            sl = ps.chunk_slice(int(c))
            local = np.flatnonzero(member[sl])
            vols = ps.read_volumes(sl)
            for i in local:
                if rotating and np.isfinite(wedges[sl.start + i, 0]) and rng.random() < rotate:
                    x = rotate_in_wedge(vols[i], wedges[sl.start + i], rng)
                else:
                    x = wedge_preserving_turn(vols[i], int(rng.integers(4))) if augment else vols[i]
                # each held volume owns its memory: a view would keep its whole chunk alive in the buffer
                xs.append(x if x.flags.owndata else x.copy())
                ys.append(labels[sl.start + i])
            while len(xs) >= cap:  # full: a batch drawn from all the buffer holds leaves it
                pick = rng.choice(len(xs), batch_size, replace=False)
                yield _batch([xs[j] for j in pick], [ys[j] for j in pick], eye)
                for j in np.sort(pick)[::-1]:  # swap-remove, highest index first (the last is never a pick)
                    xs[j], ys[j] = xs[-1], ys[-1]
                    xs.pop()
                    ys.pop()
        order = rng.permutation(len(xs))
        for b in range(0, len(xs), batch_size):
            pick = order[b:b + batch_size]
            yield _batch([xs[j] for j in pick], [ys[j] for j in pick], eye)
        if not loop:
            return


def standardize(volumes) -> np.ndarray:
    """(n, D, D, D) volumes -> (n, D, D, D, 1) float32, each with mean 0 and standard deviation 1: the
    network input, the same in training and feature extraction."""
    x = np.asarray(volumes, np.float32)[..., None]
    return (x - x.mean(axis=(1, 2, 3, 4), keepdims=True)) / (x.std(axis=(1, 2, 3, 4), keepdims=True) + 1e-6)


def _batch(xs, ys, eye):
    return standardize(np.stack(xs)), eye[np.asarray(ys)]


def train_model(source, labels: np.ndarray, names: list[str], split: np.ndarray, out: str | Path,
                params: TrainParams = TrainParams(), *, wedges: np.ndarray | None = None, info: dict | None = None,
                progress: bool = True, resume: bool = False) -> dict:
    """Train ``params.model`` on the particles of ``source`` whose ``split`` is TRAIN (labels >= 0), keep the
    epoch of lowest loss on those marked VALIDATION, score those marked TEST; save to ``out`` (.keras) with
    the class ``names``, the box size and ``info`` (voxel size, set name). Returns the metadata saved.

    Every epoch leaves a checkpoint beside ``out`` (the model with its optimizer state, the best epoch's weights and
    a JSON record of the epochs done, keyed by what the training depends on). With ``resume`` a training stopped
    part-way continues from its last finished epoch (batches drawn from then on by a generator seeded with that
    epoch: deterministic, not the draws an unbroken run would have made), and an ``out`` already trained with the
    same key is returned as it is."""
    import keras

    from .models import build_model
    from .precision import resolve_precision, with_precision

    if not 0 <= params.rotate <= 1:
        raise ValueError(f"rotate is a share of the draws in [0, 1], got {params.rotate}")
    keras.utils.set_random_seed(params.seed)
    train_idx = np.flatnonzero((split == TRAIN) & (labels >= 0))
    val_idx = np.flatnonzero((split == VALIDATION) & (labels >= 0))
    test_idx = np.flatnonzero((split == TEST) & (labels >= 0))
    precision = resolve_precision(params.precision)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt, state_path, best_path = (out.with_suffix(s) for s in (".checkpoint.keras", ".checkpoint.json",
                                                                 ".best.weights.h5"))
    validation = None
    if len(val_idx):
        xv, yv = _batch(list(source.read_rows(val_idx)), list(labels[val_idx]), np.eye(len(names), dtype=np.float32))
        validation = (xv, yv)
    # the data's part of the key: the validation volumes and the first training ones (a set simulated anew with
    # other settings has the same indices and labels)
    sample = [source.read_rows(train_idx[:64])] + ([validation[0]] if validation else [])
    # particles spread over the training set (not one class's run of indices) whose logits show a dead network
    probe = standardize(source.read_rows(train_idx[np.linspace(0, len(train_idx) - 1, min(64, len(train_idx)))
                                                   .astype(int)])) if len(train_idx) > 1 else None
    key = _training_key(params, precision, names, source.box_size, labels, train_idx, val_idx, sample)
    if resume and out.is_file():
        try:
            with zipfile.ZipFile(out) as z:
                done = json.loads(z.read("tomoflow.json"))
            if done.get("training_key") == key:
                return done
        except (zipfile.BadZipFile, KeyError, ValueError):
            pass
    state = _read_state(state_path) if resume and ckpt.is_file() else None
    if state is not None and state.get("key") == key and 0 < state["epoch"] < params.epochs:
        model = keras.models.load_model(ckpt)  # compiled, with the optimizer's state (step count, momenta)
        first = int(state["epoch"])
    else:
        state = {"key": key, "epoch": 0, "history": {}, "best_epoch": 0, "best_val_loss": None}
        first = 0
        model = with_precision(build_model(params.model, source.box_size, len(names)), precision)
        _compile(model, params, precision)
    steps = -(-len(train_idx) // params.batch_size)
    callbacks = [keras.callbacks.ModelCheckpoint(str(ckpt)),
                 _EpochRecord(state, state_path, best_path, len(names) if params.recover else 0, probe)]

    def fresh_weights(k: int):
        keras.utils.set_random_seed(params.seed + 7919 * k)  # another draw of the initial weights per restart
        return with_precision(build_model(params.model, source.box_size, len(names)), precision).get_weights()
    if not (params.augment and params.rotate):
        wedges = None
    resumed_at = first
    while first < params.epochs:
        if state.get("collapsed"):  # also when a run stopped between the collapse and its recovery
            _recover(model, params, precision, state, state_path, ckpt, best_path, fresh_weights)
        # a run that starts at epoch > 0 (resumed, or recovered) draws from a generator seeded with that epoch
        rng = np.random.default_rng(np.random.SeedSequence([params.seed, 0xBA7C] + ([first] if first else [])))
        model.fit(stream_batches(source, train_idx, labels, len(names), params.batch_size, rng,
                                 augment=params.augment, rotate=params.rotate, wedges=wedges,
                                 buffer_bytes=params.shuffle_mb * 1e6),
                  steps_per_epoch=steps, epochs=params.epochs, initial_epoch=first, verbose=2 if progress else 0,
                  shuffle=False, callbacks=callbacks, validation_data=validation,
                  validation_batch_size=params.batch_size)
        first = int(state["epoch"])
    hist = state["history"]
    if validation:  # keep the live epoch of lowest validation loss (the first of equals); none live: the last
        best_epoch = int(state["best_epoch"]) or params.epochs
        if best_epoch != params.epochs:
            model.load_weights(best_path)
    else:
        best_epoch = params.epochs
    test = evaluate(model, source, test_idx, labels, params.batch_size, turns=params.augment)
    meta = {"class_names": list(names), "box_size": source.box_size, **(info or {}),
            "params": asdict(params), "precision": precision, "n_train": int(len(train_idx)),
            "n_validation": int(len(val_idx)), "n_test": int(len(test_idx)), "best_epoch": best_epoch,
            "history": hist, "test": test, "training_key": key}
    if resumed_at:
        meta["resumed_at_epoch"] = resumed_at
    if state.get("recoveries"):
        meta["recoveries"] = state["recoveries"]
    if state.get("dead_epochs"):
        meta["dead_epochs"] = state["dead_epochs"]
    save_trained(model, out, meta)
    for f in (ckpt, state_path, best_path):
        f.unlink(missing_ok=True)
    return meta


def _compile(model, params: TrainParams, precision: str, lr_scale: float = 1.0) -> None:
    import keras

    optimizer = make_optimizer(params, lr_scale)
    if precision == "mixed_float16":  # fp16 gradients underflow without loss scaling (bf16 has float32's range)
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])


def collapsed(losses: list[float], n_classes: int) -> bool:
    """Whether the last of an epoch-by-epoch list of training ``losses`` says the network has collapsed: not
    finite, or back within 5% of ln C (the loss of a constant uniform guess, where a network whose ReLUs have all
    died stays for good) after an earlier epoch's had come below 0.8 ln C (it had learned)."""
    if not losses or not np.isfinite(losses[-1]):
        return bool(losses)
    chance = float(np.log(n_classes))
    return min(losses[:-1], default=np.inf) < 0.8 * chance and losses[-1] >= 0.95 * chance


def dead_output(model, probe: np.ndarray) -> bool:
    """Whether ``model`` gives the same logits (its ``logits`` layer, else its output) to every subtomogram of
    ``probe``: no path from the input is alive. A live network's logits differ between noisy particles even where
    its softmax saturates, so this never fires on a slow learner, only on a dead one."""
    import keras

    try:
        sub = keras.Model(model.inputs, model.get_layer("logits").output)
    except ValueError:
        sub = model
    out = np.asarray(sub.predict_on_batch(probe), np.float32)
    return bool(np.ptp(out, axis=0).max() <= 1e-6 * (1.0 + np.abs(out).max()))


def _recover(model, params, precision, state, state_path, ckpt, best_path, fresh_weights=None) -> None:
    """After a collapse: the best epoch's weights (or, with no live epoch yet, ``fresh_weights(k)`` of the k-th
    recovery), a fresh optimizer at half the learning rate so far, saved as the checkpoint before the record says
    so (a run stopped in between recovers again on resume)."""
    scale = 0.5 * float(state.get("lr_scale", 1.0))
    if state["best_epoch"] or fresh_weights is None:
        model.load_weights(str(best_path))
    else:
        model.set_weights(fresh_weights(len(state.get("recoveries", [])) + 1))
    _compile(model, params, precision, scale)
    model.save(str(ckpt))
    state.update(lr_scale=scale, collapsed=False)
    state.setdefault("recoveries", []).append({"after_epoch": int(state["epoch"]), "from_epoch": state["best_epoch"],
                                              "lr_scale": scale})
    _write_state(state, state_path)


def _training_key(params, precision, names, box, labels, train_idx, val_idx, volumes) -> str:
    """What a training depends on: its settings, the precision used, the classes, which particles (by index and
    label) train and validate, and a digest of ``volumes`` (a sample of the data). A checkpoint is resumed, or a
    finished model reused, only under the same key."""
    import hashlib

    h = hashlib.sha256()
    for a in (train_idx, labels[train_idx], val_idx, labels[val_idx]):
        h.update(np.ascontiguousarray(a, np.int64).tobytes())
    for v in volumes:
        h.update(np.ascontiguousarray(v, np.float32).tobytes())
    return json.dumps({"params": asdict(params), "precision": precision, "names": list(names), "box": int(box),
                       "particles": h.hexdigest()[:16]}, sort_keys=True, default=list)


def _read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _epoch_record_class():
    import keras

    class EpochRecord(keras.callbacks.Callback):
        """After each epoch (and after ModelCheckpoint has saved the model): the epoch's logs, the best epoch's
        weights when its validation loss is the lowest yet, then the JSON record, written last and atomically, so
        the record never names an epoch whose checkpoint is not on disk."""

        def __init__(self, state: dict, path: Path, best: Path, n_classes: int = 0, probe=None):
            super().__init__()
            self.state, self.path, self.best, self.n_classes, self.probe = state, path, best, n_classes, probe

        def on_epoch_end(self, epoch, logs=None):
            st = self.state
            logs = logs or {}
            for k, v in logs.items():
                st["history"].setdefault(k, []).append(float(v))
            val = logs.get("val_loss")
            dead = self.probe is not None and dead_output(self.model, self.probe)
            if dead:
                st.setdefault("dead_epochs", []).append(epoch + 1)
            # an epoch whose losses are not finite, or whose network is dead, is never kept as the best
            if (val is not None and np.isfinite(val) and np.isfinite(logs.get("loss", 0.0)) and not dead
                    and (st["best_val_loss"] is None or float(val) < st["best_val_loss"])):
                st["best_val_loss"], st["best_epoch"] = float(val), epoch + 1
                self.model.save_weights(str(self.best))
            st["epoch"] = epoch + 1
            if self.n_classes and epoch + 1 < self.params.get("epochs", 0) and (
                    dead or (st["best_epoch"] and collapsed(st["history"].get("loss", []), self.n_classes))):
                st["collapsed"] = True  # train_model recovers from the best epoch and goes on
                self.model.stop_training = True
            _write_state(st, self.path)

    return EpochRecord


def _write_state(state: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def _EpochRecord(state, path, best, n_classes: int = 0, probe=None):
    """Records each epoch; with ``n_classes`` it also stops the fit on a :func:`collapsed` epoch, and with
    ``probe`` (standardised subtomograms) on a :func:`dead_output` one, which is then never the best."""
    return _epoch_record_class()(state, path, best, n_classes, probe)


def make_optimizer(params: TrainParams, lr_scale: float = 1.0):
    """The Keras optimizer ``params`` names: "sgd" (Nesterov momentum, learning rate / (1 + decay * step))
    or "adam" (constant learning rate); the learning rate times ``lr_scale`` (< 1 after a collapse)."""
    import keras

    lr0 = params.learning_rate * lr_scale
    if params.optimizer == "sgd":
        lr = keras.optimizers.schedules.InverseTimeDecay(lr0, decay_steps=1, decay_rate=params.decay)
        return keras.optimizers.SGD(learning_rate=lr, momentum=params.momentum, nesterov=True)
    if params.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr0)
    raise ValueError(f"unknown optimizer '{params.optimizer}' (known: sgd, adam)")


def validation_part(train_idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    """(train, validation) indices: ``fraction`` of each class's train members (at least one when the class
    has two or more), at most 2048 in all; both sorted."""
    if fraction <= 0:
        return train_idx, train_idx[:0]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A11]))
    cap = min(1.0, 2048 / max(1, fraction * len(train_idx)))
    val = []
    for c in np.unique(labels[train_idx]):
        members = rng.permutation(train_idx[labels[train_idx] == c])
        n = int(round(fraction * cap * len(members)))
        if len(members) >= 2:
            val.append(members[:max(1, n)])
    val = np.sort(np.concatenate(val)) if val else train_idx[:0]
    return np.setdiff1d(train_idx, val), val


def evaluate(model, ps, idx: np.ndarray, labels: np.ndarray, batch_size: int = 64, *,
             turns: bool = False) -> dict:
    """Accuracy and confusion matrix of ``model`` on particles ``idx`` (streamed).

    With ``turns`` also ``accuracy_turns`` / ``confusion_turns``: the class of the mean predicted probabilities
    over the subtomogram and its three :func:`wedge_preserving_turn` copies (test-time augmentation; each copy
    is a view the microscope could have recorded, so a rotation-robust model should agree on all four)."""
    n = int(model.output_shape[-1])
    conf = np.zeros((n, n), np.int64)
    conf_t = np.zeros((n, n), np.int64)
    rng = np.random.default_rng(0)
    order = np.sort(idx)
    for x, y in stream_batches(ps, order, labels, n, batch_size, rng, loop=False):
        p = model.predict(x, verbose=0)
        truth = np.argmax(y, axis=1)
        np.add.at(conf, (truth, np.argmax(p, axis=1)), 1)
        if turns:
            for which in (1, 2, 3):
                xt = np.stack([wedge_preserving_turn(v, which) for v in x[..., 0]])[..., None]
                p = p + model.predict(xt, verbose=0)
            np.add.at(conf_t, (truth, np.argmax(p, axis=1)), 1)
    out = {"accuracy": _accuracy(conf), "confusion": conf.tolist()}
    if turns:
        out.update(accuracy_turns=_accuracy(conf_t), confusion_turns=conf_t.tolist())
    return out


def _accuracy(confusion: np.ndarray) -> float:
    total = int(confusion.sum())
    return float(np.trace(confusion) / total) if total else float("nan")


def save_trained(model, path: str | Path, meta: dict) -> None:
    model.save(str(path))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("tomoflow.json", json.dumps(meta))


def load_trained(path: str | Path, precision: str | None = None):
    """(model, metadata) from a .keras file written by :func:`train`; the model computes at the precision it was
    trained at, or at ``precision`` when given (``auto`` resolved here; the weights are the same)."""
    import keras

    from ..errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "no such model file")
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("tomoflow.json"))
    except (zipfile.BadZipFile, KeyError):
        raise InputError(str(path), "not a .keras model saved by tomoflow (no tomoflow.json inside)") from None
    model = keras.models.load_model(path)
    if precision is not None:
        from .precision import resolve_precision, with_precision

        model = with_precision(model, resolve_precision(precision))
    return model, meta
