"""Autoencoder grouping and filtering (seed 002, 3.4.2) and the semi-supervised autoencoding classifier (3.4.3):
each learns on small simulated sets (box 16), through the store, the CLI and the pipeline stages."""

import numpy as np
import pytest

pytest.importorskip("keras")

from tomoflow.ml.training import TEST, TRAIN  # noqa: E402
from tomoflow.ops.autoencoder import (encode_autoencoder, filter_autoencoder, select_clusters,  # noqa: E402
                                     train_autoencoder)
from tomoflow.ops.cluster import kmeans  # noqa: E402
from tomoflow.ops.semisupervised import train_semisupervised  # noqa: E402
from tomoflow.ops.simulate import simulate_dataset  # noqa: E402
from tomoflow.params import (AutoencoderFilterParams, AutoencoderParams, DatasetSpec, KMeansParams,  # noqa: E402
                             SemiSupervisedParams)
from tomoflow.store import ParticleSet, Store  # noqa: E402
from conftest import run_cli, snapshot  # noqa: E402

STRUCTURES = ("6zu5", "3o21", "4v8r")  # + empty: 4 classes


def _purity(clusters, truth):
    return sum(np.bincount(truth[clusters == c]).max() for c in np.unique(clusters)) / len(truth)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """3 structures + empty, 30 each at SNR 1; autoencoder trained, codes written, k-means (k 8) on the codes."""
    d = tmp_path_factory.mktemp("ae")
    store = Store.create(d / "s.zarr")
    spec = DatasetSpec(classes=STRUCTURES, per_class=30, snrs=(1.0,), box=16, voxel_size=18.4, resolution=18.4,
                       seed=3)
    simulate_dataset(store, "d", spec, chunk=32)
    meta = train_autoencoder(store, "d", d / "ae.keras", AutoencoderParams(epochs=10, batch_size=16, latent=16,
                                                                           precision="float32"), progress=False)
    enc = encode_autoencoder(store, "d", d / "ae.keras", precision="float32", progress=False)
    kmeans(store, "d", KMeansParams(k=8), features="ae_latent", progress=False)
    return store, d / "ae.keras", meta, enc


def test_autoencoder_reconstruction_loss_falls(grouped):
    _, _, meta, enc = grouped
    loss = meta["history"]["loss"]
    assert len(loss) == 10 and loss[-1] < 0.8 * loss[0]  # standardised input: MSE 1 is "predicts nothing"
    assert meta["pose_norm"] and meta["input_box"] == 16 and meta["box_size"] == 16
    assert enc["computed"] == 4 and enc["latent"] == 16  # one task per particle chunk


def test_latent_kmeans_groups_the_structures(grouped):
    store, _, _, _ = grouped
    ps = ParticleSet(store, "d")
    t = ps.table_frame()
    codes = np.asarray(ps.array("ae_latent")[:])
    assert codes.shape == (120, 16) and codes.dtype == np.float32 and np.abs(codes).sum(1).min() > 0
    assert _purity(t.cluster.values, t.true_class.values.astype(int)) > 0.85  # 4 balanced classes: chance ~0.3


def test_filter_keeps_structured_clusters_and_drops_empty(grouped, tmp_path):
    store, model, _, _ = grouped
    r = filter_autoencoder(store, "d", model, "kept", progress=False)
    ps, kept = ParticleSet(store, "d"), ParticleSet(store, "kept")
    t, k = ps.table_frame(), kept.table_frame()
    empty = ps.class_names.index("empty")
    truth = t.true_class.values.astype(int)
    kept_cls = k.true_class.values.astype(int)
    assert (kept_cls == empty).sum() <= 3  # of 30 empty boxes
    assert (kept_cls != empty).sum() >= 0.9 * (truth != empty).sum()
    # an empty cluster's decoded centre is flat: every cluster mostly of empties scores below every structured one
    scores, labels = np.asarray(r["scores"]), t.cluster.values
    mostly_empty = [c for c in range(8) if (labels == c).any() and (truth[labels == c] == empty).mean() > 0.5]
    structured = [c for c in range(8) if (labels == c).any() and c not in mostly_empty]
    assert mostly_empty and scores[mostly_empty].max() < scores[structured].min()
    # default score 'both': these particles are shifted by <= 4 voxels (a ball) in 16^3, a quarter box: no cluster fails
    # the centring test, so the contrast split alone decides here
    off = np.asarray(ps.array("ae_latent_offset")[:])
    assert off.shape == (120,) and np.isfinite(off).all() and np.median(off[truth != empty]) < 0.3
    assert r["score"] == "both" and max(o for o in r["offsets"] if o is not None) < 0.3
    assert r["dropped_off_centre"] == 0 and r["centred"] == r["sizes"]
    contrast_only = filter_autoencoder(store, "d", model, "kept_c", AutoencoderFilterParams(score="contrast"),
                                       progress=False)
    assert contrast_only["kept_clusters"] == r["kept_clusters"] and contrast_only["offsets"] is None
    rows = k.source_index.values
    np.testing.assert_array_equal(kept.volumes[:], ps.volumes.oindex[rows])  # copied, in order
    assert ps.info["autoencoder_filter"]["out"] == "kept" and kept.info["autoencoder_filter"]["kept"] == len(k)
    # the user's own choice: the best two clusters
    r2 = filter_autoencoder(store, "d", model, "top2", AutoencoderFilterParams(top=2), progress=False)
    assert sorted(r2["kept_clusters"]) == sorted(np.argsort(-scores)[:2].tolist())


