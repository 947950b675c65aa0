"""Adversarial domain adaptation (issue 24, part 4): the verb trains on the source, adapts to the target without
reading the target's table (its answer key), and writes the target's predictions before and after adaptation."""

import inspect

import numpy as np
import pytest

pytest.importorskip("keras")

from tomoflow.ops.simulate import simulate_dataset  # noqa: E402
from tomoflow.params import DatasetSpec, Microscope  # noqa: E402
from tomoflow.store import ParticleSet, Store  # noqa: E402
from conftest import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store.create(tmp_path_factory.mktemp("d") / "s.zarr")
    common = dict(classes=("6zu5", "4v8r"), per_class=20, snrs=(1.0,), box=16, voxel_size=24.0, resolution=24.0,
                  include_empty=False)
    simulate_dataset(s, "src", DatasetSpec(**common, seed=1), chunk=16, progress=False)
    simulate_dataset(s, "tgt", DatasetSpec(**common, seed=2, method="wbp", microscope=Microscope(defocus_um=-2.0)),
                     chunk=16, progress=False)
    return s


def test_adapt_domain_never_reads_the_target_table(store, tmp_path, monkeypatch):
    from tomoflow.ops.domain import adapt_domain
    from tomoflow.params import DomainParams

    reads = []
    real = ParticleSet.rows

    def rows(self, sl, columns):
        mod = next(f.frame.f_globals.get("__name__", "?") for f in inspect.stack()[1:]
                   if not f.frame.f_globals.get("__name__", "").startswith("tomoflow.store"))
        reads.append((self.name, mod, tuple(columns)))
        return real(self, sl, columns)

    real_table = ParticleSet.table

    def table(self, columns=None, *, load=True):
        if load:
            reads.append((self.name, "table", tuple(columns or ("*",))))
        return real_table(self, columns, load=load)

    monkeypatch.setattr(ParticleSet, "rows", rows)
    monkeypatch.setattr(ParticleSet, "table", table)
    meta = adapt_domain(store, "src", "tgt", tmp_path / "a.keras",
                        DomainParams(epochs=2, adapt_epochs=2, batch_size=8, precision="float32"), progress=False)
    assert [r for r in reads if r[0] == "tgt"] == []  # the target: volumes only
    assert any(r[0] == "src" and "true_class" in r[2] for r in reads)  # the source's labels are used
    pt = ParticleSet(store, "tgt")
    for name in ("domain_class", "domain_source_class"):
        c = np.asarray(pt.array(name)[:])
        assert c.shape == (pt.n,) and set(np.unique(c)) <= {0, 1}
    assert meta["adapted"] and len(meta["adaptation_history"]["domain_loss"]) == 2
    assert (tmp_path / "a.source.keras").is_file() and not (tmp_path / "a.adapt.keras").exists()


def test_bad_input_is_one_line_and_writes_nothing(store, tmp_path, capsys):
    before = sorted(ParticleSet(store, "tgt").arrays())
    rc, _, err = run_cli(capsys, "adapt-domain", str(store.path), "src", "src", "-o", str(tmp_path / "m.keras"),
                         "--workers", "0")
    assert rc == 2 and err.strip() == "tomoflow: error: src: the target set must differ from the source set"
    rc, _, err = run_cli(capsys, "adapt-domain", str(store.path), "src", "nope", "-o", str(tmp_path / "m.keras"),
                         "--workers", "0")
    assert rc == 2 and err.startswith("tomoflow: error:") and len(err.strip().splitlines()) == 1
    assert sorted(ParticleSet(store, "tgt").arrays()) == before and not (tmp_path / "m.source.keras").exists()



def test_target_information_loss_sees_only_the_target_rows():
    """The loss's batch mean is the target rows' mean prediction entropy minus the entropy of their mean prediction;
    the source rows (mask 0) add nothing, and no class label enters (the mask says only which rows are target)."""
    from tomoflow.ml.domain import custom_objects

    loss = custom_objects()["target_information"]
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [1.0, 0.0]], np.float32)  # last two rows: source
    mask = np.array([[1.0], [1.0], [0.0], [0.0]], np.float32)
    got = float(np.mean(np.asarray(loss(mask, p))))
    t = np.clip(p[:2], 1e-7, 1)
    ent = -(t * np.log(t)).sum(1).mean()
    m = t.mean(0)
    assert got == pytest.approx(ent + (m * np.log(m)).sum(), rel=1e-5)
    confident = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]], np.float32)
    collapsed = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5], [0.5, 0.5]], np.float32)
    assert float(np.mean(np.asarray(loss(mask, confident)))) < float(np.mean(np.asarray(loss(mask, collapsed))))


