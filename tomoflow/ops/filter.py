"""Block-wise work over tomograms through the engine: filters into new tomograms.

Blocks are aligned with the output chunks (one task per block, never per voxel), read with the
halo their kernel needs (:mod:`tomoflow.kernels.filters`), and written by region into a staging tomogram
keyed by the work's fingerprint: a rerun with the same parameters resumes where it stopped.
"""

from __future__ import annotations

import functools

import numpy as np
import zarr

from ..engine import run_chunks
from ..kernels import filters
from ..store import Store, TomogramWriter, open_level, tomogram_info
from ..store.stages import fingerprint
from .common import tomogram_blocks


def _filter_task(store_path: str, chunk: int, *, src: str, level: int, out_path: str, block: int, name: str,
                 params: dict) -> None:
    source = open_level(Store.open(store_path, mode="r"), src, level)
    region = tomogram_blocks(source.shape, block)[chunk]
    zarr.open_array(out_path, mode="r+")[region] = filters.filter_block(source, region, name, **params)


def filter_tomogram(store: Store, src: str, out: str, name: str, params: dict, *, level: int = 0,
                    client=None, overwrite: bool = False, progress: bool | None = None):
    """Filter tomogram ``src`` (pyramid ``level``) into a new tomogram ``out`` (with its own pyramid)."""
    filters.halo(name, **params)  # unknown filter or missing parameter: fail before touching the store
    info = tomogram_info(store, src)
    source = open_level(store, src, level)
    block = info.chunk
    work = {"src": src, "level": level, "filter": name, "params": params, "block": block}
    key = fingerprint(work)
    with TomogramWriter(store, out, source.shape, np.float32, voxel_size=info.voxel_size * 2**level, chunk=block,
                        tilt_range=info.tilt_range, tilt_axis=info.tilt_axis, overwrite=overwrite, resume_key=key,
                        source=f"{name} {params} of tomogram '{src}' level {level}") as w:
        task = functools.partial(_filter_task, src=src, level=level, out_path=w.level0_path, block=block, name=name,
                                 params=params)
        run = run_chunks(store, f"filter.{out}", len(tomogram_blocks(source.shape, block)), task, params=work,
                         client=client, progress=progress, restart=not w.resumed)
    return run
