"""FAML: fast alignment + maximum-likelihood averaging (seed 002 section 3.3.3; after Zhao et al. 2018 [24], whose
likelihood model is Scheres et al. 2009 [25]). Arrays in, numpy/scipy only.

Data model: particle i's spectrum, on the Fourier components it observes (its missing wedge W_i, inside Nyquist,
mean excluded), is X_i = T_{A,t}(V_k) + N with V_k the map of class k, T the rotation A and shift t, and N complex
Gaussian with a variance sigma2(s) per Fourier shell s. Components in the wedge carry no information and are left
out of the likelihood (a wedge-blind model would count them as observed zeros and favour poses that hide the map's
power in the wedge)::

    log p(X_i | k, A, t) = -1/2 sum_{f in W_i} |X_i(f) - G_{k,A}(f) exp(-2 pi i f.t)|^2 / sigma2(|f|)

(sum over the full spectrum; G_{k,A} the spectrum of V_k rotated by A.) The EM sums over a short list of candidate
poses per particle and class instead of a whole rotation grid (FAML's point, [24]): the candidates are the best
distinct rotations of the wedge-constrained coarse search (:func:`tomoflow.kernels.align.coarse_scores`), each
refined by a local search on the likelihood at half size, its best shift found from one inverse FFT.

E-step: posterior weights gamma_ic proportional to pi_k p(X_i | candidate c); M-step: each class map is the
gamma-weighted, wedge-weighted average of the particles brought to its frame, sigma2(s) the gamma-weighted mean
squared residual over the observed components of shell s, pi_k the mean class posterior. One chunk's E-step and
partial sums: :func:`em_chunk`; the driver adds the sums (:func:`maps_from_sums`).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy.spatial.transform import Rotation

from ..params import AlignParams
from .align import Reference, coarse_scores
from .averaging import average_from_sums, lowpass, to_reference_frame
from .fourier import centred_to_rfft, crop_centred, fourier_crop, half_weights, rfft_radius, spectrum
from .geometry import relion_angles, rotate_volume
from .rotations import rotation_angle

MIN_WEIGHT = 1e-4  # candidates with less posterior weight are left out of the M-step (sparse EM, as [25])


class _Grid:
    """Per box size: shell index of every rfft component, the band used (0 < |f| < Nyquist), multiplicities,
    the frequencies (for phase ramps) and the allowed (wrapped) shifts."""

    def __init__(self, n: int, max_shift: float):
        r = rfft_radius(n)
        self.n = n
        self.shell = np.minimum(np.rint(r * n).astype(int), n // 2)
        self.band = (r > 0) & (r < 0.5)
        self.hw = np.broadcast_to(half_weights(n), r.shape)
        self.f = (np.fft.fftfreq(n)[:, None, None], np.fft.fftfreq(n)[None, :, None], np.fft.rfftfreq(n)[None, None, :])
        g = np.fft.fftfreq(n, 1.0 / n)
        z, y, x = np.meshgrid(g, g, g, indexing="ij")
        ok = (z**2 + y**2 + x**2 <= max_shift**2 + 1e-9).ravel()
        self.shift_idx = np.flatnonzero(ok)
        self.shift_zyx = np.stack([z.ravel()[ok], y.ravel()[ok], x.ravel()[ok]], 1)

    def ramp(self, t_zyx) -> np.ndarray:
        fz, fy, fx = self.f
        return np.exp(-2j * np.pi * (fz * t_zyx[0] + fy * t_zyx[1] + fx * t_zyx[2]))


def shell_count(n: int) -> int:
    return n // 2 + 1


def _particle(grid: _Grid, vol, wedge_centred, inv_s2, blind: bool = False):
    """(X, mask W, W / sigma2) at the grid's size. ``blind``: every band component counts as observed (the wrong
    model, kept for the tests and the benchmark's comparison)."""
    n = grid.n
    small = vol if vol.shape[0] == n else fourier_crop(vol, n)
    x = spectrum(small)
    w = grid.band if blind else (centred_to_rfft(crop_centred(wedge_centred, n)) > 0.5) & grid.band
    return x, w, w * inv_s2[grid.shell]


def _objective(grid: _Grid, vol_ref, a, p):
    """(best 2 * cross - penalty over the allowed shifts, that shift (z, y, x), G): the pose-dependent part of
    -2 log p(X | A, t), maximised over t by one inverse FFT."""
    x, w, ws = p
    g = spectrum(rotate_volume(vol_ref, a, order=1))
    cross = sfft.irfftn(x * np.conj(g) * ws, s=(grid.n,) * 3, workers=1).ravel()[grid.shift_idx] * grid.n**3
    pen = float((grid.hw * ws * (g.real**2 + g.imag**2)).sum())
    j = int(np.argmax(cross))
    return 2 * float(cross[j]) - pen, grid.shift_zyx[j], g


_AXES = np.vstack([np.eye(3), -np.eye(3)])


