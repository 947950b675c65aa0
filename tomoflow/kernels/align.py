"""Subtomogram alignment with missing-wedge constrained correlation (seed 000 section 3.3, after Xu et al. 2012).

The score of a particle p against a reference g rotated by A and shifted by t counts only the Fourier
components observed in both (the particle's wedge W_p and the reference's observed region W_g, rotated
with it), with the mean (zero frequency) removed:

    score(A, t) = sum_k P M conj(G_A) e^{2 pi i k t} / sqrt(sum_k |P M|^2 * sum_k |G_A M|^2),  M = W_p W_g,A

so it is a correlation coefficient in [-1, 1]. Translations come from one inverse FFT per rotation
(limited to ``max_shift`` voxels). Rotations: a coarse uniform grid (super-Fibonacci, ``coarse_step``
degrees) on 2x Fourier-binned volumes, with the rotated reference spectra prepared once per reference
and reused for every particle, then a local pattern search around the best coarse candidates (at half
size, then at full size with steps halving down to ``fine_step``), for all particles of a batch at once: the
reference is rotated there in Fourier space (its 2x-padded spectrum sampled at rotated frequencies), so that
every (particle, rotation) pair of a round is scored in a few large array operations, on numpy or torch.

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
        # local search: the reference rotated in Fourier space, by sampling its spectrum (zero-padded 2x in real
        # space, so that trilinear interpolation between samples is accurate, as RELION does) at A^T k, at the
        # kept components (the support); the observed mask likewise at A^T k. At full size the support is the
        # Nyquist sphere (the cube's corners hold no more than noise at the resolution one aligns to, and cost
        # half the samples); at half size the corners hold full-size frequencies up to 0.43 cycles/voxel, which
        # told two classes apart (tests/test_recovery.py) where the sphere alone did not
        f = np.fft.fftfreq(n, 1.0 / n)
        kz, ky, kx = np.meshgrid(f, f, np.fft.rfftfreq(n, 1.0 / n), indexing="ij")
        sel = self.keep & (kz**2 + ky**2 + kx**2 <= (n / 2) ** 2) if n == n_full else self.keep.copy()
        self.support = np.flatnonzero(sel.ravel())
        self.k_zyx = np.stack([kz[sel], ky[sel], kx[sel]], 1).astype(np.float32)
        self.hw_s = np.broadcast_to(self.hw, sel.shape)[sel].astype(np.float32)
        big = 2 * n
        padded = np.zeros((big,) * 3, np.float32)
        a0 = big // 2 - n // 2  # the box centre n // 2 lands on big // 2
        padded[a0:a0 + n, a0:a0 + n, a0:a0 + n] = volume
        f = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(padded))).astype(np.complex64)
        # both grids are periodic (a spectrum): extended by wrapping far enough that every rotated frequency of
        # the support, and its cell's far corner, falls inside; sampling then needs no index wrapping
        r = float(np.sqrt((self.k_zyx.astype(np.float64) ** 2).sum(1).max()))
        self.ext = int(np.ceil(max(0.0, 2 * r - n))) + 1  # planes added below index 0 (padded grid)
        self.padded = np.pad(f, (self.ext, self.ext + 2), mode="wrap").ravel()
        self.padded_size = big + 2 * self.ext + 2
        self.obs_ext = int(np.ceil(max(0.0, r + 0.5 - n // 2))) + 1
        everywhere = observed is None or bool((np.asarray(observed) > 0.5).all())
        # a reference observed everywhere (an average over many orientations) needs no mask: rotated, it is all 1
        self.obs_flat = None if everywhere else np.pad(np.asarray(observed) > 0.5, (self.obs_ext, self.obs_ext + 1),
                                                       mode="wrap").ravel()
        self.on_device: dict = {}

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


class _Numpy:
    """The few array operations of the batched coarse search, on numpy (CPU)."""

    def asarray(self, a):
        return np.asarray(a)

    def irfftn(self, x, m: int):
        return sfft.irfftn(x, s=(m,) * 3, axes=(-3, -2, -1), workers=1)

    def numpy(self, x):
        return np.asarray(x)

    def floor_int(self, x):
        return np.floor(x).astype(np.int64)

    def zeros(self, shape, like):
        return np.zeros(shape, like.dtype)

    def take_along(self, x, idx):
        return np.take_along_axis(x, idx, -1)

    def take(self, flat, idx):
        return np.take(flat, idx)

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

    def floor_int(self, x):
        return self.torch.floor(x).long()

    def zeros(self, shape, like):
        return self.torch.zeros(shape, dtype=like.dtype, device=self.device)

    def take_along(self, x, idx):
        return self.torch.take_along_dim(x, idx, -1)

    def take(self, flat, idx):
        return flat[idx]


def _on_cpu(device) -> bool:
    return device is None or getattr(device, "type", str(device)) == "cpu"


def _ops(device):
    return _Numpy() if device is None else _Torch(device)


def coarse_scores(ref: Reference, prepared: list, device=None, batch: int | None = None) -> np.ndarray:
    """(B, R) best-shift scores of B particles (each ``ref.small.particle(...)``) against the R coarse rotations
    of ``ref``, as a few large array operations: B x r correlations per inverse FFT (r rotations at a time,
    B * r <= ``batch``), normalised by the per-pair masked powers (one matrix product each). ``device``: None for
    numpy, or a torch device (the rotated spectra are moved there once per reference)."""
    xp = _ops(device)
    if batch is None:  # on a CPU, blocks that stay in cache: 128 pairs ran 3x faster than 2048 (32^3, numpy)
        batch = 128 if _on_cpu(device) else 2048
    m, n_rot = ref.m, len(ref.g)
    pw = np.stack([p[0] for p in prepared])
    ppow = np.stack([p[1].ravel() for p in prepared])
    w = np.stack([p[2].ravel() for p in prepared]).astype(np.float32)
    g_den = w @ ref.g_power.T  # sum |G M|^2 per (particle, rotation)
    p_den = np.repeat(ppow.sum(1)[:, None], n_rot, 1) if ref.obs is None else ppow @ ref.obs.T
    inv = xp.asarray((m**3 / (np.sqrt(g_den * p_den) + 1e-30)).astype(np.float32))
    key = str(device)
    if key not in ref.on_device:  # the reference's rotated spectra, conjugated, on the device once
        ref.on_device[key] = xp.asarray(np.conj(ref.g))
    g_conj = ref.on_device[key]
    pw_x, idx = xp.asarray(pw), xp.asarray(ref.small.shifts[0])
    step = max(1, batch // len(prepared))
    out = []
    for s in range(0, n_rot, step):
        num = xp.irfftn(pw_x[:, None] * g_conj[None, s:s + step], m)  # (B, r, m, m, m)
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
    then a local search (:func:`local_search`) of every particle's best distinct candidates together at half size
    (steps from half the grid step down to 4 degrees), and the best of each refined together at full size down to
    ``fine_step``, with the sub-voxel shift of every rotation tried (rotation and shift refined jointly)."""
    p = ref.params
    vols = [np.asarray(v, np.float64) for v in particles]
    small = [ref.small.particle(v, w) for v, w in zip(vols, wedges_centred)]
    scores = coarse_scores(ref, small, device)
    mid = max(4.0, 2 * p.fine_step)
    owner, starts = [], []
    for j, best in enumerate(scores):
        chosen: list[np.ndarray] = []
        for i in np.argsort(best, kind="stable")[::-1]:
            a = ref.rotations[i]
            if all(rotation_angle(a, c) > p.coarse_step for c in chosen):
                chosen.append(a)
            if len(chosen) == p.candidates:
                break
        owner += [j] * len(chosen)
        starts += chosen
    owner = np.asarray(owner)
    a, s, _ = local_search(ref.small, small, owner, np.stack(starts), p.coarse_step / 2, mid, device)
    best = [np.flatnonzero(owner == j)[np.argmax(s[owner == j])] for j in range(len(vols))]
    full = [ref.full.particle(v, w) for v, w in zip(vols, wedges_centred)]
    a, s, t = local_search(ref.full, full, np.arange(len(vols)), a[best], mid / 2, p.fine_step, device)
    return [(a[j], np.asarray(t[j], float)[::-1].copy(), float(s[j])) for j in range(len(vols))]


