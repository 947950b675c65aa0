"""Alignment-based classification with dimension reduction and an automatic cut-off (seed 002 section 3.3.2, after
Xu et al. 2012 [19]). Arrays in, numpy/scipy only.

Aligned particles (each brought to the common reference frame by its pose) are compared at half size (Fourier
binned: alignment-scale detail, a twentieth of the data). Their missing wedges (turned with them) differ, so for
the dimension reduction each particle's unobserved Fourier components are imputed by the set's wedge-weighted
average; PCA of the imputed, masked real-space volumes; Ward's hierarchical clustering of the PCA scores.

The cut-off (the number of classes) is chosen by a leave-one-out FSC score: for each cut, every particle is
compared with the average of the other members of its class, shell by shell over the components both observe
(its own data, never the imputed values), and the shell correlations summed; the fewest classes whose mean is within one standard error of
the best cut's win.
Merging two structures makes each average explain its members worse; splitting one structure makes each average
noisier (fewer members); so the score peaks at the number of structures present.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from .fourier import fourier_shift, centred_to_rfft, crop_centred, fourier_crop, half_weights, rfft_radius, spectrum
from .geometry import rotate_volume, sphere_mask


def half_size(n: int) -> int:
    return 2 * (n // 4)


def aligned_spectrum(vol, wedge_centred, a, shift_xyz, m: int):
    """(spectrum (m, m, m//2+1), observed mask) of a particle brought to the reference frame and binned to m.
    Cubic interpolation: trilinear damps the spectrum by an amount that depends on the rotation, and the cut-off
    score then rewarded grouping particles by orientation (measured: the ribosome of a 4-structure mixture split
    in two by beam direction)."""
    v = rotate_volume(fourier_shift(np.asarray(vol, np.float32), -np.asarray(shift_xyz, float)), a.T, order=3)
    f = spectrum(fourier_crop(np.asarray(v, np.float64), m).astype(np.float32))
    w = rotate_volume(np.asarray(wedge_centred, np.float32), a.T, order=1)
    r = rfft_radius(m)
    obs = (centred_to_rfft(crop_centred(w, m)) > 0.5) & (r > 0) & (r < 0.5)
    return f.astype(np.complex64), obs


def reduce(spectra: np.ndarray, observed: np.ndarray, components: int) -> np.ndarray:
    """(N, components) PCA scores of the particles with their unobserved components imputed by the set's
    wedge-weighted average, in real space inside the box's sphere."""
    m = spectra.shape[1]
    count = observed.sum(0)
    mean = np.where(count > 0, (spectra * observed).sum(0) / np.maximum(count, 1), 0)
    band = (rfft_radius(m) > 0) & (rfft_radius(m) < 0.5)
    filled = np.where(observed, spectra, mean[None]) * band
    vols = np.fft.irfftn(filled, s=(m,) * 3, axes=(1, 2, 3))
    x = vols[:, np.fft.ifftshift(sphere_mask(m))]
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    c = min(components, len(s))
    return u[:, :c] * s[:c]


def loo_score(spectra: np.ndarray, observed: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per particle: the summed shell correlations (an FSC over the components the particle and the
    leave-one-out average of its class both hold) between each particle and that average."""
    m = spectra.shape[1]
    shell = np.minimum(np.rint(rfft_radius(m) * m).astype(int), m // 2).ravel()
    hw = np.broadcast_to(half_weights(m), spectra.shape[1:]).ravel()
    nsh = m // 2 + 1
    out = np.zeros(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        f = spectra[idx].reshape(len(idx), -1)
        w = observed[idx].reshape(len(idx), -1)
        s, cnt = (f * w).sum(0), w.sum(0)
        for i in range(len(idx)):
            rest = cnt - w[i]
            ok = w[i] & (rest >= 1)  # others hold it too; a class of one has no average to compare with
            loo = np.where(ok, (s - f[i] * w[i]) / np.maximum(rest, 1), 0)
            num = np.bincount(shell, hw * ok * (f[i] * np.conj(loo)).real, nsh)
            p1 = np.bincount(shell, hw * ok * np.abs(f[i]) ** 2, nsh)
            p2 = np.bincount(shell, hw * ok * np.abs(loo) ** 2, nsh)
            out[idx[i]] = (num / np.sqrt(p1 * p2 + 1e-30))[1:].sum()
    return out


def choose_classes(spectra: np.ndarray, observed: np.ndarray, components: int, max_classes: int,
                   min_members: int, fixed: int | None = None):
    """(labels 0..K-1, K, {K: mean score}): Ward clustering of the PCA scores, cut at the fewest classes whose
    mean :func:`loo_score` is within one standard error (paired over particles) of the best cut's, K in
    1..``max_classes`` (the one-standard-error rule of cross-validation: a split must earn its keep; measured, the
    plain maximum split the ribosome of a 4-structure mixture in two by its wedges' orientations). Cuts leaving a
    class smaller than ``min_members`` are skipped. ``fixed``: cut at that K instead (for comparison)."""
    z = reduce(spectra, observed, components)
    tree = linkage(z, "ward")
    per, cuts = {}, {}
    for k in ([fixed] if fixed else range(1, min(max_classes, len(z)) + 1)):
        lab = fcluster(tree, k, "maxclust") - 1
        if k > 1 and (len(np.unique(lab)) < k or np.bincount(lab).min() < min_members):
            continue
        cuts[k], per[k] = lab, loo_score(spectra, observed, lab)
    top = max(per, key=lambda k: per[k].mean())
    for k in sorted(per):
        d = per[top] - per[k]
        if d.mean() <= d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else k == top:
            best = k
            break
    return cuts[best].astype(np.int32), best, {k: float(v.mean()) for k, v in per.items()}
