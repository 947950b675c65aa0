"""Pure array kernels: numpy/scipy (torch optional) on arrays, one chunk or block at a time.

Nothing here imports the store, the engine, dask or distributed (a test enforces it), so every kernel runs
on plain arrays in a notebook and is mapped over a store by :mod:`tomoflow.ops`. One home per idea:

* :mod:`.geometry` conventions, rotations of volumes; :mod:`.rotations` rotation sampling;
  :mod:`.wedge` the missing wedge; :mod:`.fourier` Fourier layouts, binning, weights;
* :mod:`.filters` tomogram filters; :mod:`.peaks` block maxima + NMS (both pickers);
  :mod:`.picking` DoG; :mod:`.template_matching` wedge-aware correlation;
* :mod:`.extraction`, :mod:`.evaluate`, :mod:`.estimate`;
* :mod:`.align` constrained-correlation alignment; :mod:`.averaging`; :mod:`.fsc`;
* :mod:`.kmeans` (arrays-in :func:`~.kmeans.kmeans`); :mod:`.rif`; :mod:`.pose_norm`.

The most used functions are importable from here directly (lazily), e.g. ``tomoflow.kernels.rotate_volume``;
where a function shares its module's name, import it from the module: ``from tomoflow.kernels.align import
align``, ``...kmeans import kmeans``, ``...fsc import fsc``.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "box_center": "geometry", "relion_matrix": "geometry", "relion_angles": "geometry", "rotate_volume": "geometry",
    "random_rotations": "rotations", "uniform_rotations": "rotations", "rotation_angle": "rotations",
    "wedge_mask": "wedge", "particle_wedge": "wedge",
    "gaussian": "filters", "dog": "filters", "perona_malik": "filters",
    "block_peaks": "picking", "select_peaks": "peaks", "non_maximum_suppression": "peaks",
    "match_block": "template_matching", "prepared_templates": "template_matching",
    "box_origins": "extraction", "cut_box": "extraction",
    "evaluate_picks": "evaluate", "snr_from_pairs": "estimate", "estimate_tilt_range": "estimate",
    "Reference": "align",
    "accumulate": "averaging", "average_from_sums": "averaging",
    "resolution": "fsc", "structural_discrepancy": "fsc",
    "rif_features": "rif", "pose_normalize": "pose_norm",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'tomoflow.kernels' has no attribute {name!r}")