def test_without_domain_or_information_terms_the_target_rows_do_not_reach_the_classifier():
    """domain_weight 0 and information_weight 0: the joint model's total loss (as ``adapt`` compiles it) is the source
    class loss alone, so its gradient on the classifier's weights must not depend on the target rows of the batch.
    (Keras' categorical_crossentropy on a softmax output uses TensorFlow's fused op, whose gradient on an all-zero
    label row is softmax(logits), not 0: a hidden target term that made the "control" adapt.)"""
    import keras
    import tensorflow as tf

    from tomoflow.ml.domain import adversarial_model, joint_losses
    from tomoflow.ml.models import build_model
    from tomoflow.params import DomainParams

    keras.utils.set_random_seed(0)
    clf = build_model("dsrf3d", 16, 3)
    joint, scale = adversarial_model(clf, 8)
    scale.weight.assign(0.0)
    losses, weights = joint_losses(DomainParams(domain_weight=0.0, information_weight=0.0))
    joint.compile(optimizer="adam", loss=losses, loss_weights=weights)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16, 16, 16, 1)).astype(np.float32)
    dom = np.r_[np.ones(4), np.zeros(4)].astype(np.float32)[:, None]
    y = {"probabilities": np.r_[np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], np.zeros((4, 3), np.float32)],
         "domain": dom, "confusion": np.full_like(dom, 0.5), "target_information": 1 - dom}

    def grads(x):
        with tf.GradientTape() as tape:
            loss = joint.compute_loss(x=x, y=y, y_pred=joint(x, training=True))
        return [g for g in tape.gradient(loss, clf.trainable_weights)]

    other = x.copy()
    other[4:] = 3 * rng.normal(size=other[4:].shape)  # other target rows, same source rows
    a, b = grads(x), grads(other)
    assert all(g is not None for g in a)
    for g, h in zip(a, b):
        np.testing.assert_allclose(np.asarray(g), np.asarray(h), atol=1e-6)
    # and the class loss is the mean over the source rows
    p = np.asarray(clf(x[:4]))
    ce = -np.log(np.clip(p[np.arange(4), [0, 1, 2, 0]], 1e-7, 1)).mean()
    got = float(np.mean(np.asarray(losses["probabilities"](y["probabilities"], np.r_[p, np.asarray(clf(x[4:]))]))))
    assert got == pytest.approx(ce, rel=1e-4)



@pytest.mark.parametrize("conditioning", ["cdan", "cdan_e"])
def test_conditional_discriminator_sees_features_times_classes_and_does_not_push_the_probabilities(conditioning):
    """CDAN (Long et al. 2018): the discriminator reads the flattened outer product of the features (the input of
    ``logits``) and the class probabilities, features x classes wide, and its output depends on the probabilities;
    the probabilities' gradient is stopped, so the extractor's side of the game (the confusion loss) reaches the
    feature layers but not the ``logits`` layer, which only the class loss trains."""
    import keras
    import tensorflow as tf

    from tomoflow.ml.domain import adversarial_model, joint_losses
    from tomoflow.ml.models import build_model
    from tomoflow.params import DomainParams

    keras.utils.set_random_seed(0)
    clf = build_model("dsrf3d", 16, 3)
    n_feat = int(clf.get_layer("logits").input.shape[-1])
    joint, scale = adversarial_model(clf, 8, conditioning)
    disc = joint.get_layer("discriminator")
    assert tuple(disc.ws[0].shape) == (n_feat * 3, 8)
    assert tuple(adversarial_model(build_model("dsrf3d", 16, 3), 8, "none")[0].get_layer("discriminator")
                 .ws[0].shape) == (n_feat, 8)
    scale.weight.assign(1.0)
    p = DomainParams(domain_weight=1.0, information_weight=0.0, conditioning=conditioning)
    losses, weights = joint_losses(p)
    joint.compile(optimizer="adam", loss=losses, loss_weights=weights)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16, 16, 16, 1)).astype(np.float32)
    dom = np.r_[np.ones(4), np.zeros(4)].astype(np.float32)[:, None]
    conf = np.full_like(dom, 0.5)
    if conditioning == "cdan_e":
        dom, conf = np.c_[dom, dom], np.c_[conf, dom]
    # no class targets at all (every class row zero) and information_weight 0: only the domain terms are left
    y = {"probabilities": np.zeros((8, 3), np.float32), "domain": dom, "confusion": conf,
         "target_information": 1 - dom[:, :1]}
    with tf.GradientTape() as tape:
        loss = joint.compute_loss(x=x, y=y, y_pred=joint(x, training=False))
    g = dict(zip([w.path for w in clf.trainable_weights], tape.gradient(loss, clf.trainable_weights)))
    logits_kernel = clf.get_layer("logits").kernel.path
    assert np.abs(np.asarray(g[logits_kernel])).max() == 0  # the probabilities' gradient is stopped
    fc = clf.get_layer("fc2").kernel.path
    assert np.abs(np.asarray(g[fc])).max() > 0  # the features are pushed
    # and the discriminator's output depends on the probabilities (the logits layer), not on the features alone
    before = np.asarray(joint(x, training=False)[1])[:, 0]
    k = clf.get_layer("logits").kernel
    k.assign(np.asarray(k)[:, ::-1])
    after = np.asarray(joint(x, training=False)[1])[:, 0]
    assert np.abs(before - after).max() > 1e-6


def test_entropy_weighted_domain_loss():
    """CDAN+E: each row's domain loss weighted by 1 + exp(-H(p)), the weights normalised within each domain."""
    from tomoflow.ml.domain import custom_objects

    c = custom_objects()
    p = np.array([[0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], np.float32)
    w = np.asarray(c["EntropyWeight"]()(p))[:, 0]
    h = -(p * np.log(p)).sum(1)
    np.testing.assert_allclose(w, 1 + np.exp(-h), rtol=1e-5)
    d = np.array([0.9, 0.4, 0.3, 0.2], np.float32)
    dom = np.array([1, 1, 0, 0], np.float32)
    got = float(np.mean(np.asarray(c["weighted_domain_crossentropy"](np.c_[dom, dom], np.c_[d, w]))))
    bce = -(dom * np.log(d) + (1 - dom) * np.log(1 - d))
    ww = np.r_[w[:2] / w[:2].sum(), w[2:] / w[2:].sum()]
    assert got == pytest.approx((ww * bce).sum() / ww.sum(), rel=1e-5)
