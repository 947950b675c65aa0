"""Tilt series of one particle and its reconstruction into a D^3 box (seed 000, section 3.1.1).

For each tilt angle the particle (a density map rotated by A and shifted) is projected along the
beam by the Fourier-slice theorem: its 2x-padded 3D Fourier transform is sampled on the central
slice perpendicular to the beam. In the seed's order, noise is added to each projection image
(D x D pixels) and the noisy image is convolved with CTF x MTF. The subtomogram is reconstructed
either by direct Fourier inversion (slices inserted by trilinear gridding, divided by the
accumulated weights) or by weighted (ramp-filtered) back-projection.

Everything is linear, so signal and noise are reconstructed separately and the noise is scaled
to the target SNR measured in the reconstructed subtomogram: SNR = var(signal) / var(noise) over
the box. That is what two noisy simulations of one particle measure (Frank & Al-Ali:
SNR = c / (1 - c)), and it equals adding noise of that standard deviation to the projections.
Tilting is about the y axis rotated by ``tilt_axis`` degrees in the x-y plane.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
from scipy import fft
from scipy.ndimage import map_coordinates

from ..kernels.geometry import box_center
from .optics import Microscope, transfer


@dataclass(frozen=True)
class TiltScheme:
    tilt_min: float = -60.0
    tilt_max: float = 60.0
    tilt_step: float = 2.0
    tilt_axis: float = 0.0  # degrees from y in the x-y plane

    def angles(self) -> np.ndarray:
        n = int(np.floor((self.tilt_max - self.tilt_min) / self.tilt_step + 1e-6)) + 1
        return self.tilt_min + self.tilt_step * np.arange(n)

    def as_dict(self) -> dict:
        return asdict(self)


def dataset_scheme(spec, tilt_range: float) -> TiltScheme:
    """The tilt scheme of the part of a :class:`~tomoflow.params.DatasetSpec` at half range ``tilt_range``."""
    return TiltScheme(-tilt_range, tilt_range, spec.tilt_step, spec.tilt_axis)


def crowded_scheme(spec) -> TiltScheme:
    """The tilt scheme of a :class:`~tomoflow.params.CrowdedSpec` (tilt axis y)."""
    return TiltScheme(-spec.tilt_range, spec.tilt_range, spec.tilt_step)


def trilinear(vol: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Periodic trilinear interpolation of a cubic (complex) array at (3, P) (z, y, x) coordinates."""
    n = vol.shape[0]
    base = np.floor(coords)
    f = coords - base
    i0 = base.astype(np.int64) % n
    i1 = (i0 + 1) % n
    flat = vol.reshape(-1)
    fz, fy, fx = f
    out = 0
    for iz, wz in ((i0[0], 1 - fz), (i1[0], fz)):
        for iy, wy in ((i0[1], 1 - fy), (i1[1], fy)):
            row = (iz * n + iy) * n
            out = out + (wz * wy) * (flat[row + i0[2]] * (1 - fx) + flat[row + i1[2]] * fx)
    return out


def _wrap_index(n: int, d: int) -> np.ndarray:
    """Indices (mod n) of a centred box of d voxels in an array whose origin is its centre voxel."""
    return (np.arange(d) - box_center(d)) % n


SEED_MICROSCOPE = Microscope()


