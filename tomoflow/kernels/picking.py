"""Difference-of-Gaussian particle picking on one tomogram block (seed 000, section 3.1.2).

The DoG response G(sigma) - G(K sigma) (negated for dark particles) is computed with the halo that
makes it exact; its local maxima and response sums come from :mod:`.peaks`, which also thresholds and
suppresses them over the whole tomogram.
"""

from __future__ import annotations

import numpy as np

from . import filters
from .peaks import block_peak_rows


def block_peaks(source, region, sigma: float, k: float, window: int, sign: float) -> np.ndarray:
    """Candidate peaks of block ``region`` of ``source`` (anything sliceable): rows (z, y, x, score); the
    last row holds (n, sum, sumsq, 0) of the core responses. ``sigma`` and ``window`` in voxels."""
    halo = filters.gaussian_radius(k * sigma) + window
    ext = filters.extend(region, halo, source.shape)
    resp = sign * filters.dog(np.asarray(source[ext]), sigma, k)
    return block_peak_rows(resp, ext, region, window, source.shape, positive=True)[0]
