"""Picking over chunked tomograms through the engine: DoG (seed 000, section 3.1.2) and template matching.

One task per tomogram block returns the block's candidate peaks and response sums (:mod:`tomoflow.kernels.peaks`);
the driver thresholds them against the whole tomogram's response, suppresses neighbours and writes the picks as
a table-only particle set (positions in Å of level 0, the tomogram's missing wedge). Template matching also
writes its score map as a tomogram ``<out>_scores`` with a ``rotation`` index array, and routes its blocks to
GPU workers (torch on CUDA there) when the cluster has them.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

import numpy as np
import zarr

from ..engine import gpu_workers, run_chunks
from ..kernels.geometry import relion_angles
from ..kernels.peaks import level_to_angstrom, select_peaks
from ..kernels.picking import block_peaks
from ..kernels.rotations import uniform_rotations
from ..kernels.template_matching import match_block_peaks, prepared_templates, torch_device
from ..errors import InputError
from ..params import MAX_TASK_BYTES, DogParams, MatchParams
from ..store import Store, TomogramWriter, create_particle_set, open_level, tomogram_info
from ..store.stages import StageRecord, fingerprint
from .common import tomogram_blocks


def write_picks(store: Store, out: str, tomogram: str, level: int, picks: np.ndarray, columns: dict, *,
                overwrite: bool, attrs: dict):
    """Picks (rows z, y, x at pyramid ``level``, ...) as a table-only particle set: positions in Å of level 0,
    the tomogram's missing wedge, and the given extra ``columns``."""
    info = tomogram_info(store, tomogram)
    zyx = level_to_angstrom(picks[:, :3], level, info.voxel_size)
    n = len(picks)
    tilt = info.tilt_range or (np.nan, np.nan)
    create_particle_set(store, out, {
        "tomogram": np.full(n, tomogram, dtype=object), "x": zyx[:, 2], "y": zyx[:, 1], "z": zyx[:, 0],
        "tilt_min": np.full(n, tilt[0]), "tilt_max": np.full(n, tilt[1]), "tilt_axis": np.full(n, info.tilt_axis),
        **columns}, voxel_size=info.voxel_size,
        tomograms={tomogram: {"shape": list(info.shape), "voxel_size": info.voxel_size}}, overwrite=overwrite,
        attrs=attrs)


def tomogram_polarity(store: Store, tomogram: str) -> str:
    """The contrast recorded at import ("dark" or "bright"), or detected from a sample of the binned tomogram."""
    c = store.attrs("tomograms", tomogram).get("contrast")
    if c in ("dark", "bright"):
        return c
    from ..kernels.background import detect_polarity

    info = tomogram_info(store, tomogram)
    vol = open_level(store, tomogram, min(1, info.levels - 1))
    step = max(1, int(np.ceil((np.prod(vol.shape) / 4e6) ** (1 / 3))))
    return detect_polarity(np.asarray(vol[::step, ::step, ::step]))


def _dog_task(store_path: str, chunk: int, *, tomogram: str, level: int, block: int, sigma: float, k: float,
              window: int, sign: float) -> np.ndarray:
    source = open_level(Store.open(store_path, mode="r"), tomogram, level)
    return block_peaks(source, tomogram_blocks(source.shape, block)[chunk], sigma, k, window, sign)


def pick_dog(store: Store, tomogram: str, out: str, params: DogParams = DogParams(), *, client=None,
             overwrite: bool = False, progress: bool | None = None) -> dict:
    """Pick particles in ``tomogram`` into a new table-only particle set ``out``; returns a summary."""
    info = tomogram_info(store, tomogram)
    source = open_level(store, tomogram, params.level)
    vs = info.voxel_size * 2**params.level
    sigma = params.sigma_A / vs
    window = max(1, int(params.min_distance_A / vs / 2))
    work = {"tomogram": tomogram, **asdict(params), "block": info.chunk}
    stage = f"pick.{out}"
    polarity = tomogram_polarity(store, tomogram) if params.polarity == "auto" else params.polarity
    task = functools.partial(_dog_task, tomogram=tomogram, level=params.level, block=info.chunk, sigma=sigma,
                             k=params.k, window=window, sign=1.0 if polarity == "bright" else -1.0)
    return run_block_picker(store, stage, task, source, tomogram, out, params, work, vs, method="dog",
                            label="response", client=client, progress=progress, overwrite=overwrite)


