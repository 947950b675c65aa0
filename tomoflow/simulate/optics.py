"""Electron optics of the simulated microscope: CTF and detector MTF.

CTF(k) = -(sqrt(1 - A^2) sin chi(k) + A cos chi(k)),  chi(k) = pi lambda dz k^2 - pi/2 Cs lambda^3 k^4,
with dz the underfocus (``defocus_um = -5`` means 5 um underfocus, as seed 000 writes it), A the
amplitude contrast, and lambda the relativistic electron wavelength. At k = 0 the CTF is -A:
dense objects are dark in the projections, as in real data.
MTF(k) = sinc(pi w / 2) with w = k / k_Nyquist (seed 000, a realistic detector).
"""

from __future__ import annotations

import numpy as np

from ..params import Microscope  # noqa: F401  (the microscope the transfer functions take)


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å."""
    v = voltage_kv * 1e3
    h, m, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    return h / np.sqrt(2 * m * e * v * (1 + e * v / (2 * m * c**2))) * 1e10


def chi(k: np.ndarray, mic: Microscope) -> np.ndarray:
    """Phase aberration at spatial frequency ``k`` (1/Å)."""
    lam = electron_wavelength(mic.voltage_kv)
    dz = -mic.defocus_um * 1e4  # Å of underfocus
    cs = mic.cs_mm * 1e7  # Å
    k2 = np.asarray(k, dtype=np.float64) ** 2
    return np.pi * lam * dz * k2 - 0.5 * np.pi * cs * lam**3 * k2 * k2


def ctf(k: np.ndarray, mic: Microscope) -> np.ndarray:
    a = mic.amplitude_contrast
    x = chi(k, mic)
    return -(np.sqrt(1 - a * a) * np.sin(x) + a * np.cos(x))


def mtf(k: np.ndarray, voxel_size: float) -> np.ndarray:
    """sinc(pi w / 2), w = fraction of Nyquist (np.sinc(x) = sin(pi x) / (pi x))."""
    w = np.asarray(k, dtype=np.float64) * 2.0 * voxel_size
    return np.sinc(w / 2.0)


def transfer(k: np.ndarray, mic: Microscope, voxel_size: float) -> np.ndarray:
    """CTF times MTF (the MTF only if ``mic.mtf``)."""
    t = ctf(k, mic)
    return t * mtf(k, voxel_size) if mic.mtf else t


def ctf_zeros(mic: Microscope, k_max: float) -> np.ndarray:
    """Analytic zeros of the CTF (1/Å) below ``k_max``: chi(k) = n pi - arctan(A / sqrt(1 - A^2))."""
    a = mic.amplitude_contrast
    lam = electron_wavelength(mic.voltage_kv)
    dz = -mic.defocus_um * 1e4
    cs = mic.cs_mm * 1e7
    p, q = np.pi * lam * dz, 0.5 * np.pi * cs * lam**3  # chi = p u - q u^2, u = k^2
    zeros = []
    for n in range(0, 1000):
        target = n * np.pi - np.arctan2(a, np.sqrt(1 - a * a))
        if target <= 0:
            continue
        disc = p * p - 4 * q * target
        if disc < 0:
            break
        u = (p - np.sqrt(disc)) / (2 * q) if q > 0 else target / p
        k = np.sqrt(u)
        if k > k_max:
            break
        zeros.append(k)
    return np.asarray(zeros)
