"""Averaging kernels (seed 000 section 3.3): wedge-weighted Fourier sums of aligned subtomograms, arrays in.

A particle aligned to a reference (rotation A, shift t: ``particle = rotate_volume(reference, A, t)``) is
brought back to the reference frame, and its spectrum F_i and wedge W_i (rotated with it) are added to
sums sum_i F_i W_i and sum_i W_i; the average is F = sum F_i W_i / sum W_i where sum W_i >= 1/2 (0
elsewhere), so the missing wedges fill each other in. :func:`classify_chunk` does one chunk of one
iteration of reference-free classification; :mod:`tomoflow.ops.average` runs it over a particle set.
"""

from __future__ import annotations

import numpy as np

from .align import Reference, align, align_batch
from .fourier import centred_to_rfft, fourier_shift, rfft_radius, spectrum
from .geometry import relion_angles, relion_matrix, rotate_volume
from .wedge import particle_wedge


def to_reference_frame(particle: np.ndarray, a: np.ndarray, shift_xyz) -> np.ndarray:
    """Undo ``particle = rotate_volume(reference, a, shift_xyz)``: the (sub-voxel) shift by a Fourier phase ramp,
    exactly, then the rotation (trilinear), so a fractional shift is not blurred by a second interpolation."""
    return rotate_volume(fourier_shift(particle, -np.asarray(shift_xyz, float)), a.T, order=1)


def register_map(fixed: np.ndarray, fixed_obs: np.ndarray, moving: np.ndarray, moving_obs: np.ndarray, params):
    """Bring the map ``moving`` into ``fixed``'s frame: (moved map, its observed Fourier mask (centred), A, shift,
    score) with ``moving ~ rotate_volume(fixed, A, shift)``.

    Two half-set maps refined apart from a nearly featureless common start can settle in different orientations of
    the same structure; their FSC then measures the misfit, not the resolution. A rigid fit (6 parameters) of one
    half map to the other carries no noise from one half into the other, so the halves stay independent."""
    a, t, s = align(moving, moving_obs, Reference(fixed, fixed_obs > 0.5, params))
    moved = to_reference_frame(moving, a, t)
    moved_obs = rotate_volume(np.asarray(moving_obs, np.float64), a.T, order=1)  # the mask turns with the map
    return moved.astype(np.float32), moved_obs.astype(np.float32), a, np.asarray(t, float), s


def compose_poses(pose: np.ndarray, a: np.ndarray, shift_xyz) -> np.ndarray:
    """Poses (rot, tilt, psi, shift x, y, z; rows) relative to a map M1 = rotate_volume(M0, a, shift), re-expressed
    relative to M0: particle = rotate(rotate(M0, a, t), P, s) = rotate(M0, P a, s + P t)."""
    p = relion_matrix(pose[:, 0], pose[:, 1], pose[:, 2])
    out = np.empty_like(pose, dtype=np.float64)
    out[:, :3] = relion_angles(p @ a)
    out[:, 3:] = pose[:, 3:] + p @ np.asarray(shift_xyz, float)
    return out


def accumulate(sums: np.ndarray, particle: np.ndarray, wedge_centred: np.ndarray, a: np.ndarray, shift_xyz) -> None:
    """Add one particle's wedge-weighted spectrum and weight, in the reference frame, to ``sums`` (3, n, n, n//2+1)."""
    f = spectrum(to_reference_frame(particle, a, shift_xyz))
    w = centred_to_rfft(np.clip(rotate_volume(wedge_centred.astype(np.float32), a.T, order=1), 0, 1))
    sums[0] += (f * w).real
    sums[1] += (f * w).imag
    sums[2] += w