def _refine(grid: _Grid, vol_ref, p, a, step: float, fine: float):
    """Local pattern search on the likelihood around rotation ``a`` (steps halving from ``step`` to ``fine``)."""
    best = _objective(grid, vol_ref, a, p)[0]
    while step >= fine:
        moved = False
        for axis in _AXES:
            b = Rotation.from_rotvec(np.deg2rad(step) * axis).as_matrix() @ a
            s = _objective(grid, vol_ref, b, p)[0]
            if s > best:
                a, best, moved = b, s, True
        if not moved:
            step /= 2
    return a


def loglik(grid: _Grid, vol_ref, a, p):
    """(log p(X | A, t) at the best shift t (x, y, z), that shift, the residual power per shell (weighted by
    multiplicity, over the observed components))."""
    x, w, ws = p
    obj, t, g = _objective(grid, vol_ref, a, p)
    const = float((grid.hw * ws * (x.real**2 + x.imag**2)).sum())
    res = np.abs(x - g * grid.ramp(t)) ** 2 * grid.hw * w
    per_shell = np.bincount(grid.shell.ravel(), res.ravel(), minlength=shell_count(grid.n))
    return -0.5 * (const - obj), np.asarray(t, float)[::-1].copy(), per_shell


def candidates(vol, wedge_centred, ref: Reference, vol_ref, grids, inv_s2, params: AlignParams, count: int,
               blind: bool = False, coarse=None):
    """[(A, shift_xyz, log-likelihood, residual per shell)] of up to ``count`` distinct candidate poses of one
    particle against one class map: the best distinct coarse rotations (``coarse``: their scores, from
    :func:`coarse_scores`), each refined on the likelihood at half size, then scored at full size."""
    small, full = grids
    order = np.argsort(coarse, kind="stable")[::-1]
    chosen: list[np.ndarray] = []
    for i in order:
        a = ref.rotations[i]
        if all(rotation_angle(a, c) > params.coarse_step for c in chosen):
            chosen.append(a)
        if len(chosen) == count:
            break
    ps = _particle(small, vol, wedge_centred, inv_s2, blind)
    pf = _particle(full, vol, wedge_centred, inv_s2, blind)
    vol_small = fourier_crop(np.asarray(vol_ref, np.float64), small.n).astype(np.float32)
    out = []
    for a in chosen:
        a = _refine(small, vol_small, ps, a, params.coarse_step / 2, params.fine_step)
        if any(rotation_angle(a, b[0]) < 2 * params.fine_step for b in out):
            continue  # two starts that met: one candidate, not its weight counted twice
        ll, t, res = loglik(full, vol_ref, a, pf)
        out.append((a, t, ll, res))
    return out


def grid_candidates(vol, wedge_centred, vol_ref, grid: _Grid, inv_s2, rotations, blind: bool = False):
    """Full ML over a rotation grid (each rotation at its best shift), at full size: what FAML's short list
    replaces (for comparison)."""
    p = _particle(grid, vol, wedge_centred, inv_s2, blind)
    out = []
    for a in rotations:
        ll, t, res = loglik(grid, vol_ref, a, p)
        out.append((a, t, ll, res))
    return out


def posterior(logliks, log_prior):
    """Normalised weights of candidates with log-likelihoods ``logliks`` and log priors ``log_prior``."""
    z = np.asarray(logliks, float) + np.asarray(log_prior, float)
    z = np.exp(z - z.max())
    return z / z.sum()


def _add(sums, vol, wedge_centred, a, t, g: float):
    """``g`` x the particle's wedge-weighted spectrum and weight in the reference frame, into ``sums``."""
    f = spectrum(to_reference_frame(vol, a, t))
    w = centred_to_rfft(np.clip(rotate_volume(wedge_centred.astype(np.float32), a.T, order=1), 0, 1)) * g
    sums[0] += (f * w).real
    sums[1] += (f * w).imag
    sums[2] += w


