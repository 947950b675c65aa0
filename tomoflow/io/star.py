"""RELION and Warp particle STAR files <-> tomoflow particle-table columns.

Conventions (read from RELION 5's ``src/jaz/tomography/particle_set.cpp`` and ``tomogram_set.cpp``):

- Positions. RELION 5 writes ``rlnCenteredCoordinate{X,Y,Z}Angst``: Å from the tomogram centre, the centre being
  ``size / 2`` voxels along each axis (see :mod:`tomoflow.kernels.geometry`). RELION itself converts them to
  unbinned tilt-series pixels with ``rlnTomoTiltSeriesPixelSize``, so an exported file must carry the tilt-series
  pixel size, not the (binned) tomogram voxel size. RELION 3/4, Warp and pytom write ``rlnCoordinate{X,Y,Z}``:
  pixels counted from the centre of voxel 0 (RELION 4: unbinned tilt-series pixels).
- Pose. RELION 5 particles may carry a subtomogram orientation (``rlnTomoSubtomogram{Rot,Tilt,Psi}``) besides
  ``rlnAngle{Rot,Tilt,Psi}``; the particle's orientation in the tomogram is ``A = A_subtomogram @ A_particle``.
  tomoflow stores that composed pose in ``rot, tilt, psi``; export writes ``rlnAngle* = A_subtomogram^T @ A``.
- Origin shifts. The particle centre is ``coordinate - A_subtomogram @ origin`` (``rlnOrigin{X,Y,Z}Angst`` in Å,
  RELION 3's ``rlnOrigin{X,Y,Z}`` in pixels). tomoflow applies them on import and keeps them, so export writes them
  back with the coordinate they came with.
- Classes. ``rlnClassNumber`` (1-based) becomes the class labels (``true_class`` indexing the set's
  ``class_names``, the numbers kept as the names "1", "2", ...): labels a user brings, never tomoflow clusters.
  A file written by tomoflow with ``--tomoflow-columns`` carries the labels as ``tomoflowTrueClass``, and its
  ``rlnClassNumber`` is then the cluster id + 1.

Columns that tomoflow does not interpret (``rlnRandomSubset``, ``rlnImageName``, ...) are kept in the table as
``star_<label>`` and written back in their original order, so a STAR file survives STAR -> store -> STAR.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import InputError
from ..kernels.geometry import relion_angles, relion_matrix, tomogram_center_angstrom

CENTERED = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
PIXEL = [f"rlnCoordinate{a}" for a in "XYZ"]
ANGLES = {"rot": "rlnAngleRot", "tilt": "rlnAngleTilt", "psi": "rlnAnglePsi"}
SUBTOMO = ["rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi"]
ORIGIN_A = [f"rlnOrigin{a}Angst" for a in "XYZ"]
ORIGIN_PX = [f"rlnOrigin{a}" for a in "XYZ"]
# optional tomoflow columns (written with tomoflow_columns=True)
TOMOFLOW = {"true_class": "tomoflowTrueClass", "split": "tomoflowSplit", "score": "tomoflowScore",
            "tilt_min": "tomoflowTiltMin", "tilt_max": "tomoflowTiltMax", "tilt_axis": "tomoflowTiltAxis"}
EXTRA_PREFIX = "star_"
WARP_SUFFIX = ".tomostar"
# what RELION 5 assumes when told nothing (its pipeliner defaults); written only with a comment saying so
RELION_DEFAULT_OPTICS = {"voltage": 300.0, "cs": 2.7, "amplitude_contrast": 0.1}

Geometry = Callable[[str], "dict | None"]  # tomogram name -> {"shape": (z, y, x), "voxel_size": Å, ...}


def read_particles_star(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    """Read a particle STAR file: (particles, optics or None, other blocks). Clear errors on bad files."""
    particles, optics, others = _read_blocks(path, "particles")
    if len(particles) == 0:
        raise InputError(path, "the particle block holds no particles")
    return particles, optics, others


def _read_blocks(path, want: str):
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
    if want in tables:
        main = tables[want]
    elif len(tables) == 1:
        main = next(iter(tables.values()))
    else:
        raise InputError(path, f"no data_{want} block (blocks: {', '.join(blocks)})")
    dup = _duplicate_labels(path)
    if dup:
        raise InputError(path, f"column {dup} appears twice in a loop")
    optics = tables.get("optics")
    others = {k: v for k, v in blocks.items() if k not in (want, "optics") and v is not main}
    return main, optics, others


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


def _numeric(df: pd.DataFrame, labels, path, row: str = "particle row") -> np.ndarray:
    try:
        out = df[labels].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(path, f"non-numeric values in {', '.join(labels)}") from None
    bad = ~np.isfinite(out)
    if bad.any():
        at = int(np.argwhere(bad)[0][0])
        raise InputError(path, f"missing or non-finite value in {', '.join(labels)} at {row} {at + 1}")
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


def read_tomograms_star(path: str | os.PathLike) -> dict[str, dict]:
    """A RELION 5 tomogram set (``tomograms.star``, block ``global``): per tomogram its bin-1 size in tilt-series
    pixels, the tilt-series pixel size, the binning of the reconstructed tomogram and the optics.

    Returned as tomoflow geometry: ``shape`` (z, y, x) and ``voxel_size`` describe the bin-1 frame, whose centre is
    the one RELION's centred coordinates refer to."""
    table, _, _ = _read_blocks(path, "global")
    need = ["rlnTomoName", "rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ", "rlnTomoTiltSeriesPixelSize"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise InputError(path, f"not a RELION 5 tomogram set: no {', '.join(missing)}")
    size = _numeric(table, need[1:4], path, "tomogram row")
    ts = _numeric(table, [need[4]], path, "tomogram row")[:, 0]
    if (size < 1).any() or (size != np.round(size)).any():
        raise InputError(path, "rlnTomoSize{X,Y,Z} must be whole numbers of pixels >= 1")
    if (ts <= 0).any():
        raise InputError(path, "rlnTomoTiltSeriesPixelSize must be > 0")
    binning = (_numeric(table, ["rlnTomoTomogramBinning"], path, "tomogram row")[:, 0] if "rlnTomoTomogramBinning" in table
               else np.ones(len(table)))
    if (binning <= 0).any():
        raise InputError(path, "rlnTomoTomogramBinning must be > 0")
    optics = {k: (_numeric(table, [label], path, "tomogram row")[:, 0] if label in table else None)
              for k, label in (("voltage", "rlnVoltage"), ("cs", "rlnSphericalAberration"),
                               ("amplitude_contrast", "rlnAmplitudeContrast"))}
    out = {}
    for i, name in enumerate(table["rlnTomoName"].astype(str)):
        if name in out:
            raise InputError(path, f"tomogram {name!r} is listed twice")
        geo = {"shape": [int(size[i, 2]), int(size[i, 1]), int(size[i, 0])], "voxel_size": float(ts[i]),
               "tilt_series_pixel_size": float(ts[i]), "binning": float(binning[i]), "source": os.fspath(path)}
        mic = {k: float(v[i]) for k, v in optics.items() if v is not None}
        if mic:
            geo["microscope"] = mic
        out[name] = geo
    return out


def _tomogram_names(df: pd.DataFrame, tomogram: str | None, path) -> tuple[np.ndarray, str]:
    """Each particle's tomogram, and the label it came from: rlnTomoName (RELION 4/5), else rlnMicrographName
    (Warp/M, pytom: a ``.tomostar`` or file name, reduced to the tomogram name), else the name given."""
    if "rlnTomoName" in df.columns:
        return df["rlnTomoName"].astype(str).to_numpy(), "rlnTomoName"
    if "rlnMicrographName" in df.columns:
        def reduce(v):
            name = Path(str(v).split(":")[0]).name
            for suffix in (WARP_SUFFIX, ".mrc", ".rec", ".st"):
                if name.endswith(suffix):
                    return name[: -len(suffix)]
            return name
        return np.asarray([reduce(v) for v in df["rlnMicrographName"]], dtype=object), "rlnMicrographName"
    if tomogram:
        return np.full(len(df), tomogram, dtype=object), ""
    raise InputError(path, "no rlnTomoName or rlnMicrographName column; name the tomogram (--tomogram)")


def _row_pixel_sizes(df, optics, tomos, geometry, pixel_size, path) -> np.ndarray:
    """Å per pixel of rlnCoordinate* (and RELION 3's pixel origins), per particle: the size given, else the optics
    group's tilt-series pixel size (RELION 4), else the row's detector pixel size (Warp, pytom), else the
    tomogram's voxel size."""
    n = len(df)
    if pixel_size is not None:
        return np.full(n, float(pixel_size))
    out = np.full(n, np.nan)
    if optics is not None and "rlnTomoTiltSeriesPixelSize" in optics.columns and "rlnOpticsGroup" in df.columns:
        by_group = dict(zip(optics["rlnOpticsGroup"].astype(int), optics["rlnTomoTiltSeriesPixelSize"].astype(float)))
        out = np.array([by_group.get(int(g), np.nan) for g in df["rlnOpticsGroup"]], dtype=np.float64)
    if "rlnDetectorPixelSize" in df.columns:
        det = _numeric(df, ["rlnDetectorPixelSize"], path)[:, 0]
        if "rlnMagnification" in df.columns:  # RELION 3: Å per pixel = detector pixel (µm) * 1e4 / magnification
            det = det * 1e4 / _numeric(df, ["rlnMagnification"], path)[:, 0]
        out = np.where(np.isfinite(out), out, det)
    for t, geo in geometry.items():
        sel = (tomos == t) & ~np.isfinite(out)
        if sel.any() and geo is not None:
            out[sel] = float(geo["voxel_size"])
    if not (np.isfinite(out) & (out > 0)).all():
        t = tomos[int(np.argmax(~(np.isfinite(out) & (out > 0))))]
        raise InputError(path, f"pixel coordinates for tomogram '{t}' need a pixel size (--pixel-size)")
    return out


def subtomogram_matrices(df: pd.DataFrame, path="table", prefix: str = "") -> np.ndarray | None:
    """RELION 5 subtomogram orientations (N, 3, 3), or None when the table has none."""
    labels = [prefix + c for c in SUBTOMO]
    if not any(c in df.columns for c in labels):
        return None
    if not all(c in df.columns for c in labels):
        raise InputError(path, f"subtomogram orientation needs all of {', '.join(SUBTOMO)}")
    a = _numeric(df, labels, path)
    return relion_matrix(a[:, 0], a[:, 1], a[:, 2])


def star_to_columns(df: pd.DataFrame, geometry_of: Geometry, *, path: str, pixel_size: float | None = None,
                    tomogram: str | None = None, optics: pd.DataFrame | None = None) -> tuple[dict, dict, dict]:
    """Table columns from a STAR particle block, the geometry of every tomogram used, and attributes to record
    (how the file named tomograms, its class names).

    ``tomogram`` names the tomogram of a file without a tomogram column.
    """
    n = len(df)
    tomos, name_label = _tomogram_names(df, tomogram, path)
    geometry = {t: geometry_of(t) for t in dict.fromkeys(tomos)}
    used = {name_label} if name_label else set()
    if all(c in df.columns for c in CENTERED):
        xyz = _numeric(df, CENTERED, path).copy()
        for t, geo in geometry.items():
            if geo is None:
                raise InputError(path, f"tomogram '{t}' is not in the store, so its centre is unknown; import the "
                                       "tomogram first, or give its tomograms.star (--tomograms) or its size "
                                       "(--tomogram-size X Y Z --voxel-size A)")
            xyz[tomos == t] += tomogram_center_angstrom(geo["shape"], geo["voxel_size"])
        used.update(CENTERED)
        px = None
    elif all(c in df.columns for c in PIXEL):
        px = _row_pixel_sizes(df, optics, tomos, geometry, pixel_size, path)
        xyz = _numeric(df, PIXEL, path) * px[:, None]
        used.update(PIXEL)
    else:
        raise InputError(path, "no particle coordinates (rlnCenteredCoordinate{X,Y,Z}Angst or rlnCoordinate{X,Y,Z})")
    a_sub = subtomogram_matrices(df, path)
    # origin shifts: the particle centre is coordinate - A_subtomogram @ origin
    origin = None
    if any(c in df.columns for c in ORIGIN_A):
        origin = np.stack([_numeric(df, [c], path)[:, 0] if c in df.columns else np.zeros(n) for c in ORIGIN_A], 1)
    elif any(c in df.columns for c in ORIGIN_PX):
        if px is None:
            px = _row_pixel_sizes(df, optics, tomos, geometry, pixel_size, path)
        origin = np.stack([_numeric(df, [c], path)[:, 0] if c in df.columns else np.zeros(n) for c in ORIGIN_PX], 1)
        origin = origin * px[:, None]
    if origin is not None:
        xyz -= origin if a_sub is None else np.einsum("nij,nj->ni", a_sub, origin)
    cols = {"tomogram": tomos, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    if any(label in df.columns for label in ANGLES.values()):
        ang = np.stack([_numeric(df, [label], path)[:, 0] if label in df.columns else np.zeros(n)
                        for label in ANGLES.values()], 1)
        used.update(label for label in ANGLES.values() if label in df.columns)
        if a_sub is not None:
            ang = relion_angles(a_sub @ relion_matrix(ang[:, 0], ang[:, 1], ang[:, 2]))
        cols["rot"], cols["tilt"], cols["psi"] = ang[:, 0], ang[:, 1], ang[:, 2]
    elif a_sub is not None:
        ang = relion_angles(a_sub)
        cols["rot"], cols["tilt"], cols["psi"] = ang[:, 0], ang[:, 1], ang[:, 2]
    attrs: dict = {"star_tomogram_label": name_label or None}
    for ours, label in TOMOFLOW.items():
        if label in df.columns:
            cols[ours] = _tomoflow_column(df, ours, label, path)
            used.add(label)
    if "rlnClassNumber" in df.columns:
        k = _numeric(df, ["rlnClassNumber"], path)[:, 0]
        if (k != np.round(k)).any() or (k < 1).any():
            raise InputError(path, "rlnClassNumber must hold whole numbers >= 1")
        k = k.astype(np.int64)
        if "true_class" in cols:  # a tomoflow file: its labels are tomoflowTrueClass, rlnClassNumber its clusters
            cols["cluster"] = k - 1
        else:
            numbers = sorted(set(k.tolist()))
            cols["true_class"] = np.searchsorted(numbers, k)
            attrs["class_names"] = [str(v) for v in numbers]
            attrs["classes_from"] = "rlnClassNumber"
        used.add("rlnClassNumber")
    for label in df.columns:
        if label not in used:
            values = df[label].to_numpy()
            cols[EXTRA_PREFIX + label] = values.astype(object) if values.dtype.kind in "OUST" else values
    return cols, {t: g for t, g in geometry.items() if g is not None}, attrs


def _extra(table: pd.DataFrame, label: str):
    col = EXTRA_PREFIX + label
    return table[col] if col in table.columns else None


def columns_to_star(table: pd.DataFrame, geometry_of: Geometry, *, pixel_size: float | None = None,
                    pixel_coords: bool = False, column_order=None, tomoflow_columns: bool = False,
                    class_names=None, optics_group=None, warp: bool = False) -> pd.DataFrame:
    """A particle block from a tomoflow table (pandas): RELION 5 (centred Å), RELION 4 style pixel coordinates
    (``pixel_coords``; ``pixel_size`` a number or a dict per tomogram, else the voxel size), or Warp/M's (``warp``: pixels from the centre of voxel 0, ``rlnMicrographName`` naming the
    ``.tomostar``). ``optics_group`` gives each row's RELION optics group when the file gets a new optics block."""
    n = len(table)
    tomos = table["tomogram"].astype(str).to_numpy()
    xyz = table[["x", "y", "z"]].to_numpy(dtype=np.float64)
    pose = relion_matrix(*(table[c].to_numpy(dtype=np.float64) for c in ("rot", "tilt", "psi")))
    a_sub = None if warp else subtomogram_matrices(table, "particle set", prefix=EXTRA_PREFIX)
    # write origins back with the coordinate they came with (the centre = coordinate - A_sub @ origin)
    origin_labels = next((ls for ls in (ORIGIN_A, ORIGIN_PX) if any(_extra(table, c) is not None for c in ls)), None)
    if warp or origin_labels is None:
        origin_labels = None
    pixel_sizes = {}
    coords = np.empty_like(xyz)
    for t in dict.fromkeys(tomos):
        sel = tomos == t
        geo = geometry_of(t)
        ps = pixel_size.get(t) if isinstance(pixel_size, dict) else pixel_size
        ps = ps if ps is not None else (geo or {}).get("voxel_size")
        pixel_sizes[t] = ps
        if pixel_coords or warp:
            if ps is None:
                raise InputError(t, "pixel coordinates need a pixel size (--pixel-size)")
            coords[sel] = xyz[sel] / float(ps)
        else:
            if geo is None:
                raise InputError(t, "tomogram geometry unknown: cannot write coordinates relative to its centre "
                                    "(use --pixel-coords, or import the tomogram)")
            coords[sel] = xyz[sel] - tomogram_center_angstrom(geo["shape"], geo["voxel_size"])
    if origin_labels is not None:
        o = np.stack([_extra(table, c).to_numpy(np.float64) if _extra(table, c) is not None else np.zeros(n)
                      for c in origin_labels], 1)
        per_px = np.array([pixel_sizes[t] or np.nan for t in tomos], np.float64)
        o_a = o * per_px[:, None] if origin_labels is ORIGIN_PX else o
        shift = o_a if a_sub is None else np.einsum("nij,nj->ni", a_sub, o_a)
        coords += shift / per_px[:, None] if (pixel_coords or warp) else shift
    if warp:
        out: dict[str, np.ndarray] = {}
        for label, k in zip(PIXEL, range(3)):
            out[label] = coords[:, k]
        ang = relion_angles(pose)
        for label, k in zip(ANGLES.values(), range(3)):
            out[label] = ang[:, k]
        out["rlnMicrographName"] = np.asarray([t + WARP_SUFFIX for t in tomos], dtype=object)
        cluster = table["cluster"].to_numpy()
        if (cluster >= 0).any():
            out["rlnClassNumber"] = cluster.astype(np.int64) + 1
        return pd.DataFrame(out)
    out = {"rlnTomoName": tomos}
    for label, k in zip(PIXEL if pixel_coords else CENTERED, range(3)):
        out[label] = coords[:, k]
    particle = pose if a_sub is None else np.swapaxes(a_sub, -1, -2) @ pose
    ang = relion_angles(particle)
    for label, k in zip(ANGLES.values(), range(3)):
        out[label] = ang[:, k]
    extras = {c[len(EXTRA_PREFIX):] for c in table.columns if c.startswith(EXTRA_PREFIX)}
    if "rlnTomoParticleName" not in extras:
        counters: dict[str, int] = {}
        names = []
        for t in tomos:
            counters[t] = counters.get(t, 0) + 1
            names.append(f"{t}/{counters[t]}")
        out["rlnTomoParticleName"] = np.asarray(names, dtype=object)
    if "rlnOpticsGroup" not in extras:
        out["rlnOpticsGroup"] = (np.ones(n, dtype=np.int64) if optics_group is None
                                 else np.asarray(optics_group, np.int64))
    cluster = table["cluster"].to_numpy()
    true = table["true_class"].to_numpy()
    numeric_names = bool(class_names) and all(str(c).isdigit() for c in class_names)
    if (cluster >= 0).any():
        out["rlnClassNumber"] = cluster.astype(np.int64) + 1
    elif numeric_names and not tomoflow_columns and (true >= 0).all():
        out["rlnClassNumber"] = np.asarray([int(class_names[k]) for k in true], np.int64)
    elif column_order and "rlnClassNumber" in column_order:
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


def optics_block(groups: list[dict]) -> pd.DataFrame:
    """A RELION 5 optics block, one row per group: ``{"pixel_size", "voltage", "cs", "amplitude_contrast"}``."""
    return pd.DataFrame({
        "rlnOpticsGroup": [i + 1 for i in range(len(groups))],
        "rlnOpticsGroupName": [f"opticsGroup{i + 1}" for i in range(len(groups))],
        "rlnTomoTiltSeriesPixelSize": [float(g["pixel_size"]) for g in groups],
        "rlnVoltage": [float(g["voltage"]) for g in groups],
        "rlnSphericalAberration": [float(g["cs"]) for g in groups],
        "rlnAmplitudeContrast": [float(g["amplitude_contrast"]) for g in groups]})


def write_particles_star(path, particles: pd.DataFrame, optics: pd.DataFrame | None = None,
                         others: dict | None = None, *, comments=(), general: bool = True) -> None:
    """Write the blocks RELION 5 writes (``data_general``, ``data_optics``, ``data_particles``); ``comments``
    become ``#`` lines at the top (what the file had to assume). ``general=False`` writes one plain ``data_``
    block (Warp/M, RELION 3)."""
    import starfile

    path = os.fspath(path)
    if general:
        blocks = dict(others or {})
        blocks.setdefault("general", {"rlnTomoSubTomosAre2DStacks": 0})
        blocks = {"general": blocks.pop("general"), **blocks}
        if optics is not None:
            blocks["optics"] = optics
        blocks["particles"] = particles
    else:
        blocks = {"": particles}
    starfile.write(blocks, path, overwrite=True)
    if comments:
        text = Path(path).read_text()
        Path(path).write_text("".join(f"# {c}\n" for c in comments) + text)


def write_tomograms_star(path, rows: list[dict]) -> None:
    """A RELION 5 tomogram set (``data_global``): name, bin-1 size in tilt-series pixels, tilt-series pixel size,
    binning and optics of each tomogram."""
    import starfile

    df = pd.DataFrame({
        "rlnTomoName": [r["name"] for r in rows],
        "rlnVoltage": [float(r["voltage"]) for r in rows],
        "rlnSphericalAberration": [float(r["cs"]) for r in rows],
        "rlnAmplitudeContrast": [float(r["amplitude_contrast"]) for r in rows],
        "rlnTomoTiltSeriesPixelSize": [float(r["pixel_size"]) for r in rows],
        "rlnTomoHand": [-1.0 for _ in rows],
        "rlnTomoTomogramBinning": [float(r["binning"]) for r in rows],
        "rlnTomoSizeX": [int(r["size"][0]) for r in rows],
        "rlnTomoSizeY": [int(r["size"][1]) for r in rows],
        "rlnTomoSizeZ": [int(r["size"][2]) for r in rows]})
    starfile.write({"global": df}, os.fspath(path), overwrite=True)
