"""Particle sets to and from RELION and Warp STAR files (the store side of :mod:`tomoflow.io.star`)."""

from __future__ import annotations

import json

import numpy as np

from ..errors import InputError
from ..io import star
from .core import Store
from .particles import ParticleSet, create_particle_set

FORMATS = ("relion5", "relion4", "warp")


def _store_geometry(store: Store, given: dict | None = None):
    given = given or {}

    def geometry_of(name):
        if store.has("tomograms", name):
            a = store.attrs("tomograms", name)
            geo = {"shape": list(a["shape"]), "voxel_size": float(a["voxel_size"])}
            extra = given.get(name) or {}
            for k in ("tilt_series_pixel_size", "binning", "microscope"):
                if a.get(k) is not None:
                    geo[k] = a[k]
                elif extra.get(k) is not None:  # what a tomograms.star said about it
                    geo[k] = extra[k]
            return geo
        if name in given:
            return given[name]
        for other in store.names("particles"):  # a set that recorded this tomogram's geometry
            geo = store.attrs("particles", other).get("tomograms", {}).get(name)
            if geo is not None:
                return geo
        return None

    return geometry_of


def _check_against_store(store: Store, given: dict, path) -> None:
    """A tomograms.star and the store must describe the same volume: RELION's bin-1 extent in Å against the stored
    tomogram's, to within one stored voxel (else positions would land elsewhere)."""
    for name, geo in given.items():
        if not store.has("tomograms", name):
            continue
        a = store.attrs("tomograms", name)
        ours = np.asarray(a["shape"], float) * float(a["voxel_size"])
        theirs = np.asarray(geo["shape"], float) * float(geo["voxel_size"])
        if np.any(np.abs(ours - theirs) > float(a["voxel_size"]) * 1.001):
            z, y, x = theirs
            raise InputError(path, f"tomogram '{name}' is {x:.1f} x {y:.1f} x {z:.1f} Å there but "
                                   f"{ours[2]:.1f} x {ours[1]:.1f} x {ours[0]:.1f} Å in the store")


def _check_pixel_size(pixel_size) -> None:
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise InputError("--pixel-size", f"must be a positive number of Å, got {pixel_size}")


def import_star(store: Store, path, set_name: str, *, pixel_size: float | None = None, tomogram: str | None = None,
                tomogram_size=None, voxel_size: float | None = None, tomograms_star=None, chunk: int = 256,
                overwrite: bool = False) -> ParticleSet:
    """Read a RELION 3/4/5, Warp/M or pytom particle STAR file into a new (table-only) particle set.

    The geometry of each tomogram (needed for RELION 5's centred coordinates) comes from the store, else from
    ``tomograms_star`` (RELION 5's tomogram set: per-tomogram size, tilt-series pixel size, binning, optics), else
    from ``tomogram_size`` (x, y, z voxels) with ``voxel_size``. Everything is validated before the store is
    touched.
    """
    _check_pixel_size(pixel_size)
    particles, optics, others = star.read_particles_star(path)
    given = {}
    if tomograms_star is not None:
        given = star.read_tomograms_star(tomograms_star)
        _check_against_store(store, given, tomograms_star)
    if tomogram_size is not None:
        if voxel_size is None or not voxel_size > 0:
            raise InputError(str(path), "--tomogram-size needs a positive --voxel-size")
        x, y, z = (int(v) for v in tomogram_size)
        names, _ = star._tomogram_names(particles, tomogram, str(path))
        for t in dict.fromkeys(names):
            given.setdefault(t, {"shape": [z, y, x], "voxel_size": float(voxel_size)})
    geometry_of = _store_geometry(store, given)
    cols, geometry, found = star.star_to_columns(particles, geometry_of, path=str(path), pixel_size=pixel_size,
                                                 tomogram=tomogram, optics=optics)
    _inherit_wedges(store, cols)
    attrs = {"source": str(path), "star_columns": [str(c) for c in particles.columns],
             "star_optics": None if optics is None else json.loads(optics.to_json(orient="records")),
             "star_other_blocks": _blocks_to_json(others), "star_tomogram_label": found["star_tomogram_label"],
             **({"classes_from": found["classes_from"]} if "classes_from" in found else {})}
    return create_particle_set(store, set_name, cols, box_size=None, chunk=chunk, voxel_size=voxel_size,
                               class_names=found.get("class_names", ()), tomograms=geometry, attrs=attrs,
                               overwrite=overwrite)
