"""OME-Zarr in and out: export a store tomogram as a standalone OME-Zarr image, import one into a store.

Export (:func:`export_omezarr`):

* NGFF 0.5: a zarr v3 group laid out as in the store (``ome`` attribute, arrays with ``dimension_names``), plus
  the ``tomoflow`` attributes;
* NGFF 0.4: a zarr v2 group the way the CZ cryoET data portal publishes tomograms (and copick reads them):
  ``.zattrs`` multiscales with ``version: "0.4"``, axes z, y, x in angstrom, the voxel size rounded to 3 decimals,
  256^3 chunks by default, ``/`` chunk-key separator, Blosc (zarr 2's default codec, readable everywhere).
  The portal writes scale-only transformations; we keep a translation on levels > 0 because our levels are 2^k
  block means whose voxel centres lie (2^k - 1) / 2 level-0 voxels in: without it a 0.4 reader would misplace
  them by up to 1.5 voxels of level 0. Level 0 has no translation, so it matches the portal exactly, and readers
  that take the scale only (the first transformation, as the spec orders it) still get the right voxel size.

Writing goes block by block into a hidden sibling folder that is renamed to the output at the end: a failure
leaves nothing behind, and an existing output is replaced only with ``overwrite``, once the new copy is complete.

Import (:func:`inspect_omezarr`, :func:`import_omezarr`): an NGFF 0.4 (zarr v2) or 0.5 (zarr v3) image, including
stores written before tomoflow moved to 0.5 (0.4 block at the top of a zarr v3 group). The highest-resolution
dataset is copied block by block through :class:`~.tomograms.TomogramWriter`, which rebuilds the pyramid; the
voxel size comes from its scale, converted to Å from the axes' unit.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from ..errors import InputError, StoreError
from ..params import ParamError
from .core import Store
from .tomograms import (AXES, DEFAULT_CHUNK, DEFAULT_LEVELS, TomogramInfo, TomogramWriter, block_regions,
                        multiscales_metadata, open_level, tomogram_info)

NGFF_VERSIONS = ("0.5", "0.4")
PORTAL_CHUNK = 256  # the CZ cryoET data portal's chunk edge for NGFF 0.4 tomograms
PORTAL_DECIMALS = 3  # ... and its voxel-size precision (Å)
# Space units of the NGFF spec (UDUNITS-2 names) that tomograms plausibly use, in Å.
UNIT_TO_ANGSTROM = {"angstrom": 1.0, "picometer": 0.01, "nanometer": 10.0, "micrometer": 1e4, "millimeter": 1e7,
                    "centimeter": 1e8, "meter": 1e10}
# dtypes level 0 keeps (those MRC export can write); other real numbers are stored as float32.
KEPT_DTYPES = ("int8", "int16", "uint16", "float16", "float32")
BLOCK_BYTES = 64 << 20  # a copy block stays under this unless one source chunk is larger


# -- export --------------------------------------------------------------------------------------------------


def export_omezarr(store: Store, name: str, out_path, *, ngff: str = "0.5", chunk: int | None = None,
                   levels: int | None = None, overwrite: bool = False) -> Path:
    """Write tomogram ``name`` to ``out_path`` as OME-Zarr (``ngff`` "0.5": zarr v3; "0.4": zarr v2, portal style).

    ``chunk``: chunk edge in voxels (default: the store's for 0.5, 256 for 0.4); ``levels``: how many pyramid
    levels, from level 0 (default all). Atomic: the output appears complete or not at all.
    """
    if ngff not in NGFF_VERSIONS:
        raise ParamError("ngff", f"must be 0.5 or 0.4, got {ngff!r}")
    info = tomogram_info(store, name)
    n = info.levels if levels is None else int(levels)
    if not 1 <= n <= info.levels:
        raise ParamError("levels", f"must be 1..{info.levels} (tomogram '{name}' has {info.levels}), got {n}")
    chunk = int(chunk if chunk is not None else (info.chunk if ngff == "0.5" else PORTAL_CHUNK))
    if not 16 <= chunk <= 1024:
        raise ParamError("chunk", f"must be 16..1024 voxels, got {chunk}")
    out = Path(out_path)
    if not out.name:
        raise InputError(out_path, "output must name a folder to create")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise InputError(out, "already exists (use --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)

    attrs = store.attrs("tomograms", name)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        if ngff == "0.5":
            group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
            meta = {"ome": {"version": "0.5", "multiscales": multiscales_metadata(name, info.voxel_size, n)}}
        else:
            group = zarr.open_group(str(tmp), mode="w-", zarr_format=2)
            vs = round(info.voxel_size, PORTAL_DECIMALS)
            if vs <= 0:
                raise InputError(store.path, f"tomogram '{name}' voxel size {info.voxel_size:g} Å rounds to 0 at "
                                             f"{PORTAL_DECIMALS} decimals, which NGFF 0.4 portal style cannot hold")
            ms = multiscales_metadata(name, vs, n, ngff="0.4")
            for d in ms[0]["datasets"]:  # as the portal: level 0 scale only; rounding keeps the JSON readable
                t = d["coordinateTransformations"]
                t[0]["scale"] = [round(v, 9) for v in t[0]["scale"]]
                if d["path"] == "0":
                    del t[1:]
                else:
                    t[1]["translation"] = [round(v, 9) for v in t[1]["translation"]]
            meta = {"multiscales": ms}
        for k in range(n):
            src = open_level(store, name, k)
            chunks = tuple(min(chunk, s) for s in src.shape)
            if ngff == "0.5":
                dst = group.create_array(str(k), shape=src.shape, dtype=src.dtype, chunks=chunks, fill_value=0,
                                         dimension_names=AXES)
            else:
                from numcodecs import Blosc

                dst = group.create_array(str(k), shape=src.shape, dtype=src.dtype, chunks=chunks, fill_value=0,
                                         compressors=Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE),
                                         chunk_key_encoding={"name": "v2", "separator": "/"})
            copy_blocks(src, dst)
        group.attrs.update({**meta, "tomoflow": {**attrs, "levels": n}})
        _move_into_place(tmp, out, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists() or out.is_symlink():
        if not overwrite:  # appeared while we were writing
            raise InputError(out, "already exists (use --overwrite to replace it)")
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(out, old)  # the old copy goes only once the new one is complete
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        os.rename(tmp, out)


def copy_blocks(src, dst, *, dtype=None, on_block=None) -> None:
    """Copy array ``src`` into ``dst`` (same shape) block by block, cast to ``dtype`` if given.

    Blocks are aligned to ``dst``'s chunks (no partial-chunk rewrites) and span whole ``src`` chunks where they
    can (each source chunk is decoded about once); a block stays under ~64 MB unless a source chunk is larger.
    ``on_block(region, block)`` replaces the plain assignment (e.g. a checking writer).
    """
    itemsize = max(np.dtype(src.dtype).itemsize, np.dtype(dst.dtype).itemsize)
    block = []
    for s, sc, dc in zip(src.shape, src.chunks, dst.chunks):
        block.append(min(s, dc * math.ceil(min(sc, s) / dc)))
    # then grow along x and y (whole rows are contiguous in both layouts) while the block stays small
    for ax in (2, 1):
        while block[ax] < src.shape[ax] and np.prod(block) * itemsize * 2 <= BLOCK_BYTES:
            block[ax] = min(src.shape[ax], block[ax] * 2)
    for region in block_regions(src.shape, block):
        data = src[region]
        if dtype is not None:
            data = data.astype(dtype, copy=False)
        if on_block is None:
            dst[region] = data
        else:
            on_block(region, data)


# -- import --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OmeZarrImage:
    """What :func:`inspect_omezarr` found: the level-0 array of an OME-Zarr image and its voxel size in Å."""

    path: str
    ngff: str  # "0.4" or "0.5" (the multiscales layout found)
    zarr_format: int
    dataset: str  # path of the highest-resolution array inside the group
    shape: tuple[int, int, int]
    dtype: str  # as stored
    voxel_size: float  # Å
    name: str | None  # the multiscales name, if any


def looks_like_zarr(path) -> bool:
    """A directory holding Zarr group or array metadata (v2 ``.zattrs`` / ``.zgroup``, v3 ``zarr.json``)."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in (".zattrs", ".zgroup", "zarr.json"))


def read_multiscales(attrs: dict) -> tuple[str, list] | None:
    """(NGFF version, multiscales list) from group attributes: 0.5 (``ome``) or 0.4 and older (top level)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return str(ome.get("version", "0.5")), ome["multiscales"]
    if "multiscales" in attrs:
        ms = attrs["multiscales"]
        first = ms[0] if isinstance(ms, list) and ms and isinstance(ms[0], dict) else {}
        return str(first.get("version", "0.4")), ms
    return None


def _scale_of(transforms, where: str, path: str) -> np.ndarray | None:
    """The scale vector of a coordinateTransformations list (None if absent); translations don't change it."""
    if transforms is None:
        return None
    if not isinstance(transforms, list):
        raise InputError(path, f"{where}: coordinateTransformations is not a list")
    for t in transforms:
        if isinstance(t, dict) and t.get("type") == "scale":
            if "scale" not in t:
                raise InputError(path, f"{where}: scale given by a file ({t.get('path')!r}) is not supported")
            try:
                v = np.asarray(t["scale"], dtype=float)
            except (TypeError, ValueError):
                raise InputError(path, f"{where}: scale {t['scale']!r} is not a list of numbers") from None
            if v.shape != (3,) or not (np.isfinite(v).all() and (v > 0).all()):
                raise InputError(path, f"{where}: scale {t['scale']!r} must be 3 positive numbers")
            return v
    return None


def inspect_omezarr(path, *, voxel_size: float | None = None) -> OmeZarrImage:
    """Check an OME-Zarr image without reading voxels; :class:`InputError` names the problem.

    ``voxel_size`` (Å) overrides the scale, as ``--voxel-size`` does for MRC; without it, axes without a unit
    are an error.
    """
    p = Path(path)
    where = os.fspath(path)
    if not p.exists():
        raise InputError(where, "no such file or directory")
    if not looks_like_zarr(p):
        raise InputError(where, "not an OME-Zarr image (a directory without .zattrs, .zgroup or zarr.json)")
    try:
        group = zarr.open_group(str(p), mode="r")
    except Exception as e:  # zarr raises many kinds for unreadable metadata
        raise InputError(where, f"not a readable Zarr group ({type(e).__name__}: {e})") from None
    found = read_multiscales(group.attrs.asdict())
    if found is None:
        raise InputError(where, "not an OME-Zarr image: the group has no multiscales metadata")
    version, multiscales = found
    if not (isinstance(multiscales, list) and multiscales and isinstance(multiscales[0], dict)):
        raise InputError(where, "multiscales metadata is empty or not a list of objects")
    ms = multiscales[0]
    axes = ms.get("axes")
    if not isinstance(axes, list) or not all(isinstance(a, dict) for a in axes):
        raise InputError(where, "multiscales has no axes list (NGFF < 0.4 is not supported)")
    names = tuple(a.get("name") for a in axes)
    if len(axes) != 3:
        raise InputError(where, f"a tomogram must be 3D (z, y, x); this image has {len(axes)} axes {names}")
    types = [a.get("type") for a in axes]
    if any(t != "space" for t in types):
        raise InputError(where, f"all axes must be space axes; got types {types} for axes {names}")
    if names != AXES:
        raise InputError(where, f"axes must be z, y, x in that order, got {names}")
    units = {a.get("unit") for a in axes}
    if len(units) != 1:
        raise InputError(where, f"axes have different units {sorted(map(str, units))}")
    unit = units.pop()
    if unit is not None and unit not in UNIT_TO_ANGSTROM:
        raise InputError(where, f"unsupported axis unit {unit!r} (use one of {', '.join(UNIT_TO_ANGSTROM)})")

    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, dict) and "path" in d
                                                                 for d in datasets):
        raise InputError(where, "multiscales has no datasets (each needs a path)")
    global_scale = _scale_of(ms.get("coordinateTransformations"), "multiscales", where)
    scales = []
    for d in datasets:
        s = _scale_of(d.get("coordinateTransformations"), f"dataset '{d['path']}'", where)
        if s is None:
            raise InputError(where, f"dataset '{d['path']}' has no scale transformation")
        scales.append(s * (global_scale if global_scale is not None else 1.0))
    # the spec orders datasets from highest resolution down; take the finest scale anyway
    i = int(np.argmin([np.prod(s) for s in scales]))
    dataset, scale = str(datasets[i]["path"]), scales[i]
    if not np.allclose(scale[1:], scale[0], rtol=1e-3, atol=0):
        raise InputError(where, f"anisotropic scale {' x '.join(f'{v:g}' for v in scale)} (z y x) of dataset "
                                f"'{dataset}' is not supported")
    try:
        arr = group[dataset]
    except Exception:
        raise InputError(where, f"array '{dataset}' named in multiscales is missing") from None
    if not isinstance(arr, zarr.Array):
        raise InputError(where, f"'{dataset}' named in multiscales is a group, not an array")
    if arr.ndim != 3:
        raise InputError(where, f"array '{dataset}' is {arr.ndim}D, not 3D (z, y, x)")
    if min(arr.shape) < 1:
        raise InputError(where, f"array '{dataset}' is empty (shape {arr.shape})")
    dt = np.dtype(arr.dtype)
    if dt.kind not in "iuf":
        raise InputError(where, f"array '{dataset}' has data type {dt}, not real numbers")

    if voxel_size is not None:
        if not (np.isfinite(voxel_size) and voxel_size > 0):
            raise InputError(where, f"voxel size must be > 0 Å, got {voxel_size}")
        vs = float(voxel_size)
    elif unit is None:
        raise InputError(where, "the axes have no unit, so the voxel size is unknown; give it with --voxel-size")
    else:
        vs = float(scale[0]) * UNIT_TO_ANGSTROM[unit]
    return OmeZarrImage(where, version, group.metadata.zarr_format, dataset, tuple(int(s) for s in arr.shape),
                        dt.name, vs, ms.get("name") if isinstance(ms.get("name"), str) else None)


