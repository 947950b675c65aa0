"""Subtomogram alignment with missing-wedge constrained correlation (seed 000 section 3.3, after Xu et al. 2012).

The score of a particle p against a reference g rotated by A and shifted by t counts only the Fourier
components observed in both (the particle's wedge W_p and the reference's observed region W_g, rotated
with it), with the mean (zero frequency) removed:

    score(A, t) = sum_k P M conj(G_A) e^{2 pi i k t} / sqrt(sum_k |P M|^2 * sum_k |G_A M|^2),  M = W_p W_g,A

so it is a correlation coefficient in [-1, 1]. Translations come from one inverse FFT per rotation
(limited to ``max_shift`` voxels). Rotations: a coarse uniform grid (super-Fibonacci, ``coarse_step``
degrees) on 2x Fourier-binned volumes, with the rotated reference spectra prepared once per reference
and reused for every particle, then a local pattern search at full size around the best coarse
candidates (steps halving down to ``fine_step``).

Conventions: particle = reference actively rotated by A about the box centre ``n // 2`` then shifted by
``shift_xyz`` voxels, i.e. ``geometry.rotate_volume(reference, A, shift_xyz)``; A as RELION's
``relion_matrix(rot, tilt, psi)``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy.spatial.transform import Rotation

from ..params import AlignParams
from .fourier import centred_to_rfft, crop_centred, fourier_crop, half_weights, rfft_radius, spectrum
from .geometry import rotate_volume
from .rotations import rotation_angle, uniform_rotations


def _shift_index(n: int, max_shift: float):
    """Flat indices of the (wrapped) translations within ``max_shift`` voxels, and their (z, y, x) shifts."""
    g = np.fft.fftfreq(n, 1.0 / n)
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    ok = (z**2 + y**2 + x**2) <= max_shift**2 + 1e-9
    idx = np.flatnonzero(ok.ravel())
    return idx, np.stack([z.ravel()[idx], y.ravel()[idx], x.ravel()[idx]], 1)


def _lowpass_mask(n: int, cutoff: float | None, scale: float = 1.0) -> np.ndarray:
    r = rfft_radius(n) * scale
    m = np.ones(r.shape, bool) if cutoff is None else r < cutoff
    m[0, 0, 0] = False  # the mean never counts
    return m


class _Level:
    """The reference at one size (full, or 2x Fourier-binned) and how to score a rotation against it."""

    def __init__(self, volume, observed, n_full: int, params: AlignParams):
        self.volume = volume
        self.observed = observed
        n = self.n = volume.shape[0]
        self.keep = _lowpass_mask(n, params.lowpass, scale=n / n_full)
        self.hw = half_weights(n)
        self.shifts = _shift_index(n, params.max_shift * n / n_full)

    def rotated(self, a: np.ndarray):
        """(masked spectrum, observed mask or None) of the reference rotated by ``a``."""
        f = spectrum(rotate_volume(self.volume, a, order=1)) * self.keep
        if self.observed is None:
            return f, None
        o = centred_to_rfft(rotate_volume(self.observed, a, order=1)) > 0.5
        return f * o, o

    def particle(self, vol: np.ndarray, wedge_centred: np.ndarray):
        """(masked particle spectrum, its weighted power, its wedge in rfft layout) at this size."""
        n = self.n
        small = vol if vol.shape[0] == n else fourier_crop(vol, n)
        w = centred_to_rfft(crop_centred(wedge_centred, n)).astype(bool)
        pf = spectrum(small) * self.keep * w
        return pf.astype(np.complex64), (np.abs(pf) ** 2 * self.hw).astype(np.float32), w

    def score(self, p, a: np.ndarray):
        pf, p_pow, wedge = p
        g, o = self.rotated(a)
        m = wedge if o is None else wedge & o
        num = sfft.irfftn(pf * np.conj(g) if o is None else pf * m * np.conj(g), s=(self.n,) * 3, workers=1)
        den = np.sqrt(p_pow[m].sum() * ((np.abs(g) ** 2) * self.hw)[m].sum()) + 1e-30
        vol = num * (self.n**3 / den)
        s, t = _best_shift(vol.ravel(), self.shifts)
        return float(s), t + _subvoxel(vol, t)


class Reference:
    """A reference prepared for aligning many particles: its rotated spectra on the coarse grid at half size."""

    def __init__(self, volume: np.ndarray, observed: np.ndarray | None = None, params: AlignParams = AlignParams()):
        self.params = params
        self.volume = np.asarray(volume, np.float32)
        n = self.n = self.volume.shape[0]
        self.observed = None if observed is None else np.asarray(observed, np.float32)  # centred layout
        m = self.m = 2 * (n // 4)
        self.rotations = uniform_rotations(params.coarse_step)
        small = fourier_crop(self.volume.astype(np.float64), m).astype(np.float32)
        small_obs = None if observed is None else crop_centred(self.observed, m)
        self.full = _Level(self.volume, self.observed, n, params)
        self.small = _Level(small, small_obs, n, params)
        g = np.empty((len(self.rotations), m, m, m // 2 + 1), np.complex64)
        obs = None if observed is None else np.empty(g.shape, np.float32)
        for i, a in enumerate(self.rotations):
            g[i], o = self.small.rotated(a)
            if obs is not None:
                obs[i] = o
        self.g = g
        self.g_power = (np.abs(g) ** 2 * self.small.hw).reshape(len(g), -1)
        self.obs = None if obs is None else obs.reshape(len(g), -1)
        self.on_device: dict = {}  # device -> the rotated spectra there (batched coarse search)


def _best_shift(scores_flat: np.ndarray, shifts):
    idx, zyx = shifts
    s = scores_flat[..., idx]
    j = np.argmax(s, axis=-1)
    return np.take_along_axis(s, j[..., None], -1)[..., 0], zyx[j]


def _subvoxel(vol: np.ndarray, zyx) -> np.ndarray:
    """Sub-voxel offset (z, y, x) of the correlation peak at whole-voxel shift ``zyx``: a parabola through the
    peak and its two neighbours along each axis (wrapped), its vertex clipped to half a voxel. The peak of a
    band-limited correlation is smooth, so three samples place it to about a tenth of a voxel."""
    n = vol.shape[0]
    i = np.asarray(np.rint(zyx), int) % n
    out = np.zeros(3)
    for ax in range(3):
        lo, hi = i.copy(), i.copy()
        lo[ax], hi[ax] = (i[ax] - 1) % n, (i[ax] + 1) % n
        c_lo, c0, c_hi = vol[tuple(lo)], vol[tuple(i)], vol[tuple(hi)]
        curv = c_lo - 2 * c0 + c_hi
        if curv < 0:  # a maximum: the vertex lies between the neighbours
            out[ax] = np.clip(0.5 * (c_lo - c_hi) / curv, -0.5, 0.5)
    return out


class _Numpy:
    """The few array operations of the batched coarse search, on numpy (CPU)."""

    def asarray(self, a):
        return np.asarray(a)

    def irfftn(self, x, m: int):
        return sfft.irfftn(x, s=(m,) * 3, axes=(-3, -2, -1), workers=1)

    def numpy(self, x):
        return np.asarray(x)

    conj = staticmethod(np.conj)
    sqrt = staticmethod(np.sqrt)


class _Torch:
    """The same operations on torch (CPU or CUDA); imported only when asked for."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device

    def asarray(self, a):
        return self.torch.as_tensor(np.ascontiguousarray(a), device=self.device)

    def irfftn(self, x, m: int):
        return self.torch.fft.irfftn(x, s=(m,) * 3, dim=(-3, -2, -1))

    def numpy(self, x):
        return x.cpu().numpy()

    def conj(self, x):
        return self.torch.conj(x)

    def sqrt(self, x):
        return self.torch.sqrt(x)


