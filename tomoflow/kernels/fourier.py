"""Fourier-space helpers shared by alignment, averaging, FSC and binning.

Two layouts: *centred* (zero frequency at index ``n // 2`` on every axis, as ``fftshift`` gives) and
*rfft* (zero at 0, only the non-negative half along x, as ``rfftn`` gives). Volumes have their origin
at the box centre ``n // 2``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from .geometry import box_center


def centred_to_rfft(centred: np.ndarray) -> np.ndarray:
    """A Fourier-space array in centred layout (zero at n // 2) -> the rfftn layout (zero at 0, half in x)."""
    n = centred.shape[-1]
    return np.fft.ifftshift(centred)[..., : n // 2 + 1]


def spectrum(vol: np.ndarray) -> np.ndarray:
    """rfftn of a volume whose origin is the box centre ``n // 2``."""
    return sfft.rfftn(np.fft.ifftshift(np.asarray(vol, np.float32)), workers=1)


def fourier_shift(vol: np.ndarray, shift_xyz) -> np.ndarray:
    """``vol`` moved by ``shift_xyz`` voxels (any fraction) by a phase ramp: exact for band-limited data, no
    interpolation blur; periodic (what leaves one side enters the other)."""
    vol = np.asarray(vol, np.float32)
    n = vol.shape
    sx, sy, sz = (float(v) for v in shift_xyz)
    fz, fy, fx = np.fft.fftfreq(n[0]), np.fft.fftfreq(n[1]), np.fft.rfftfreq(n[2])
    ramp = (np.exp(-2j * np.pi * fz * sz)[:, None, None] * np.exp(-2j * np.pi * fy * sy)[None, :, None]
            * np.exp(-2j * np.pi * fx * sx)[None, None, :]).astype(np.complex64)
    return sfft.irfftn(sfft.rfftn(vol, workers=1) * ramp, s=n, workers=1).astype(np.float32)


def fourier_crop(vol: np.ndarray, m: int) -> np.ndarray:
    """Bin a (n, n, n) volume to (m, m, m) by keeping its central m^3 Fourier components (centre kept at n//2 -> m//2)."""
    n = vol.shape[0]
    f = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(vol)))
    a = box_center(n) - box_center(m)
    f = f[a:a + m, a:a + m, a:a + m]
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(f))).real * (m / n) ** 3


def crop_centred(arr: np.ndarray, m: int) -> np.ndarray:
    """The central m^3 of a centred-layout array (the Fourier region a ``fourier_crop`` to m keeps)."""
    a = box_center(arr.shape[0]) - box_center(m)
    return arr[a:a + m, a:a + m, a:a + m]


def half_weights(n: int) -> np.ndarray:
    """Multiplicity of each rfft component along x in the full spectrum (2, except the x = 0 and Nyquist planes)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


def rfft_radius(n: int) -> np.ndarray:
    """|k| in cycles per voxel of every component of an (n, n, n) rfftn."""
    f = np.fft.fftfreq(n)
    return np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + np.fft.rfftfreq(n)[None, None, :] ** 2)


def centred_radius(n: int) -> np.ndarray:
    """|k| in cycles per voxel of every component of an (n, n, n) centred-layout spectrum."""
    k = np.fft.fftshift(np.fft.fftfreq(n))
    return np.sqrt(sum(g**2 for g in np.meshgrid(k, k, k, indexing="ij")))