def result_size(n: int, classes: int) -> int:
    """Length of :func:`em_chunk`'s flat partial sums."""
    return classes * 3 * n * n * (n // 2 + 1) + classes + 2 * shell_count(n) + 2


def em_chunk(vols, wedges, model, params: AlignParams, count: int, *, classes: int = 1, seed: int = 0,
             start: int = 0, blind: bool = False, rotations=None):
    """One EM iteration on one chunk of particles (global indices ``start`` ...); ``wedges``: each particle's
    observed region (centred layout, symmetric under f -> -f).

    ``model``: None (the reference-free start: every particle in a random one of ``classes`` (seeded), identity
    pose, weight 1) or (maps (K, n, n, n), observed masks or None, sigma2 per shell, class priors, prepared
    references (one :class:`Reference` per class, for the coarse search)). ``count``: candidates per particle and
    class. ``rotations``: full ML over that grid instead of FAML's candidates (comparison). Returns (flat
    partial sums, see :func:`split_sums`; per particle: best class, best pose (rot, tilt, psi, x, y, z), its
    posterior weight, candidates kept)."""
    vols = np.asarray(vols)
    n = vols.shape[1]
    full = _Grid(n, params.max_shift)
    small = _Grid(2 * (n // 4), params.max_shift / 2)
    if model is not None:
        classes = len(model[0])
    sums = np.zeros((classes, 3, n, n, n // 2 + 1))
    mass = np.zeros(classes)
    s2num = np.zeros(shell_count(n))
    s2den = np.zeros(shell_count(n))
    total_ll = 0.0
    cls = np.zeros(len(vols), np.int32)
    pose = np.zeros((len(vols), 6), np.float32)
    weight = np.zeros(len(vols), np.float32)
    kept = np.zeros(len(vols), np.int32)
    for j, (vol, wedge) in enumerate(zip(vols, wedges)):
        mask = (centred_to_rfft(wedge) > 0.5) & full.band
        s2den += np.bincount(full.shell.ravel(), (full.hw * mask).ravel(), minlength=shell_count(n))
        if model is None:
            rng = np.random.default_rng(np.random.SeedSequence([seed, start + j, 0xFA31]))
            k = int(rng.integers(classes))
            _add(sums[k], vol, wedge, np.eye(3), np.zeros(3), 1.0)
            x = spectrum(vol)  # no model yet: the noise starts at the particles' own power (an over-estimate)
            s2num += np.bincount(full.shell.ravel(), (np.abs(x) ** 2 * full.hw * mask).ravel(), minlength=len(s2num))
            mass[k] += 1
            cls[j], weight[j], kept[j] = k, 1.0, 1
            continue
        maps, _, sigma2, priors, refs = model
        inv_s2 = 1.0 / np.maximum(sigma2, 1e-30)
        cands = []  # (class, A, t, loglik, residual per shell)
        for k in range(classes):
            if rotations is None:
                coarse = coarse_scores(refs[k], [refs[k].small.particle(np.asarray(vol, np.float64), wedge)])[0]
                found = candidates(vol, wedge, refs[k], maps[k], (small, full), inv_s2, params, count, blind, coarse)
            else:
                found = grid_candidates(vol, wedge, maps[k], full, inv_s2, rotations, blind)
            cands += [(k, *c) for c in found]
        ll = np.array([c[3] for c in cands])
        g = posterior(ll, [np.log(max(priors[c[0]], 1e-12)) for c in cands])
        z = ll + np.log(np.maximum([priors[c[0]] for c in cands], 1e-12))
        total_ll += float(z.max() + np.log(np.exp(z - z.max()).sum()))
        keep = np.flatnonzero(g >= MIN_WEIGHT)
        g_keep = g[keep] / g[keep].sum()
        for c, gi in zip(keep, g_keep):
            k, a, t, _, res = cands[c]
            _add(sums[k], vol, wedge, a, t, gi)
            s2num += gi * res
            mass[k] += gi
        best = int(np.argmax(g))
        k, a, t = cands[best][:3]
        cls[j], weight[j], kept[j] = k, g[best], len(keep)
        pose[j] = np.concatenate([relion_angles(a).ravel(), t])
    flat = np.concatenate([sums.ravel(), mass, s2num, s2den, [total_ll, len(vols)]])
    return flat, cls, pose, weight, kept


def split_sums(flat: np.ndarray, n: int, classes: int):
    """(sums (K, 3, n, n, n//2+1), class mass (K), residual per shell, components per shell, log-lik, particles)
    from the added flat partial sums of :func:`em_chunk`."""
    s = classes * 3 * n * n * (n // 2 + 1)
    S = shell_count(n)
    sums = flat[:s].reshape(classes, 3, n, n, n // 2 + 1)
    mass = flat[s:s + classes]
    s2num, s2den = flat[s + classes:s + classes + S], flat[s + classes + S:s + classes + 2 * S]
    return sums, mass, s2num, s2den, float(flat[-2]), float(flat[-1])


def maps_from_sums(flat: np.ndarray, n: int, classes: int, start_lowpass: float | None = None):
    """M-step: (maps (K, n, n, n), observed masks (K, centred), sigma2 per shell, class priors, mean
    log-likelihood per particle). ``start_lowpass``: the reference-free start's maps are low-passed (cycles/voxel)
    so that the first alignment follows shape, not the start's noise."""
    sums, mass, s2num, s2den, ll, count = split_sums(flat, n, classes)
    maps = np.zeros((classes, n, n, n), np.float32)
    obs = np.zeros_like(maps)
    for k in range(classes):
        maps[k], obs[k] = average_from_sums(sums[k])
        if start_lowpass:
            maps[k] = lowpass(maps[k], start_lowpass)
    sigma2 = s2num / np.maximum(s2den, 1e-12)
    sigma2[s2den <= 0] = sigma2[s2den > 0].max() if (s2den > 0).any() else 1.0
    priors = mass / max(mass.sum(), 1e-12)
    return maps, obs, sigma2, priors, ll / max(count, 1)
