"""OME-Zarr: store tomograms are valid NGFF 0.5; export to 0.5 / 0.4 (portal style, read with zarr 2); import of
0.4 and 0.5 images (including one written by zarr 2 in nanometres); bad inputs; atomic export."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

sys.path.insert(0, os.path.dirname(__file__))  # interop.py sits beside the tests

from conftest import run_cli, snapshot, write_mrc
from interop import run_python

from ome_zarr_models import v04, v05  # the test extra

from tomoflow.store import Store, import_mrc, open_level, tomogram_info
from tomoflow.store import omezarr
from tomoflow.store.omezarr import export_omezarr, import_omezarr


@pytest.fixture
def vol(rng):
    return rng.normal(size=(40, 50, 60)).astype(np.float32)


def _ref_bin(v):
    z, y, x = (s // 2 for s in v.shape)
    return v[:2 * z, :2 * y, :2 * x].reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))


def _store_with(tmp_path, data, voxel_size=9.2, name="v", chunk=16):
    store = Store.create(tmp_path / "s.zarr")
    import_mrc(store, write_mrc(tmp_path / f"{name}.mrc", data, voxel_size=voxel_size), chunk=chunk)
    return store


def _image(path, data, *, axes="zyx", types=None, unit="angstrom", scales=((10.0,) * 3,), zarr_format=3,
           paths=None, extra=None):
    """An OME-Zarr image written directly with zarr (not by tomoflow), for import tests."""
    g = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    arrays = data if isinstance(data, list) else [data]  # one array per dataset, in the order listed
    paths = paths or [str(k) for k in range(len(scales))]
    for p, d in zip(paths, arrays, strict=True):
        kw = {"dimension_names": tuple(axes)} if zarr_format == 3 else {}
        g.create_array(p, shape=d.shape, dtype=d.dtype, chunks=(8,) * d.ndim, **kw)[...] = d
    ms = {"axes": [{"name": a, "type": (types or ["space"] * len(axes))[i], **({"unit": unit} if unit else {})}
                   for i, a in enumerate(axes)],
          "datasets": [{"path": p, "coordinateTransformations": [{"type": "scale", "scale": list(s)}]}
                       for p, s in zip(paths, scales)], **(extra or {})}
    if zarr_format == 3:
        g.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        g.attrs["multiscales"] = [{"version": "0.4", **ms}]
    return Path(path)


# -- the store's own tomograms ------------------------------------------------------------------------------


def test_store_tomogram_is_ngff_05_and_reads_with_ome_zarr_py(tmp_path, capsys, vol):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    src = write_mrc(tmp_path / "v.mrc", vol, voxel_size=9.5)
    code, _, err = run_cli(capsys, "import-tomogram", tmp_path / "s.zarr", src, "--chunk", "16")
    assert code == 0, err
    path = tmp_path / "s.zarr" / "tomograms" / "v"
    img = v05.Image.from_zarr(zarr.open_group(str(path), mode="r"))  # raises on invalid 0.5
    assert [d.path for d in img.ome_attributes.multiscales[0].datasets] == ["0", "1", "2"]
    assert set(zarr.open_group(str(path), mode="r").attrs.asdict()) == {"ome", "tomoflow"}

    import dask

    node = list(Reader(parse_url(str(path)))())[0]
    # ome-zarr-py hands back dask arrays: compute them here, whatever scheduler an earlier test left configured
    with dask.config.set(scheduler="synchronous"):
        assert np.array_equal(np.asarray(node.data[0]), vol)
        np.testing.assert_allclose(np.asarray(node.data[1]), _ref_bin(vol), atol=1e-5)
    ct = node.metadata["coordinateTransformations"]
    assert ct[0][0]["scale"] == pytest.approx([9.5] * 3) and ct[1][0]["scale"] == pytest.approx([19.0] * 3)
    assert [a["unit"] for a in node.metadata["axes"]] == ["angstrom"] * 3


# -- export -------------------------------------------------------------------------------------------------

ZARR2_READ = r"""
import json, sys, zarr, numpy as np
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
g = zarr.open_group(sys.argv[1], mode="r")
arrs = {k: g[k] for k in ("0", "1", "2")}
a0 = arrs["0"][...]
node = list(Reader(parse_url(sys.argv[1]))())[0]
print(json.dumps({
    "zarr": zarr.__version__, "multiscales": g.attrs["multiscales"],
    "shapes": {k: list(a.shape) for k, a in arrs.items()}, "chunks": {k: list(a.chunks) for k, a in arrs.items()},
    "dtype": str(a0.dtype), "sum": float(a0.astype("float64").sum()), "l1sum": float(arrs["1"][...].sum(dtype="float64")),
    "voxels": [float(a0[i, j, k]) for i, j, k in ((0, 0, 0), (39, 49, 59), (17, 3, 41))],
    "ome_zarr_py": [list(d.shape) for d in node.data],
}))
"""


def test_export_04_is_portal_style_and_opens_with_zarr2(tmp_path, capsys, vol):
    store = _store_with(tmp_path, vol, voxel_size=13.4804)
    out = tmp_path / "out" / "v.zarr"
    code, text, err = run_cli(capsys, "export-omezarr", store.path, "v", "-o", out, "--ngff", "0.4", "--chunk", "16")
    assert code == 0, err
    assert (out / ".zattrs").is_file() and (out / "0" / ".zarray").is_file() and not (out / "zarr.json").exists()
    v04.Image.from_zarr(zarr.open_group(str(out), mode="r"))  # raises on invalid 0.4

    r = run_python(ZARR2_READ, out)
    assert r["zarr"].startswith("2.")
    ms = r["multiscales"][0]
    assert ms["version"] == "0.4" and [(a["name"], a["type"], a["unit"]) for a in ms["axes"]] == \
        [(a, "space", "angstrom") for a in "zyx"]
    ds = ms["datasets"]
    assert ds[0]["coordinateTransformations"] == [{"type": "scale", "scale": [13.48] * 3}]  # rounded, as the portal
    assert ds[1]["coordinateTransformations"][0]["scale"] == pytest.approx([26.96] * 3)
    assert ds[1]["coordinateTransformations"][1]["translation"] == pytest.approx([6.74] * 3)  # 2x block centre
    assert r["shapes"] == {"0": [40, 50, 60], "1": [20, 25, 30], "2": [10, 12, 15]}
    assert r["chunks"]["0"] == [16, 16, 16] and r["chunks"]["2"] == [10, 12, 15]
    assert r["dtype"] == "float32"
    assert r["sum"] == pytest.approx(float(vol.astype(np.float64).sum()), rel=1e-9, abs=1e-6)
    assert r["l1sum"] == pytest.approx(float(_ref_bin(vol).astype(np.float64).sum()), rel=1e-5, abs=1e-3)
    assert r["voxels"] == [float(vol[0, 0, 0]), float(vol[39, 49, 59]), float(vol[17, 3, 41])]
    assert r["ome_zarr_py"] == [[40, 50, 60], [20, 25, 30], [10, 12, 15]]


def test_export_04_default_chunk_is_256_and_05_copies_the_store(tmp_path, rng):
    data = rng.normal(size=(8, 20, 300)).astype(np.float32)
    store = _store_with(tmp_path, data, chunk=16)
    out4 = export_omezarr(store, "v", tmp_path / "v4.zarr", ngff="0.4", levels=2)
    meta = json.loads((out4 / "0" / ".zarray").read_text())
    assert meta["chunks"] == [8, 20, 256] and meta["dimension_separator"] == "/"
    assert [d["path"] for d in json.loads((out4 / ".zattrs").read_text())["multiscales"][0]["datasets"]] == ["0", "1"]

    out5 = export_omezarr(store, "v", tmp_path / "v5.zarr")
    img = v05.Image.from_zarr(zarr.open_group(str(out5), mode="r"))
    src = zarr.open_group(str(store.node_path("tomograms", "v")), mode="r")
    assert img.attributes.ome.model_dump(exclude_none=True) == \
        v05.Image.from_zarr(src).attributes.ome.model_dump(exclude_none=True)
    g = zarr.open_group(str(out5), mode="r")
    for k in ("0", "1", "2"):
        assert g[k].chunks == src[k].chunks and np.array_equal(g[k][...], src[k][...])
    assert g.attrs["tomoflow"]["voxel_size"] == tomogram_info(store, "v").voxel_size


def test_export_of_a_store_written_before_ngff_05(tmp_path, vol):
    """Old stores: 0.4 block at the top of the group and no dimension_names; the export is still valid 0.5."""
    store = _store_with(tmp_path, vol)
    g = zarr.open_group(str(store.node_path("tomograms", "v")), mode="r+")
    old = [{"version": "0.4", **g.attrs["ome"]["multiscales"][0]}]
    g.attrs.update({"multiscales": old})
    out = export_omezarr(store, "v", tmp_path / "v5.zarr")
    v05.Image.from_zarr(zarr.open_group(str(out), mode="r"))
    assert "multiscales" not in zarr.open_group(str(out), mode="r").attrs
    # and importing such an old group (0.4 at the top only) reads the 0.4 block
    del g.attrs["ome"]
    info = import_omezarr(Store.create(tmp_path / "t.zarr"), g.store.root / g.path, name="w")
    assert info.voxel_size == pytest.approx(9.2, rel=1e-6)


def test_export_refuses_to_overwrite_and_replaces_with_overwrite(tmp_path, capsys, vol):
    store = _store_with(tmp_path, vol)
    out = tmp_path / "v.zarr"
    out.mkdir()
    (out / "keep").write_text("mine")
    code, _, err = run_cli(capsys, "export-omezarr", store.path, "v", "-o", out)
    assert code == 2 and err.strip().splitlines() == [f"tomoflow: error: {out}: already exists (use --overwrite to "
                                                      "replace it)"]
    assert (out / "keep").read_text() == "mine"
    code, _, err = run_cli(capsys, "export-omezarr", store.path, "v", "-o", out, "--overwrite")
    assert code == 0, err
    assert not (out / "keep").exists() and (out / "zarr.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr", "v.mrc", "v.zarr"]


class _FailingLevel:
    """A pyramid level that fails after ``after`` block reads (a full disk, a lost mount)."""

    def __init__(self, arr, after):
        self.arr, self.after = arr, after
        self.shape, self.dtype, self.chunks, self.ndim = arr.shape, arr.dtype, arr.chunks, arr.ndim

    def __getitem__(self, region):
        self.after -= 1
        if self.after < 0:
            raise OSError(28, "No space left on device")
        return self.arr[region]


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_export_failing_half_way_leaves_nothing(tmp_path, monkeypatch, capsys, vol, ngff):
    store = _store_with(tmp_path, vol)
    real = omezarr.open_level

    def open_level(s, name, level=0):
        a = real(s, name, level)
        return _FailingLevel(a, after=0) if level == 1 else a  # level 0 is written by then

    monkeypatch.setattr(omezarr, "open_level", open_level)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run_cli(capsys, "export-omezarr", store.path, "v", "-o", tmp_path / "v.zarr", "--ngff", ngff,
                           "--chunk", "16")
    assert code == 2 and "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary folder

    # an existing output survives a failed --overwrite untouched
    monkeypatch.setattr(omezarr, "open_level", real)
    out = export_omezarr(store, "v", tmp_path / "v.zarr", ngff=ngff)
    snap = snapshot(out)
    monkeypatch.setattr(omezarr, "open_level", open_level)
    with pytest.raises(OSError):
        export_omezarr(store, "v", out, ngff=ngff, chunk=16, overwrite=True)
    assert snapshot(out) == snap and sorted(p.name for p in tmp_path.iterdir()) == before + ["v.zarr"]


def test_copy_is_block_by_block(tmp_path, monkeypatch, rng):
    """Blocks align to the destination's chunks, cover the array once and stay under the byte limit."""
    data = rng.normal(size=(64, 48, 80)).astype(np.float32)
    src = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(16, 16, 16), dtype="f4")
    src[...] = data
    dst = zarr.create_array(str(tmp_path / "b.zarr"), shape=data.shape, chunks=(32, 32, 32), dtype="f4")
    monkeypatch.setattr(omezarr, "BLOCK_BYTES", 32 * 32 * 80 * 4)
    seen = []

    def write(region, block):
        seen.append(block.size)
        assert all(r.start % c == 0 for r, c in zip(region, dst.chunks))
        dst[region] = block

    omezarr.copy_blocks(src, dst, on_block=write)
    assert np.array_equal(dst[...], data)
    assert sum(seen) == data.size and max(seen) * 4 <= omezarr.BLOCK_BYTES and len(seen) > 1


