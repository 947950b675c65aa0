"""Crowded tomograms: many particles of several classes, a whole-volume tilt series, and its
reconstruction, with the ground truth kept in the store.

1. Placement (one process, from the seed): random class, uniform random rotation and a random
   position such that no two particles' 99%-mass spheres overlap and each lies inside the volume.
2. Tilt series (tasks over groups of tilts, resumable): each image is the sum of the particles'
   Fourier-slice projections pasted at their projected positions (sub-pixel shifts as phase
   ramps); then, in the seed's order, Gaussian noise and CTF x MTF. Stored in ``tiltseries/<name>``.
3. Reconstruction: weighted (ramp-filtered) back-projection, block by block into the tomogram's
   OME-Zarr levels: the volume is never whole in memory.

The noise level makes an average particle of the mixture, cut out in a box of ``box`` voxels,
have the requested SNR, as for :mod:`.subtomograms`. Tilting is about the y axis.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft

from ..kernels.geometry import box_center, relion_angles, relion_matrix
from ..kernels.rotations import random_rotations
from ..params import CrowdedSpec
from .optics import Microscope, transfer
from .structures import structure_density
from .tiltseries import TiltScheme, TiltSeriesSimulator, crowded_scheme

TILTS_PER_TASK = 8


@lru_cache(maxsize=4)
def _densities(spec_json: str) -> list[np.ndarray]:
    spec = CrowdedSpec.from_json(spec_json)
    return [structure_density(c, spec.box, spec.voxel_size, spec.resolution) for c in spec.classes]


def mass_radius(density: np.ndarray, fraction: float = 0.99) -> float:
    """Radius (voxels) around the box centre holding ``fraction`` of the map's mass."""
    c = box_center(density.shape[0])
    r = np.sqrt(((np.indices(density.shape) - c) ** 2).sum(0)).ravel()
    w = np.clip(density.ravel(), 0, None)
    order = np.argsort(r)
    cum = np.cumsum(w[order])
    return float(r[order][np.searchsorted(cum, fraction * cum[-1])])


def place_particles(spec: CrowdedSpec) -> dict:
    """Non-overlapping random placements: (x, y, z) voxel positions, class, RELION angles."""
    radii = np.array([mass_radius(d) for d in _densities(spec.to_json())])
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xC0FFEE]))
    hi = np.array(spec.shape[::-1], float)  # x, y, z
    pos, cls = [], []
    for _ in range(spec.n_particles * 200):
        if len(pos) == spec.n_particles:
            break
        c = int(rng.integers(len(spec.classes)))
        r = radii[c]
        if np.any(2 * r >= hi):
            continue
        p = rng.uniform(r, hi - r)
        if pos and np.any(np.linalg.norm(np.asarray(pos) - p, axis=1) < radii[cls] + r):
            continue
        pos.append(p)
        cls.append(c)
    pos = np.asarray(pos, float).reshape(-1, 3)
    angles = relion_angles(random_rotations(len(pos), rng)).reshape(-1, 3)
    return {"xyz": pos, "class": np.asarray(cls, int), "angles": angles, "radii": radii}


def noise_sigma(spec: CrowdedSpec) -> float:
    """Per-pixel noise of the projections giving an average particle (box ``box``) the target SNR."""
    js = spec.to_json()
    sim = TiltSeriesSimulator(spec.box, spec.voxel_size, crowded_scheme(spec), Microscope(**spec.microscope))
    sig = np.mean([np.var(sim.reconstruct(sim.projections(sim.map_transform(d), np.eye(3)))) for d in _densities(js)])
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xA015E]))
    unit = np.var(sim.reconstruct(rng.standard_normal((len(sim.theta), spec.box, spec.box))))
    return float(np.sqrt(sig / (spec.snr * unit))) if np.isfinite(spec.snr) else 0.0