def default_name(path) -> str:
    """``a/TS_026.zarr`` or ``TS_026.ome.zarr`` -> ``TS_026`` (as for MRC: the name up to the first dot)."""
    return Path(os.path.normpath(os.fspath(path))).name.split(".")[0]


def import_omezarr(store: Store, path, *, name: str | None = None, voxel_size: float | None = None,
                   chunk: int = DEFAULT_CHUNK, levels: int = DEFAULT_LEVELS, tilt_range=None, tilt_axis: float = 0.0,
                   overwrite: bool = False, extra_attrs: dict | None = None) -> TomogramInfo:
    """Copy the highest-resolution level of an OME-Zarr image (NGFF 0.4 or 0.5) into the store block by block;
    the pyramid is rebuilt. Voxel size from the scale (in Å) unless given. Level 0 keeps int8, int16, uint16,
    float16 and float32 data as they are; other real types become float32.

    All metadata checks happen before anything is written; NaN/Inf voxels abort the copy, leaving the store as
    it was.
    """
    img = inspect_omezarr(path, voxel_size=voxel_size)
    name = name or default_name(path)
    if store.has("tomograms", name) and not overwrite:
        raise StoreError(str(store.path), f"tomogram '{name}' already exists (use --overwrite to replace it)")
    src = zarr.open_group(img.path, mode="r")[img.dataset]
    dtype = np.dtype(img.dtype) if img.dtype in KEPT_DTYPES else np.dtype(np.float32)
    attrs = {"omezarr": {"ngff": img.ngff, "zarr_format": img.zarr_format, "dataset": img.dataset,
                         "dtype": img.dtype}, **(extra_attrs or {})}
    with TomogramWriter(store, name, img.shape, dtype, voxel_size=img.voxel_size, chunk=chunk, levels=levels,
                        tilt_range=tilt_range, tilt_axis=tilt_axis, source=img.path, overwrite=overwrite,
                        extra_attrs=attrs) as w:
        copy_blocks(src, w.level0, dtype=None if dtype == src.dtype else dtype, on_block=w.write)
    return tomogram_info(store, name)