# -- import -------------------------------------------------------------------------------------------------

ZARR2_WRITE = r"""
import json, sys, numpy as np, zarr
from ome_zarr.io import parse_url
from ome_zarr.writer import write_multiscale
vol = np.load(sys.argv[2])
root = zarr.group(store=parse_url(sys.argv[1], mode="w").store)
# as the portal's pipeline (mrc2omezarr): ome_zarr.writer on zarr 2, scale-only transformations
write_multiscale([vol, vol[::2, ::2, ::2]], group=root, name="/",
                 axes=[{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
                 coordinate_transformations=[[{"type": "scale", "scale": [0.92] * 3}],
                                             [{"type": "scale", "scale": [1.84] * 3}]],
                 storage_options={"chunks": (16, 16, 16)})
print(json.dumps({"zarr": zarr.__version__}))
"""


def test_import_zarr2_portal_style_in_nanometres(tmp_path, capsys, rng):
    data = rng.integers(-300, 300, size=(24, 40, 36)).astype(np.int16)
    np.save(tmp_path / "vol.npy", data)
    src = tmp_path / "TS_01.zarr"
    assert run_python(ZARR2_WRITE, src, tmp_path / "vol.npy")["zarr"].startswith("2.")
    assert (src / ".zattrs").is_file()
    code, text, err = run_cli(capsys, "import-tomogram", tmp_path / "s.zarr", src, "--chunk", "16")
    assert code == 0, err
    assert "as tomogram 'TS_01'" in text
    store = Store.open(tmp_path / "s.zarr")
    info = tomogram_info(store, "TS_01")
    assert info.voxel_size == pytest.approx(9.2, rel=1e-9) and info.dtype == "int16"
    assert np.array_equal(open_level(store, "TS_01")[...], data)
    np.testing.assert_allclose(open_level(store, "TS_01", 1)[...], _ref_bin(data.astype(np.float32)), atol=1e-4)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_import_ngff_04_and_05_written_directly(tmp_path, rng, zarr_format):
    data = rng.normal(size=(20, 30, 26)).astype(np.float32)
    # datasets listed coarse first: level 0 is the finest scale, not the first entry; micrometre units
    src = _image(tmp_path / "img.zarr", [data[::2, ::2, ::2], data], unit="micrometer",
                 scales=((0.0012,) * 3, (0.0006,) * 3), paths=["1", "0"], zarr_format=zarr_format)
    info = import_omezarr(Store.create(tmp_path / "s.zarr"), src, chunk=16)
    assert info.name == "img" and info.shape == data.shape and info.voxel_size == pytest.approx(6.0)
    assert np.array_equal(open_level(Store.open(tmp_path / "s.zarr"), "img")[...], data)


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_round_trip_mrc_store_omezarr_store(tmp_path, capsys, rng, ngff):
    data = rng.integers(-2000, 2000, size=(30, 34, 50)).astype(np.int16)
    store = _store_with(tmp_path, data, voxel_size=7.25)
    out = tmp_path / "v.zarr"
    assert run_cli(capsys, "export-omezarr", store.path, "v", "-o", out, "--ngff", ngff)[0] == 0
    code, _, err = run_cli(capsys, "import-tomogram", store.path, out, "--name", "back", "--chunk", "16")
    assert code == 0, err
    a, b = tomogram_info(store, "v"), tomogram_info(store, "back")
    assert (b.shape, b.dtype, b.levels) == (a.shape, a.dtype, a.levels) and b.voxel_size == pytest.approx(7.25)
    for k in range(3):
        assert np.array_equal(open_level(store, "back", k)[...], open_level(store, "v", k)[...])


