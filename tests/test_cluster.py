"""k-means over-partition: every cluster found, blobs recovered, relative tolerance, squared inertia, the same
result on a 2-process cluster, labels in the table and sizes in the store; pose-normalisation baseline."""

import numpy as np
import pytest

from tomoflow.kernels.kmeans import assign, kmeans_plus_plus
from tomoflow.ops.cluster import kmeans
from tomoflow.params import KMeansParams
from tomoflow.store import ParticleSet, Store, create_particle_set
from conftest import run_cli


def _blobs(n=6000, dim=8, k=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, (k, dim))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.standard_normal((n, dim))).astype(np.float32), y


def _store(tmp_path, x):
    store = Store.create(tmp_path / "s.zarr")
    ps = create_particle_set(store, "p", {"x": np.zeros(len(x))}, chunk=500)
    ps.create_array("features", (x.shape[1],))
    ps.array("features")[:] = x
    return store


def test_kmeans_finds_every_blob_with_squared_inertia_and_writes_labels(tmp_path):
    from sklearn.metrics import adjusted_rand_score

    x, y = _blobs(6000, 22, 40)  # the benchmark's dimension
    store = _store(tmp_path, x)
    r = kmeans(store, "p", KMeansParams(k=40), block_rows=1000, progress=False)
    labels = ParticleSet(store, "p").rows(slice(0, len(x)), ["cluster"])["cluster"]
    assert len(np.unique(labels)) == 40 and r["converged"] and r["iterations"] < 50
    from sklearn.cluster import KMeans

    reference = adjusted_rand_score(y, KMeans(40, random_state=0).fit(x).labels_)  # some blobs overlap in 8-D
    assert adjusted_rand_score(y, labels) >= min(0.98, reference - 0.01)
    centres = np.asarray(ParticleSet(store, "p").info["kmeans"]["centres"], np.float32)
    _, d2 = assign(x, centres)
    assert r["inertia"] == pytest.approx(float(d2.sum()), rel=1e-4)  # a sum of squared distances
    curve, _ = store.read_curve("p.cluster_sizes")
    assert curve["size"].sum() == len(x) and (curve["size"] == np.bincount(labels, minlength=40)).all()


def test_assign_in_row_slices_equals_one_matrix():
    x, _ = _blobs(2000, 5, 30, seed=2)
    centres = x[:30].astype(np.float64)
    whole = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    labels, d2 = assign(x, centres, max_bytes=8 * 30 * 7)  # 7 rows at a time, a ragged last slice
    assert (labels == whole).all()
    assert np.allclose(d2, ((x - centres[whole]) ** 2).sum(1), rtol=1e-4, atol=1e-3)


def test_kmeans_on_two_workers_equals_in_process(tmp_path):
    from distributed import Client

    from tomoflow.engine import local_cluster

    x, _ = _blobs(3000, 6, 12, seed=1)
    store = _store(tmp_path, x)
    kmeans(store, "p", KMeansParams(k=12, seed=3), block_rows=500, progress=False)
    serial = ParticleSet(store, "p").rows(slice(0, len(x)), ["cluster"])["cluster"]
    with local_cluster(2, dashboard=False) as cluster, Client(cluster) as client:
        kmeans(store, "p", KMeansParams(k=12, seed=3), block_rows=500, client=client, progress=False)
    dist = ParticleSet(store, "p").rows(slice(0, len(x)), ["cluster"])["cluster"]
    assert (serial == dist).all()


def test_kmeans_plus_plus_gives_distinct_centres_and_empty_clusters_are_reseeded(tmp_path):
    x = np.repeat(np.eye(5, dtype=np.float32) * 10, 20, axis=0)  # 5 distinct points, 20 copies each
    c = kmeans_plus_plus(x.astype(np.float64), 5, np.random.default_rng(0))
    assert len({tuple(r) for r in c}) == 5
    store = _store(tmp_path, np.vstack([x, x[:1] + 0.01]))
    r = kmeans(store, "p", KMeansParams(k=5), progress=False)
    assert (np.array(r["sizes"]) > 0).all()


def test_cli_cluster_plot_and_bad_input(tmp_path, capsys):
    x, _ = _blobs(1200, 4, 6)
    store = _store(tmp_path, x)
    code, out, _ = run_cli(capsys, "cluster", store.path, "p", "-k", "6", "--workers", "0", "--plot",
                           tmp_path / "sizes.png")
    assert code == 0 and "6 clusters" in out and (tmp_path / "sizes.png").stat().st_size > 1000
    code, _, err = run_cli(capsys, "cluster", store.path, "p", "--features", "nope", "--workers", "0")
    assert code == 2 and "no array 'nope'" in err
    code, _, err = run_cli(capsys, "cluster", store.path, "p", "-k", "5000", "--workers", "0")
    assert code == 2 and "cannot make 5000 clusters" in err


def test_pose_normalisation_undoes_rotation_and_shift():
    from tomoflow.kernels.geometry import rotate_volume
    from tomoflow.kernels.rotations import random_rotations
    from tomoflow.kernels.pose_norm import pose_normalize
    from tomoflow.simulate.templates import structure_template

    m = -structure_template("6zu5", 12.0, 32, microscope=False)  # dark particle
    base, _, _ = pose_normalize(m)
    for a in random_rotations(3, np.random.default_rng(5)):
        moved, _, _ = pose_normalize(rotate_volume(m, a, (1.5, -2.0, 1.0), order=3))
        cc = np.corrcoef(moved.ravel(), base.ravel())[0, 1]
        assert cc > 0.9, cc