def run_block_picker(store: Store, stage: str, task, source, tomogram: str, out: str, params, work: dict, vs: float,
                     *, method: str, label: str, client=None, progress=None, overwrite: bool = False) -> dict:
    """The shared tail of the block pickers (DoG, saliency): ``task`` over every block of ``source`` through the
    engine, the blocks' candidate peaks thresholded globally (``params.threshold`` standard deviations of the
    ``label`` response) and suppressed within ``params.min_distance_A``, written as set ``out`` with z-scores."""
    run_chunks(store, stage, len(tomogram_blocks(source.shape, work["block"])), task, params=work, client=client,
               progress=progress, restart=overwrite)
    parts = list(StageRecord.open(store, stage).results().values())
    picks, mean, std, n_above = select_peaks(parts, params.threshold, params.min_distance_A / vs)
    write_picks(store, out, tomogram, params.level, picks,
                {"score": (picks[:, 3] - mean) / std if std > 0 else picks[:, 3]}, overwrite=overwrite,
                attrs={"picking": {"method": method, **work, "candidates": n_above, f"{label}_mean": mean,
                                   f"{label}_std": std}})
    return {"picked": len(picks), "candidates_above_threshold": n_above, "blocks": len(parts)}


def _match_task(store_path: str, chunk: int, *, tomogram: str, level: int, block: int, templates_path: str,
                window: int, out_path: str, device: str = "auto"):
    source = open_level(Store.open(store_path), tomogram, level)
    region = tomogram_blocks(source.shape, block)[chunk]
    rows, score, rotation = match_block_peaks(source, region, np.load(templates_path), window,
                                              torch_device(device))
    out = zarr.open_group(out_path, mode="r+")
    out["0"][region] = score
    out["rotation"][region] = rotation
    return rows


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
    info = tomogram_info(store, tomogram)
    source = open_level(store, tomogram, params.level)
    vs = info.voxel_size * 2**params.level
    n_rot = int(np.ceil(8 * np.pi**2 / np.deg2rad(params.angular_step) ** 3))  # as uniform_rotations makes
    if n_rot * template.size * 4 > MAX_TASK_BYTES:
        raise InputError("--angular-step", f"{params.angular_step:g} degrees makes {n_rot:,} rotated templates of "
                                           f"{template.shape[0]}^3 ({n_rot * template.size * 4 / 2**30:.1f} GiB, at "
                                           f"most {MAX_TASK_BYTES / 2**30:g}); use a coarser step or a smaller template")
    rotations = uniform_rotations(params.angular_step)
    templates = prepared_templates(np.asarray(template, np.float64), rotations, info.tilt_range)
    min_distance = params.min_distance_A or 0.7 * (template.shape[0] / 2) * vs
    window = max(1, int(min_distance / vs / 2))
    work = {"tomogram": tomogram, **asdict(params), "template": fingerprint({"t": template.tobytes().hex(),
                                                                              "s": float(template.sum())})}
    key = fingerprint(work)
    # beside the store (the workers share its file system), named by the work: concurrent runs never share it
    workdir = Path(workdir) if workdir else store.path / ".staging"
    workdir.mkdir(parents=True, exist_ok=True)
    tpath = workdir / f"templates-{out}-{key}.npy"
    np.save(tpath, templates)
    try:
        return _match(store, tomogram, out, template, params, info, source, vs, rotations, tpath, window,
                      min_distance, work, key, client, overwrite, progress, device)
    finally:
        tpath.unlink(missing_ok=True)


def _match(store, tomogram, out, template, params, info, source, vs, rotations, tpath, window, min_distance, work,
           key, client, overwrite, progress, device) -> dict:
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
    picks, mean, std, _ = select_peaks(parts, params.threshold, min_distance / vs)
    angles = relion_angles(rotations[picks[:, 4].astype(int)]).reshape(-1, 3)
    write_picks(store, out, tomogram, params.level, picks,
                {"rot": angles[:, 0], "tilt": angles[:, 1], "psi": angles[:, 2], "score": picks[:, 3]},
                overwrite=overwrite, attrs={"picking": {"method": "template", **work, "rotations": len(rotations),
                                                        "score_mean": mean, "score_std": std,
                                                        "gpu_workers": len(gpus)}})
    n = len(picks)
    return {"picked": n, "rotations": len(rotations), "blocks": len(parts), "gpu_workers": len(gpus)}