def average_from_sums(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(average map, observed region in centred layout) from summed spectra and weights."""
    n = sums.shape[1]
    w = sums[2]
    ok = w >= 0.5
    f = np.where(ok, (sums[0] + 1j * sums[1]) / np.maximum(w, 1e-12), 0)
    vol = np.fft.fftshift(np.fft.irfftn(f, s=(n,) * 3, axes=(0, 1, 2)))
    obs_half = ok
    full = np.zeros((n,) * 3, bool)  # back to the full centred layout via Hermitian symmetry
    full[..., : n // 2 + 1] = obs_half
    neg = (-np.arange(n)) % n
    full[..., n // 2 + 1:] = obs_half[neg][:, neg][..., (-np.arange(n // 2 + 1, n)) % n]
    return vol.astype(np.float32), np.fft.fftshift(full)


def lowpass(vol: np.ndarray, cutoff: float) -> np.ndarray:
    """``vol`` with the Fourier components at |k| >= ``cutoff`` (cycles/voxel) removed."""
    n = vol.shape
    f = np.fft.rfftn(vol) * (rfft_radius(n[0]) < cutoff)
    return np.fft.irfftn(f, s=n).astype(np.float32)


def classify_chunk(vols: np.ndarray, rows: dict, clusters: list, classes: int, refs, *, seed: int, start: int,
                   from_poses: bool = False, device=None):
    """One iteration on one chunk of particles (global indices ``start`` ...): every member of each of
    ``clusters`` (-1: every particle) is aligned to each class reference of its cluster and its own half-set
    (``refs[c][h][k]``, h = global index % 2, prepared :class:`~tomoflow.kernels.align.Reference`: the halves are
    refined apart, gold-standard) and put in the best-scoring class; without ``refs``
    (iteration 0) it gets a random class (seeded by ``seed`` and its index) and the identity pose, or with
    ``from_poses`` the pose in ``rows`` (rot, tilt, psi: poses found by an earlier method or given by the user).
    The coarse search of each batch runs on ``device`` (None: numpy; or a torch device, e.g. CUDA).

    Returns (sums (clusters, classes, 2 half-sets by index parity, 3, n, n, n//2+1), counts (clusters,
    classes), class (-1 for non-members), pose (rot, tilt, psi, shift x, y, z), score (NaN where not aligned))."""
    n_rows = len(rows["cluster"])
    n = vols.shape[1] if len(vols) else 0
    sums = np.zeros((len(clusters), classes, 2, 3, n, n, n // 2 + 1))
    cls = np.full(n_rows, -1, np.int32)
    pose = np.zeros((n_rows, 6), np.float32)
    score = np.full(n_rows, np.nan, np.float32)
    counts = np.zeros((len(clusters), classes))
    members = [np.flatnonzero(rows["cluster"] == c) if c >= 0 else np.arange(n_rows) for c in clusters]
    wedges: dict = {}

    def wedge(j):
        key = (float(rows["tilt_min"][j]), float(rows["tilt_max"][j]), float(rows["tilt_axis"][j]))
        if key not in wedges:
            wedges[key] = particle_wedge(n, *key)
        return wedges[key]

    for ci, idx in enumerate(members):
        found = {}  # j -> (a, t, s, class)
        if refs is not None:
            for h in (0, 1):  # each half-set's members in one batch per class reference of that half
                part = [j for j in idx if (start + j) % 2 == h]
                if not part:
                    continue
                for kk, ref in enumerate(refs[ci][h]):
                    for j, (a, t, s) in zip(part, align_batch(vols[part], [wedge(j) for j in part], ref, device)):
                        if j not in found or s > found[j][2]:
                            found[j] = (a, t, s, kk)
        for j in idx:
            g = start + j
            if refs is None:
                rng = np.random.default_rng(np.random.SeedSequence([seed, g, 0xA7E]))
                a = relion_matrix(rows["rot"][j], rows["tilt"][j], rows["psi"][j]) if from_poses else np.eye(3)
                k, t, s = int(rng.integers(classes)), np.zeros(3), np.nan
            else:
                a, t, s, k = found[j]
            accumulate(sums[ci, k, g % 2], vols[j], wedge(j), a, t)
            cls[j], score[j] = k, s
            counts[ci, k] += 1
            pose[j] = np.concatenate([relion_angles(a).ravel(), t])
    return sums, counts, cls, pose, score
