"""Training from the store: recorded split, streamed batches, reproducible, saved with its metadata."""

import numpy as np
import pytest

pytest.importorskip("keras")

from tomoflow.ops.simulate import simulate_dataset  # noqa: E402
from tomoflow.params import DatasetSpec  # noqa: E402
from tomoflow.store import ParticleSet, Store  # noqa: E402
from tomoflow.ml.training import TEST, TRAIN, VALIDATION, load_trained, standardize  # noqa: E402
from tomoflow.ops.training import train  # noqa: E402
from tomoflow.params import TrainParams  # noqa: E402
from conftest import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    store = Store.create(tmp_path_factory.mktemp("d") / "s.zarr")
    spec = DatasetSpec(classes=("6zu5", "3o21"), per_class=30, snrs=(1.0,), box=16, voxel_size=18.4,
                       resolution=18.4, seed=3)  # a 294 Å box holds the ribosome
    simulate_dataset(store, "d", spec, chunk=16)
    return store


def _test_split_predictions(model, ps):
    """(truth, plain class, test-time-turn class) of the particles of the recorded test split, computed whole
    (not streamed): the turn class is the argmax of the mean of the model's predictions on the subtomogram and
    its three wedge-preserving half turns."""
    from tomoflow.ml.augment import wedge_preserving_turn

    t = ps.table_frame()
    test = np.flatnonzero(t.split.values == TEST)
    x = standardize(ps.volumes.oindex[test])[..., 0]
    views = [np.stack([wedge_preserving_turn(v, which) for v in x])[..., None] for which in range(4)]
    probs = np.stack([model.predict(v, verbose=0) for v in views])
    return t.true_class.values[test].astype(int), probs[0].argmax(1), probs.mean(0).argmax(1)


def _confusion(truth, pred, n):
    c = np.zeros((n, n), int)
    np.add.at(c, (truth, pred), 1)
    return c.tolist()