def test_import_voxel_size_option_overrides_scale(tmp_path, rng):
    data = rng.normal(size=(16, 16, 16)).astype(np.float32)
    src = _image(tmp_path / "img.zarr", data, unit=None)
    info = import_omezarr(Store.create(tmp_path / "s.zarr"), src, voxel_size=4.5)
    assert info.voxel_size == 4.5


def _bad(tmp_path, case, rng):
    d = rng.normal(size=(16, 16, 16)).astype(np.float32)
    p = tmp_path / f"{case}.zarr"
    if case == "plain-folder":
        p.mkdir()
        (p / "readme.txt").write_text("not zarr")
    elif case == "no-multiscales":
        zarr.open_group(str(p), mode="w").attrs["title"] = "a plain zarr group"
    elif case == "2d":
        _image(p, d[0], axes="yx", scales=((10.0, 10.0),))
    elif case == "channel-axis":
        _image(p, d, axes="cyx", types=["channel", "space", "space"])
    elif case == "anisotropic":
        _image(p, d, scales=((20.0, 10.0, 10.0),))
    elif case == "missing-array":
        _image(p, d)
        import shutil

        shutil.rmtree(p / "0")
    elif case == "no-unit":
        _image(p, d, unit=None)
    elif case == "zarr2-no-multiscales":
        zarr.open_group(str(p), mode="w", zarr_format=2).create_array("0", shape=(4, 4, 4), dtype="f4")
    return p


BAD = {"plain-folder": "not an OME-Zarr image", "no-multiscales": "no multiscales", "2d": "must be 3D",
       "channel-axis": "space axes", "anisotropic": "anisotropic scale", "missing-array": "array '0' named in "
       "multiscales is missing", "no-unit": "--voxel-size", "zarr2-no-multiscales": "no multiscales"}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("existing_store", [True, False])
def test_bad_omezarr_input_is_one_line_and_leaves_store_unchanged(tmp_path, capsys, rng, case, existing_store):
    src = _bad(tmp_path, case, rng)
    store = tmp_path / "s.zarr"
    if existing_store:
        import_mrc(Store.create(store), write_mrc(tmp_path / "t.mrc", rng.normal(size=(16, 16, 16)).astype("f4")))
    before = snapshot(store)
    code, out, err = run_cli(capsys, "import-tomogram", store, src)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"tomoflow: error: {src}: ") and BAD[case] in lines[0]
    assert snapshot(store) == before and store.exists() == existing_store
