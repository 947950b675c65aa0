"""``extract``: subtomograms of box D around picked positions into a new particle set, one task per chunk.

Particles whose box crosses the tomogram edge are either dropped or padded with the mean of the part
inside (``edge``); the geometry is :mod:`tomoflow.kernels.extraction`. The set is built in staging and moved
into place when complete (atomic and resumable).
"""

from __future__ import annotations

import functools

import numpy as np

from ..engine import run_chunks
from ..kernels.extraction import box_origins, cut_box, inside
from ..store import ParticleSet, Store, open_level, tomogram_info
from ..store.particles import build_particle_set, group_path
from ..errors import InputError
from ..store.stages import fingerprint
from .common import stage_params_changed


def _extract_task(store_path: str, chunk: int, *, out: str, level: int, staged_at: str,
                  flip_bright: bool = False) -> None:
    store = Store.open(store_path)
    ps = ParticleSet(store, out, staged_at=staged_at)
    sl = ps.chunk_slice(chunk)
    t = ps.rows(sl, ["tomogram", "x", "y", "z"])
    tomos = t["tomogram"]
    xyz = np.stack([t["x"], t["y"], t["z"]], 1)
    vols = np.empty((len(tomos), ps.box_size, ps.box_size, ps.box_size), np.float32)
    for name in np.unique(tomos):
        sel = np.flatnonzero(tomos == name)
        volume = open_level(store, name, level)
        origins = box_origins(xyz[sel], tomogram_info(store, name).voxel_size, level, ps.box_size)
        sign = -1.0 if flip_bright and store.attrs("tomograms", name).get("contrast") == "bright" else 1.0
        for i, o in zip(sel, origins):
            vols[i] = sign * cut_box(volume, o, ps.box_size)
    ps.write_volumes(sl.start, vols)


def extract(store: Store, picks: str, out: str, box: int, *, level: int = 0, edge: str = "drop", chunk: int = 256,
            client=None, overwrite: bool = False, progress: bool | None = None, flip_bright: bool = False) -> dict:
    """Extract boxes around the particles of set ``picks`` into a new set ``out``.

    The new set is built in the store's staging area and moved into place only once every chunk is filled, so
    ``out`` never holds a partial result; an interrupted run (a kill, a full disk) resumes from its finished
    chunks when rerun with the same settings; a second writer of ``out`` fails while this one runs."""
    if edge not in ("drop", "pad"):
        raise ValueError(f"edge is 'drop' or 'pad', not {edge!r}")
    src = ParticleSet(store, picks)
    table = src.table_frame()
    for name in table.tomogram.unique():  # every tomogram a pick names must be in this store
        store.require("tomograms", str(name))
    keep = np.ones(len(table), bool)
    for name in table.tomogram.unique():
        info = tomogram_info(store, name)
        sel = (table.tomogram == name).to_numpy()
        shape = open_level(store, name, level).shape
        o = box_origins(table.loc[sel, ["x", "y", "z"]].to_numpy(), info.voxel_size, level, box)
        if edge == "drop":
            keep[np.flatnonzero(sel)[~inside(o, box, shape)]] = False
    table = table[keep].reset_index(drop=True)
    columns = {c: table[c].to_numpy() for c in table.columns}
    sizes = sorted({tomogram_info(store, t).voxel_size for t in table.tomogram.unique()})
    if sizes and sizes[-1] > sizes[0] * (1 + 1e-3):  # header rounding aside
        raise InputError(picks, f"its tomograms have different voxel sizes ({sizes[0]:g} to {sizes[-1]:g} Å): "
                                "extract them into separate sets")
    voxel = sizes[0] * 2**level if sizes else None
    tomos = {t: {k: store.attrs("tomograms", t).get(k) for k in ("created", "voxel_size", "contrast")}
             for t in sorted(table.tomogram.unique())}
    # everything the result depends on: a rerun resumes only the very same work
    work = {"picks": picks, "box": box, "level": level, "edge": edge, "chunk": chunk, "n": int(len(table)),
            **({"flip_bright": True} if flip_bright else {}), "tomograms": tomos,
            "rows": fingerprint({"t": table.to_json(), "classes": src.class_names})}
    key = fingerprint(work)
    stage = f"extract.{out}"
    with store.staged("particles", out, overwrite=overwrite, key=key) as g:
        fresh = "tomoflow" not in g.attrs or stage_params_changed(store, stage, {**work, "key": key})
        if fresh:
            for member in list(g.keys()):  # a build that failed half way (or another key's record): start clean
                del g[member]
            build_particle_set(g, columns, box_size=box, chunk=chunk, voxel_size=voxel, class_names=src.class_names,
                               tomograms=src.info.get("tomograms"), attrs={"extraction": {
                                   "from": picks, "level": level, "edge": edge, "flip_bright": flip_bright}})
        staged_at = str(group_path(g))
        ps = ParticleSet(store, out, staged_at=staged_at)
        run_chunks(store, stage, ps.n_chunks,
                   functools.partial(_extract_task, out=out, level=level, staged_at=staged_at,
                                     flip_bright=flip_bright),
                   params={**work, "key": key}, client=client, progress=progress, restart=fresh)
    return {"extracted": int(keep.sum()), "dropped_at_edge": int((~keep).sum()), "box": box}
