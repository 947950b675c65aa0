"""The project store: one Zarr v3 group on a local or shared file system.

Layout (version 1)::

    project.zarr/                 root group; attrs["tomoflow"] = {"layout": 1, ...}
      tomograms/<name>/0,1,2      OME-Zarr multiscale (z, y, x), voxel size in Å
      tiltseries/<name>/data      (T, Y, X) projection images with their tilt angles
      particles/<name>/volumes    (N, D, D, D) float32|float16, chunked by particles
      particles/<name>/table/     xarray Dataset on dimension "particle"
      particles/<name>/arrays/<a> per-particle arrays (features, ...) chunked like volumes
      maps/<name>                 3D maps or stacks of maps (averages, references)
      curves/<name>/<column>      1D curves (FSC, ...) as named columns
      stages/<name>/done          one element per chunk: 1 once the chunk is finished
      .staging/                   new entries are built here and renamed into place

Everything added to the store is built under ``.staging`` and moved into place by one rename
when complete, so a failure (bad input, a crash) leaves the store exactly as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import zarr

from .. import __version__
from ..errors import StoreError

LAYOUT_VERSION = 1
KINDS = ("tomograms", "tiltseries", "particles", "maps", "curves", "stages")
STAGING = ".staging"
_LABELS = {"particles": "particle set", "tomograms": "tomogram", "tiltseries": "tilt series", "maps": "map",
           "curves": "curve", "stages": "stage"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(str(name), f"invalid {what}: use letters, digits and _ . + - (no slashes), at most 128 characters")
    return name


def _root_meta(path: Path) -> dict | None:
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError):
        return None


class Store:
    """A tomoflow project store. Use :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, root: zarr.Group, mode: str = "r+"):
        # absolute: the path goes to workers, which may run in another folder (or on another node)
        self.path = Path(path).absolute()
        self.root = root
        self.mode = mode

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike) -> "Store":
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise StoreError(str(path), "already exists and is not empty")
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs["tomoflow"] = {"layout": LAYOUT_VERSION, "created": now(), "version": __version__}
        for kind in KINDS:
            root.create_group(kind)
        (path / STAGING).mkdir()
        return cls(path, root)

    @classmethod
    def open(cls, path: str | os.PathLike, *, mode: str = "r+", create: bool = False) -> "Store":
        """Open a store; with ``create=True`` make it if the path does not exist yet."""
        path = Path(path)
        if not path.exists():
            if create:
                return cls.create(path)
            raise StoreError(str(path), "no such store")
        meta = _root_meta(path)
        if meta is None:
            raise StoreError(str(path), "not a tomoflow store (no Zarr v3 group metadata)")
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
            raise StoreError(str(path), "not a tomoflow store (not a Zarr v3 group)")
        info = meta.get("attributes", {}).get("tomoflow")
        if not isinstance(info, dict) or "layout" not in info:
            raise StoreError(str(path), "not a tomoflow store (no tomoflow layout record)")
        if info["layout"] != LAYOUT_VERSION:
            raise StoreError(
                str(path),
                f"written with store layout version {info['layout']} (tomoflow {info.get('version', '?')}); "
                f"this tomoflow {__version__} reads layout version {LAYOUT_VERSION}",
            )
        root = zarr.open_group(str(path), mode=mode, zarr_format=3)
        return cls(path, root, mode)

    # -- listing -------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        """Names of the entries of one kind (``tomograms``, ``particles``, ``maps``, ...)."""
        d = self.path / kind
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if (p / "zarr.json").is_file())

    def has(self, kind: str, name: str) -> bool:
        return (self.node_path(kind, name) / "zarr.json").is_file()

    def node_path(self, kind: str, name: str) -> Path:
        """The folder of entry ``kind/name``: the one place a path is built from a user's name, so every read
        and write checks it (no slash, no absolute path, no ``..``: a name cannot reach outside the store)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind of entry {kind!r}")
        return self.path / kind / check_name(name, _LABELS.get(kind, kind) + " name")

    def require(self, kind: str, name: str) -> str:
        """Raise a clear error if entry ``kind/name`` does not exist."""
        if not self.has(kind, name):
            have = ", ".join(self.names(kind)) or "none"
            raise StoreError(str(self.path), f"no {_LABELS.get(kind, kind)} named '{name}' (have: {have})")
        return name

    def attrs(self, kind: str, name: str) -> dict:
        """The tomoflow attributes of an entry, read from its metadata file only."""
        meta = _root_meta(self.node_path(kind, name)) or {}
        return meta.get("attributes", {}).get("tomoflow", {})

    def group(self, kind: str, name: str) -> zarr.Group:
        self.require(kind, name)
        return zarr.open_group(str(self.node_path(kind, name)), mode=self.mode)

    # -- atomic additions ----------------------------------------------------------------
    @contextmanager
    def staged(self, kind: str, name: str, *, overwrite: bool = False, key: str | None = None):
        """Build a new entry ``kind/name`` in a staging group; move it into place on success.

        Yields a Zarr group. On any exception the staging group is removed and the store is left
        as it was. With ``overwrite=True`` an existing entry is replaced only once the new one is
        complete. With a ``key`` (e.g. a fingerprint of the work) the staging group is named by it
        and kept after a failure, so that a rerun with the same key reopens it and resumes.
        """
        if kind not in KINDS:
            raise ValueError(kind)
        check_name(name, f"{kind[:-1]} name")
        final = self.node_path(kind, name)
        with self.lock(kind, name):
            if final.exists() and not overwrite:
                raise StoreError(str(self.path), f"{_LABELS[kind]} '{name}' already exists (use --overwrite to "
                                                 "replace it)")
            tmp = self.path / STAGING / (f"{kind}-{name}-{key}" if key else uuid.uuid4().hex)
            resumed = key is not None and (tmp / "zarr.json").is_file()
            try:
                group = zarr.open_group(str(tmp), mode="r+" if resumed else "w", zarr_format=3)
                yield group
                self._move_into_place(tmp, final)
            finally:
                if key is None and tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def lock(self, kind: str, name: str):
        """Hold the writer's lock of entry ``kind/name`` (an flock on a file in the staging folder, released by the
        system if the process dies): a second writer of the same entry fails at once instead of both appearing
        to succeed while one result is lost."""
        import fcntl

        staging_dir = self.path / STAGING
        staging_dir.mkdir(exist_ok=True)
        path = staging_dir / f"{kind}-{check_name(name, _LABELS[kind] + ' name')}.lock"
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreError(str(self.path), f"another command is writing {_LABELS[kind]} '{name}' now; run "
                                                 "this one when it has finished") from None
            except OSError:
                os.close(fd)
                raise
            try:  # the holder may have removed the file between our open and our lock: then lock the new one
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still holding the lock, so a waiting opener sees a new inode
            os.close(fd)

    def _move_into_place(self, tmp: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            trash = self.path / STAGING / (uuid.uuid4().hex + ".old")
            os.rename(final, trash)
            try:
                os.rename(tmp, final)
            except OSError:
                os.rename(trash, final)  # the store as it was
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)

    def delete(self, kind: str, name: str) -> None:
        self.require(kind, name)
        shutil.rmtree(self.node_path(kind, name))

    # -- named maps and curves -----------------------------------------------------------
    def write_map(self, name: str, data: np.ndarray, voxel_size: float, *, attrs: dict | None = None, overwrite=True):
        """A 3D map (D, D, D) or a stack of maps (K, D, D, D) with its voxel size in Å."""
        data = np.asarray(data)
        if data.ndim not in (3, 4):
            raise ValueError(f"a map is 3D or a 4D stack of 3D maps, got shape {data.shape}")
        if not np.isfinite(data).all():
            raise ValueError(f"map '{name}' holds NaN/Inf values")
        with self.staged("maps", name, overwrite=overwrite) as g:
            arr = g.create_array("data", shape=data.shape, dtype=data.dtype, chunks=data.shape, fill_value=0)
            arr[...] = data
            g.attrs["tomoflow"] = {"kind": "map", "voxel_size": float(voxel_size), "shape": list(data.shape),
                                   "created": now(), **(attrs or {})}

    def read_map(self, name: str) -> tuple[np.ndarray, float, dict]:
        g = self.group("maps", self.require("maps", name))
        info = dict(g.attrs["tomoflow"])
        return g["data"][...], float(info["voxel_size"]), info

    def write_curve(self, name: str, columns: dict[str, np.ndarray], *, attrs: dict | None = None, overwrite=True):
        """A curve as named columns of equal length (e.g. ``resolution_A`` and ``fsc``)."""
        lengths = {len(np.asarray(v)) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"curve '{name}': columns have different lengths {sorted(lengths)}")
        with self.staged("curves", name, overwrite=overwrite) as g:
            for col, values in columns.items():
                values = np.asarray(values)
                g.create_array(check_name(col, "column name"), shape=values.shape, dtype=values.dtype,
                               chunks=values.shape)[...] = values
            g.attrs["tomoflow"] = {"kind": "curve", "columns": list(columns), "created": now(), **(attrs or {})}

    def read_curve(self, name: str) -> tuple[dict[str, np.ndarray], dict]:
        g = self.group("curves", self.require("curves", name))
        info = dict(g.attrs["tomoflow"])
        return {c: g[c][...] for c in info["columns"]}, info

    # -- stage records -------------------------------------------------------------------
    def stage(self, name: str, n_chunks: int, params: dict | None = None, *, restart: bool = False):
        """The record of finished chunks of stage ``name`` (created if new). See :class:`StageRecord`."""
        from .stages import StageRecord

        return StageRecord.open_or_create(self, name, n_chunks, params or {}, restart=restart)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"


@contextmanager
def writable_store(path):
    """Open (or create) a store for writing. A store created here is removed again on failure only while it
    holds no entry at all: finished work (this command's resumable chunks, or what another command wrote into
    the new store meanwhile) is never deleted."""
    p = Path(path)
    existed = p.exists()
    try:
        yield Store.open(p, create=True)
    except BaseException:
        if not existed and p.exists() and _holds_nothing(p):
            shutil.rmtree(p, ignore_errors=True)
        raise


def _holds_nothing(path: Path) -> bool:
    """True if the store at ``path`` has no entry of any kind and nothing staged (as ``Store.create`` left it)."""
    def entries(folder: Path):
        return [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []

    return not any(entries(path / kind) for kind in KINDS) and not (
        (path / STAGING).is_dir() and any((path / STAGING).iterdir()))