def _inherit_wedges(store: Store, cols: dict) -> None:
    """Particles without a missing wedge in the file take their tomogram's (tilt range and axis), when the store
    holds that tomogram and knows it: imported particles never lose the wedge their tomogram records."""
    from .tomograms import tomogram_info

    names = np.asarray(cols.get("tomogram", []), dtype=object)
    n = len(names)
    if not n:
        return
    lo = np.asarray(cols.get("tilt_min", np.full(n, np.nan)), np.float64).copy()
    hi = np.asarray(cols.get("tilt_max", np.full(n, np.nan)), np.float64).copy()
    axis = np.asarray(cols.get("tilt_axis", np.zeros(n)), np.float64).copy()
    for t in set(names.tolist()):
        if not (t and store.has("tomograms", t)):
            continue
        info = tomogram_info(store, t)
        sel = (names == t) & ~(np.isfinite(lo) & np.isfinite(hi))
        if info.tilt_range is not None and sel.any():
            lo[sel], hi[sel], axis[sel] = info.tilt_range[0], info.tilt_range[1], info.tilt_axis
    cols["tilt_min"], cols["tilt_max"], cols["tilt_axis"] = lo, hi, axis


def _tomogram_optics(geo: dict | None, set_microscope: dict | None) -> tuple[dict, list[str]]:
    """The RELION optics of one tomogram from what the store knows, and what had to be assumed (for the file's
    comments): the tilt-series pixel size and binning recorded with the tomogram (import, tomograms.star), else the
    voxel size with binning 1; the microscope of the tomogram or the set, else RELION's defaults."""
    assumed = []
    geo = geo or {}
    vs = float(geo.get("voxel_size", 1.0))
    ts = geo.get("tilt_series_pixel_size")
    binning = geo.get("binning")
    if ts is None:
        ts, binning = vs, 1.0
        assumed.append("tilt-series pixel size unknown: written as the tomogram voxel size (binning 1)")
    elif binning is None:
        binning = vs / float(ts)
    mic = _microscope(geo.get("microscope")) or _microscope(set_microscope)
    if mic is None:
        mic = dict(star.RELION_DEFAULT_OPTICS)
        assumed.append("microscope unknown: RELION's defaults written (300 kV, Cs 2.7 mm, amplitude contrast 0.1)")
    return {"pixel_size": float(ts), "binning": float(binning or 1.0), **mic}, assumed


def _microscope(m: dict | None) -> dict | None:
    """voltage/cs/amplitude_contrast from either spelling tomoflow records (a Microscope's fields or RELION's)."""
    if not m:
        return None
    try:
        return {"voltage": float(m.get("voltage", m.get("voltage_kv"))), "cs": float(m.get("cs", m.get("cs_mm"))),
                "amplitude_contrast": float(m["amplitude_contrast"])}
    except (TypeError, KeyError, ValueError):
        return None