def test_autoencoder_cli_and_bad_input(grouped, tmp_path, capsys):
    store, model, _, _ = grouped
    before = snapshot(store.path)
    code, _, err = run_cli(capsys, "autoencoder", "filter", store.path, "d", "--model", model, "--out", "x",
                           "--features", "other", "--workers", 0)
    assert code == 2 and err.strip() == ("tomoflow: error: d: not clustered on 'other': run 'tomoflow cluster d "
                                         "--features other' first")
    code, _, err = run_cli(capsys, "autoencoder", "encode", store.path, "d", "--model", tmp_path / "no.keras",
                           "--workers", 0)
    assert code == 2 and err.count("\n") == 1 and "no.keras: no such model file" in err
    code, _, err = run_cli(capsys, "autoencoder", "train", store.path, "d", "-o", tmp_path / "m.keras",
                           "--latent", 1, "--workers", 0)
    assert code == 2 and err.strip() == "tomoflow: error: --latent: must be >= 2, got 1"
    code, _, err = run_cli(capsys, "autoencoder", "filter", store.path, "d", "--model", model, "--out", "x",
                           "--score", "centred", "--top", 2, "--workers", 0)
    assert code == 2 and err.count("\n") == 1 and err.startswith("tomoflow: error: --score: centred keeps particles")
    code, _, err = run_cli(capsys, "autoencoder", "filter", store.path, "d", "--model", model, "--out", "x",
                           "--max-offset", 0, "--workers", 0)
    assert code == 2 and err.strip() == "tomoflow: error: --max-offset: must be > 0, got 0"
    assert snapshot(store.path) == before
    code, out, _ = run_cli(capsys, "autoencoder", "filter", store.path, "d", "--model", model, "--out", "cli_kept",
                           "--workers", 0)
    assert code == 0 and "as 'cli_kept'" in out and ParticleSet(store, "cli_kept").n > 0
    assert out.splitlines()[0].split() == ["cluster", "size", "score", "offset", "kept"]
    # codes written without offsets (by an encode before 2026-12-02): the centring test refuses, contrast works
    ck = ParticleSet(store, "cli_kept")
    ck.create_array("old_codes", (16,), "float32")
    ck.array("old_codes")[:] = ParticleSet(store, "d").array("ae_latent").oindex[ck.table_frame().source_index.values]
    kmeans(store, "cli_kept", KMeansParams(k=3), features="old_codes", progress=False, overwrite=True)
    args = ("autoencoder", "filter", store.path, "cli_kept", "--model", model, "--out", "y", "--features", "old_codes",
            "--workers", 0)
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.strip() == ("tomoflow: error: cli_kept: no centring offsets 'old_codes_offset' beside "
                                         "the codes (written by 'tomoflow autoencoder encode' since 2026-12-02): "
                                         "encode again, or use --score contrast")
    code, out, _ = run_cli(capsys, *args, "--score", "contrast")
    assert code == 0 and "as 'y'" in out


def _blob_box(rng, centre_zyx, n=32, noise=0.3):
    """A dark elongated blob (two Gaussians) centred at ``centre_zyx`` of an n^3 box, plus white noise."""
    zyx = np.indices((n,) * 3).astype(float)
    v = np.zeros((n,) * 3)
    for off, s in (((0, 0, 0), 3.0), ((2.5, 1.5, 0), 2.0)):
        d2 = sum((zyx[i] - centre_zyx[i] - off[i]) ** 2 for i in range(3))
        v -= np.exp(-d2 / (2 * s * s))
    return (v + noise * rng.standard_normal(v.shape)).astype(np.float32)


