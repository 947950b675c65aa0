"""Convolutional autoencoder (seed 002, 3.4.2) and semi-supervised autoencoding classifier (3.4.3), arrays in.

The autoencoder's encoder: two 3^3 convolution pairs (16, 32 filters), each pair ending with a stride-2 convolution,
then a linear dense layer named ``latent`` (the code). The decoder mirrors it (dense, two stride-2 transposed
convolutions, a 3^3 convolution to one channel, cropped back to the box: a box not divisible by 4 is rebuilt at the
next multiple and cut). Layer widths are not in the seed's text; these are stated here.

* The **autoencoder** is trained to rebuild its standardised input (mean 0, std 1 per subtomogram) with plain MSE.
  Plain MSE, not MSE restricted to the observed Fourier region: the target *is* the observed subtomogram, whose
  missing wedge is already empty, so a decoder that reproduces the data reproduces the wedge too; a wedge-masked
  loss would need each particle's wedge rotated by its pose normalisation (per particle, per epoch) for no
  change in what the code must hold. The input is usually pose-normalised (:mod:`tomoflow.kernels.pose_norm`)
  so that one structure in many orientations gives similar codes, which k-means then groups.
* :func:`cluster_scores` ranks clusters by how structured the decoded mean code of each is: the standard deviation
  of the decoded centre. Inputs are standardised, so pure noise decodes to ~0 (noise cannot be predicted from a
  code) while a consistent structure decodes to a blob whose contrast survives; :func:`otsu_keep` splits the
  scores in two (size-weighted Otsu) when the user names no threshold.
* The contrast cannot tell a particle from the *edge* of one (a box on a particle's rim, or half on a neighbour):
  both decode to structured blobs, and pose normalisation has moved the density to the box centre before
  encoding. :func:`centring_offsets` keeps what pose normalisation removed: the distance of each box's density
  centroid from the box centre (fraction of the box edge); :func:`cluster_offsets` takes each cluster's median and
  :func:`centred_members` says which particles pass: a picked particle is centred in its box, an edge crop is not
  (see tomoflow.ops.autoencoder's filter).
* The **semi-supervised classifier** shares a registered classifier (``params.model``, DSRF3D by default;
  :mod:`tomoflow.ml.models`) as the encoder: its own head gives ``logits`` / ``probabilities``, and its features
  (the input of its ``logits``) go through a linear dense ``latent`` into the decoder above. (Until 2026-12-02 the
  encoder was the autoencoder's small one with a 64-unit head; it classified no better than alone and far below
  DSRF3D, see benchmarks/RESULTS.md.) Every batch holds a draw of the training particles (reconstruction target
  only: their one-hot rows are zero, so the cross-entropy is 0 for them) and a draw of the labelled ones (both
  targets), each with random wedge-preserving half turns when ``params.augment``; the classification loss is
  re-weighted so it counts as the mean over labelled rows. With ``reconstruction_weight`` 0 it is the registered
  classifier trained on the labelled part alone (the ablation the tests and benchmark compare to).
  The saved file holds the classifier (input -> ``probabilities``, with ``logits`` and the encoder's feature layer,
  named in the metadata's ``feature_layer``; the decoder and ``latent`` are not kept), so ``tomoflow features``
  and :func:`tomoflow.ml.training.load_trained` use it as any trained model.

Training streams chunks (:func:`tomoflow.ml.training.stream_batches`), is resumable epoch by epoch with the
checkpoint/record scheme of :func:`tomoflow.ml.training.train_model`, and computes at ``params.precision``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..params import AutoencoderParams, SemiSupervisedParams
from .training import (TEST, TRAIN, _EpochRecord, _read_state, _training_key, evaluate, save_trained, standardize,
                       stream_batches)

DECODER_LAYERS = ("dec_dense", "dec_reshape", "dec_up1", "dec_up2", "dec_out", "reconstruction")


def _encoder(keras, inp, latent: int):
    L = keras.layers
    x = L.Conv3D(16, 3, padding="same", activation="relu", name="enc_conv1")(inp)
    x = L.Conv3D(16, 3, strides=2, padding="same", activation="relu", name="enc_conv2")(x)
    x = L.Conv3D(32, 3, padding="same", activation="relu", name="enc_conv3")(x)
    x = L.Conv3D(32, 3, strides=2, padding="same", activation="relu", name="enc_conv4")(x)
    x = L.Flatten(name="enc_flatten")(x)
    return L.Dense(latent, name="latent")(x)


def _decoder(keras, z, box: int):
    L = keras.layers
    s = -(-(-(-box // 2)) // 2)  # the encoder's grid after two 'same' stride-2 convolutions
    x = L.Dense(s**3 * 32, activation="relu", name="dec_dense")(z)
    x = L.Reshape((s, s, s, 32), name="dec_reshape")(x)
    x = L.Conv3DTranspose(32, 3, strides=2, padding="same", activation="relu", name="dec_up1")(x)
    x = L.Conv3DTranspose(16, 3, strides=2, padding="same", activation="relu", name="dec_up2")(x)
    x = L.Conv3D(1, 3, padding="same", name="dec_out")(x)
    extra = 4 * s - box
    crop = ((extra // 2, extra - extra // 2),) * 3
    return L.Cropping3D(crop, name="reconstruction")(x)


def build_autoencoder(box: int, latent: int = 32):
    """Input (box, box, box, 1) -> ``reconstruction`` of the same shape, through the code ``latent``."""
    import keras

    if box < 8 or latent < 1:
        raise ValueError(f"box must be >= 8 and latent >= 1, got box {box}, latent {latent}")
    inp = keras.Input((box, box, box, 1), name="subtomogram")
    return keras.Model(inp, _decoder(keras, _encoder(keras, inp, latent), box), name="autoencoder")


def build_semisupervised(box: int, n_classes: int, latent: int = 32, model: str = "dsrf3d"):
    """One encoder, two outputs. The encoder is the registered classifier ``model``
    (:func:`tomoflow.ml.models.build_model`) whole: its own head gives ``probabilities`` (``logits`` inside), and
    its features (the input of its ``logits``) go through a linear dense ``latent`` into the decoder, which gives
    ``reconstruction``. With the decoder's loss weighted 0 it is exactly that classifier."""
    import keras

    from .models import build_model

    if n_classes < 2:
        raise ValueError(f"a classifier needs >= 2 classes, got {n_classes}")
    clf = build_model(model, box, n_classes)
    feats = clf.get_layer("logits").input
    z = keras.layers.Dense(latent, name="latent")(feats)
    return keras.Model(clf.inputs, {"probabilities": clf.output, "reconstruction": _decoder(keras, z, box)},
                       name=f"semisupervised_{clf.name}")


