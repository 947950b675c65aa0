"""Tomograms in the store: OME-Zarr 0.5 multiscale groups (zarr v3; z, y, x), voxel size in Å.

Level 0 keeps the source voxels and dtype (so MRC -> store -> MRC is bit-exact); levels 1 and
2 are 2x and 4x block means in float32 (odd trailing voxels are dropped, and the half-voxel
offset of each binned grid is written as an OME translation). Writing and pyramid building go
block by block: memory stays at a few chunk-sized blocks whatever the tomogram size.

Group attributes are ``ome`` (NGFF 0.5: version and multiscales) and ``tomoflow`` (our own); arrays carry
``dimension_names`` z, y, x as NGFF 0.5 requires. Stores written before NGFF 0.5 compliance have the 0.4 block at
the top (``multiscales``) as well: nothing here reads it (tomoflow reads its own attributes), and
:mod:`.omezarr` reads both layouts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from ..errors import InputError, StoreError
from ..io import mrc
from .core import Store, now

DEFAULT_CHUNK = 128
DEFAULT_LEVELS = 3


@dataclass(frozen=True)
class TomogramInfo:
    name: str
    shape: tuple[int, int, int]  # level 0, (z, y, x)
    voxel_size: float
    dtype: str
    levels: int
    chunk: int
    tilt_range: tuple[float, float] | None
    tilt_axis: float
    source: str | None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


AXES = ("z", "y", "x")


def multiscales_metadata(name: str, voxel_size: float, n_levels: int, *, ngff: str = "0.5",
                         translations: bool = True) -> list[dict]:
    """OME-NGFF multiscales for block-mean levels 1x, 2x, 4x, ... (``ngff`` "0.5", or "0.4" which adds the
    ``version`` key that 0.5 moved up to the ``ome`` attribute).

    ``translations``: the centre of a 2^k block lies (2^k - 1) / 2 level-0 voxels from its first voxel; with
    False only scales are written (level 0 is identical either way).
    """
    datasets = []
    for k in range(n_levels):
        f = 2**k
        transforms = [{"type": "scale", "scale": [voxel_size * f] * 3}]
        if translations:
            transforms.append({"type": "translation", "translation": [voxel_size * (f - 1) / 2.0] * 3})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    ms = {
        "name": name,
        "axes": [{"name": a, "type": "space", "unit": "angstrom"} for a in AXES],
        "datasets": datasets,
        "type": "mean",
        "metadata": {"description": "2x block mean per level", "method": "tomoflow.store.tomograms.bin2"},
    }
    if ngff == "0.4":
        ms = {"version": "0.4", **ms}
    elif ngff != "0.5":
        raise ValueError(f"NGFF version must be 0.4 or 0.5, got {ngff!r}")
    return [ms]


def bin2(block: np.ndarray) -> np.ndarray:
    """2x2x2 block mean in float32; a trailing odd voxel along any axis is dropped.

    Sums the eight strided sub-grids into an output of 1/8 the size: no full-size copy.
    """
    z, y, x = (s // 2 for s in block.shape)
    out = np.zeros((z, y, x), np.float32)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                out += block[dz:2 * z:2, dy:2 * y:2, dx:2 * x:2]
    out *= np.float32(0.125)
    return out


def block_regions(shape, block):
    """Regions (tuples of slices) tiling ``shape`` with ``block``-sized, aligned blocks."""
    nz, ny, nx = shape
    bz, by, bx = block
    for z0 in range(0, nz, bz):
        for y0 in range(0, ny, by):
            for x0 in range(0, nx, bx):
                yield (slice(z0, min(z0 + bz, nz)), slice(y0, min(y0 + by, ny)), slice(x0, min(x0 + bx, nx)))


class TomogramWriter:
    """Write a tomogram into the store block by block; it appears only when :meth:`finish` succeeds.

    Used as a context manager around ``store.staged``::

        with TomogramWriter(store, "tomo1", shape, np.float32, voxel_size=9.2) as w:
            for region, block in ...:
                w.write(region, block)
    """

    def __init__(self, store: Store, name: str, shape, dtype, *, voxel_size: float, chunk: int = DEFAULT_CHUNK,
                 levels: int = DEFAULT_LEVELS, tilt_range=None, tilt_axis: float = 0.0, source: str | None = None,
                 overwrite: bool = False, extra_attrs: dict | None = None, resume_key: str | None = None):
        if not (np.isfinite(voxel_size) and voxel_size > 0):
            raise ValueError(f"voxel size must be a positive number of Å, got {voxel_size}")
        if not 16 <= chunk <= 512:
            raise ValueError(f"chunk must be 16..512 voxels, got {chunk}")
        self.store, self.name = store, name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.voxel_size = float(voxel_size)
        self.chunk = int(chunk)
        self.levels = max(1, int(levels))
        self.attrs = {"kind": "tomogram", "voxel_size": self.voxel_size, "shape": list(self.shape),
                      "dtype": self.dtype.str, "chunk": self.chunk,
                      "tilt_range": None if tilt_range is None else [float(t) for t in tilt_range],
                      "tilt_axis": float(tilt_axis), "source": source, "created": now(), **(extra_attrs or {})}
        self._cm = store.staged("tomograms", name, overwrite=overwrite, key=resume_key)
        self.source_path = source

    def __enter__(self):
        self.group = self._cm.__enter__()
        self.resumed = "0" in self.group  # a staging group kept by an interrupted run (resume_key)
        if self.resumed:
            self.level0 = self.group["0"]
        else:
            self.level0 = self.group.create_array("0", shape=self.shape, dtype=self.dtype, dimension_names=AXES,
                                                  chunks=tuple(min(self.chunk, s) for s in self.shape), fill_value=0)
        return self

    @property
    def level0_path(self) -> str:
        """Where level 0 is being written: tasks on other processes may write blocks there."""
        return str(Path(self.group.store.root) / self.group.path / "0")

    def write(self, region, block: np.ndarray) -> None:
        bad = mrc.first_non_finite(block)
        if bad is not None:
            z, y, x = (int(b) + r.start for b, r in zip(bad, region))
            raise InputError(self.source_path or self.name, f"NaN/Inf voxel at x={x} y={y} z={z}")
        self.level0[region] = block

    def _build_pyramid(self, progress=None) -> int:
        prev = self.level0
        n = 1
        for k in range(1, self.levels):
            shape = tuple(s // 2 for s in prev.shape)
            if min(shape) < 1:
                break
            chunks = tuple(min(self.chunk, s) for s in shape)
            arr = self.group.create_array(str(k), shape=shape, dtype=np.float32, chunks=chunks, fill_value=0,
                                          dimension_names=AXES, overwrite=True)
            for region in block_regions(shape, chunks):
                rz, ry, rx = region
                out = np.empty(tuple(r.stop - r.start for r in region), np.float32)
                half = max(1, (rz.stop - rz.start) // 2)  # read the 2x input in two z-halves
                for z0 in range(rz.start, rz.stop, half):
                    z1 = min(z0 + half, rz.stop)
                    src = prev[2 * z0:2 * z1, 2 * ry.start:2 * ry.stop, 2 * rx.start:2 * rx.stop]
                    out[z0 - rz.start:z1 - rz.start] = bin2(src)
                arr[region] = out
                if progress is not None:
                    progress.update(1)
            prev, n = arr, n + 1
        return n

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                n = self._build_pyramid()
                # NGFF 0.5: only the "ome" key is OME's (no 0.4 "multiscales" block: invalid in a zarr v3 group)
                self.group.attrs.update({
                    "ome": {"version": "0.5", "multiscales": multiscales_metadata(self.name, self.voxel_size, n)},
                    "tomoflow": {**self.attrs, "levels": n},
                })
            except BaseException as e:  # abort the staging on failure of the pyramid too
                self._cm.__exit__(type(e), e, e.__traceback__)
                raise
        return self._cm.__exit__(exc_type, exc, tb)


def import_mrc(store: Store, mrc_path, *, name: str | None = None, voxel_size: float | None = None,
               chunk: int = DEFAULT_CHUNK, levels: int = DEFAULT_LEVELS, tilt_range=None, tilt_axis: float = 0.0,
               overwrite: bool = False, progress: bool | None = None, extra_attrs: dict | None = None) -> TomogramInfo:
    """Copy an MRC tomogram into the store block by block (never whole in memory); ``extra_attrs`` (e.g. the
    microscope) go into its attributes.

    All header checks happen before anything is written; NaN/Inf voxels are detected during the
    copy and abort it, leaving the store as it was.
    """
    from tqdm.auto import tqdm

    info = mrc.inspect_mrc(mrc_path, need_3d=True)
    if voxel_size is None:
        voxel_size = info.isotropic_voxel_size()
        if voxel_size <= 0:
            raise InputError(info.path, "voxel size is 0 in the header; give it with --voxel-size")
    elif not (np.isfinite(voxel_size) and voxel_size > 0):
        raise InputError(info.path, f"voxel size must be > 0 Å, got {voxel_size}")
    name = name or Path(info.path).name.split(".")[0]
    if store.has("tomograms", name) and not overwrite:
        raise StoreError(str(store.path), f"tomogram '{name}' already exists (use --overwrite to replace it)")
    nz, ny, nx = info.shape
    # z and y by chunk; x whole unless a block would exceed ~64 MB
    bx = nx if chunk * chunk * nx * info.dtype.itemsize <= 64 << 20 else chunk
    regions = list(block_regions(info.shape, (chunk, chunk, bx)))
    fd = os.open(info.path, os.O_RDONLY)
    try:
        with TomogramWriter(store, name, info.shape, info.dtype, voxel_size=voxel_size, chunk=chunk, levels=levels,
                            tilt_range=tilt_range, tilt_axis=tilt_axis, source=info.path, overwrite=overwrite,
                            extra_attrs={"mrc_origin": list(info.origin), "mrc_mode": info.mode,
                                         **(extra_attrs or {})}) as w:
            for region in tqdm(regions, desc=f"import {name}", unit="block", disable=None if progress is None else not progress,
                               leave=False):
                w.write(region, mrc.read_block(info, fd, *region))
    finally:
        os.close(fd)
    return tomogram_info(store, name)


def tomogram_info(store: Store, name: str) -> TomogramInfo:
    store.require("tomograms", name)
    a = store.attrs("tomograms", name)
    tr = a.get("tilt_range")
    return TomogramInfo(name, tuple(a["shape"]), float(a["voxel_size"]), np.dtype(a["dtype"]).name, int(a["levels"]),
                        int(a["chunk"]), None if tr is None else tuple(tr), float(a.get("tilt_axis", 0.0)), a.get("source"))


def open_level(store: Store, name: str, level: int = 0) -> zarr.Array:
    info = tomogram_info(store, name)
    if not 0 <= level < info.levels:
        raise StoreError(str(store.path), f"tomogram '{name}' has levels 0..{info.levels - 1}, not {level}")
    return zarr.open_array(str(store.node_path("tomograms", name) / str(level)), mode="r")


def export_mrc(store: Store, name: str, out_path, *, level: int = 0) -> Path:
    """Write one level of a tomogram to MRC block by block, with its voxel size and origin."""
    info = tomogram_info(store, name)
    arr = open_level(store, name, level)
    vs = info.voxel_size * 2**level
    origin = store.attrs("tomograms", name).get("mrc_origin") if level == 0 else None
    block = (info.chunk, info.chunk, arr.shape[2])
    with mrc.MrcBlockWriter(out_path, arr.shape, arr.dtype, vs, origin=origin) as w:
        for region in block_regions(arr.shape, block):
            w.write(*region, arr[region])
    return Path(out_path)