def export_star(store: Store, set_name: str, path, *, pixel_coords: bool = False, pixel_size: float | None = None,
                tomoflow_columns: bool = False, fmt: str = "relion5", tomograms_star=None, rows=None,
                columns: dict | None = None) -> int:
    """Write a particle set (its ``rows``, a boolean mask, when given; with ``columns`` replacing table columns
    for those rows) as a particle STAR file; returns the number of particles.

    ``fmt``: ``relion5`` (centred Å, ``data_general``/``data_optics``), ``relion4`` (the same with pixel
    coordinates, as ``pixel_coords``), ``warp`` (Warp/M: one ``data_`` block, pixel coordinates from the centre of
    voxel 0, ``rlnMicrographName`` = ``<tomogram>.tomostar``). ``tomograms_star`` also writes RELION 5's tomogram
    set for the tomograms used."""
    import pandas as pd

    _check_pixel_size(pixel_size)
    if fmt not in FORMATS:
        raise InputError("--format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    pixel_coords = pixel_coords or fmt == "relion4"
    ps = ParticleSet(store, set_name)
    table = ps.table_frame()
    if rows is not None:
        table = table[np.asarray(rows, bool)].reset_index(drop=True)
    for k, v in (columns or {}).items():
        table[k] = np.asarray(v)
    geometry_of = _store_geometry(store, ps.info.get("tomograms"))
    tomos = list(dict.fromkeys(table["tomogram"].astype(str)))
    comments, groups, group_of = [], [], {}
    per_tomogram = {}
    for t in tomos:
        optics, assumed = _tomogram_optics(geometry_of(t), ps.info.get("microscope"))
        per_tomogram[t] = optics
        comments += [f"tomogram {t}: {a}" for a in assumed]
        key = tuple(optics[k] for k in ("pixel_size", "voltage", "cs", "amplitude_contrast"))
        if key not in group_of:
            group_of[key] = len(groups) + 1
            groups.append(optics)
        per_tomogram[t]["group"] = group_of[key]
    optics_group = [per_tomogram[t]["group"] for t in table["tomogram"].astype(str)]
    if pixel_size is None and fmt != "warp":  # RELION 4 counts pixels of the (unbinned) tilt series
        pixel_size = {t: per_tomogram[t]["pixel_size"] for t in tomos}
    block = star.columns_to_star(table, geometry_of, pixel_size=pixel_size, pixel_coords=pixel_coords,
                                 column_order=ps.info.get("star_columns"), tomoflow_columns=tomoflow_columns,
                                 class_names=ps.class_names if ps.info.get("classes_from") == "rlnClassNumber"
                                 else None, optics_group=optics_group, warp=fmt == "warp")
    if fmt == "warp":
        star.write_particles_star(path, block, general=False,
                                  comments=[f"Warp/M particles written by tomoflow from set '{set_name}'"])
        return int(len(block))
    imported = ps.info.get("star_optics")
    if imported:  # the file's own optics, as it came
        optics_df, comments = pd.DataFrame.from_records(imported), []
    else:
        optics_df = star.optics_block(groups)
    others = _blocks_from_json(ps.info.get("star_other_blocks") or {})
    star.write_particles_star(path, block, optics_df, others, comments=comments)
    if tomograms_star is not None:
        out = []
        for t in tomos:
            geo, o = geometry_of(t), per_tomogram[t]
            if geo is None:
                raise InputError(t, "tomogram geometry unknown: cannot write its tomograms.star entry")
            extent = np.asarray(geo["shape"][::-1], float) * float(geo["voxel_size"]) / o["pixel_size"]
            out.append({"name": t, "size": np.rint(extent).astype(int), **o})
        star.write_tomograms_star(tomograms_star, out)
    return int(len(block))


def _blocks_to_json(blocks: dict) -> dict:
    """Other STAR blocks (e.g. data_general) as JSON: pairs as a dict, loops as records."""
    import pandas as pd

    out = {}
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            out[name] = {"loop": json.loads(block.to_json(orient="records"))}
        else:
            out[name] = {"pairs": json.loads(json.dumps(dict(block), default=_plain))}
    return out


def _blocks_from_json(blocks: dict) -> dict:
    import pandas as pd

    return {name: pd.DataFrame.from_records(b["loop"]) if "loop" in b else b["pairs"] for name, b in blocks.items()}


def _plain(v):
    return v.item() if isinstance(v, np.generic) else str(v)
