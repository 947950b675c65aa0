"""Template matching over chunked tomograms: wedge-aware, locally normalised FFT cross-correlation.

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
suppressed (NMS) globally as in DoG picking. numpy/scipy FFT on CPU by default; torch (CUDA) on workers
that advertise a GPU resource (:func:`pick_template`).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import zarr
from scipy import fft, ndimage

from . import filters
from .blockwise import tomogram_blocks
from .engine import gpu_workers, run_chunks
from .estimate import wedge_mask
from .geometry import box_center, relion_angles, rotate_volume
from .picking import select_peaks, write_picks
from .store import Store, TomogramWriter, open_level, tomogram_info
from .store.stages import StageRecord, fingerprint


def uniform_rotations(step_deg: float) -> np.ndarray:
    """About 8 pi^2 / step^3 rotation matrices spread evenly over SO(3) (super-Fibonacci spirals)."""
    from scipy.spatial.transform import Rotation

    n = max(1, int(np.ceil(8 * np.pi**2 / np.deg2rad(step_deg) ** 3)))
    phi, psi = np.sqrt(2.0), 1.533751168755204288118041
    s = np.arange(n) + 0.5
    r, big_r = np.sqrt(s / n), np.sqrt(1.0 - s / n)
    a, b = 2 * np.pi * s / phi, 2 * np.pi * s / psi
    q = np.stack([r * np.sin(a), r * np.cos(a), big_r * np.sin(b), big_r * np.cos(b)], axis=1)
    return Rotation.from_quat(q).as_matrix()


def sphere_mask(box: int, radius: float | None = None) -> np.ndarray:
    c = box_center(box)
    r = np.sqrt(((np.indices((box,) * 3) - c) ** 2).sum(0))
    return r <= (radius if radius is not None else box / 2 - 1)


@dataclass(frozen=True)
class MatchParams:
    angular_step: float = 30.0  # degrees
    threshold: float = 5.0  # picks score above mean + threshold * std of the whole score map
    min_distance_A: float | None = None  # default: 0.7 x the template's mask radius (one particle, one pick)
    level: int = 1

    def rotations(self) -> np.ndarray:
        return uniform_rotations(self.angular_step)


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


def _match_task(store_path: str, chunk: int, *, tomogram: str, level: int, block: int, templates_path: str,
                window: int, out_path: str, device: str = "auto"):
    store = Store.open(store_path)
    source = open_level(store, tomogram, level)
    region = tomogram_blocks(source.shape, block)[chunk]
    templates = np.load(templates_path)
    h = box_center(templates.shape[1])
    ext = filters.extend(region, window + h, source.shape)
    score, arg = match_block(np.asarray(source[ext]), templates, torch_device(device))
    local = filters.extend(region, window, source.shape)
    ls, la = score[filters.core_of(ext, local)], arg[filters.core_of(ext, local)]
    is_max = ls == ndimage.maximum_filter(ls, size=2 * window + 1, mode="nearest")
    core = filters.core_of(local, region)
    out = zarr.open_group(out_path, mode="r+")
    out["0"][region] = ls[core]
    out["rotation"][region] = la[core]
    peaks = np.argwhere(is_max[core])
    vals = ls[core][tuple(peaks.T)]
    rot = la[core][tuple(peaks.T)]
    c = ls[core].astype(np.float64)
    rows = np.column_stack([peaks + [r.start for r in region], vals, rot]).reshape(-1, 5)
    return np.vstack([rows, [[c.size, c.sum(), (c * c).sum(), 0.0, 0.0]]])


def pick_template(store: Store, tomogram: str, out: str, template: np.ndarray, params: MatchParams = MatchParams(),
                  *, client=None, overwrite: bool = False, progress: bool | None = None, workdir=None,
                  device: str = "auto") -> dict:
    """Match ``template`` (a (D, D, D) map at the voxel size of pyramid ``params.level``) over the tomogram.

    Writes the score map as tomogram ``<out>_scores`` (with a ``rotation`` index array) and the picks
    (score above mean + threshold * std of the score map, NMS) as particle set ``out`` with angles.
    CPU (numpy) by default; when the cluster has workers started with ``--resources GPU=n`` the blocks
    go to them (``resources={"GPU": 1}``) and correlate with torch on CUDA there (``device="auto"``);
    ``device`` "cpu"/"cuda" forces torch on that device, "numpy" forces numpy.
    """
    import tempfile
    from pathlib import Path

    info = tomogram_info(store, tomogram)
    source = open_level(store, tomogram, params.level)
    vs = info.voxel_size * 2**params.level
    rotations = params.rotations()
    templates = prepared_templates(np.asarray(template, np.float64), rotations, info.tilt_range)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="tomoflow-tm-"))
    tpath = workdir / "templates.npy"  # shared file system with the workers, as the store
    np.save(tpath, templates)
    min_distance = params.min_distance_A or 0.7 * (template.shape[0] / 2) * vs
    window = max(1, int(min_distance / vs / 2))
    work = {"tomogram": tomogram, **asdict(params), "template": fingerprint({"t": template.tobytes().hex()[:4096],
                                                                              "s": float(template.sum())})}
    key = fingerprint(work)
    with TomogramWriter(store, f"{out}_scores", source.shape, np.float32, voxel_size=vs, chunk=info.chunk, levels=1,
                        tilt_range=info.tilt_range, overwrite=overwrite, resume_key=key,
                        source=f"template matching of '{tomogram}' level {params.level}") as w:
        if "rotation" not in w.group:
            w.group.create_array("rotation", shape=source.shape, chunks=w.level0.chunks, dtype="int32", fill_value=0)
        task = functools.partial(_match_task, tomogram=tomogram, level=params.level, block=info.chunk,
                                 templates_path=str(tpath), window=window,
                                 out_path=str(Path(w.level0_path).parent), device=device)
        stage = f"match.{out}"
        gpus = gpu_workers(client)
        run_chunks(store, stage, len(tomogram_blocks(source.shape, info.chunk)), task, params=work, client=client,
                   progress=progress, restart=not w.resumed, gpu=True)
        parts = list(StageRecord.open(store, stage).results().values())
    tpath.unlink(missing_ok=True)
    picks, mean, std, _ = select_peaks(parts, params.threshold, min_distance / vs)
    angles = relion_angles(rotations[picks[:, 4].astype(int)]).reshape(-1, 3)
    write_picks(store, out, tomogram, params.level, picks,
                {"rot": angles[:, 0], "tilt": angles[:, 1], "psi": angles[:, 2], "score": picks[:, 3]},
                overwrite=overwrite, attrs={"picking": {"method": "template", **work, "rotations": len(rotations),
                                                        "score_mean": mean, "score_std": std,
                                                        "gpu_workers": len(gpus)}})
    n = len(picks)
    return {"picked": n, "rotations": len(rotations), "blocks": len(parts), "gpu_workers": len(gpus)}


def structure_template(spec: str, voxel_size: float, box: int, *, microscope=None, detector_voxel: float | None = None,
                       resolution: float | None = None) -> np.ndarray:
    """A template from an embedded structure or model file at ``voxel_size``, filtered by the CTF and
    MTF of ``microscope`` (seed 000 defaults; None: unfiltered) so it has the tomogram's contrast.
    ``detector_voxel``: the unbinned voxel size the MTF refers to (default ``voxel_size``)."""
    from .simulate.density import density_map
    from .simulate.optics import Microscope, transfer
    from .simulate.structures import resolve_structure

    dens = density_map(resolve_structure(spec), box, voxel_size, resolution or voxel_size)
    if microscope is False:
        return dens
    mic = microscope or Microscope()
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*[fft.fftfreq(box)] * 3, indexing="ij"))) / voxel_size
    return fft.ifftn(fft.fftn(dens) * transfer(k, mic, detector_voxel or voxel_size)).real.astype(np.float32)