def test_centring_offset_separates_centred_particles_from_edge_crops():
    """A picked particle is centred in its box; a crop of a particle's edge holds real density off-centre. Pose
    normalisation moves both to the centre (so codes and decoded centres look alike), so the offset must be the
    shift it applied, measured on the raw box: <= 2 voxels of picking error -> small; a corner crop -> large."""
    from tomoflow.ml.autoencoder import centred_members, centring_offsets, cluster_offsets, prepare_input

    rng = np.random.default_rng(0)
    big = [_blob_box(rng, 16 + rng.uniform(-2, 2, 3)) for _ in range(16)]
    centred = np.stack([b[8:24, 8:24, 8:24] for b in big[:8]])
    corners = [rng.integers(0, 2, 3) * 16 for _ in range(8)]
    edges = np.stack([b[z:z + 16, y:y + 16, x:x + 16] for b, (z, y, x) in zip(big[8:], corners)])
    empty = (0.3 * rng.standard_normal((8, 16, 16, 16))).astype(np.float32)
    vols = np.concatenate([centred, edges, empty])
    info = {"pose_norm": True, "input_box": 16, "polarity": "dark"}
    x, off = prepare_input(vols, info, offsets=True)
    assert x.shape == (24, 16, 16, 16, 1) and off.shape == (24,) and off.dtype == np.float32
    np.testing.assert_allclose(off, centring_offsets(vols), atol=1e-6)  # the same shift, with or without encoding
    assert off[:8].max() < 0.2 and off[8:16].min() > 0.35  # fractions of the box edge
    assert off[16:].max() < 0.3  # noise: its thresholded "density" is spread over the box, centroid near the centre
    # after pose normalisation every edge crop is centred: the evidence is gone from what the encoder sees
    assert centring_offsets(x[8:16, ..., 0]).max() < 0.2
    # clusters: 0 centred particles, 1 edge crops, 2 empty boxes, 3 two particles grouped with three edge crops
    labels = np.array([0] * 6 + [3] * 2 + [1] * 5 + [3] * 3 + [2] * 8)
    med = cluster_offsets(off, labels, 5)
    assert med[1] > 0.35 and med[3] > 0.35 and med[0] < 0.2 and np.isnan(med[4])
    scores = np.array([0.8, 0.6, 0.05, 0.7, 0.0])  # decoded contrast: edge crops are structured too

    def kept(p):  # the particles the filter would keep (as filter_autoencoder combines the two tests)
        ok = centred_members(off, labels, 5, p.max_offset, p.per_particle) if p.score != "contrast" else labels >= 0
        return np.flatnonzero(ok & select_clusters(scores, np.bincount(labels[ok], minlength=5), p)[labels])

    # default 'both': exactly the 8 centred particles, the two in the edge crops' cluster included
    assert kept(AutoencoderFilterParams()).tolist() == list(range(8))
    assert kept(AutoencoderFilterParams(per_particle=True)).tolist() == list(range(8))
    # contrast alone (the filter before 2026-12-02) keeps every edge crop; the centring test alone, the empty boxes
    assert kept(AutoencoderFilterParams(score="contrast")).tolist() == list(range(16))
    assert kept(AutoencoderFilterParams(score="centred")).tolist() == list(range(8)) + list(range(16, 24))
    assert kept(AutoencoderFilterParams(top=1)).tolist() == list(range(6))


def test_autoencoder_resume_reuses_a_finished_model(grouped):
    store, model, meta, _ = grouped
    mtime = model.stat().st_mtime_ns
    again = train_autoencoder(store, "d", model, AutoencoderParams(epochs=10, batch_size=16, latent=16,
                                                                   precision="float32"), progress=False, resume=True)
    assert again["training_key"] == meta["training_key"] and model.stat().st_mtime_ns == mtime


# ---- semi-supervised autoencoding classifier --------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled_set(tmp_path_factory):
    store = Store.create(tmp_path_factory.mktemp("ss") / "s.zarr")
    spec = DatasetSpec(classes=STRUCTURES, per_class=60, snrs=(1.0,), box=16, voxel_size=18.4, resolution=18.4,
                       seed=5)
    simulate_dataset(store, "d", spec, chunk=64)
    return store


