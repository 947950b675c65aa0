"""Tomograms in the store: bit-exact round trip, block-mean pyramid, OME metadata, chunking."""

import numpy as np
import pytest
import zarr

from tomoflow.store import Store, export_mrc, import_mrc, open_level, tomogram_info
from tomoflow.store.tomograms import bin2
from conftest import write_mrc


def _ref_bin(v):
    z, y, x = (s // 2 * 2 for s in v.shape)
    return v[:z, :y, :x].astype(np.float64).reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean((1, 3, 5))


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.int8, np.uint16, np.float16])
def test_mrc_store_mrc_bit_exact(tmp_path, rng, dtype):
    data = (rng.normal(size=(37, 45, 51)) * 30).astype(dtype)  # odd sizes, several chunks
    src = write_mrc(tmp_path / "t.mrc", data, voxel_size=13.7, origin=(5.0, -3.0, 2.5))
    store = Store.create(tmp_path / "s.zarr")
    info = import_mrc(store, src, chunk=16)
    assert info.shape == data.shape and info.dtype == np.dtype(dtype).name
    out = export_mrc(store, "t", tmp_path / "back.mrc")
    import mrcfile

    with mrcfile.open(out) as m:
        assert m.data.dtype == np.dtype(dtype)
        assert m.data.tobytes() == data.tobytes()
        assert m.voxel_size.x == pytest.approx(13.7, rel=1e-6)
        assert (m.header.origin.x, m.header.origin.y, m.header.origin.z) == (5.0, -3.0, 2.5)


def test_pyramid_is_block_mean_and_ome_metadata(tmp_path, volume):
    store = Store.create(tmp_path / "s.zarr")
    import_mrc(store, write_mrc(tmp_path / "v.mrc", volume, voxel_size=10.0), chunk=16)
    l1, l2 = open_level(store, "v", 1), open_level(store, "v", 2)
    assert l1.shape == (20, 25, 30) and l2.shape == (10, 12, 15)
    np.testing.assert_allclose(l1[...], _ref_bin(volume), atol=1e-5)
    np.testing.assert_allclose(l2[...], _ref_bin(_ref_bin(volume)), atol=1e-5)
    assert l1.chunks == (16, 16, 16)
    attrs = zarr.open_group(str(tmp_path / "s.zarr" / "tomograms" / "v")).attrs.asdict()
    assert set(attrs) == {"ome", "tomoflow"} and attrs["ome"]["version"] == "0.5"  # NGFF 0.5: no 0.4 block at the top
    ms = attrs["ome"]["multiscales"][0]
    assert "version" not in ms and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["unit"] == "angstrom" for a in ms["axes"])
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    shifts = [d["coordinateTransformations"][1]["translation"] for d in ms["datasets"]]
    assert scales == [[10.0] * 3, [20.0] * 3, [40.0] * 3]
    assert shifts == [[0.0] * 3, [5.0] * 3, [15.0] * 3]  # centre of a 2x / 4x block in level-0 Å
    assert l1.metadata.dimension_names == ("z", "y", "x")
    assert tomogram_info(store, "v").voxel_size == 10.0


def test_import_does_not_depend_on_chunking(tmp_path, volume):
    src = write_mrc(tmp_path / "v.mrc", volume)
    levels = []
    for chunk in (16, 32, 128):
        store = Store.create(tmp_path / f"s{chunk}.zarr")
        import_mrc(store, src, chunk=chunk)
        levels.append([open_level(store, "v", k)[...] for k in range(3)])
    for other in levels[1:]:
        for a, b in zip(levels[0], other):
            assert np.array_equal(a, b)


def test_bin2_drops_trailing_odd_voxel():
    v = np.arange(3 * 5 * 4, dtype=np.float32).reshape(3, 5, 4)
    b = bin2(v)
    assert b.shape == (1, 2, 2)
    assert b[0, 0, 0] == pytest.approx(v[:2, :2, :2].mean())


def test_small_volumes_get_fewer_levels(tmp_path, rng):
    store = Store.create(tmp_path / "s.zarr")
    info = import_mrc(store, write_mrc(tmp_path / "t.mrc", rng.normal(size=(3, 40, 40)).astype(np.float32)), chunk=16)
    assert info.levels == 2  # 3 -> 1 -> (0: stop)


def test_overwrite_replaces_only_when_asked(tmp_path, volume):
    from tomoflow.errors import StoreError

    store = Store.create(tmp_path / "s.zarr")
    src = write_mrc(tmp_path / "v.mrc", volume)
    import_mrc(store, src, chunk=32)
    with pytest.raises(StoreError, match="already exists"):
        import_mrc(store, src, chunk=32)
    write_mrc(src, volume * 2)
    import_mrc(store, src, chunk=32, overwrite=True)
    assert np.array_equal(open_level(store, "v")[...], volume * 2)
    assert store.names("tomograms") == ["v"]
