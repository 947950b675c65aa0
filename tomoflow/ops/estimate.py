"""Estimates from the store's data: the tilt range of a tomogram or a particle set, the SNR of a particle set."""

from __future__ import annotations

import numpy as np

from ..errors import StoreError
from ..kernels.estimate import estimate_tilt_range, snr_from_pairs, tomogram_blocks_for_wedge
from ..store import ParticleSet, Store, open_level


def estimate_wedge(store: Store, *, tomogram: str | None = None, set_name: str | None = None, level: int = 0,
                   max_particles: int = 200) -> dict:
    """Tilt range (degrees, tilt axis y) from random blocks of ``tomogram`` or the first ``max_particles``
    subtomograms of ``set_name``."""
    if tomogram:
        store.require("tomograms", tomogram)
        lo, hi = estimate_tilt_range(tomogram_blocks_for_wedge(open_level(store, tomogram, level)))
        what = f"tomogram '{tomogram}'"
    else:
        ps = ParticleSet(store, set_name)
        n = min(ps.n, max_particles)
        if n < 1 or ps.box_size is None:
            raise StoreError(str(store.path), f"particle set '{set_name}' holds no subtomograms to estimate from")
        lo, hi = estimate_tilt_range(ps.read_volumes(slice(0, n)).astype(np.float64))
        what = f"{n} subtomograms of '{set_name}'"
    return {"tilt_min": lo, "tilt_max": hi, "from": what}


def estimate_snr(store: Store, set_name: str, *, cls: str | None = None, pairs: int = 100, seed: int = 0) -> dict:
    """SNR (Frank & Al-Ali) from random pairs of the aligned subtomograms of ``set_name`` (of true class ``cls``)."""
    ps = ParticleSet(store, set_name)
    idx = list(range(ps.n))
    if cls is not None:
        if cls not in ps.class_names:
            raise StoreError(str(store.path), f"particle set '{set_name}' has no class '{cls}' "
                                              f"(have: {ps.class_names})")
        true = ps.table(["true_class"]).true_class.values
        idx = [i for i in idx if true[i] == ps.class_names.index(cls)]
    if ps.box_size is None:
        raise StoreError(str(store.path), f"particle set '{set_name}' holds no subtomograms (only a table)")
    if len(idx) < 2:
        raise StoreError(str(store.path), f"particle set '{set_name}' has {len(idx)} subtomograms"
                                          f"{f' of class {cls}' if cls else ''}; the SNR needs at least 2")
    r = snr_from_pairs(ps.volumes.get_orthogonal_selection((idx,)), pairs, seed)
    return {**r, "particles": len(idx)}