def masked_crossentropy(y_true, y_pred):
    """Cross-entropy of softmax outputs that is exactly 0, with a gradient of 0, on rows whose target is all zero
    (the unlabelled particles). Keras' own, on the TensorFlow backend, takes the fused op's gradient softmax - y,
    which assumes targets summing to 1 and pushes every logit of a zero row down: training then diverges."""
    import keras

    p = keras.ops.clip(keras.ops.cast(y_pred, "float32"), 1e-7, 1.0)
    return -keras.ops.sum(keras.ops.cast(y_true, "float32") * keras.ops.log(p), axis=-1)


def _register():
    """:func:`masked_crossentropy`, registered once with Keras so that a checkpoint compiled with it loads."""
    import keras

    if keras.saving.get_registered_object("tomoflow>masked_crossentropy") is None:
        keras.saving.register_keras_serializable(package="tomoflow")(masked_crossentropy)
    return masked_crossentropy


def decoder_of(model):
    """The decoder of a trained (semi-supervised) autoencoder as its own model: code -> volume (shared weights)."""
    import keras

    z = keras.Input((int(model.get_layer("latent").output.shape[-1]),), name="code")
    x = z
    for name in DECODER_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(z, x, name="decoder")


def classifier_of(model):
    """The classifier part of a semi-supervised model: input -> ``probabilities`` (``logits``, ``latent`` inside)."""
    import keras

    return keras.Model(model.inputs, model.get_layer("probabilities").output, name="semisupervised_classifier")


