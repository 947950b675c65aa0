"""A napari reader (npe2 plugin, manifest ``tomoflow/napari.yaml``): drop a tomoflow store on napari and see it.

Each tomogram opens as a multiscale image in Å (z, y, x), each particle set with positions as a points layer in Å
(sized by its box, with its cluster and class as point properties, coloured by cluster when it has been clustered),
and each map (averages) as an image at its voxel size. Install with the ``napari`` extra; napari itself is not
imported here, so the reader can be used (and tested) without a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def get_reader(path):
    """The reader for ``path`` when it is a tomoflow store, else None (napari then asks the next plugin)."""
    if isinstance(path, (list, tuple)):
        path = path[0] if len(path) == 1 else None
    if path is None:
        return None
    try:
        from .store import Store

        Store.open(Path(path), mode="r")
    except Exception:  # not a store: another reader's file
        return None
    return read_store


def read_store(path) -> list[tuple]:
    """napari layer data tuples ``(data, kwargs, layer_type)`` of everything a person would look at in a store."""
    from .store import ParticleSet, Store, open_level, tomogram_info

    store = Store.open(Path(path), mode="r")
    layers = []
    for name in store.names("tomograms"):
        info = tomogram_info(store, name)
        levels = [open_level(store, name, k) for k in range(info.levels)]
        layers.append((levels, {"name": name, "scale": (info.voxel_size,) * 3, "multiscale": True,
                                "contrast_limits": _limits(levels[-1]), "metadata": {"tomoflow": "tomogram"}},
                       "image"))
    for name in store.names("particles"):
        ps = ParticleSet(store, name)
        t = ps.rows(slice(0, ps.n), ["x", "y", "z", "cluster", "true_class"])
        zyx = np.stack([t["z"], t["y"], t["x"]], axis=1)
        ok = np.isfinite(zyx).all(axis=1)
        if not ok.any():
            continue
        props = {"cluster": t["cluster"][ok], "class": t["true_class"][ok]}
        size = float((ps.box_size or 10) * (ps.voxel_size or 10.0))
        kw = {"name": name, "size": size, "properties": props, "metadata": {"tomoflow": "particles"}}
        if (props["cluster"] >= 0).any():
            kw["face_color"] = "cluster"
        layers.append((zyx[ok], kw, "points"))
    for name in store.names("maps"):
        data, vs, _ = store.read_map(name)
        layers.append((data, {"name": name, "scale": (vs,) * (data.ndim if data.ndim == 3 else 3),
                              "metadata": {"tomoflow": "map"}}, "image"))
    return layers


def _limits(array) -> tuple[float, float]:
    """Contrast limits from a small level (percentiles 1-99), so napari does not scan a large tomogram."""
    a = np.asarray(array[...], np.float32)
    lo, hi = np.percentile(a, [1, 99]) if a.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1)