def test_semisupervised_records_the_split_and_is_a_usable_classifier(labelled_set, tmp_path):
    from tomoflow.ops.features import extract_features

    store = labelled_set
    meta = train_semisupervised(store, "d", tmp_path / "ss.keras",
                                SemiSupervisedParams(labelled_fraction=0.1, epochs=2, batch_size=16,
                                                     precision="float32"), progress=False)
    t = ParticleSet(store, "d").table_frame()
    lab = t.labelled.values == 1
    assert set(t.split[lab]) == {TRAIN} and (t.split == TEST).sum() == meta["n_test"] == 120
    assert lab.sum() == meta["n_labelled"] == 12  # 10% of each class's 30 training particles
    assert (t.true_class[lab].value_counts() == 3).all()
    assert meta["feature_layer"] == "fc2"  # the default encoder is DSRF3D: its last 512-wide dense layer
    r = extract_features(store, "d", tmp_path / "ss.keras", layer="fc2", name="ss_latent", precision="float32")
    assert r["features"] == 512 and r["classes"] == 4
    assert ParticleSet(store, "d").array("ss_latent_class")[:].min() >= 0


@pytest.mark.slow
def test_semisupervised_classifier_learns_from_few_labels(labelled_set, tmp_path):
    """15% labels (16 particles: 4 of 30 per class), 15 epochs, DSRF3D encoder, decoder on all 120 training
    particles: 0.917 / 0.942 on the test half (seeds 0 / 1, measured 2026-12-02); the earlier small encoder reached
    0.525 (mean of 2 seeds), and a cross-entropy whose unlabelled rows still pull the logits (Keras' own on
    TensorFlow) stays at chance. It does NOT beat the same network with the decoder's loss weighted 0 (labelled part
    alone, same steps): 0.933 / 0.958; see benchmarks/RESULTS.md."""
    m = train_semisupervised(labelled_set, "d", tmp_path / "m.keras",
                             SemiSupervisedParams(labelled_fraction=0.15, epochs=15, batch_size=16,
                                                  precision="float32"), progress=False)
    assert m["n_labelled"] == 16 and m["test"]["accuracy"] > 0.8  # 4 classes: chance 0.25


def test_semisupervised_bad_input(tmp_path, capsys):
    store = Store.create(tmp_path / "s.zarr")
    simulate_dataset(store, "d", DatasetSpec(classes=("6zu5",), per_class=4, snrs=(1.0,), box=16, voxel_size=18.4,
                                             resolution=18.4, include_empty=False), chunk=4)
    before = snapshot(store.path)
    code, _, err = run_cli(capsys, "semisupervised", store.path, "d", "-o", tmp_path / "m.keras", "--workers", 0)
    assert code == 2 and err.strip() == ("tomoflow: error: d: particle set needs true classes (labels) of two or more "
                                         "classes on some particles")
    code, _, err = run_cli(capsys, "semisupervised", store.path, "d", "-o", tmp_path / "m.keras",
                           "--labelled-fraction", 0, "--workers", 0)
    assert code == 2 and err.strip() == "tomoflow: error: --labelled-fraction: must be > 0, got 0"
    code, _, err = run_cli(capsys, "semisupervised", store.path, "d", "-o", tmp_path / "m.keras",
                           "--model", "nope", "--workers", 0)
    assert code == 2 and err.strip().startswith("tomoflow: error: nope: unknown model (have: ")
    assert snapshot(store.path) == before


@pytest.mark.parametrize("name", ["dsrf3d", "rb3d"])
def test_semisupervised_encoder_is_the_registered_model(name):
    """The classifier part of the semi-supervised network is the registered model itself (same layers, same weight
    count); the decoder hangs off the input of its ``logits`` through ``latent``."""
    from tomoflow.ml.autoencoder import build_semisupervised, classifier_of
    from tomoflow.ml.models import build_model

    full = build_semisupervised(16, 4, latent=8, model=name)
    clf, ref = classifier_of(full), build_model(name, 16, 4)
    assert [lay.name for lay in clf.layers] == [lay.name for lay in ref.layers]
    assert clf.count_params() == ref.count_params()
    assert full.get_layer("latent").input.shape == ref.get_layer("logits").input.shape
    assert full.output["reconstruction"].shape[1:] == (16, 16, 16, 1)
