"""Particle sets: volumes chunked by particles, the xarray table, region writes, appends."""

import numpy as np
import pytest

from tomoflow.store import COLUMNS, ParticleSet, Store, create_particle_set


def _table(n, tomo="t1"):
    r = np.arange(n, dtype=float)
    return {"tomogram": [tomo] * n, "x": r * 10, "y": r * 20, "z": r * 30, "true_class": r.astype(int) % 3}


@pytest.fixture
def store(tmp_path):
    return Store.create(tmp_path / "p.zarr")


def test_layout_chunks_and_schema(store):
    ps = create_particle_set(store, "a", _table(600), box_size=12, chunk=256, voxel_size=9.2,
                             class_names=["a", "b", "c"])
    assert ps.volumes.shape == (600, 12, 12, 12) and ps.volumes.chunks == (256, 12, 12, 12)
    assert ps.volumes.dtype == np.float32 and ps.n_chunks == 3
    assert ps.chunk_slice(2) == slice(512, 600)
    ds = ps.table()
    assert list(ds.data_vars)[: len(COLUMNS)] == list(COLUMNS)
    assert ds.sizes["particle"] == 600
    assert ds["x"].attrs["units"] == "angstrom" and "ZYZ" in ds["rot"].attrs["long_name"]
    assert ds["split"].attrs["flag_meanings"] == "unassigned train validation test"
    assert ds["x"].encoding["chunks"] == (256,)
    assert np.isnan(ds["score"].values).all() and (ds["cluster"].values == -1).all()
    df = ps.table_frame()
    assert df["tomogram"].tolist() == ["t1"] * 600 and df["true_class"].tolist()[:4] == [0, 1, 2, 0]
    assert ps.class_names == ["a", "b", "c"]


def test_float16_option(store, rng):
    ps = create_particle_set(store, "h", _table(10), box_size=8, dtype="float16")
    v = rng.normal(size=(10, 8, 8, 8)).astype(np.float16)
    ps.write_volumes(0, v)
    assert ps.volumes.dtype == np.float16 and np.array_equal(ps.read_volumes(slice(0, 10)), v)
    with pytest.raises(ValueError):
        create_particle_set(store, "bad", _table(2), box_size=8, dtype="float64")


def test_region_writes_touch_only_their_rows(store, rng):
    ps = create_particle_set(store, "a", _table(600), box_size=6, chunk=200)
    v = rng.normal(size=(200, 6, 6, 6)).astype(np.float32)
    ps.write_volumes(200, v)
    ps.write_columns(200, {"cluster": np.full(200, 7), "score": np.full(200, 0.5)})
    vol = ps.read_volumes(slice(0, 600))
    assert np.array_equal(vol[200:400], v) and not vol[:200].any() and not vol[400:].any()
    t = ps.table(["cluster", "score"])
    assert (t.cluster.values[200:400] == 7).all() and (t.cluster.values[:200] == -1).all()
    assert (t.cluster.values[400:] == -1).all() and np.isnan(t.score.values[400:]).all()
    with pytest.raises(KeyError):
        ps.write_columns(0, {"nonsense": np.zeros(3)})


def _chunk_files(ps, sub):
    root = ps.path / sub / "c"
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_append_never_rewrites_earlier_chunks(store, rng):
    ps = create_particle_set(store, "a", _table(512), box_size=6, chunk=256)
    ps.write_volumes(0, rng.normal(size=(512, 6, 6, 6)).astype(np.float32))
    ps.create_array("features", (5,))
    ps.array("features")[:] = rng.normal(size=(512, 5))
    before_vol, before_tab = _chunk_files(ps, "volumes"), _chunk_files(ps, "table/x")
    new = rng.normal(size=(100, 6, 6, 6)).astype(np.float32)
    sl = ps.append(_table(100, "t2"), new)
    assert sl == slice(512, 612) and ps.n == 612 and ParticleSet(store, "a").n == 612
    after_vol, after_tab = _chunk_files(ps, "volumes"), _chunk_files(ps, "table/x")
    for k, v in before_vol.items():
        assert after_vol[k] == v  # same bytes, same modification time: not rewritten
    for k, v in before_tab.items():
        assert after_tab[k] == v
    assert len(after_vol) == 3
    assert np.array_equal(ps.read_volumes(slice(512, 612)), new)
    assert ps.array("features").shape == (612, 5)
    df = ps.table_frame()
    assert df["tomogram"].tolist()[-1] == "t2" and len(df) == 612


def test_per_particle_arrays(store):
    ps = create_particle_set(store, "a", _table(300), box_size=4, chunk=128)
    arr = ps.create_array("features", (22,), attrs={"model": "dsrf3d"})
    assert arr.shape == (300, 22) and arr.chunks == (128, 22)
    arr[128:256] = 1.0
    assert ps.arrays() == ["features"] and ps.array("features")[130, 0] == 1.0
    with pytest.raises(Exception, match="already exists"):
        ps.create_array("features", (22,))


def test_table_only_set_has_no_volumes(store):
    from tomoflow.errors import StoreError

    ps = create_particle_set(store, "picks", _table(5))
    with pytest.raises(StoreError, match="holds no volumes"):
        _ = ps.volumes


def test_maps_and_curves(store, rng):
    m = rng.normal(size=(3, 8, 8, 8)).astype(np.float32)
    store.write_map("averages", m, 9.2, attrs={"set": "a"})
    back, vs, attrs = store.read_map("averages")
    assert np.array_equal(back, m) and vs == 9.2 and attrs["set"] == "a"
    store.write_curve("fsc", {"resolution_A": np.linspace(100, 20, 10), "fsc": np.linspace(1, 0, 10)})
    cols, _ = store.read_curve("fsc")
    assert list(cols) == ["resolution_A", "fsc"] and cols["fsc"][0] == 1.0
    with pytest.raises(ValueError, match="NaN"):
        store.write_map("bad", np.full((4, 4, 4), np.nan), 1.0)
    assert store.names("maps") == ["averages"]