def project_tilt_group(spec: CrowdedSpec, placements: dict, tilt_index: range, sigma: float) -> np.ndarray:
    """Noisy, CTF-filtered projection images (len(tilt_index), Y, X) of the whole volume."""
    angles = crowded_scheme(spec).angles()[list(tilt_index)]
    nz, ny, nx = spec.shape
    d, half = spec.box, box_center(spec.box)
    sim = TiltSeriesSimulator(d, spec.voxel_size, TiltScheme(angles[0], angles[-1], spec.tilt_step), None)
    fts = [sim.map_transform(m) for m in _densities(spec.to_json())]
    th = np.deg2rad(angles)
    cx, cz = box_center(nx), box_center(nz)
    images = np.zeros((len(angles), ny, nx))
    for (x, y, z), c, ang in zip(placements["xyz"], placements["class"], placements["angles"]):
        xp = (x - cx) * np.cos(th) + (z - cz) * np.sin(th) + cx  # projected x of the centre, per tilt
        ix, iy = np.round(xp).astype(int), int(round(y))
        shifts = np.stack([xp - ix, np.full(len(th), y - iy)], axis=1)
        proj = sim.projections(fts[c], relion_matrix(*ang), image_shifts=shifts)
        for k in range(len(th)):
            _paste(images[k], proj[k], iy - half, ix[k] - half)
    mic = Microscope(**spec.microscope)
    ky = fft.fftfreq(ny)[:, None] / spec.voxel_size
    kx = fft.fftfreq(nx)[None, :] / spec.voxel_size
    tf = transfer(np.hypot(kx, ky), mic, spec.voxel_size)
    for k, t in enumerate(tilt_index):
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x7117, int(t)]))
        noisy = images[k] + sigma * rng.standard_normal((ny, nx))
        images[k] = fft.ifft2(fft.fft2(noisy) * tf).real
    return images.astype(np.float32)


def _paste(image: np.ndarray, patch: np.ndarray, y0: int, x0: int) -> None:
    ny, nx = image.shape
    d = patch.shape[0]
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + d, ny), min(x0 + d, nx)
    if ya < yb and xa < xb:
        image[ya:yb, xa:xb] += patch[ya - y0:yb - y0, xa - x0:xb - x0]


def ramp_filter(images: np.ndarray) -> np.ndarray:
    """|k_x| filter along x (perpendicular to the tilt axis) of each projection image."""
    nx = images.shape[-1]
    return fft.irfft(fft.rfft(images, axis=-1) * np.abs(fft.rfftfreq(nx)), n=nx, axis=-1)


def backproject_block(rows: np.ndarray, angles_deg: np.ndarray, shape, rz: slice, rx: slice) -> np.ndarray:
    """Weighted back-projection into voxels ``[rz, :, rx]`` of a volume of ``shape`` from the
    ramp-filtered image rows (T, ny_block, X) that cover the block's y range."""
    nz, ny, nx = shape
    cx, cz = box_center(nx), box_center(nz)
    xs = np.arange(rx.start, rx.stop, dtype=np.float64) - cx
    out = np.zeros((rz.stop - rz.start, rows.shape[1], rx.stop - rx.start))
    for img, th in zip(rows, np.deg2rad(angles_deg)):
        rows_t = img
        for k, z in enumerate(range(rz.start, rz.stop)):
            u = xs * np.cos(th) + (z - cz) * np.sin(th) + cx
            i0 = np.floor(u).astype(int)
            f = u - i0
            ok0, ok1 = (i0 >= 0) & (i0 < nx), (i0 + 1 >= 0) & (i0 + 1 < nx)
            out[k] += np.where(ok0, rows_t[:, np.clip(i0, 0, nx - 1)] * (1 - f), 0.0)
            out[k] += np.where(ok1, rows_t[:, np.clip(i0 + 1, 0, nx - 1)] * f, 0.0)
    step = np.deg2rad(np.diff(angles_deg).mean()) if len(angles_deg) > 1 else np.pi
    return (out * step).astype(np.float32)  # inverse Radon: each tilt stands for one angular step