class TiltSeriesSimulator:
    """Simulates subtomograms of box ``box`` for one acquisition geometry and microscope.

    The slice geometry, gridding weights and transfer function are computed once and reused for
    every particle. ``method`` is ``"fourier"`` (direct Fourier inversion) or ``"wbp"``.
    """

    def __init__(self, box: int, voxel_size: float, scheme: TiltScheme = TiltScheme(),
                 microscope: Microscope | None = SEED_MICROSCOPE, *, method: str = "fourier", pad: int = 2):
        if method not in ("fourier", "wbp"):
            raise ValueError(f"reconstruction method must be 'fourier' or 'wbp', not {method!r}")
        self.d, self.vs, self.scheme, self.mic, self.method = int(box), float(voxel_size), scheme, microscope, method
        self.n = int(pad) * self.d
        self.offset = box_center(self.n) - box_center(self.d)
        self.theta = np.deg2rad(scheme.angles())

    # -- geometry shared by all particles ----------------------------------------------------
    @cached_property
    def _grid2d(self):
        """2D frequency grid (index units, centred) of the padded projections, and its in-sphere mask."""
        k = np.arange(self.n) - box_center(self.n)
        ky, kx = np.meshgrid(k, k, indexing="ij")
        inside = kx**2 + ky**2 <= (self.n // 2 - 1) ** 2
        return kx, ky, inside

    @cached_property
    def slice_points(self) -> np.ndarray:
        """(T, M, 3) Fourier points (x, y, z; index units) sampled by each tilt, M in-sphere pixels."""
        kx, ky, inside = self._grid2d
        kx, ky = kx[inside].astype(np.float64), ky[inside].astype(np.float64)
        c, s = np.cos(self.theta)[:, None], np.sin(self.theta)[:, None]
        pts = np.stack([kx * c, np.broadcast_to(ky, c.shape[:1] + ky.shape), kx * s], axis=-1)  # tilt about y
        phi = np.deg2rad(self.scheme.tilt_axis)
        if phi:
            rz = np.array([[np.cos(phi), -np.sin(phi), 0], [np.sin(phi), np.cos(phi), 0], [0, 0, 1]])
            pts = pts @ rz.T
        return pts

    @cached_property
    def transfer2d(self) -> np.ndarray:
        """CTF x MTF on the in-sphere pixels of the 2D grid (1 without a microscope)."""
        kx, ky, inside = self._grid2d
        if self.mic is None:
            return np.ones(int(inside.sum()))
        k = np.hypot(kx[inside], ky[inside]) / (self.n * self.vs)
        return transfer(k, self.mic, self.vs)

    @cached_property
    def _half(self):
        """In-sphere pixels with kx > 0 (or kx = 0, ky >= 0), and each pixel's mirror (-kx, -ky):
        a real image's transform is Hermitian, so half the pixels determine the rest."""
        kx, ky, inside = self._grid2d
        kxi, kyi = kx[inside], ky[inside]
        index = np.full((self.n, self.n), -1)
        index[kyi % self.n, kxi % self.n] = np.arange(len(kxi))
        mirror = index[(-kyi) % self.n, (-kxi) % self.n]
        half = (kxi > 0) | ((kxi == 0) & (kyi >= 0))
        return half, mirror

    @cached_property
    def _pixels(self):
        """Wrapped (y, x) indices of the in-sphere pixels of the N x N Fourier images."""
        kx, ky, inside = self._grid2d
        return ky[inside] % self.n, kx[inside] % self.n

    @cached_property
    def _insert(self):
        """Sparse (N^3 x T*M) matrix: trilinear gridding of slice samples divided by the summed weights."""
        from scipy import sparse

        n = self.n
        p = self.slice_points.reshape(-1, 3)[:, ::-1]  # (z, y, x), signed index units
        base = np.floor(p).astype(np.int64)
        frac = p - base
        rows, vals = [], []
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    corner = (base + (dz, dy, dx)) % n
                    rows.append((corner[:, 0] * n + corner[:, 1]) * n + corner[:, 2])
                    vals.append(np.where(dz, frac[:, 0], 1 - frac[:, 0]) * np.where(dy, frac[:, 1], 1 - frac[:, 1])
                                * np.where(dx, frac[:, 2], 1 - frac[:, 2]))
        rows, vals = np.concatenate(rows), np.concatenate(vals)
        cols = np.tile(np.arange(len(p)), 8)
        weight = np.bincount(rows, vals, minlength=n**3)
        vals = vals / np.maximum(weight, 1.0)[rows]
        return sparse.csr_matrix((vals, (rows, cols)), shape=(n**3, len(p)))

    # -- per particle ----------------------------------------------------------------------------
    def map_transform(self, density: np.ndarray) -> np.ndarray:
        """Fourier transform (wrapped layout) of a D^3 density zero-padded to N^3, once per structure."""
        if density.shape != (self.d,) * 3:
            raise ValueError(f"density of shape {density.shape}, expected {(self.d,) * 3}")
        pad = np.zeros((self.n,) * 3, np.float64)
        w = _wrap_index(self.n, self.d)
        pad[np.ix_(w, w, w)] = density  # box centre at array origin
        return fft.fftn(pad)

    def projections(self, map_ft: np.ndarray, matrix: np.ndarray, shift_xyz=(0.0, 0.0, 0.0), *,
                    image_shifts: np.ndarray | None = None) -> np.ndarray:
        """Noise-free projections (T, D, D) of the map rotated by ``matrix`` and shifted (voxels);
        ``image_shifts`` (T, 2) adds a sub-pixel (x, y) shift to each projection image."""
        half, mirror = self._half
        pts = self.slice_points[:, half]  # (T, M/2, 3)
        src = pts @ np.asarray(matrix, dtype=np.float64)  # A^T q for each point q (row vectors)
        vals = trilinear(map_ft, src.reshape(-1, 3)[:, ::-1].T).reshape(pts.shape[:2])
        vals *= np.exp(-2j * np.pi * (pts @ np.asarray(shift_xyz, np.float64)) / self.n)
        t = len(self.theta)
        if image_shifts is not None:
            kx, ky, inside = self._grid2d
            sx, sy = np.asarray(image_shifts, np.float64).T
            ramp = np.exp(-2j * np.pi * (sx[:, None] * kx[inside][half] + sy[:, None] * ky[inside][half]) / self.n)
            vals = vals * ramp
        full = np.empty((t, len(mirror)), np.complex128)
        full[:, half] = vals
        full[:, mirror[half]] = np.conj(vals)
        f = np.zeros((t, self.n, self.n), np.complex128)
        py, px = self._pixels
        f[:, py, px] = full
        w = _wrap_index(self.n, self.d)
        return fft.ifft2(f)[:, w][:, :, w].real

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """Apply CTF x MTF to (T, D, D) projection images and reconstruct the D^3 subtomogram.

        ``images`` may be complex (two real series as real and imaginary parts): everything is linear
        and the slices of a real series are Hermitian, so the result is the pair of reconstructions.
        """
        t = len(self.theta)
        pad = np.zeros((t, self.n, self.n), np.complex128)
        w = _wrap_index(self.n, self.d)
        pad[:, w[:, None], w[None, :]] = images
        py, px = self._pixels
        spec = fft.fft2(pad)[:, py, px] * self.transfer2d  # (T, M)
        if self.method == "wbp":
            vol = self._backproject(spec)
        else:
            vol = fft.ifftn((self._insert @ spec.reshape(-1)).reshape((self.n,) * 3))[np.ix_(w, w, w)]
        return vol if np.iscomplexobj(images) else vol.real

    def _backproject(self, spec: np.ndarray) -> np.ndarray:
        """Weighted back-projection: ramp filter |k_perp| on each image, smear along the beam."""
        kx, ky, inside = self._grid2d
        t = len(self.theta)
        f = np.zeros((t, self.n, self.n), np.complex128)
        py, px = self._pixels
        f[:, py, px] = spec * (np.abs(kx[inside]) / self.n)
        filtered = fft.ifft2(f)  # (T, N, N), origin at index 0 (wrapped)
        d, c = self.d, box_center(self.d)
        zz, yy, xx = (np.indices((d, d, d), dtype=np.float64) - c).reshape(3, -1)
        phi = np.deg2rad(self.scheme.tilt_axis)
        xr, yr = np.cos(phi) * xx + np.sin(phi) * yy, -np.sin(phi) * xx + np.cos(phi) * yy  # into tilt frame
        vol = np.zeros(d**3, np.complex128)
        for img, th in zip(filtered, self.theta):
            u = xr * np.cos(th) + zz * np.sin(th)  # image x' of each voxel (y is the tilt axis)
            coords = [yr % self.n, u % self.n]
            vol += (map_coordinates(img.real, coords, order=1, mode="grid-wrap")
                    + 1j * map_coordinates(img.imag, coords, order=1, mode="grid-wrap"))
        return (vol * np.deg2rad(self.scheme.tilt_step)).reshape(d, d, d)  # each tilt stands for one step

    def simulate(self, map_ft: np.ndarray | None, matrix, shift_xyz, snr: float, rng: np.random.Generator,
                 *, reference_variance: float | None = None) -> tuple[np.ndarray, dict]:
        """One subtomogram. ``map_ft`` None simulates an empty (noise-only) subtomogram, whose noise is
        scaled to ``reference_variance`` / snr. Returns (float32 volume, {signal_var, noise_sd})."""
        t = len(self.theta)
        noise_images = rng.standard_normal((t, self.d, self.d))
        if map_ft is None:
            noise, signal, sig_var = self.reconstruct(noise_images), 0.0, float(reference_variance or 0.0)
        else:
            both = self.reconstruct(self.projections(map_ft, matrix, shift_xyz) + 1j * noise_images)
            signal, noise = both.real, both.imag
            sig_var = float(np.var(signal))
        if np.isinf(snr):
            scale = 0.0
        else:
            scale = float(np.sqrt(sig_var / (snr * np.var(noise)))) if sig_var > 0 else 0.0
        vol = signal + scale * noise
        return vol.astype(np.float32), {"signal_var": sig_var, "noise_sd": scale}
