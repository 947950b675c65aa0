"""Particle sets: ``(N, D, D, D)`` volumes chunked by particles, and a table beside them.

The table is an xarray Dataset on dimension ``particle``, stored as a Zarr group and chunked
like the volumes, so that a task owning particle chunk ``i`` can write its rows (cluster id,
scores, ...) by region without touching any other task's objects. Coordinates are in Å from
the centre of tomogram voxel (0, 0, 0) (see :mod:`tomoflow.kernels.geometry`); angles are ZYZ Euler
angles in the RELION convention (rot, tilt, psi, degrees). Each particle carries its
missing-wedge description: the tilt range and the tilt-axis angle (degrees in the x-y plane
from the y axis; 0 = tilt about y).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from ..errors import StoreError
from .core import STAGING, Store, check_name, now

DEFAULT_CHUNK = 256
SPLITS = ("unassigned", "train", "validation", "test")


@dataclass(frozen=True)
class Column:
    dtype: str
    fill: object
    attrs: dict


_DEG = {"units": "degree"}
COLUMNS: dict[str, Column] = {
    "tomogram": Column("str", "", {"long_name": "tomogram name"}),
    "x": Column("float64", np.nan, {"units": "angstrom", "long_name": "x from the centre of tomogram voxel (0,0,0)"}),
    "y": Column("float64", np.nan, {"units": "angstrom", "long_name": "y from the centre of tomogram voxel (0,0,0)"}),
    "z": Column("float64", np.nan, {"units": "angstrom", "long_name": "z from the centre of tomogram voxel (0,0,0)"}),
    "rot": Column("float64", 0.0, {**_DEG, "long_name": "first Euler angle (ZYZ, RELION rlnAngleRot)"}),
    "tilt": Column("float64", 0.0, {**_DEG, "long_name": "second Euler angle (ZYZ, RELION rlnAngleTilt)"}),
    "psi": Column("float64", 0.0, {**_DEG, "long_name": "third Euler angle (ZYZ, RELION rlnAnglePsi)"}),
    "true_class": Column("int32", -1, {"long_name": "true class index into class_names, -1 if unknown"}),
    "split": Column("int8", 0, {"long_name": "data split", "flag_values": list(range(len(SPLITS))),
                                "flag_meanings": " ".join(SPLITS)}),
    "cluster": Column("int32", -1, {"long_name": "cluster id, -1 if not clustered"}),
    "score": Column("float32", np.nan, {"long_name": "score of the last stage that scored particles"}),
    "tilt_min": Column("float32", np.nan, {**_DEG, "long_name": "lowest tilt angle (missing wedge), NaN if unknown"}),
    "tilt_max": Column("float32", np.nan, {**_DEG, "long_name": "highest tilt angle (missing wedge), NaN if unknown"}),
    "tilt_axis": Column("float32", 0.0, {**_DEG, "long_name": "tilt axis angle in the x-y plane from the y axis"}),
    # the answer key: what a simulation made or a ground truth says; read only by simulation, scoring and reports
    "true_rot": Column("float64", np.nan, {**_DEG, "long_name": "true first Euler angle (answer key)"}),
    "true_tilt": Column("float64", np.nan, {**_DEG, "long_name": "true second Euler angle (answer key)"}),
    "true_psi": Column("float64", np.nan, {**_DEG, "long_name": "true third Euler angle (answer key)"}),
    "true_shift_x": Column("float64", np.nan, {"units": "angstrom", "long_name": "true shift in x (answer key)"}),
    "true_shift_y": Column("float64", np.nan, {"units": "angstrom", "long_name": "true shift in y (answer key)"}),
    "true_shift_z": Column("float64", np.nan, {"units": "angstrom", "long_name": "true shift in z (answer key)"}),
}
# Columns holding the truth about a particle. Methods read ``true_class`` only as labels to learn from
# (supervised training); no method reads the true pose: ``rot, tilt, psi`` hold poses methods found or were given.
ANSWER_KEY = ("true_class", "true_rot", "true_tilt", "true_psi", "true_shift_x", "true_shift_y", "true_shift_z")
TRUE_POSE = ANSWER_KEY[1:]


def _column_array(name: str, values, n: int) -> np.ndarray:
    col = COLUMNS.get(name)
    if values is None:
        if col is None:
            raise KeyError(name)
        values = np.full(n, col.fill, dtype=object if col.dtype == "str" else col.dtype)
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"column '{name}' has shape {arr.shape}, expected ({n},)")
    if (col and col.dtype == "str") or arr.dtype.kind in "OUS":
        return np.asarray([str(v) for v in arr], dtype=object)
    if col is not None:
        return arr.astype(col.dtype)
    return arr


def build_table(columns: dict, n: int | None = None):
    """An xarray Dataset with every standard column (defaults where not given) plus extra columns."""
    import xarray as xr

    columns = {k: v for k, v in dict(columns).items()}
    if n is None:
        lengths = {len(np.asarray(v)) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"table columns have different lengths: {sorted(lengths)}")
        n = lengths.pop()
    data = {}
    for name in list(COLUMNS) + [c for c in columns if c not in COLUMNS]:
        arr = _column_array(name, columns.get(name), n)
        attrs = dict(COLUMNS[name].attrs) if name in COLUMNS else {}
        data[name] = xr.Variable(("particle",), arr, attrs)
    return xr.Dataset(data)


def _table_encoding(ds, chunk):
    return {v: {"chunks": (chunk,)} for v in ds.data_vars}


def group_path(group: zarr.Group) -> Path:
    return Path(group.store.root) / group.path


def create_particle_set(store: Store, name: str, table: dict, *, box_size: int | None = None, dtype="float32",
                        chunk: int = DEFAULT_CHUNK, voxel_size: float | None = None, class_names=(),
                        tomograms: dict | None = None, attrs: dict | None = None, overwrite: bool = False):
    """Create a particle set from table columns (a dict of arrays or a DataFrame).

    ``box_size`` D gives an empty ``(N, D, D, D)`` volume array to be filled by region
    (extraction, simulation); None makes a table-only set (e.g. picks imported from STAR).
    ``tomograms`` maps tomogram names to ``{"shape": (z, y, x), "voxel_size": Å}`` so that the
    set can convert coordinates without the tomograms being in the store.
    """
    with store.staged("particles", name, overwrite=overwrite) as g:
        build_particle_set(g, table, box_size=box_size, dtype=dtype, chunk=chunk, voxel_size=voxel_size,
                           class_names=class_names, tomograms=tomograms, attrs=attrs)
    return ParticleSet(store, name)


def build_particle_set(g: zarr.Group, table: dict, *, box_size: int | None = None, dtype="float32",
                       chunk: int = DEFAULT_CHUNK, voxel_size: float | None = None, class_names=(),
                       tomograms: dict | None = None, attrs: dict | None = None) -> None:
    """Lay out a particle set in the (staging) group ``g``; see :func:`create_particle_set`."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise ValueError(f"particle volumes are float32 or float16, not {dtype}")
    if not 1 <= chunk <= 65536:
        raise ValueError(f"chunk must be 1..65536 particles, got {chunk}")
    ds = build_table({k: np.asarray(table[k]) for k in table})
    n = ds.sizes["particle"]
    if box_size is not None:
        d = int(box_size)
        g.create_array("volumes", shape=(n, d, d, d), chunks=(chunk, d, d, d), dtype=dtype, fill_value=0)
    g.create_group("arrays")
    ds.to_zarr(str(group_path(g)), group="table", mode="w", encoding=_table_encoding(ds, chunk),
               consolidated=False, zarr_format=3)
    g.attrs["tomoflow"] = {
        "kind": "particles", "n": int(n), "box_size": None if box_size is None else int(box_size),
        "dtype": dtype.name, "chunk": int(chunk), "voxel_size": None if voxel_size is None else float(voxel_size),
        "class_names": [str(c) for c in class_names], "tomograms": tomograms or {}, "created": now(),
        **(attrs or {})}