_AXES = np.vstack([np.eye(3), -np.eye(3)])


def local_search(level: _Level, prepared: list, owner: np.ndarray, rotations: np.ndarray, step: float, fine: float,
                 device=None, batch: int | None = None):
    """Pattern search of rotations, many at once: item i starts at ``rotations[i]`` for particle
    ``prepared[owner[i]]``; each round every active item scores its 6 neighbours (``step`` degrees about +-x, y, z)
    and moves to the best if it beats the current score, else halves its step; it stops below ``fine``. All
    (item, neighbour) pairs of a round are scored together (:func:`_scores`, about ``batch`` Fourier components
    per array operation). Returns (rotations, scores, sub-voxel shifts z, y, x) per item."""
    xp = _ops(device)
    data = _level_on(level, xp, device)
    s_idx = level.support
    parts = tuple(xp.asarray(np.stack([q[k].ravel()[s_idx] for q in prepared]).astype(dt))
                  for k, dt in ((0, np.complex64), (1, np.float32), (2, np.float32)))
    if batch is None:  # on a CPU, chunks that stay in cache (2-3 pairs at 32^3) ran 2-3x faster than 200 at once
        batch = 50_000 if _on_cpu(device) else 4_000_000
    chunk = max(1, batch // level.keep.size)
    a = np.array(rotations, np.float64)  # a copy: moved in place below
    s, t = _scores(level, data, parts, owner, a, xp, chunk)
    steps = np.full(len(a), float(step))
    while True:
        act = np.flatnonzero(steps >= fine)
        if not len(act):
            return a, s, t
        rv = (np.deg2rad(steps[act])[:, None, None] * _AXES[None]).reshape(-1, 3)
        cand = Rotation.from_rotvec(rv).as_matrix() @ np.repeat(a[act], 6, 0)  # (6 per active item, 3, 3)
        sc, tc = _scores(level, data, parts, np.repeat(owner[act], 6), cand, xp, chunk)
        k = sc.reshape(-1, 6).argmax(1)
        pick = np.arange(len(act)) * 6 + k
        up = sc[pick] > s[act]
        moved, stay = act[up], act[~up]
        a[moved], s[moved], t[moved] = cand[pick[up]], sc[pick[up]], tc[pick[up]]
        steps[stay] /= 2


def _level_on(level: _Level, xp, device) -> dict:
    key = str(device)
    if key not in level.on_device:  # the level's sampling grids, on the device once
        level.on_device[key] = {"padded": xp.asarray(level.padded),
                                "k_t": xp.asarray(np.ascontiguousarray(level.k_zyx.T)),
                                "hw": xp.asarray(level.hw_s), "support": xp.asarray(level.support),
                                "obs": None if level.obs_flat is None else xp.asarray(level.obs_flat)}
    return level.on_device[key]


def _trilinear(xp, flat, size: int, z, y, x):
    """Trilinear samples at positions ``z``, ``y``, ``x`` (same shape, voxels, within [0, size - 2]) of a
    (size,)^3 array, raveled."""
    iz, iy, ix = xp.floor_int(z), xp.floor_int(y), xp.floor_int(x)
    fz, fy, fx = z - iz, y - iy, x - ix
    b = (iz * size + iy) * size + ix
    plane = []
    for oz in (0, size * size):
        row = []
        for oy in (oz, oz + size):
            lo, hi = xp.take(flat, b + oy), xp.take(flat, b + (oy + 1))
            hi -= lo  # in place: fewer temporaries, and a CPU's caches hold the rest
            hi *= fx
            hi += lo
            row.append(hi)
        row[1] -= row[0]
        row[1] *= fy
        row[1] += row[0]
        plane.append(row[1])
    plane[1] -= plane[0]
    plane[1] *= fz
    plane[1] += plane[0]
    return plane[1]


def _scores(level: _Level, data: dict, parts, owner: np.ndarray, rots: np.ndarray, xp, chunk: int):
    """(scores, sub-voxel shifts z, y, x) of particles ``owner`` against the level's reference rotated by
    ``rots`` (same length), ``chunk`` pairs per array operation."""
    out_s, out_t = [], []
    for c in range(0, len(rots), chunk):
        s, t = _score_chunk(level, data, parts, owner[c:c + chunk], rots[c:c + chunk], xp)
        out_s.append(s)
        out_t.append(t)
    return np.concatenate(out_s), np.concatenate(out_t)


def _score_chunk(level: _Level, data: dict, parts, owner, rots, xp):
    """The scores and sub-voxel shifts of one chunk of (particle, rotation) pairs, as in :func:`_scores`."""
    n = level.n
    big = 2 * n
    # A^T k in z, y, x: with P the axis reversal, P A^T P (P k), i.e. (P A^T P) applied to the columns k_zyx^T;
    # one contiguous (I, S) array per axis
    flip = np.ascontiguousarray(np.asarray(rots, np.float32).transpose(0, 2, 1)[:, ::-1, ::-1])
    pos = xp.asarray(flip) @ data["k_t"]  # (I, 3, S)
    pz, py, px = pos[:, 0], pos[:, 1], pos[:, 2]
    off = big // 2 + level.ext
    g = _trilinear(xp, data["padded"], level.padded_size, 2 * pz + off, 2 * py + off, 2 * px + off)
    own = xp.asarray(owner)
    pf, ppow, w = parts[0][own], parts[1][own], parts[2][own]
    if data["obs"] is not None:
        # nearest sample of the binary mask: what trilinear > 0.5 gives but at the boundary, at 1 gather of 8
        m = n + 2 * level.obs_ext + 1
        iz, iy, ix = (xp.floor_int(v + (n // 2 + level.obs_ext + 0.5)) for v in (pz, py, px))
        o = xp.take(data["obs"], (iz * m + iy) * m + ix)
        g = g * o
        w = w * o
    spec = pf * w * xp.conj(g)
    den = xp.sqrt((ppow * w).sum(-1) * ((g.real**2 + g.imag**2) * data["hw"] * w).sum(-1)) + 1e-30
    full = xp.zeros((len(rots), level.keep.size), spec)
    full[:, data["support"]] = spec
    vol = xp.irfftn(full.reshape(len(rots), n, n, n // 2 + 1), n).reshape(len(rots), -1)
    vol = vol * (n**3 / den)[:, None]
    idx, zyx = level.shifts
    j = xp.numpy(vol[:, xp.asarray(idx)].argmax(-1))
    peak = np.asarray(np.rint(zyx[j]), np.int64) % n
    # the peak and its two neighbours along each axis (wrapped), for a parabola through each triple
    nb = np.repeat(peak[:, None, :], 7, 1)
    for ax in range(3):
        nb[:, 1 + 2 * ax, ax] -= 1
        nb[:, 2 + 2 * ax, ax] += 1
    nb %= n
    c = xp.numpy(xp.take_along(vol, xp.asarray(nb[..., 0] * n * n + nb[..., 1] * n + nb[..., 2]))).astype(np.float64)
    c0, lo, hi = c[:, :1], c[:, 1::2], c[:, 2::2]
    curv = lo - 2 * c0 + hi
    # a maximum (negative curvature): the vertex lies between the neighbours; clipped to half a voxel
    sub = np.where(curv < 0, np.clip(0.5 * (lo - hi) / np.where(curv < 0, curv, -1.0), -0.5, 0.5), 0.0)
    return c0[:, 0], zyx[j] + sub
