"""Open-set features (issue 24, part 3): the cosine-loss features of classes never trained on separate better than
the softmax features of the same network trained the same way; the verb writes features ``cluster`` reads."""

import numpy as np
import pytest

pytest.importorskip("keras")

from tomoflow.ml.openset import between_within_ratio  # noqa: E402
from tomoflow.ops.simulate import simulate_dataset  # noqa: E402
from tomoflow.params import DatasetSpec, OpenSetParams  # noqa: E402
from tomoflow.store import ParticleSet, Store  # noqa: E402
from conftest import run_cli  # noqa: E402

STRUCTURES = ("6zu5", "4v8r", "5cvz", "6wg6")  # + empty; 6zu5 and 4v8r never trained on


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store.create(tmp_path_factory.mktemp("o") / "s.zarr")
    simulate_dataset(s, "d", DatasetSpec(classes=STRUCTURES, per_class=60, snrs=(1.0,), box=16, voxel_size=24.0,
                                         resolution=24.0, seed=11), chunk=64, progress=False)
    return s


def _unseen_ratio(store, loss, tmp_path):
    from tomoflow.ops.openset import openset_features

    p = OpenSetParams(loss=loss, epochs=15, exclude=STRUCTURES[:2], name=f"f_{loss}", precision="float32")
    meta = openset_features(store, "d", tmp_path / f"{loss}.keras", p, progress=False)
    ps = ParticleSet(store, "d")
    truth = ps.rows(slice(0, ps.n), ["true_class"])["true_class"]  # scoring only
    unseen = truth < 2
    return between_within_ratio(np.asarray(ps.array(p.name)[:])[unseen], truth[unseen]), meta


@pytest.mark.slow
def test_cosine_features_separate_unseen_classes_better_than_softmax(store, tmp_path):
    """Measured (2 shared cores, 2026-12-02): between/within scatter ratio of the two unseen structures 0.084
    (cosface) vs 0.015 (softmax); k-means purity 0.58 vs 0.51. The bar is 2x. Checked: a cosine head without the
    margin (m = 0) still passes, so this shows the normalised cosine head's effect, not the margin's."""
    cos, meta = _unseen_ratio(store, "cosface", tmp_path)
    soft, _ = _unseen_ratio(store, "softmax", tmp_path)
    assert meta["test"]["accuracy"] > 0.8  # it learns the known classes
    assert meta["feature_layer"] == "embedding_norm" and meta["class_names"] == ["5cvz", "6wg6", "empty"]
    assert cos > 2 * soft, (cos, soft)


def test_cli_writes_features_cluster_reads_and_refuses_bad_input(store, tmp_path, capsys):
    before = sorted(ParticleSet(store, "d").arrays())
    rc, _, err = run_cli(capsys, "train-openset", str(store.path), "d", "-o", str(tmp_path / "m.keras"), "--exclude", "nope")
    assert rc == 2 and err.strip().startswith("tomoflow: error: d: cannot exclude") and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, "train-openset", str(store.path), "d", "-o", str(tmp_path / "m.keras"), "--margin", "1.5")
    assert rc == 2 and "--margin" in err
    assert sorted(ParticleSet(store, "d").arrays()) == before  # nothing written
    rc, out, err = run_cli(capsys, "train-openset", str(store.path), "d", "-o", str(tmp_path / "m.keras"), "--epochs", "1",
                           "--exclude", "6zu5", "--name", "osf", "--workers", "0", "--center-weight", "0.1")
    assert rc == 0, err
    ps = ParticleSet(store, "d")
    f = np.asarray(ps.array("osf")[:])
    assert f.shape == (ps.n, 64) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=0.02)  # normalised (bf16 where auto picks it)
    rc, _, err = run_cli(capsys, "cluster", str(store.path), "d", "--features", "osf", "-k", "3", "--workers", "0",
                         "--overwrite")
    assert rc == 0, err
