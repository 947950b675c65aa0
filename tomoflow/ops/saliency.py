"""Saliency detection over chunked tomograms through the engine (seed 002, section 3.2.3): template-free picking
and saliency-weighted denoising.

One task per tomogram block: the block is read with the halo :mod:`tomoflow.kernels.saliency` asks for, cut into
super-voxels, decomposed by Robust PCA, and either reduced to candidate peaks (the driver thresholds them
against the whole tomogram's saliency and suppresses neighbours, as DoG picking does, and writes a table-only
particle set) or denoised and written by region into a new tomogram staged under the work's fingerprint (a
rerun with the same parameters resumes; the tomogram appears only when every block is done). Memory per task
is a few times the block plus its halo, whatever the tomogram's size.
"""

from __future__ import annotations

import functools
from dataclasses import asdict

import numpy as np
import zarr

from ..engine import run_chunks
from ..errors import InputError
from ..kernels import saliency
from ..params import SaliencyDenoiseParams, SaliencyParams, SaliencyPickParams
from ..store import Store, TomogramWriter, open_level, tomogram_info
from ..store.stages import fingerprint
from .common import tomogram_blocks
from .pick import run_block_picker


def _kernel_args(p: SaliencyParams) -> dict:
    return {"spacing": p.spacing, "compactness": p.compactness, "iterations": p.iterations, "smooth": p.smooth,
            "scales": tuple(p.scales), "sparsity": p.sparsity}


def _pick_task(store_path: str, chunk: int, *, tomogram: str, level: int, block: int, window: int,
               kernel: dict) -> np.ndarray:
    source = open_level(Store.open(store_path, mode="r"), tomogram, level)
    return saliency.block_peaks(source, tomogram_blocks(source.shape, block)[chunk], window, **kernel)


def pick_saliency(store: Store, tomogram: str, out: str, params: SaliencyPickParams = SaliencyPickParams(), *,
                  client=None, overwrite: bool = False, progress: bool | None = None) -> dict:
    """Pick the salient spots of ``tomogram`` into a new table-only particle set ``out``; returns a summary.

    Picks: local maxima of the saliency map above mean + ``threshold`` x std of the whole map, no two closer than
    ``min_distance``; each row's ``score`` is its saliency in standard deviations above the mean."""
    if store.has("particles", out) and not overwrite:  # refused before any work, so the store stays as it was
        raise InputError(store.path, f"particle set '{out}' already exists (use --overwrite to replace it)")
    info = tomogram_info(store, tomogram)
    source = open_level(store, tomogram, params.level)
    vs = info.voxel_size * 2**params.level
    window = max(1, int(params.min_distance_A / vs / 2))
    work = {"tomogram": tomogram, **asdict(params), "block": info.chunk}
    stage = f"pick_saliency.{out}"
    task = functools.partial(_pick_task, tomogram=tomogram, level=params.level, block=info.chunk, window=window,
                             kernel=_kernel_args(params.saliency))
    return run_block_picker(store, stage, task, source, tomogram, out, params, work, vs, method="saliency",
                            label="saliency", client=client, progress=progress, overwrite=overwrite)


def _denoise_task(store_path: str, chunk: int, *, src: str, level: int, out_path: str, block: int,
                  fine: float, coarse: float, scale: float, kernel: dict) -> None:
    source = open_level(Store.open(store_path, mode="r"), src, level)
    region = tomogram_blocks(source.shape, block)[chunk]
    zarr.open_array(out_path, mode="r+")[region] = saliency.denoise_block(source, region, fine=fine, coarse=coarse,
                                                                          scale=scale, **kernel)


def denoise_saliency(store: Store, src: str, out: str, params: SaliencyDenoiseParams = SaliencyDenoiseParams(), *,
                     client=None, overwrite: bool = False, progress: bool | None = None):
    """Denoise tomogram ``src`` (pyramid ``level``) into a new tomogram ``out`` (with its own pyramid) by
    saliency-weighted smoothing; returns the engine's run record."""
    if store.has("tomograms", out) and not overwrite:
        raise InputError(store.path, f"tomogram '{out}' already exists (use --overwrite to replace it)")
    info = tomogram_info(store, src)
    source = open_level(store, src, params.level)
    block = info.chunk
    work = {"src": src, **asdict(params), "block": block}
    with TomogramWriter(store, out, source.shape, np.float32, voxel_size=info.voxel_size * 2**params.level,
                        chunk=block, tilt_range=info.tilt_range, tilt_axis=info.tilt_axis, overwrite=overwrite,
                        resume_key=fingerprint(work),
                        source=f"saliency denoising of tomogram '{src}' level {params.level}") as w:
        task = functools.partial(_denoise_task, src=src, level=params.level, out_path=w.level0_path, block=block,
                                 fine=params.fine, coarse=params.coarse, scale=params.weight_scale,
                                 kernel=_kernel_args(params.saliency))
        run = run_chunks(store, f"denoise_saliency.{out}", len(tomogram_blocks(source.shape, block)), task,
                         params=work, client=client, progress=progress, restart=not w.resumed)
    return run