def prepare_input(volumes, info: dict, *, offsets: bool = False):
    """(n, D, D, D) subtomograms -> the network input (n, b, b, b, 1): pose-normalised and Fourier-binned to
    ``info["input_box"]`` when ``info["pose_norm"]``, then standardised. The same in training and encoding.
    With ``offsets``: (input, :func:`centring_offsets` of the same volumes), from the same pose normalisation."""
    v = np.asarray(volumes, np.float32)
    raw_shape, off = v.shape[1:], None
    if info.get("pose_norm"):
        from ..kernels.pose_norm import pose_normalized_features

        b = int(info["input_box"])
        rows, coms = pose_normalized_features(v, b, info["polarity"], centres=True)
        v = rows.reshape(len(rows), b, b, b)
        if offsets:
            off = _offsets(coms, raw_shape)
    elif offsets:
        off = centring_offsets(v, info.get("polarity", "dark"))
    x = standardize(v)
    return (x, off) if offsets else x


def _offsets(coms: np.ndarray, shape) -> np.ndarray:
    from ..kernels.geometry import box_center

    c = np.array([box_center(n) for n in shape[::-1]], np.float64)  # (x, y, z), as the centres of mass
    return (np.linalg.norm(coms - c, axis=1) / float(shape[0])).astype(np.float32)


def centring_offsets(volumes, polarity: str = "dark") -> np.ndarray:
    """(n,) float32: how far each subtomogram's density centroid (the centre of mass pose normalisation moves to the
    box centre, :func:`tomoflow.kernels.pose_norm.pose_normalize`) lies from the box centre, as a fraction of the
    box edge: ~0 for a particle centred in its box, up to ~0.87 (a corner) for a box holding the edge of one.
    Pose normalisation removes exactly this shift, so the codes and decoded centres cannot show it."""
    from ..kernels.pose_norm import pose_normalize

    v = np.asarray(volumes, np.float32)
    coms = [pose_normalize(x, polarity=polarity)[2] for x in v]
    return _offsets(np.asarray(coms, np.float64).reshape(-1, 3), v.shape[1:])


class PreparedSource:
    """A training source (see :mod:`tomoflow.ml.training`) whose volumes are ``source``'s as :func:`prepare_input`
    gives them (unstandardised: the batches standardise)."""

    def __init__(self, source, info: dict):
        self.source, self.info = source, info
        self.n, self.n_chunks = source.n, source.n_chunks
        self.box_size = int(info["input_box"]) if info.get("pose_norm") else source.box_size

    def chunk_slice(self, i: int) -> slice:
        return self.source.chunk_slice(i)

    def read_volumes(self, sl: slice) -> np.ndarray:
        return prepare_input(self.source.read_volumes(sl), self.info)[..., 0]

    def read_rows(self, idx) -> np.ndarray:
        return prepare_input(self.source.read_rows(idx), self.info)[..., 0]


def _fit(model_factory, batches, steps: int, epochs: int, out: Path, key: str, seed: int, *, resume: bool,
         progress: bool):
    """Fit with a checkpoint and a JSON record per epoch beside ``out``; with ``resume`` continue from the last
    finished epoch of a run of the same ``key``. ``batches(rng)`` yields training batches; ``model_factory()``
    builds and compiles a fresh model. Returns (model, history, first epoch run here)."""
    import keras

    ckpt, state_path, best_path = (out.with_suffix(s) for s in (".checkpoint.keras", ".checkpoint.json",
                                                                 ".best.weights.h5"))
    _register()
    state = _read_state(state_path) if resume and ckpt.is_file() else None
    if state is not None and state.get("key") == key and 0 < state["epoch"] < epochs:
        model = keras.models.load_model(ckpt)
        first = int(state["epoch"])
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xAE, first]))
    else:
        state = {"key": key, "epoch": 0, "history": {}, "best_epoch": 0, "best_val_loss": None}
        first = 0
        model = model_factory()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xAE]))
    if first < epochs:
        model.fit(batches(rng), steps_per_epoch=steps, epochs=epochs, initial_epoch=first,
                  verbose=2 if progress else 0, shuffle=False,
                  callbacks=[keras.callbacks.ModelCheckpoint(str(ckpt)), _EpochRecord(state, state_path, best_path)])
    for f in (ckpt, state_path, best_path):
        f.unlink(missing_ok=True)
    return model, state["history"], first


