"""What a store holds, read from metadata and chunk listings only (fast on any size of store)."""

from __future__ import annotations

import numpy as np

from .core import Store
from .particles import ParticleSet
from .stages import StageRecord


def summarize(store: Store) -> dict:
    """A JSON-able description: tomograms, particle sets, maps, curves and stage progress."""
    root = store.root.attrs.get("tomoflow", {})
    out = {"path": str(store.path), "layout": root.get("layout"), "created": root.get("created"),
           "tomoflow_version": root.get("version"), "tomograms": [], "particles": [], "maps": [], "curves": [],
           "stages": []}
    for name in store.names("tomograms"):
        a = store.attrs("tomograms", name)
        shape = a["shape"]
        out["tomograms"].append({
            "name": name, "shape_zyx": shape, "voxel_size": a["voxel_size"], "dtype": np.dtype(a["dtype"]).name,
            "levels": a["levels"], "chunk": a["chunk"], "tilt_range": a.get("tilt_range"),
            "nbytes": int(np.prod(shape)) * np.dtype(a["dtype"]).itemsize, "source": a.get("source")})
    for name in store.names("particles"):
        ps = ParticleSet(store, name)
        d = ps.box_size
        entry = {"name": name, "n": ps.n, "box_size": d, "dtype": ps.info["dtype"], "chunk": ps.chunk,
                 "n_chunks": ps.n_chunks, "voxel_size": ps.voxel_size, "classes": ps.class_names,
                 "arrays": ps.arrays()}
        if d is not None:
            entry["nbytes"] = ps.n * d**3 * np.dtype(ps.info["dtype"]).itemsize
            entry["volume_chunks_written"] = ps.volume_chunks_written()
        out["particles"].append(entry)
    for name in store.names("maps"):
        a = store.attrs("maps", name)
        out["maps"].append({"name": name, "shape": a.get("shape"), "voxel_size": a.get("voxel_size")})
    for name in store.names("curves"):
        out["curves"].append({"name": name, "columns": store.attrs("curves", name).get("columns")})
    for name in store.names("stages"):
        rec = StageRecord.open(store, name)
        out["stages"].append({"name": name, "n_chunks": rec.n_chunks, "done": rec.n_done()})
    return out


def _size(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000.0
    return ""


def format_summary(s: dict) -> str:
    lines = [f"store {s['path']} (layout {s['layout']}, written by tomoflow {s['tomoflow_version']})"]
    lines.append(f"tomograms: {len(s['tomograms'])}")
    for t in s["tomograms"]:
        z, y, x = t["shape_zyx"]
        tilt = "" if not t["tilt_range"] else f", tilt {t['tilt_range'][0]:g}..{t['tilt_range'][1]:g} deg"
        lines.append(f"  {t['name']}: {x} x {y} x {z} (x, y, z), {t['voxel_size']:.4g} A/voxel, {t['dtype']}, "
                     f"{t['levels']} levels, {_size(t['nbytes'])}{tilt}")
    lines.append(f"particle sets: {len(s['particles'])}")
    for p in s["particles"]:
        if p["box_size"]:
            vol = (f"box {p['box_size']}^3 {p['dtype']}, {_size(p['nbytes'])}, "
                   f"{p['volume_chunks_written']}/{p['n_chunks']} chunks of {p['chunk']} written")
        else:
            vol = "table only"
        extra = f", classes: {', '.join(p['classes'])}" if p["classes"] else ""
        arrays = f", arrays: {', '.join(p['arrays'])}" if p["arrays"] else ""
        lines.append(f"  {p['name']}: {p['n']} particles, {vol}{extra}{arrays}")
    for kind in ("maps", "curves"):
        if s[kind]:
            lines.append(f"{kind}: " + ", ".join(m["name"] for m in s[kind]))
    lines.append(f"stages: {len(s['stages'])}")
    for st in s["stages"]:
        state = "finished" if st["done"] == st["n_chunks"] else "incomplete"
        lines.append(f"  {st['name']}: {st['done']}/{st['n_chunks']} chunks done ({state})")
    return "\n".join(lines)