def _ops(device):
    return _Numpy() if device is None else _Torch(device)


def coarse_scores(ref: Reference, prepared: list, device=None, batch: int = 2048) -> np.ndarray:
    """(B, R) best-shift scores of B particles (each ``ref.small.particle(...)``) against the R coarse rotations
    of ``ref``, as a few large array operations: B x r correlations per inverse FFT (r rotations at a time,
    B * r <= ``batch``), normalised by the per-pair masked powers (one matrix product each). ``device``: None for
    numpy, or a torch device (the rotated spectra are moved there once per reference)."""
    xp = _ops(device)
    m, n_rot = ref.m, len(ref.g)
    pw = np.stack([p[0] for p in prepared])
    ppow = np.stack([p[1].ravel() for p in prepared])
    w = np.stack([p[2].ravel() for p in prepared]).astype(np.float32)
    g_den = w @ ref.g_power.T  # sum |G M|^2 per (particle, rotation)
    p_den = np.repeat(ppow.sum(1)[:, None], n_rot, 1) if ref.obs is None else ppow @ ref.obs.T
    inv = xp.asarray((m**3 / (np.sqrt(g_den * p_den) + 1e-30)).astype(np.float32))
    key = str(device)
    if key not in ref.on_device:  # the reference's rotated spectra, on the device once
        ref.on_device[key] = xp.asarray(ref.g)
    g = ref.on_device[key]
    pw_x, idx = xp.asarray(pw), xp.asarray(ref.small.shifts[0])
    step = max(1, batch // len(prepared))
    out = []
    for s in range(0, n_rot, step):
        num = xp.irfftn(pw_x[:, None] * xp.conj(g[None, s:s + step]), m)  # (B, r, m, m, m)
        num = num.reshape(num.shape[0], num.shape[1], -1)[..., idx]
        out.append(xp.numpy(num.max(-1) if device is None else num.max(-1).values) * xp.numpy(inv[:, s:s + step]))
    return np.concatenate(out, 1)


def align(particle: np.ndarray, wedge_centred: np.ndarray, ref: Reference, device=None):
    """(A, shift_xyz, score): the rotation and shift that best map ``ref`` onto ``particle``; see
    :func:`align_batch`."""
    return align_batch([particle], [wedge_centred], ref, device)[0]


def align_batch(particles, wedges_centred, ref: Reference, device=None) -> list:
    """[(A, shift_xyz, score)] of each particle against ``ref``.

    Coarse grid at half size for the whole batch at once (:func:`coarse_scores`, numpy or torch on ``device``);
    per particle, a local search of the best distinct candidates at half size (steps from half the grid step
    down to 4 degrees), and the best of those refined at full size down to ``fine_step``, with the sub-voxel
    shift of every rotation tried (rotation and shift refined jointly)."""
    p = ref.params
    vols = [np.asarray(v, np.float64) for v in particles]
    small = [ref.small.particle(v, w) for v, w in zip(vols, wedges_centred)]
    scores = coarse_scores(ref, small, device)
    mid = max(4.0, 2 * p.fine_step)
    out = []
    for vol, w, ps, best in zip(vols, wedges_centred, small, scores):
        chosen: list[np.ndarray] = []
        for i in np.argsort(best, kind="stable")[::-1]:
            a = ref.rotations[i]
            if all(rotation_angle(a, c) > p.coarse_step for c in chosen):
                chosen.append(a)
            if len(chosen) == p.candidates:
                break
        refined = [_local_search(ref.small, ps, a, p.coarse_step / 2, mid) for a in chosen]
        a = max(refined, key=lambda r: r[1])[0]
        a, s, t = _local_search(ref.full, ref.full.particle(vol, w), a, mid / 2, p.fine_step)
        out.append((a, np.asarray(t, float)[::-1].copy(), float(s)))
    return out


_AXES = np.vstack([np.eye(3), -np.eye(3)])


def _local_search(level: _Level, p, a, step, fine):
    s, t = level.score(p, a)
    while step >= fine:
        moved = False
        for axis in _AXES:
            b = Rotation.from_rotvec(np.deg2rad(step) * axis).as_matrix() @ a
            sb, tb = level.score(p, b)
            if sb > s:
                a, s, t, moved = b, sb, tb, True
        if not moved:
            step /= 2
    return a, s, t
