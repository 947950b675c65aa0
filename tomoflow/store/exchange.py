"""Particle sets to and from RELION STAR files (the store side of :mod:`tomoflow.io.star`)."""

from __future__ import annotations

import json

import numpy as np

from ..errors import InputError
from ..io import star
from .core import Store
from .particles import ParticleSet, create_particle_set


def _store_geometry(store: Store, given: dict | None = None):
    given = given or {}

    def geometry_of(name):
        if name in given:
            return given[name]
        if store.has("tomograms", name):
            a = store.attrs("tomograms", name)
            return {"shape": list(a["shape"]), "voxel_size": float(a["voxel_size"])}
        for other in store.names("particles"):  # a set that recorded this tomogram's geometry
            geo = store.attrs("particles", other).get("tomograms", {}).get(name)
            if geo is not None:
                return geo
        return None

    return geometry_of


def import_star(store: Store, path, set_name: str, *, pixel_size: float | None = None, tomogram: str | None = None,
                tomogram_size=None, voxel_size: float | None = None, chunk: int = 256, overwrite: bool = False
                ) -> ParticleSet:
    """Read a RELION particle STAR file into a new (table-only) particle set.

    ``tomogram_size`` (x, y, z voxels) with ``voxel_size`` gives the geometry of tomograms that
    are not in the store. Everything is validated before the store is touched.
    """
    particles, optics, others = star.read_particles_star(path)
    given = {}
    if tomogram_size is not None:
        if voxel_size is None or not voxel_size > 0:
            raise InputError(str(path), "--tomogram-size needs a positive --voxel-size")
        x, y, z = (int(v) for v in tomogram_size)
        names = particles["rlnTomoName"].astype(str).unique() if "rlnTomoName" in particles else [tomogram]
        given = {t: {"shape": [z, y, x], "voxel_size": float(voxel_size)} for t in names}
    geometry_of = _store_geometry(store, given)
    cols, geometry = star.star_to_columns(particles, geometry_of, path=str(path), pixel_size=pixel_size,
                                          tomogram=tomogram)
    _inherit_wedges(store, cols)
    attrs = {"source": str(path), "star_columns": [str(c) for c in particles.columns],
             "star_optics": None if optics is None else json.loads(optics.to_json(orient="records")),
             "star_other_blocks": _blocks_to_json(others)}
    return create_particle_set(store, set_name, cols, box_size=None, chunk=chunk, voxel_size=voxel_size,
                               tomograms=geometry, attrs=attrs, overwrite=overwrite)


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


def export_star(store: Store, set_name: str, path, *, pixel_coords: bool = False, pixel_size: float | None = None,
                tomoflow_columns: bool = False, rows=None, columns: dict | None = None) -> int:
    """Write a particle set (its ``rows``, a boolean mask, when given; with ``columns`` replacing table columns
    for those rows) as a RELION 5 particle STAR file; returns the number of particles."""
    import pandas as pd

    ps = ParticleSet(store, set_name)
    table = ps.table_frame()
    if rows is not None:
        table = table[np.asarray(rows, bool)].reset_index(drop=True)
    for k, v in (columns or {}).items():
        table[k] = np.asarray(v)
    geometry_of = _store_geometry(store, ps.info.get("tomograms"))
    block = star.columns_to_star(table, geometry_of, pixel_size=pixel_size, pixel_coords=pixel_coords,
                                 column_order=ps.info.get("star_columns"), tomoflow_columns=tomoflow_columns)
    optics = ps.info.get("star_optics")
    if optics:
        optics = pd.DataFrame.from_records(optics)
    else:
        tomos = table["tomogram"].unique()
        geo = geometry_of(tomos[0]) if len(tomos) else None
        vs = pixel_size or ps.voxel_size or (geo or {}).get("voxel_size") or 1.0
        optics = star.default_optics(vs, **ps.info.get("microscope", {}))
    star.write_particles_star(path, block, optics, _blocks_from_json(ps.info.get("star_other_blocks") or {}))
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