class ParticleSet:
    """One particle set of a store."""

    def __init__(self, store: Store, name: str, *, staged_at: str | Path | None = None):
        """The set ``name`` of ``store``; with ``staged_at``, the set being built at that staging folder (the
        tasks of a stage that fills a new set before it is moved into place)."""
        self.store, self.name = store, name
        if staged_at is None:
            store.require("particles", name)
            self.path = store.node_path("particles", name)
        else:
            self.path = Path(staged_at)
            if self.path.parent != store.path / STAGING:
                raise StoreError(str(self.path), "not a staging folder of this store")
        self.info = json.loads((self.path / "zarr.json").read_text()).get("attributes", {}).get("tomoflow", {}) \
            if staged_at is not None else store.attrs("particles", name)

    # -- shape ---------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.info["n"])

    @property
    def chunk(self) -> int:
        return int(self.info["chunk"])

    @property
    def box_size(self) -> int | None:
        return self.info["box_size"]

    @property
    def voxel_size(self) -> float | None:
        return self.info["voxel_size"]

    @property
    def class_names(self) -> list[str]:
        return list(self.info.get("class_names", []))

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk)

    def chunk_slice(self, i: int) -> slice:
        if not 0 <= i < self.n_chunks:
            raise IndexError(f"chunk {i} out of range ({self.n_chunks} chunks)")
        return slice(i * self.chunk, min((i + 1) * self.chunk, self.n))

    def tomogram_geometry(self, tomogram: str) -> dict | None:
        """``{"shape": [z, y, x], "voxel_size": Å}`` from the set, else from the store's tomogram."""
        geo = self.info.get("tomograms", {}).get(tomogram)
        if geo is None and self.store.has("tomograms", tomogram):
            a = self.store.attrs("tomograms", tomogram)
            geo = {"shape": a["shape"], "voxel_size": a["voxel_size"]}
        return geo

    # -- volumes -------------------------------------------------------------------------
    @property
    def volumes(self) -> zarr.Array:
        if self.box_size is None:
            raise StoreError(str(self.store.path), f"particle set '{self.name}' holds no volumes (table only)")
        return zarr.open_array(str(self.path / "volumes"), mode=self.store.mode)

    def read_volumes(self, sl: slice) -> np.ndarray:
        return self.volumes[sl]

    def read_rows(self, idx) -> np.ndarray:
        """The volumes of the particles ``idx`` (sorted indices), (len(idx), D, D, D)."""
        return np.asarray(self.volumes.oindex[np.asarray(idx, dtype=np.int64)])

    def write_volumes(self, start: int, data: np.ndarray) -> None:
        data = np.asarray(data)
        if start < 0 or start + len(data) > self.n:
            raise IndexError(f"rows {start}..{start + len(data)} outside 0..{self.n}")
        self.volumes[start:start + len(data)] = data

    def volume_chunks_written(self) -> int:
        """How many particle chunks of the volumes have been written (reads the listing only): a chunk counts when
        its file is there, not when only its folder is (a write that failed on a full disk leaves the folder)."""
        cdir = self.path / "volumes" / "c"
        if not cdir.is_dir():
            return 0
        return sum(1 for e in cdir.iterdir() if e.name.isdigit() and any(f.is_file() for f in e.rglob("*")))

    # -- table ---------------------------------------------------------------------------
    def table(self, columns=None, *, load: bool = True):
        """The particle table as an xarray Dataset (loaded into memory unless ``load=False``)."""
        import xarray as xr

        # chunks=None: lazily indexed numpy, not dask, so kernels running inside Dask tasks read only
        # their rows and never submit nested work to the cluster
        ds = xr.open_zarr(str(self.path), group="table", consolidated=False, chunks=None)
        if columns is None:  # schema columns first, in schema order, then extra columns by name
            columns = [c for c in COLUMNS if c in ds.data_vars] + sorted(c for c in ds.data_vars if c not in COLUMNS)
        ds = ds[list(columns)]
        return ds.load() if load else ds

    def rows(self, sl: slice, columns) -> dict[str, np.ndarray]:
        """Columns of rows ``sl`` as numpy arrays (text as Python str objects): what kernels read."""
        t = self.table(list(columns), load=False).isel(particle=sl)
        out = {}
        for c in columns:
            v = t[c].values
            out[c] = np.asarray([str(x) for x in v], dtype=object) if v.dtype.kind in "OUST" else v
        return out

    def table_frame(self, columns=None):
        """The table as a pandas DataFrame (strings as Python str)."""
        ds = self.table(columns)
        df = ds.to_dataframe().reset_index(drop=True)
        for c in df.columns:
            if ds[c].dtype.kind in "OUST":
                df[c] = df[c].astype(object).map(str)
        return df

    def write_columns(self, start: int, columns: dict) -> None:
        """Write rows ``start:start+len`` of existing columns (by region; align to chunks when concurrent)."""
        import xarray as xr

        existing = set(self.table(load=False).data_vars)
        unknown = set(columns) - existing
        if unknown:
            raise KeyError(f"unknown table columns {sorted(unknown)}; add them with add_columns")
        n = len(next(iter(columns.values())))
        if start < 0 or start + n > self.n:
            raise IndexError(f"rows {start}..{start + n} outside 0..{self.n}")
        ds = xr.Dataset({k: ("particle", _column_array(k, v, n)) for k, v in columns.items()})
        ds.to_zarr(str(self.path), group="table", region={"particle": slice(start, start + n)}, consolidated=False)

    def add_columns(self, columns: dict) -> None:
        """Add whole new columns (arrays of length N) to the table."""
        import xarray as xr

        ds = xr.Dataset({k: ("particle", _column_array(k, v, self.n)) for k, v in columns.items()})
        ds.to_zarr(str(self.path), group="table", mode="a", encoding=_table_encoding(ds, self.chunk),
                   consolidated=False)

    def set_columns(self, columns: dict) -> None:
        """Whole columns (length N): written over those that exist, added where they do not."""
        existing = set(self.table(load=False).data_vars)
        old = {k: v for k, v in columns.items() if k in existing}
        new = {k: v for k, v in columns.items() if k not in existing}
        if old:
            self.write_columns(0, old)
        if new:
            self.add_columns(new)

    def set_attrs(self, extra: dict) -> None:
        """Add or replace entries of the set's attributes (e.g. a stage's record)."""
        g = zarr.open_group(str(self.path), mode="r+")
        g.attrs["tomoflow"] = {**self.info, **extra}
        self.info = self.store.attrs("particles", self.name)

    # -- growth --------------------------------------------------------------------------
    def append(self, table: dict, volumes: np.ndarray | None = None) -> slice:
        """Append particles; earlier full chunks are never rewritten. Returns the new rows' slice."""
        ds = build_table({k: np.asarray(table[k]) for k in table})
        m = ds.sizes["particle"]
        have = set(self.table(load=False).data_vars)
        if set(ds.data_vars) != have:
            raise ValueError(f"appended table columns differ: missing {sorted(have - set(ds.data_vars))}, "
                             f"extra {sorted(set(ds.data_vars) - have)}")
        if volumes is not None and self.box_size is None:
            raise ValueError(f"particle set '{self.name}' holds no volumes")
        if volumes is not None and volumes.shape != (m,) + (self.box_size,) * 3:
            raise ValueError(f"volumes of shape {volumes.shape}, expected {(m,) + (self.box_size,) * 3}")
        start = self.n
        if self.box_size is not None:
            vol = self.volumes
            vol.resize((start + m,) + vol.shape[1:])
            if volumes is not None:
                vol[start:start + m] = volumes
        ds.to_zarr(str(self.path), group="table", append_dim="particle", consolidated=False)
        for name in self.arrays():
            arr = self.array(name)
            arr.resize((start + m,) + arr.shape[1:])
        g = zarr.open_group(str(self.path), mode="r+")
        g.attrs["tomoflow"] = {**self.info, "n": start + m}
        self.info = self.store.attrs("particles", self.name)
        return slice(start, start + m)

    # -- per-particle arrays (features, probabilities, ...) ------------------------------
    def arrays(self) -> list[str]:
        d = self.path / "arrays"
        return sorted(p.name for p in d.iterdir() if (p / "zarr.json").is_file()) if d.is_dir() else []

    def create_array(self, name: str, tail_shape=(), dtype="float32", *, fill_value=0, overwrite=False,
                     attrs: dict | None = None) -> zarr.Array:
        """A per-particle array of shape ``(N, *tail_shape)`` chunked like the volumes."""
        from .core import check_name

        check_name(name, "array name")
        tail = tuple(int(t) for t in tail_shape)
        if (self.path / "arrays" / name).exists() and not overwrite:
            raise StoreError(str(self.store.path), f"array '{name}' of particle set '{self.name}' already exists")
        g = zarr.open_group(str(self.path / "arrays"), mode="r+")
        arr = g.create_array(name, shape=(self.n,) + tail, chunks=(self.chunk,) + tail, dtype=dtype,
                             fill_value=fill_value, overwrite=overwrite)
        arr.attrs["tomoflow"] = {"created": now(), **(attrs or {})}
        return arr

    def array(self, name: str) -> zarr.Array:
        check_name(name, "array name")
        if name not in self.arrays():
            have = ", ".join(self.arrays()) or "none"
            raise StoreError(str(self.store.path), f"particle set '{self.name}' has no array '{name}' (have: {have})")
        return zarr.open_array(str(self.path / "arrays" / name), mode=self.store.mode)

    def __repr__(self) -> str:
        box = f"{self.box_size}^3 {self.info['dtype']}" if self.box_size else "table only"
        return f"ParticleSet({self.name!r}, n={self.n}, {box})"