def _compile(model, precision: str, learning_rate: float, loss, loss_weights=None):
    import keras

    from .precision import with_precision

    model = with_precision(model, precision)
    opt = keras.optimizers.Adam(learning_rate=learning_rate)
    if precision == "mixed_float16":  # fp16 gradients underflow without loss scaling
        opt = keras.optimizers.LossScaleOptimizer(opt)
    model.compile(optimizer=opt, loss=loss, loss_weights=loss_weights)
    return model


def _reused(out: Path, key: str, resume: bool) -> dict | None:
    import json
    import zipfile

    if not (resume and out.is_file()):
        return None
    try:
        with zipfile.ZipFile(out) as z:
            done = json.loads(z.read("tomoflow.json"))
    except (zipfile.BadZipFile, KeyError, ValueError):
        return None
    return done if done.get("training_key") == key else None


def train_autoencoder(source, members: np.ndarray, out: str | Path, params: AutoencoderParams = AutoencoderParams(),
                      *, info: dict | None = None, progress: bool = True, resume: bool = False,
                      prepared: bool = False, raw_box: int | None = None) -> dict:
    """Train the autoencoder on the particles ``members`` of ``source``; save to ``out`` (.keras) with its input
    recipe. ``source`` gives raw subtomograms (pose-normalised here when ``params.pose_norm``), or with ``prepared``
    those already prepared by :func:`prepare_input` (e.g. computed once through the engine) from raw ones of
    ``raw_box``. Returns the metadata saved."""
    import keras

    from .precision import resolve_precision

    keras.utils.set_random_seed(params.seed)
    precision = resolve_precision(params.precision)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recipe = {"pose_norm": params.pose_norm, "input_box": params.input_box, "polarity": params.polarity}
    src = source if prepared else PreparedSource(source, recipe)
    if prepared and src.box_size != (params.input_box if params.pose_norm else raw_box):
        raise ValueError(f"prepared input of {src.box_size}^3 does not match the recipe {recipe}")
    members = np.sort(np.asarray(members, np.int64))
    zeros = np.zeros(src.n, np.int64)
    key = _training_key(params, precision, ["autoencoder"], src.box_size, zeros, members, members[:0],
                        [source.read_rows(members[:64])])
    done = _reused(out, key, resume)
    if done is not None:
        return done

    def batches(rng):
        for x, _ in stream_batches(src, members, zeros, 1, params.batch_size, rng):
            yield x, x

    def factory():
        return _compile(build_autoencoder(src.box_size, params.latent), precision, params.learning_rate, "mse")

    steps = -(-len(members) // params.batch_size)
    model, hist, first = _fit(factory, batches, steps, params.epochs, out, key, params.seed, resume=resume,
                              progress=progress)
    meta = {"kind": "autoencoder", "box_size": int(raw_box if prepared else source.box_size), **recipe,
            "latent": params.latent,
            **(info or {}), "params": asdict(params), "precision": precision, "n_train": int(len(members)),
            "history": hist, "training_key": key}
    if first:
        meta["resumed_at_epoch"] = first
    save_trained(model, out, meta)
    return meta


def labelled_part(labels: np.ndarray, split: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean per particle: ``fraction`` of each class's TRAIN members (at least one each), drawn from ``seed``:
    the particles whose labels a semi-supervised training uses."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1AB]))
    out = np.zeros(len(labels), bool)
    train = (split == TRAIN) & (labels >= 0)
    for c in np.unique(labels[train]):
        members = rng.permutation(np.flatnonzero(train & (labels == c)))
        out[members[:max(1, int(round(fraction * len(members))))]] = True
    return out


def train_semisupervised(source, labels: np.ndarray, names: list[str], split: np.ndarray, labelled: np.ndarray,
                         out: str | Path, params: SemiSupervisedParams = SemiSupervisedParams(), *,
                         info: dict | None = None, progress: bool = True, resume: bool = False) -> dict:
    """Train the shared encoder, the classifier head on the ``labelled`` particles (labels >= 0) and the decoder on
    every TRAIN particle; score the TEST ones; save the classifier to ``out`` (.keras). Returns the metadata."""
    import keras

    from .precision import resolve_precision

    keras.utils.set_random_seed(params.seed)
    precision = resolve_precision(params.precision)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = len(names)
    lab_idx = np.flatnonzero(labelled & (labels >= 0))
    all_idx = np.flatnonzero(split == TRAIN)
    test_idx = np.flatnonzero((split == TEST) & (labels >= 0))
    if len(lab_idx) == 0:
        raise ValueError("no labelled particles to train the classifier on")
    key = _training_key(params, precision, names, source.box_size, labels, lab_idx, all_idx,
                        [source.read_rows(all_idx[:64])])
    done = _reused(out, key, resume)
    if done is not None:
        return done
    b_all = params.batch_size
    b_lab = max(1, params.batch_size // 2)
    unlab = np.full(len(labels), n)  # class n: dropped below, so these rows have an all-zero one-hot (CE 0)
    lab = np.where(labelled & (labels >= 0), labels, n)

    def batches(rng):
        rng2 = np.random.default_rng(rng.integers(1 << 62))
        stream = stream_batches(source, all_idx, unlab, n + 1, b_all, rng, augment=params.augment)
        labelled_stream = stream_batches(source, lab_idx, lab, n + 1, b_lab, rng2, augment=params.augment)
        for (xa, ya), (xl, yl) in zip(stream, labelled_stream):
            x = np.concatenate([xa, xl])
            yield x, {"probabilities": np.concatenate([ya, yl])[:, :n], "reconstruction": x}

    # the cross-entropy is averaged over every row of a batch but only labelled rows add to it: scaled back up
    ce_weight = (b_all + b_lab) / b_lab

    def factory():
        return _compile(build_semisupervised(source.box_size, n, params.latent, params.model), precision,
                        params.learning_rate, {"probabilities": _register(), "reconstruction": "mse"},
                        {"probabilities": ce_weight, "reconstruction": params.reconstruction_weight})

    steps = -(-len(all_idx) // b_all)
    model, hist, first = _fit(factory, batches, steps, params.epochs, out, key, params.seed, resume=resume,
                              progress=progress)
    clf = classifier_of(model)
    test = evaluate(clf, source, test_idx, labels, params.batch_size, turns=params.augment)
    feature_layer = clf.get_layer("logits").input._keras_history[0].name  # the encoder's features
    meta = {"kind": "semisupervised", "class_names": list(names), "box_size": source.box_size, **(info or {}),
            "feature_layer": feature_layer,
            "params": asdict(params), "precision": precision, "n_labelled": int(len(lab_idx)),
            "n_train": int(len(all_idx)), "n_test": int(len(test_idx)), "history": hist, "test": test,
            "training_key": key}
    if first:
        meta["resumed_at_epoch"] = first
    save_trained(clf, out, meta)
    return meta


# ---- applying a trained autoencoder -------------------------------------------------------------------------
_ENCODERS: dict = {}
_LOCK = threading.Lock()


def cached_autoencoder(path: str | Path, precision: str = "float32"):
    """(encoder model: input -> code, decoder model: code -> volume, metadata) of an autoencoder file, loaded once
    per process (keyed by path, size, mtime and precision)."""
    from ..errors import InputError
    from .training import load_trained

    p = Path(path)
    if not p.is_file():
        raise InputError(str(path), "no such model file")
    st = p.resolve().stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, precision)
    with _LOCK:
        if key not in _ENCODERS:
            import keras

            model, meta = load_trained(p, precision)
            if meta.get("kind") != "autoencoder":
                raise InputError(str(path), "not an autoencoder saved by 'tomoflow autoencoder train'")
            _ENCODERS[key] = (keras.Model(model.inputs, model.get_layer("latent").output, name="encoder"),
                              decoder_of(model), meta)
        return _ENCODERS[key]


def encode(encoder, volumes: np.ndarray, info: dict, batch_size: int = 64, *, offsets: bool = False):
    """(n, latent) float32 codes of raw subtomograms (prepared as in training); fixed batches. With ``offsets``:
    (codes, :func:`centring_offsets`), the offsets taken from the same pose normalisation."""
    out, offs = [], []
    for i in range(0, len(volumes), batch_size):
        x, off = prepare_input(volumes[i:i + batch_size], info, offsets=True)
        out.append(np.asarray(encoder.predict_on_batch(x), np.float32))
        offs.append(off)
    codes = np.concatenate(out) if out else np.zeros((0, int(encoder.output.shape[-1])), np.float32)
    if offsets:
        return codes, (np.concatenate(offs) if offs else np.zeros(0, np.float32))
    return codes


def cluster_scores(decoder, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(structure score per centre, decoded centres (k, b, b, b)): the std of each decoded mean code."""
    vols = np.asarray(decoder.predict_on_batch(np.asarray(centres, np.float32)), np.float32)[..., 0]
    return vols.reshape(len(vols), -1).std(axis=1), vols


def cluster_offsets(offsets: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k,) the median :func:`centring_offsets` of each cluster's members (NaN for an empty cluster): how far from
    the box centre the density of the cluster's boxes typically sits. A picked particle is centred in its box; a
    box on a particle's edge (or a mis-centred pick) has its density off-centre, and pose normalisation, which
    centres it before encoding, hides that from the codes; the median ignores a few odd members."""
    off, lab = np.asarray(offsets, np.float64), np.asarray(labels, np.int64)
    return np.array([np.median(off[lab == c]) if (lab == c).any() else np.nan for c in range(k)])


def centred_members(offsets: np.ndarray, labels: np.ndarray, k: int, max_offset: float,
                    per_particle: bool = False) -> np.ndarray:
    """Boolean per particle: passes the centring test. A particle passes when its own offset is at most
    ``max_offset``, or (unless ``per_particle``) when its cluster as a whole is centred (median offset at most
    ``max_offset``): a centred cluster vouches for its members' picking errors, while the centred members of an
    off-centre cluster (true particles grouped with edge crops) still pass on their own. Unclustered (label < 0)
    particles pass on their own offset only."""
    off, lab = np.nan_to_num(np.asarray(offsets, np.float64), nan=np.inf), np.asarray(labels, np.int64)
    ok = off <= max_offset
    if not per_particle:
        med = np.nan_to_num(cluster_offsets(off, lab, k), nan=np.inf)
        ok |= (lab >= 0) & (med[np.clip(lab, 0, None)] <= max_offset)
    return ok


def otsu_keep(scores: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Boolean per cluster: above the size-weighted Otsu threshold of the scores (the split into a low and a high
    group of most between-group variance). One cluster, or all scores equal: keep all."""
    s, w = np.asarray(scores, float), np.asarray(sizes, float)
    order = np.argsort(s)
    if len(s) < 2 or s[order[-1]] <= s[order[0]]:
        return np.ones(len(s), bool)
    best, cut = -1.0, s[order[0]]
    for i in range(1, len(s)):
        lo, hi = order[:i], order[i:]
        w0, w1 = w[lo].sum(), w[hi].sum()
        if w0 == 0 or w1 == 0:
            continue
        m0, m1 = (w[lo] * s[lo]).sum() / w0, (w[hi] * s[hi]).sum() / w1
        between = w0 * w1 * (m0 - m1) ** 2
        if between > best:
            best, cut = between, s[order[i]]
    return s >= cut
