"""MRC maps and tomograms: validation, block-wise streaming read and write, voxel size.

Large tomograms are never read whole: :func:`inspect_mrc` validates the header and file
size, :func:`read_block` reads one (z, y, x) block with positioned reads. (A memory map
would do the same job, but every page touched through it is counted in the process RSS
until unmapped; positioned reads keep the peak at one block.) :class:`MrcBlockWriter`
writes a volume block by block and fills in the header statistics at the end.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
from mrcfile.utils import data_dtype_from_header, mode_from_dtype

from ..errors import InputError

HEADER_BYTES = 1024
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}


@dataclass(frozen=True)
class MrcInfo:
    path: str
    shape: tuple[int, int, int]  # (nz, ny, nx)
    dtype: np.dtype
    mode: int
    voxel_size: tuple[float, float, float]  # (x, y, z) in Å
    origin: tuple[float, float, float]  # (x, y, z) in Å
    data_offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"

    def isotropic_voxel_size(self) -> float:
        """The voxel size in Å; an error if the header's x, y, z sizes disagree."""
        vx, vy, vz = self.voxel_size
        if not np.isfinite([vx, vy, vz]).all():
            raise InputError(self.path, f"voxel size {vx:g} x {vy:g} x {vz:g} Å in the header is not a number")
        if not np.allclose([vy, vz], vx, rtol=1e-3, atol=1e-6):
            raise InputError(self.path, f"anisotropic voxel size {vx:g} x {vy:g} x {vz:g} Å is not supported")
        return float(vx)


def inspect_mrc(path: str | os.PathLike, *, need_3d: bool = True) -> MrcInfo:
    """Validate an MRC file without reading its voxels; raise :class:`InputError` naming the problem."""
    path = os.fspath(path)
    p = Path(path)
    if not p.exists():
        raise InputError(path, "no such file")
    if p.is_dir():
        raise InputError(path, "is a directory, not an MRC file")
    size = p.stat().st_size
    if size < HEADER_BYTES:
        raise InputError(path, f"not an MRC file: {size} bytes, shorter than the {HEADER_BYTES}-byte MRC header")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", header_only=True, permissive=True) as m:
                h = m.header.copy()
                vs = m.voxel_size
                voxel_size = (float(vs.x), float(vs.y), float(vs.z))
    except Exception as exc:  # mrcfile raises several types for garbage headers
        raise InputError(path, f"not an MRC file ({exc})") from None
    if bytes(h.map) != b"MAP ":
        raise InputError(path, "not an MRC file: no 'MAP ' identifier in the header")
    mode = int(h.mode)
    if mode not in SUPPORTED_MODES:
        names = ", ".join(f"{k} {v}" for k, v in SUPPORTED_MODES.items())
        raise InputError(path, f"unsupported MRC mode {mode} (supported: {names})")
    nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
    if min(nx, ny, nz) <= 0:
        raise InputError(path, f"invalid dimensions nx={nx} ny={ny} nz={nz} in the header")
    axes = (int(h.mapc), int(h.mapr), int(h.maps))
    if axes != (1, 2, 3):
        raise InputError(path, f"axis order (mapc, mapr, maps) = {axes} is not supported; expected (1, 2, 3)")
    dtype = np.dtype(data_dtype_from_header(h))
    offset = HEADER_BYTES + int(h.nsymbt)
    need = offset + nx * ny * nz * dtype.itemsize
    if size < need:
        raise InputError(
            path, f"truncated: the header promises {need - offset} bytes of voxel data, the file holds {max(size - offset, 0)}"
        )
    if need_3d and nz == 1:
        raise InputError(path, f"2D data ({nx} x {ny} x 1 voxels); a 3D volume is needed")
    if need_3d and min(nx, ny) == 1:
        raise InputError(path, f"{nx} x {ny} x {nz} voxels: a 3D volume needs at least 2 voxels along every axis")
    origin = tuple(float(h.origin[a]) for a in ("x", "y", "z"))
    return MrcInfo(path, (nz, ny, nx), dtype, mode, voxel_size, origin, offset)


def read_block(info: MrcInfo, fd: int, z: slice, y: slice, x: slice) -> np.ndarray:
    """Read voxels ``[z, y, x]`` (slices with step 1) from an open file descriptor, native byte order."""
    nz, ny, nx = info.shape
    z0, z1, _ = z.indices(nz)
    y0, y1, _ = y.indices(ny)
    x0, x1, _ = x.indices(nx)
    item = info.dtype.itemsize
    out = np.empty((z1 - z0, y1 - y0, x1 - x0), dtype=info.dtype)
    full_rows = x0 == 0 and x1 == nx
    for k, zi in enumerate(range(z0, z1)):
        base = info.data_offset + zi * ny * nx * item
        if full_rows:
            _pread_into(fd, out[k], base + y0 * nx * item, info.path)
        else:
            for j, yi in enumerate(range(y0, y1)):
                _pread_into(fd, out[k, j], base + (yi * nx + x0) * item, info.path)
    return out.astype(info.dtype.newbyteorder("="), copy=False)


