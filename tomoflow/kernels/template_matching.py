"""Template matching on one tomogram block: wedge-aware, locally normalised FFT cross-correlation.

For each rotation R of a uniform sampling of SO(3) at an angular step (super-Fibonacci spirals,
about 8 pi^2 / step^3 rotations) the template is rotated (a particle with RELION matrix R is the
template rotated by R), the tomogram's missing wedge is applied in Fourier space, and the result
is masked by a sphere and normalised to zero mean and unit variance inside it. The score at each
voxel is the normalised cross-correlation (Roseman's local normalisation: the tomogram's mean and
variance under the sphere, computed once per block because the sphere is rotation invariant).
Each voxel keeps its best score and the index of the rotation that gave it.

Blocks (one task each) are read with a halo of the template radius plus the peak window and
zero-padded by the template radius, so the correlation is linear and tomogram edges are treated
alike whatever the chunking. Peaks are local maxima in the block's core, thresholded and
suppressed (NMS) globally as in DoG picking (:mod:`.peaks`). numpy/scipy FFT on CPU by default; torch
(CUDA) when given a torch device (the driver, :mod:`tomoflow.ops.pick`, routes blocks to GPU workers).
"""

from __future__ import annotations

import numpy as np
from scipy import fft

from . import filters
from .geometry import box_center, rotate_volume, sphere_mask
from .peaks import block_peak_rows
from .wedge import wedge_mask


def prepared_templates(template: np.ndarray, rotations: np.ndarray, tilt_range) -> np.ndarray:
    """Every rotated template with the wedge applied, masked by the sphere, zero mean, unit norm."""
    box = template.shape[0]
    mask = sphere_mask(box)
    wedge = None if tilt_range is None else fft.ifftshift(wedge_mask((box,) * 3, *tilt_range)).astype(np.float32)
    out = np.empty((len(rotations), box, box, box), np.float32)
    for i, rot in enumerate(rotations):
        t = rotate_volume(template, rot, order=1)
        if wedge is not None:
            t = fft.ifftn(fft.fftn(t) * wedge).real
        t = np.where(mask, t - t[mask].mean(), 0.0)
        out[i] = t / np.sqrt((t * t).sum())
    return out


def torch_device(preference: str = "auto"):
    """The torch device to correlate on: CUDA when asked for or available ("auto"), "cpu" when asked;
    None (numpy) when torch is missing or "auto" finds no CUDA."""
    if preference == "numpy":
        return None
    try:
        import torch
    except ImportError:
        if preference != "auto":
            raise RuntimeError("template matching on a torch device needs PyTorch installed") from None
        return None
    if preference == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else None
    return torch.device(preference)


def match_block(data: np.ndarray, templates: np.ndarray, device=None):
    """(best normalised correlation, best template index) at every voxel of ``data`` (zero outside).

    The local statistics are computed in float64 (no cancellation on data with large offsets); the
    per-rotation correlations in float32 (half the time of float64 FFTs), with numpy or, given a
    torch ``device`` (e.g. CUDA), with torch."""
    box = templates.shape[1]
    h = box_center(box)
    pad64 = np.pad(np.asarray(data, np.float64), h)
    shape = pad64.shape
    wrap = np.ix_(*[(np.arange(box) - h) % s for s in shape])  # template voxel m -> (m - h) mod shape

    def kernel_ft(k, dtype):  # correlation kernel: sum_m pad(x + m - c) k(m) = irfft(F(pad) conj(F(wrapped k)))
        full = np.zeros(shape, dtype)
        full[wrap] = k
        return np.conj(fft.rfftn(full))

    mask = sphere_mask(box).astype(np.float64)
    n = mask.sum()
    m_ft = kernel_ft(mask, np.float64)
    mean = fft.irfftn(fft.rfftn(pad64) * m_ft, shape) / n
    sq = fft.irfftn(fft.rfftn(pad64 * pad64) * m_ft, shape) / n
    inv = (1.0 / (np.sqrt(n) * np.sqrt(np.maximum(sq - mean * mean, 1e-12)))).astype(np.float32)
    del mean, sq, m_ft
    if device is not None:
        return _correlate_torch(pad64.astype(np.float32), inv, templates, h, device)
    f_pad = fft.rfftn(pad64.astype(np.float32))
    best = np.full(shape, -np.inf, np.float32)
    arg = np.zeros(shape, np.int32)
    better = np.empty(shape, bool)
    for i, t in enumerate(templates):
        score = fft.irfftn(f_pad * kernel_ft(t.astype(np.float32), np.float32), shape)
        score *= inv
        np.greater(score, best, out=better)
        np.copyto(best, score, where=better)
        arg[better] = i
    core = tuple(slice(h, s - h) for s in shape)
    return best[core], arg[core]


def _correlate_torch(pad: np.ndarray, inv: np.ndarray, templates: np.ndarray, h: int, device):
    """The rotation loop of :func:`match_block` with torch on ``device``."""
    import torch

    shape = pad.shape
    box = templates.shape[1]
    f_pad = torch.fft.rfftn(torch.from_numpy(pad).to(device))
    inv_t = torch.from_numpy(inv).to(device)
    best = torch.full(shape, float("-inf"), device=device)
    arg = torch.zeros(shape, dtype=torch.int32, device=device)
    wz, wy, wx = (torch.as_tensor((np.arange(box) - h) % s, device=device) for s in shape)
    full = torch.zeros(shape, device=device)
    for i, t in enumerate(torch.from_numpy(np.ascontiguousarray(templates, np.float32)).to(device)):
        full.zero_()
        full[wz[:, None, None], wy[None, :, None], wx[None, None, :]] = t
        score = torch.fft.irfftn(f_pad * torch.conj(torch.fft.rfftn(full)), s=shape) * inv_t
        better = score > best
        best = torch.where(better, score, best)
        arg[better] = i
    core = tuple(slice(h, s - h) for s in shape)
    return best[core].cpu().numpy(), arg[core].cpu().numpy()


def match_block_peaks(source, region, templates: np.ndarray, window: int, device=None):
    """Template matching of block ``region`` of ``source`` (anything sliceable): (peak rows (z, y, x, score,
    rotation index) with the stats row last, as :func:`.peaks.block_peak_rows`; best score and best rotation
    index over the block's core)."""
    h = box_center(templates.shape[1])
    ext = filters.extend(region, window + h, source.shape)
    score, arg = match_block(np.asarray(source[ext]), templates, device)
    rows, core_score = block_peak_rows(score, ext, region, window, source.shape, extra=(arg,))
    return rows, core_score, arg[filters.core_of(ext, region)]
