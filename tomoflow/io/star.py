"""RELION particle STAR files <-> tomoflow particle-table columns.

RELION 5 writes particle positions as ``rlnCenteredCoordinate{X,Y,Z}Angst``: Å from the
tomogram centre, the centre being ``size / 2`` voxels along each axis (see
:mod:`tomoflow.kernels.geometry`); converting needs each tomogram's shape and voxel size. The plain
option reads and writes ``rlnCoordinate{X,Y,Z}`` in pixels of a given pixel size, counted
from the centre of voxel 0.

Columns that tomoflow does not interpret (``rlnOriginXAngst``, ``rlnRandomSubset``, ...) are
kept in the table as ``star_<label>`` and written back in their original order, so a STAR
file survives STAR -> store -> STAR. ``rlnClassNumber`` (1-based) is the table's ``cluster``
(0-based). ``rlnOriginXAngst`` shifts are kept, not applied.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import InputError
from ..kernels.geometry import tomogram_center_angstrom

CENTERED = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
PIXEL = [f"rlnCoordinate{a}" for a in "XYZ"]
ANGLES = {"rot": "rlnAngleRot", "tilt": "rlnAngleTilt", "psi": "rlnAnglePsi"}
# optional tomoflow columns (written with tomoflow_columns=True)
TOMOFLOW = {"true_class": "tomoflowTrueClass", "split": "tomoflowSplit", "score": "tomoflowScore",
            "tilt_min": "tomoflowTiltMin", "tilt_max": "tomoflowTiltMax", "tilt_axis": "tomoflowTiltAxis"}
EXTRA_PREFIX = "star_"

Geometry = Callable[[str], "dict | None"]  # tomogram name -> {"shape": (z, y, x), "voxel_size": Å}


def read_particles_star(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    """Read a particle STAR file: (particles, optics or None, other blocks). Clear errors on bad files."""
    import starfile

    path = os.fspath(path)
    if not Path(path).is_file():
        raise InputError(path, "no such file")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:
        raise InputError(path, f"not a readable STAR file ({exc})") from None
    if not blocks:
        raise InputError(path, "not a STAR file: no data blocks")
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if "particles" in tables:
        particles = tables["particles"]
    elif len(tables) == 1:
        particles = next(iter(tables.values()))
    else:
        raise InputError(path, f"no data_particles block (blocks: {', '.join(blocks)})")
    if len(particles) == 0:
        raise InputError(path, "the particle block holds no particles")
    dup = _duplicate_labels(path)
    if dup:
        raise InputError(path, f"column {dup} appears twice in a loop")
    optics = tables.get("optics")
    others = {k: v for k, v in blocks.items() if k not in ("particles", "optics") and v is not particles}
    return particles, optics, others


def _duplicate_labels(path: str) -> str | None:
    """The first label given twice in one loop of the file (starfile keeps one of them silently)."""
    seen: set[str] = set()
    with open(path, errors="replace") as f:
        for line in f:
            word = line.split("#")[0].strip()
            if word.startswith("data_") or word == "loop_":
                seen = set()
            elif word.startswith("_"):
                label = word.split()[0]
                if label in seen:
                    return label
                seen.add(label)
    return None


def _numeric(df: pd.DataFrame, labels, path) -> np.ndarray:
    try:
        out = df[labels].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(path, f"non-numeric values in {', '.join(labels)}") from None
    bad = ~np.isfinite(out)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise InputError(path, f"missing or non-finite value in {', '.join(labels)} at particle row {row + 1}")
    return out


def _tomoflow_column(df: pd.DataFrame, ours: str, label: str, path) -> np.ndarray:
    """A tomoflow column read back: numbers (NaN allowed where the store allows it), integers for the class and
    the split, so text in a STAR file never becomes a text column the methods would misread."""
    values = pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=np.float64)
    text = df[label].map(lambda v: str(v).strip().lower())
    bad = np.isnan(values) & ~(df[label].isna() | text.isin(("nan", "", "none"))).to_numpy()
    if bad.any():
        raise InputError(path, f"non-numeric value {df[label].iloc[int(np.argmax(bad))]!r} in {label} at particle row "
                               f"{int(np.argmax(bad)) + 1}")
    if ours in ("true_class", "split"):
        if not (np.isfinite(values) & (values == np.round(values))).all():
            raise InputError(path, f"{label} must hold whole numbers")
        top = 3 if ours == "split" else np.inf
        if ((values < (0 if ours == "split" else -1)) | (values > top)).any():
            raise InputError(path, f"{label} holds a value out of range")
        return values.astype(np.int64)
    return values


def star_to_columns(df: pd.DataFrame, geometry_of: Geometry, *, path: str, pixel_size: float | None = None,
                    tomogram: str | None = None) -> tuple[dict, dict]:
    """Table columns from a STAR particle block, and the geometry of every tomogram used.

    ``tomogram`` names the tomogram of a file without ``rlnTomoName``. Pixel coordinates need
    ``pixel_size``, else the tomogram's voxel size.
    """
    n = len(df)
    if "rlnTomoName" in df.columns:
        tomos = df["rlnTomoName"].astype(str).to_numpy()
    elif tomogram:
        tomos = np.full(n, tomogram, dtype=object)
    else:
        raise InputError(path, "no rlnTomoName column; name the tomogram (--tomogram)")
    geometry = {}
    for t in dict.fromkeys(tomos):
        geometry[t] = geometry_of(t)
    if all(c in df.columns for c in CENTERED):
        cen = _numeric(df, CENTERED, path)
        xyz = np.empty_like(cen)
        for t, geo in geometry.items():
            if geo is None:
                raise InputError(path, f"tomogram '{t}' is not in the store, so its centre is unknown; import the "
                                       "tomogram first or give its size (--tomogram-size X Y Z --voxel-size A)")
            sel = tomos == t
            xyz[sel] = cen[sel] + tomogram_center_angstrom(geo["shape"], geo["voxel_size"])
        used = set(CENTERED)
    elif all(c in df.columns for c in PIXEL):
        px = _numeric(df, PIXEL, path)
        xyz = np.empty_like(px)
        for t, geo in geometry.items():
            ps = pixel_size if pixel_size is not None else (geo or {}).get("voxel_size")
            if ps is None or not ps > 0:
                raise InputError(path, f"pixel coordinates for tomogram '{t}' need a pixel size (--pixel-size)")
            xyz[tomos == t] = px[tomos == t] * float(ps)
        used = set(PIXEL)
    else:
        raise InputError(path, "no particle coordinates (rlnCenteredCoordinate{X,Y,Z}Angst or rlnCoordinate{X,Y,Z})")
    cols = {"tomogram": tomos, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    for ours, label in ANGLES.items():
        if label in df.columns:
            cols[ours] = _numeric(df, [label], path)[:, 0]
            used.add(label)
    if "rlnClassNumber" in df.columns:
        cols["cluster"] = _numeric(df, ["rlnClassNumber"], path)[:, 0].astype(np.int64) - 1
        used.add("rlnClassNumber")
    for ours, label in TOMOFLOW.items():
        if label in df.columns:
            cols[ours] = _tomoflow_column(df, ours, label, path)
            used.add(label)
    used.add("rlnTomoName")
    for label in df.columns:
        if label not in used:
            values = df[label].to_numpy()
            cols[EXTRA_PREFIX + label] = values.astype(object) if values.dtype.kind in "OUST" else values
    return cols, {t: g for t, g in geometry.items() if g is not None}


def columns_to_star(table: pd.DataFrame, geometry_of: Geometry, *, pixel_size: float | None = None,
                    pixel_coords: bool = False, column_order=None, tomoflow_columns: bool = False) -> pd.DataFrame:
    """A RELION 5 particle block from a tomoflow table (pandas)."""
    n = len(table)
    tomos = table["tomogram"].astype(str).to_numpy()
    xyz = table[["x", "y", "z"]].to_numpy(dtype=np.float64)
    out: dict[str, np.ndarray] = {"rlnTomoName": tomos}
    coords = np.empty_like(xyz)
    for t in dict.fromkeys(tomos):
        sel = tomos == t
        geo = geometry_of(t)
        if pixel_coords:
            ps = pixel_size if pixel_size is not None else (geo or {}).get("voxel_size")
            if ps is None:
                raise InputError(t, "pixel coordinates need a pixel size (--pixel-size)")
            coords[sel] = xyz[sel] / float(ps)
        else:
            if geo is None:
                raise InputError(t, "tomogram geometry unknown: cannot write coordinates relative to its centre "
                                    "(use --pixel-coords, or import the tomogram)")
            coords[sel] = xyz[sel] - tomogram_center_angstrom(geo["shape"], geo["voxel_size"])
    for label, k in zip(PIXEL if pixel_coords else CENTERED, range(3)):
        out[label] = coords[:, k]
    for ours, label in ANGLES.items():
        out[label] = table[ours].to_numpy(dtype=np.float64)
    if "rlnTomoParticleName" not in [c[len(EXTRA_PREFIX):] for c in table.columns if c.startswith(EXTRA_PREFIX)]:
        counters: dict[str, int] = {}
        names = []
        for t in tomos:
            counters[t] = counters.get(t, 0) + 1
            names.append(f"{t}/{counters[t]}")
        out["rlnTomoParticleName"] = np.asarray(names, dtype=object)
    if "rlnOpticsGroup" not in {c[len(EXTRA_PREFIX):] for c in table.columns}:
        out["rlnOpticsGroup"] = np.ones(n, dtype=np.int64)
    cluster = table["cluster"].to_numpy()
    if (cluster >= 0).any() or (column_order and "rlnClassNumber" in column_order):
        out["rlnClassNumber"] = cluster.astype(np.int64) + 1
    if tomoflow_columns:
        for ours, label in TOMOFLOW.items():
            out[label] = table[ours].to_numpy()
    for c in table.columns:
        if c.startswith(EXTRA_PREFIX):
            out[c[len(EXTRA_PREFIX):]] = table[c].to_numpy()
    df = pd.DataFrame(out)
    if column_order:
        first = [c for c in column_order if c in df.columns]
        df = df[first + [c for c in df.columns if c not in first]]
    return df


def default_optics(pixel_size: float, *, voltage=300.0, cs=2.7, amplitude_contrast=0.1) -> pd.DataFrame:
    return pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                         "rlnTomoTiltSeriesPixelSize": [float(pixel_size)], "rlnVoltage": [float(voltage)],
                         "rlnSphericalAberration": [float(cs)], "rlnAmplitudeContrast": [float(amplitude_contrast)]})


def write_particles_star(path, particles: pd.DataFrame, optics: pd.DataFrame | None = None,
                         others: dict | None = None) -> None:
    import starfile

    blocks = dict(others or {})
    if optics is not None:
        blocks["optics"] = optics
    blocks["particles"] = particles
    starfile.write(blocks, os.fspath(path), overwrite=True)