def _pread_into(fd: int, dest: np.ndarray, offset: int, path: str) -> None:
    view = memoryview(dest).cast("B")
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            raise InputError(path, "truncated: file ended while reading voxel data")
        got += n


def _pwrite_all(fd: int, arr: np.ndarray, offset: int) -> None:
    view = memoryview(np.ascontiguousarray(arr)).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def first_non_finite(block: np.ndarray) -> tuple[int, int, int] | None:
    """(z, y, x) of the first NaN/Inf voxel in ``block``, or None."""
    if block.dtype.kind != "f":
        return None
    bad = ~np.isfinite(block)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])


def read_mrc(path: str | os.PathLike, *, need_3d: bool = True) -> tuple[np.ndarray, float]:
    """Read a whole (small) map: returns (array (z, y, x), voxel size Å). Validates like :func:`inspect_mrc`."""
    info = inspect_mrc(path, need_3d=need_3d)
    fd = os.open(info.path, os.O_RDONLY)
    try:
        data = read_block(info, fd, slice(None), slice(None), slice(None))
    finally:
        os.close(fd)
    bad = first_non_finite(data)
    if bad is not None:
        raise InputError(info.path, f"NaN/Inf voxel at x={bad[2]} y={bad[1]} z={bad[0]}")
    return data, info.voxel_size[0]


def write_mrc(path: str | os.PathLike, data: np.ndarray, voxel_size: float, *, origin=None, overwrite: bool = True) -> None:
    """Write a 3D map (z, y, x) with its voxel size in Å (and origin in Å, (x, y, z))."""
    data = np.asarray(data)
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    with mrcfile.new(os.fspath(path), overwrite=overwrite) as m:
        m.set_data(np.ascontiguousarray(data))
        m.voxel_size = float(voxel_size)
        if origin is not None:
            m.header.origin = tuple(float(v) for v in origin)


class MrcBlockWriter:
    """Write a large volume block by block; header statistics are computed on the way.

    >>> with MrcBlockWriter(path, shape, np.float32, 9.2) as w:
    ...     w.write(slice(0, 64), slice(None), slice(None), block)
    """

    def __init__(self, path, shape_zyx, dtype, voxel_size: float, *, origin=None):
        self.path = os.fspath(path)
        self.shape = tuple(int(s) for s in shape_zyx)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        mode_from_dtype(self.dtype)  # raises for dtypes MRC cannot hold
        with mrcfile.new_mmap(self.path, shape=self.shape, mrc_mode=int(mode_from_dtype(self.dtype)), overwrite=True) as m:
            m.voxel_size = float(voxel_size)
            if origin is not None:
                m.header.origin = tuple(float(v) for v in origin)
            self.offset = HEADER_BYTES + int(m.header.nsymbt)
        self._fd = os.open(self.path, os.O_WRONLY)
        self._min, self._max, self._sum, self._sumsq, self._n = np.inf, -np.inf, 0.0, 0.0, 0

    def write(self, z: slice, y: slice, x: slice, block: np.ndarray) -> None:
        nz, ny, nx = self.shape
        z0, z1, _ = z.indices(nz)
        y0, y1, _ = y.indices(ny)
        x0, x1, _ = x.indices(nx)
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape != (z1 - z0, y1 - y0, x1 - x0):
            raise ValueError(f"block shape {block.shape} does not match region {(z1 - z0, y1 - y0, x1 - x0)}")
        item = self.dtype.itemsize
        for k, zi in enumerate(range(z0, z1)):
            base = self.offset + zi * ny * nx * item
            if x0 == 0 and x1 == nx:
                _pwrite_all(self._fd, block[k], base + y0 * nx * item)
            else:
                for j, yi in enumerate(range(y0, y1)):
                    _pwrite_all(self._fd, block[k, j], base + (yi * nx + x0) * item)
            s = block[k].astype(np.float64)  # statistics one slice at a time: no block-sized copy
            self._min = min(self._min, float(s.min()))
            self._max = max(self._max, float(s.max()))
            self._sum += float(s.sum())
            self._sumsq += float(np.vdot(s, s))
            self._n += s.size

    def close(self) -> None:
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if self._n:
            with mrcfile.mmap(self.path, mode="r+") as m:
                mean = self._sum / self._n
                m.header.dmin = self._min
                m.header.dmax = self._max
                m.header.dmean = mean
                m.header.rms = np.sqrt(max(self._sumsq / self._n - mean * mean, 0.0))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