def test_train_records_split_streams_chunks_and_saves_metadata(dataset, tmp_path, monkeypatch):
    ps = ParticleSet(dataset, "d")
    reads = []
    real = ParticleSet.read_volumes
    monkeypatch.setattr(ParticleSet, "read_volumes", lambda self, sl: reads.append(sl) or real(self, sl))
    meta = train(dataset, "d", tmp_path / "m.keras", TrainParams(epochs=16, batch_size=8), progress=False)
    assert all(sl == ps.chunk_slice(sl.start // ps.chunk) for sl in reads)  # whole chunks, one at a time
    t = ps.table_frame()
    for c in range(3):  # stratified 50/50 per class; 2 of each class's 15 training members validate
        cls = t.split[t.true_class == c]
        assert (cls == TRAIN).sum() == 13 and (cls == VALIDATION).sum() == 2 and (cls == TEST).sum() == 15
    assert meta["n_train"] + meta["n_validation"] == meta["n_test"] == 45 and meta["n_validation"] == 6
    loss = meta["history"]["loss"]
    assert min(loss) < 0.7 * loss[0]  # it learns (plain SGD on 45 tiny subtomograms is not monotone)
    assert max(meta["history"]["accuracy"]) > 0.8  # three classes: chance is 1/3
    assert sum(map(sum, meta["test"]["confusion"])) == 45 and sum(map(sum, meta["test"]["confusion_turns"])) == 45
    model, saved = load_trained(tmp_path / "m.keras")
    # augment (default) -> also scored with test-time turns: the recorded scores are the saved model's on the
    # recorded test split, recomputed here without evaluate() (plain; mean of the 4 wedge-preserving views).
    # Fails if train_model records no turn scores (`turns=False`: KeyError). This model gets every test particle
    # right in every view, so it cannot tell how the views are averaged: that is pinned by
    # test_evaluate_with_turns_matches_an_independent_computation, with a model that is not turn-invariant.
    truth, plain, turned = _test_split_predictions(model, ps)
    assert meta["test"]["confusion"] == _confusion(truth, plain, 3)
    assert meta["test"]["confusion_turns"] == _confusion(truth, turned, 3)
    assert meta["test"]["accuracy_turns"] == pytest.approx(np.mean(turned == truth), abs=1e-12)
    assert saved["class_names"] == ["6zu5", "3o21", "empty"] and saved["box_size"] == 16
    assert saved["voxel_size"] == pytest.approx(18.4) and model.output_shape == (None, 3)


def test_training_is_reproducible_from_the_seed(dataset, tmp_path):
    a = train(dataset, "d", tmp_path / "a.keras", TrainParams(epochs=2, batch_size=8, seed=5), progress=False)
    b = train(dataset, "d", tmp_path / "b.keras", TrainParams(epochs=2, batch_size=8, seed=5), progress=False)
    np.testing.assert_allclose(a["history"]["loss"], b["history"]["loss"], rtol=1e-5)
    assert a["test"]["confusion"] == b["test"]["confusion"]


def test_cli_train_and_bad_model(dataset, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "train", dataset.path, "d", "-o", tmp_path / "c.keras", "--epochs", "1",
                           "--batch-size", "8", "--model", "rb3d")
    assert code == 0 and "trained rb3d on 39 subtomograms" in out and "6 validation" in out
    code, _, err = run_cli(capsys, "train", dataset.path, "d", "-o", tmp_path / "x.keras", "--model", "vgg")
    assert code == 2 and "vgg: unknown model" in err
    code, _, err = run_cli(capsys, "train", dataset.path, "nope", "-o", tmp_path / "x.keras")
    assert code == 2 and "no particle set named 'nope'" in err


def test_batches_mix_chunks_of_a_class_ordered_set(dataset):
    """Simulated sets are stored class by class (chunks of 16 hold one class); batches must still mix classes,
    every member must come once per epoch, and a small shuffle buffer must still bound what is held."""
    from tomoflow.ml.training import stream_batches

    ps = ParticleSet(dataset, "d")
    labels = ps.rows(slice(0, ps.n), ["true_class"])["true_class"].astype(int)
    members = np.arange(ps.n)
    for buffer_bytes in (256e6, 3 * 16 * 16**3 * 4):  # whole set; about three chunks
        rng = np.random.default_rng(0)
        batches = list(stream_batches(ps, members, labels, 3, 8, rng, loop=False, buffer_bytes=buffer_bytes))
        assert len(batches) == -(-ps.n // 8)
        counts = np.sum([y.sum(0) for _, y in batches], axis=0)
        assert counts.tolist() == np.bincount(labels, minlength=3).tolist()
        mixed = np.mean([(y.sum(0) > 0).sum() >= 2 for _, y in batches])
        assert mixed > 0.7, f"only {mixed:.0%} of the batches mix classes"


def test_the_saved_model_is_the_epoch_of_lowest_validation_loss(dataset, tmp_path):
    """Plain SGD on small sets can diverge after a good epoch: the kept weights are the best epoch's on the
    validation part (never the test split), not the last epoch's."""
    import keras

    p = TrainParams(epochs=6, batch_size=8, learning_rate=0.05, seed=2)
    meta = train(dataset, "d", tmp_path / "v.keras", p, progress=False)
    val_loss = meta["history"]["val_loss"]
    assert meta["best_epoch"] == int(np.argmin(val_loss)) + 1 and len(val_loss) == 6
    ps = ParticleSet(dataset, "d")
    t = ps.table_frame()
    val = np.flatnonzero(t.split.values == VALIDATION)
    model, _ = load_trained(tmp_path / "v.keras")
    x = standardize(ps.volumes.oindex[val])
    y = keras.ops.convert_to_numpy(keras.ops.one_hot(t.true_class.values[val].astype(int), 3))
    loss = float(keras.losses.categorical_crossentropy(y, model.predict(x, verbose=0)).numpy().mean())
    assert loss == pytest.approx(min(val_loss), rel=1e-3, abs=1e-4)
    if meta["best_epoch"] < 6:  # and it is not the last epoch's model
        assert loss < val_loss[-1] - 1e-6


def test_wedge_preserving_turns_keep_the_missing_wedge_and_the_centre():
    from tomoflow.kernels.wedge import particle_wedge
    from tomoflow.ml.augment import wedge_preserving_turn

    n = 16
    rng = np.random.default_rng(0)
    wedge = particle_wedge(n, -50.0, 50.0, 0.0) > 0.5  # observed region, centred Fourier layout
    v = np.real(np.fft.ifftn(np.fft.ifftshift(np.fft.fftshift(np.fft.fftn(rng.normal(size=(n,) * 3))) * wedge)))
    delta = np.zeros((n,) * 3)
    delta[n // 2, n // 2, n // 2] = 1
    for which in range(4):
        t = wedge_preserving_turn(v, which)
        power = np.abs(np.fft.fftshift(np.fft.fftn(t))) ** 2
        assert power[~wedge].sum() < 1e-12 * power.sum()  # nothing appears in the missing wedge
        assert wedge_preserving_turn(delta, which)[n // 2, n // 2, n // 2] == 1  # turns about D // 2
        if which:
            assert not np.allclose(t, v)
    # a half turn about z keeps z and reverses y and x about the centre
    p = np.zeros((n,) * 3)
    p[3, n // 2 + 2, n // 2 - 5] = 1
    assert wedge_preserving_turn(p, 1)[3, n // 2 - 2, n // 2 + 5] == 1


def test_evaluate_with_turns_averages_the_four_wedge_preserving_views(tmp_path):
    """A model that answers 0 only when the mass sits in the (-z, -y, -x) octant: right on every plain view of
    octant-(-,-,-) particles, and outvoted 3 to 1 once the three half turns (which move the octant) are averaged."""
    from tomoflow.store import create_particle_set
    from tomoflow.ml.training import evaluate

    d, n = 8, 6
    store = Store.create(tmp_path / "t.zarr")
    ps = create_particle_set(store, "p", {"true_class": np.zeros(n, np.int16)}, box_size=d, chunk=4)
    vols = np.zeros((n, d, d, d), np.float32)
    vols[:, 1:3, 1:3, 1:3] = 1.0
    ps.volumes[:] = vols

    class OctantModel:
        output_shape = (None, 2)

        def predict(self, x, verbose=0):
            low = x[:, : d // 2, : d // 2, : d // 2, 0].sum(axis=(1, 2, 3)) > x[..., 0].sum(axis=(1, 2, 3)) / 2
            return np.where(low[:, None], [[1.0, 0.0]], [[0.0, 1.0]])

    r = evaluate(OctantModel(), ParticleSet(store, "p"), np.arange(n), np.zeros(n, int), batch_size=4, turns=True)
    assert r["accuracy"] == 1.0 and r["accuracy_turns"] == 0.0
    assert "accuracy_turns" not in evaluate(OctantModel(), ParticleSet(store, "p"), np.arange(n), np.zeros(n, int))


class _LinearModel:
    """A fixed random linear softmax classifier (3 classes): not invariant to the wedge-preserving turns, so
    averaging its predictions over the 4 views, or over any 3 of them, changes the class of many particles."""

    output_shape = (None, 3)

    def __init__(self, box):
        self.w = np.random.default_rng(1).standard_normal((box**3, 3)) / box**1.5

    def predict(self, x, verbose=0):
        z = x.reshape(len(x), -1) @ self.w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_evaluate_with_turns_matches_an_independent_computation(dataset):
    """evaluate's streamed scores equal the class of the mean of the predictions on the 4 wedge-preserving
    views, computed whole here. Fails if evaluate drops a turn (`for which in (1, 2)`) or keeps only the last
    view's prediction (`p = model.predict(xt, ...)` instead of `p = p + ...`); the octant test above passes both."""
    from tomoflow.ml.augment import wedge_preserving_turn
    from tomoflow.ml.training import evaluate

    ps = ParticleSet(dataset, "d")
    labels = ps.rows(slice(0, ps.n), ["true_class"])["true_class"].astype(int)
    idx = np.arange(1, ps.n, 2)  # 45 particles of every chunk, streamed in batches of 8
    model = _LinearModel(ps.box_size)
    r = evaluate(model, ps, idx, labels, batch_size=8, turns=True)
    x = standardize(ps.volumes.oindex[idx])[..., 0]
    probs = np.stack([model.predict(np.stack([wedge_preserving_turn(v, w) for v in x])) for w in range(4)])
    plain, turned = probs[0].argmax(1), probs.mean(0).argmax(1)
    assert (plain != turned).sum() >= 10  # the views disagree: a wrong average shows
    assert r["confusion"] == _confusion(labels[idx], plain, 3)
    assert r["confusion_turns"] == _confusion(labels[idx], turned, 3)
    assert r["accuracy_turns"] == pytest.approx(np.mean(turned == labels[idx]), abs=1e-12)


def test_batches_rotated_in_the_wedge(dataset):
    """``rotate``: that share of the draws is turned to a random orientation in its own wedge; labels unchanged."""
    from tomoflow.kernels.wedge import wedge_of
    from tomoflow.ml.training import stream_batches

    ps = ParticleSet(dataset, "d")
    rows = ps.rows(slice(0, ps.n), ["true_class", "tilt_min", "tilt_max", "tilt_axis"])
    labels, members = rows["true_class"].astype(int), np.arange(ps.n)
    wedges = wedge_of(rows)

    def first(rotate):
        return next(stream_batches(ps, members, labels, 3, 128, np.random.default_rng(0), loop=False, augment=True,
                                   rotate=rotate, wedges=wedges))

    (x0, y0), (x1, y1) = first(0.0), first(1.0)
    assert x0.shape == x1.shape == (ps.n, 16, 16, 16, 1) and y0.sum(0).tolist() == np.bincount(labels, minlength=3).tolist()
    assert y1.sum(0).tolist() == y0.sum(0).tolist()
    match = [min(np.abs(a - b).mean() for b in x0) for a in x1[:8]]
    assert min(match) > 0.1  # no rotated draw is one of the four wedge-preserving views of a particle


def _killing_record(T, at_epoch: int, times: int = 1):
    """An _EpochRecord that zeroes every weight at the start of epoch ``at_epoch`` (0-based), ``times`` times: a
    network whose ReLUs have all died, which plain SGD never leaves (a constant guess, loss ln C)."""
    real = T._EpochRecord
    left = [times]

    def make(*a):
        rec = real(*a)

        def on_epoch_begin(epoch, logs=None):
            if epoch == at_epoch and left[0]:
                left[0] -= 1
                for w in rec.model.weights:
                    w.assign(np.zeros(w.shape, w.dtype))
        rec.on_epoch_begin = on_epoch_begin
        return rec
    return make


def _train_killed(tmp_path, monkeypatch, recover: bool, epochs: int, at_epoch: int) -> dict:
    """A two-class toy set (a brighter cube in class 1) trained with Adam, every weight zeroed at ``at_epoch``."""
    import tomoflow.ml.training as T

    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 48)
    vols = rng.standard_normal((96, 16, 16, 16)).astype(np.float32)
    vols[labels == 1, 4:12, 4:12, 4:12] += 1.5
    split = T.stratified_split(labels, 0.5, 0)
    _, val = T.validation_part(np.flatnonzero(split == T.TRAIN), labels, 0.25, 0)
    split[val] = T.VALIDATION
    p = TrainParams(epochs=epochs, batch_size=8, optimizer="adam", learning_rate=1e-3, precision="float32",
                    recover=recover)
    monkeypatch.setattr(T, "_EpochRecord", _killing_record(T, at_epoch=at_epoch))
    return T.train_model(T.ArraySource(vols, chunk=16), labels, ["a", "b"], split, tmp_path / "m.keras", p,
                         progress=False)


@pytest.mark.parametrize("recover", [True, False])
def test_a_collapsed_training_goes_back_to_its_best_epoch_at_half_the_rate(tmp_path, monkeypatch, recover):
    """The paper's SGD at paper scale collapsed once to a constant guess (loss ln C for every later epoch). With
    ``recover`` (the default) the training goes back to the best epoch's weights at half the learning rate and goes
    on learning within the same epoch budget; without it the rest of the epochs are spent dead."""
    meta = _train_killed(tmp_path, monkeypatch, recover, epochs=6, at_epoch=3)
    loss, chance = meta["history"]["loss"], np.log(2)
    assert len(loss) == 6 and min(meta["history"]["val_loss"][:3]) < 0.8 * chance  # it had learned
    assert loss[3] >= 0.95 * chance  # the killed epoch: a constant guess
    if recover:
        assert meta["recoveries"] == [{"after_epoch": 4, "from_epoch": meta["recoveries"][0]["from_epoch"],
                                       "lr_scale": 0.5}]
        assert 1 <= meta["recoveries"][0]["from_epoch"] <= 3
        assert max(loss[4:]) < 0.8 * chance  # learning from the best epoch's weights again
    else:
        assert "recoveries" not in meta and min(loss[4:]) >= 0.95 * chance
    assert meta["test"]["accuracy"] > 0.9  # the kept model is the best epoch's either way


@pytest.mark.parametrize("recover", [True, False])
def test_a_network_dead_before_it_learned_starts_again_from_fresh_weights(tmp_path, monkeypatch, recover):
    """Adam at lr 1e-3 killed a paper-scale DSRF3D in its first epoch (loss ln C from then on), before any epoch had
    learned, where the loss rule cannot act. Identical logits for every probe particle say the network is dead: with
    ``recover`` the training starts again from fresh weights at half the rate and learns; without, it stays dead,
    and a dead epoch is never the one kept."""
    meta = _train_killed(tmp_path, monkeypatch, recover, epochs=5, at_epoch=0)
    loss, chance = meta["history"]["loss"], np.log(2)
    assert len(loss) == 5 and loss[0] >= 0.95 * chance  # killed before it learned: the loss rule cannot fire
    if recover:
        assert meta["recoveries"] == [{"after_epoch": 1, "from_epoch": 0, "lr_scale": 0.5}]
        assert meta["dead_epochs"] == [1] and meta["best_epoch"] >= 2
        assert min(loss[1:]) < 0.8 * chance and meta["test"]["accuracy"] > 0.9
    else:
        assert "recoveries" not in meta and meta["dead_epochs"] == [1, 2, 3, 4, 5]
        assert meta["best_epoch"] == 5 and meta["test"]["accuracy"] == pytest.approx(0.5, abs=0.05)


def test_dead_output_tells_a_dead_network_from_a_saturated_live_one():
    """The probe looks at logits, not probabilities: a live network whose softmax is saturated on every particle is
    not dead; one with every weight but the output bias zero is."""
    import keras

    from tomoflow.ml.training import dead_output

    inp = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu", name="h")(inp)
    logits = keras.layers.Dense(2, name="logits")(h)
    model = keras.Model(inp, keras.layers.Activation("softmax")(logits))
    x = np.abs(np.random.default_rng(0).standard_normal((16, 4))).astype(np.float32)
    model.get_layer("h").set_weights([np.full((4, 8), 1.0, np.float32), np.zeros(8, np.float32)])
    model.get_layer("logits").set_weights([np.tile([[50.0, -50.0]], (8, 1)).astype(np.float32),
                                           np.zeros(2, np.float32)])
    assert np.allclose(model.predict_on_batch(x), [1.0, 0.0])  # saturated: the probabilities are all the same
    assert not dead_output(model, x)
    model.get_layer("h").set_weights([np.zeros((4, 8), np.float32), np.zeros(8, np.float32)])
    model.get_layer("logits").set_weights([np.zeros((8, 2), np.float32), np.array([0.3, -0.1], np.float32)])
    assert dead_output(model, x)


# the two shuffle-buffer tests: 8 classes stored class by class in one-class chunks of 16, batches of 16, a buffer
# of four chunks (64 volumes)
N_CLASSES, PER_CLASS, CHUNK, BATCH, CAP = 8, 96, 16, 16, 64


def _class_ordered_source(box: int):
    """A source over the class-ordered layout that counts what it reads and reads a fresh array per chunk (as a
    store does, so held views would keep chunks alive)."""
    from tomoflow.ml.training import ArraySource

    class Reading(ArraySource):
        read = 0

        def read_volumes(self, sl):
            self.read += sl.stop - sl.start
            return super().read_volumes(sl).copy()

    return Reading(np.ones((N_CLASSES * PER_CLASS, box, box, box), np.float32), chunk=CHUNK)


def test_the_shuffle_buffer_slides_and_holds_no_more_than_it_is_given():
    """A set stored class by class in one-class chunks, with a buffer of four chunks: batches are drawn from all the
    buffer holds whenever it is full (sliding), so remnants of earlier chunks stay in the mix. A buffer emptied in
    one go whenever it fills (the stream before 2026-12-08) gives batches of 2.8-3.8 classes on average on this
    layout (20 seeds), the sliding one 4.9-5.4; and nothing is read much beyond what the buffer holds."""
    from tomoflow.ml.training import stream_batches

    n_classes, per, chunk, batch, cap = N_CLASSES, PER_CLASS, CHUNK, BATCH, CAP
    labels = np.repeat(np.arange(n_classes), per)
    for seed in range(5):
        src = _class_ordered_source(16)
        held, counts = [], []
        for i, (_, y) in enumerate(stream_batches(src, np.arange(len(labels)), labels, n_classes, batch,
                                                  np.random.default_rng(seed), loop=False,
                                                  buffer_bytes=cap * 4 * 16**3)):
            held.append(src.read - i * batch)  # read but not yet given out, this batch included
            counts.append(y.sum(0))
        counts = np.array(counts)
        assert counts.sum(0).tolist() == [per] * n_classes and len(counts) == len(labels) // batch
        assert max(held) <= cap + chunk
        classes = (counts > 0).sum(1).mean()
        assert classes > 4.3, f"seed {seed}: batches hold {classes:.2f} classes on average"


def test_the_shuffle_buffer_holds_copies_not_its_chunks():
    """Held volumes own their memory: a held view of a chunk keeps the whole chunk (its other particles, those
    already given out) alive, and a sliding buffer keeps remnants of many chunks, so memory would grow past the
    buffer's size. Peak traced memory over a pass: 148 volumes here (the buffer, a chunk read, the copies and a
    batch being standardised), 292 when views are held."""
    import tracemalloc

    from tomoflow.ml.training import stream_batches

    n_classes, per, chunk, batch, cap, box = N_CLASSES, PER_CLASS, CHUNK, BATCH, CAP, 16
    labels = np.repeat(np.arange(n_classes), per)
    src = _class_ordered_source(box)
    vol = 4 * box**3
    tracemalloc.start()
    try:
        for _ in stream_batches(src, np.arange(len(labels)), labels, n_classes, batch, np.random.default_rng(0),
                                loop=False, buffer_bytes=cap * vol):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (cap + 2 * chunk + 4 * batch) * vol, f"peak {peak / vol:.0f} volumes held"
