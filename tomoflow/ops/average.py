"""``average``: reference-free averaging and classification of subtomograms (seed 000 section 3.3), through the engine.

One iteration = one engine stage over the particle chunks: every task runs
:func:`tomoflow.kernels.averaging.classify_chunk` on its chunk (aligning each member particle of every
cluster being processed to each current class average of its cluster with the wedge-constrained
correlation of :mod:`tomoflow.kernels.align`) and returns per-(cluster, class, half-set) partial sums of the
wedge-weighted spectra and weights; its members' classes, poses and scores are written by region into
per-particle arrays. The driver adds the partial sums and forms each average. Iteration 0 puts every member
in a random class (seeded) with the identity pose (reference-free), or its table pose when asked
(``from_poses``: poses found by template matching or given in a STAR file; never the answer key). Averaging is classification
with one class. Every iteration's stage is resumable; the averages of each iteration are kept as maps
``<name>.it<k>``.

Gold-standard (as RELION): the particles are split into two half-sets by index parity, and each half is
aligned only to its own half's references (maps ``<name>.it<k>.halves``), so the halves never see each
other's noise. Both start from the same reference: iteration 0's average of all members, low-passed to
``start_lowpass`` (shared detail coarser than that is all they have in common). The reported resolution is
the FSC 0.5 of the two half-set averages of the last iteration, and the final map is their combination.
"""

from __future__ import annotations

import functools
from dataclasses import asdict

import numpy as np

from ..engine import gpu_workers, run_chunks
from ..errors import InputError
from ..kernels.align import Reference
from ..kernels.averaging import average_from_sums, classify_chunk, compose_poses, lowpass, register_map
from ..kernels.fsc import fsc, resolution
from ..kernels.template_matching import torch_device
from ..params import AlignParams, AverageParams
from ..store import ParticleSet, Store
from ..store.stages import StageRecord
from .common import check_average_outputs, require_wedges

_REFS: dict = {}  # per worker: (store, map name, map's creation time, align params) -> prepared references
_REFS_LOCK = __import__("threading").Lock()


def _arrays(name: str):
    mine = {"average": name}  # marks the arrays as this averaging's, so no other array is overwritten
    return [(f"{name}_class", (), "int32", -1, mine),
            (f"{name}_pose", (6,), "float32", 0, {**mine, "columns": "rot tilt psi shift_x shift_y shift_z"}),
            (f"{name}_score", (), "float32", np.nan, mine),
            # the poses in the final map's frame (half-set 2's composed with its half map's registration)
            (f"{name}_pose_final", (6,), "float32", 0, {**mine, "columns": "rot tilt psi shift_x shift_y shift_z"})]


def _references(store: Store, name: str, params: AlignParams):
    """refs[cluster][half][class]: prepared references of map stack ``name`` (clusters, 2 halves, classes)."""
    # keyed by the map's creation time too: a rerun that rewrites "<name>.it<k>" must not reuse old references
    key = (str(store.path), name, store.attrs("maps", name).get("created"), params)
    with _REFS_LOCK:
        if key not in _REFS:
            _REFS.clear()  # one iteration's references at a time
            maps, _, info = store.read_map(name)
            obs, _, _ = store.read_map(f"{name}.observed")
            shape = (len(info["clusters"]), 2, int(info["classes"])) + maps.shape[1:]
            maps, obs = maps.reshape(shape), obs.reshape(shape)
            _REFS[key] = [[[Reference(maps[c, h, k], obs[c, h, k] > 0.5, params) for k in range(shape[2])]
                           for h in range(2)] for c in range(shape[0])]
        return _REFS[key]


def _iteration_task(store_path: str, chunk: int, *, set_name: str, name: str, clusters: list, iteration: int,
                    refs: str | None, params: dict, device: str = "numpy") -> np.ndarray:
    p = AverageParams(**{**params, "align": AlignParams(**params["align"])})
    store = Store.open(store_path)
    ps = ParticleSet(store, set_name)
    sl = ps.chunk_slice(chunk)
    pose_cols = ["rot", "tilt", "psi"] if p.from_poses else []  # a reference-free run never reads a pose
    rows = ps.rows(sl, ["cluster", *pose_cols, "tilt_min", "tilt_max", "tilt_axis"])
    n, C = ps.box_size, p.classes
    if not any((rows["cluster"] == c).any() if c >= 0 else len(rows["cluster"]) for c in clusters):
        empty = np.zeros(len(clusters) * C * 2 * 3 * n * n * (n // 2 + 1) + len(clusters) * C)
        return np.concatenate([empty, [0.0, 0.0]])
    ref_sets = _references(store, refs, p.align) if refs else None
    sums, counts, cls, pose, score = classify_chunk(ps.read_volumes(sl), rows, clusters, C, ref_sets,
                                                    seed=p.seed, start=sl.start, from_poses=p.from_poses,
                                                    device=torch_device(device) if ref_sets else None)
    ps.array(f"{name}_class")[sl] = cls
    ps.array(f"{name}_pose")[sl] = pose
    ps.array(f"{name}_score")[sl] = score
    scored = score[np.isfinite(score)]
    return np.concatenate([sums.reshape(-1), counts.ravel(), [scored.sum(), len(scored)]])


def _final_poses(ps: ParticleSet, name: str, clusters, labels, registration: dict) -> None:
    """``<name>_pose_final``: every member's pose in the final map's frame. Half-set 2 (odd indices) was aligned to
    its own half map, registered onto half-set 1's at the end; its poses are composed with that registration.
    Written whole from ``<name>_pose`` each time, so a rerun never composes twice."""
    pose = np.asarray(ps.array(f"{name}_pose")[:], np.float64)
    cls = np.asarray(ps.array(f"{name}_class")[:])
    odd = np.arange(ps.n) % 2 == 1
    for (ci, k), (a, t) in registration.items():
        c = clusters[ci]
        sel = odd & (cls == k) & ((labels == c) if c >= 0 else True)
        if sel.any():
            pose[sel] = compose_poses(pose[sel], a, t)
    ps.array(f"{name}_pose_final")[:] = pose.astype(np.float32)


def _changed(store, stage: str, pdict: dict, clusters, refs, data_key: str) -> bool:
    """The stage was recorded for other data (the set replaced or re-clustered): start it again."""
    if not store.has("stages", stage):
        return False
    return store.attrs("stages", stage).get("params", {}).get("data") != data_key


def classify(store: Store, set_name: str, name: str, params: AverageParams = AverageParams(), *,
             clusters=(-1,), client=None, restart: bool = False, progress: bool | None = None,
             device: str = "auto") -> dict:
    """Reference-free classification (``params.classes`` > 1) or averaging (1 class) of each cluster in
    ``clusters`` (-1: the whole set), all clusters in the same stages. Returns per-iteration records.

    When the cluster has GPU workers (``--resources GPU=n``) the iterations run there (``resources={"GPU": 1}``),
    the coarse search on CUDA with torch (``device`` "auto"); otherwise numpy on the CPU workers. ``device``
    "cpu"/"cuda" forces torch on that device, "numpy" forces numpy."""
    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    clusters = [int(c) for c in clusters]
    labels = ps.rows(slice(0, ps.n), ["cluster"])["cluster"]
    sizes = [int(ps.n if c < 0 else (labels == c).sum()) for c in clusters]
    if min(sizes) < 2:
        raise InputError(set_name, f"clusters {clusters} have {sizes} members; need at least 2 each")
    n, C = ps.box_size, params.classes
    check_average_outputs(store, ps, name, _arrays(name))
    member = np.isin(labels, clusters) if min(clusters) >= 0 else np.ones(ps.n, bool)
    require_wedges(ps, member, "of the particles to average")
    if any(arr not in ps.arrays() for arr, *_ in _arrays(name)):
        restart = True  # arrays made anew: no earlier iteration's records can stand for them
    for arr_name, tail, dtype, fill, attrs in _arrays(name):
        if restart or arr_name not in ps.arrays():
            ps.create_array(arr_name, tail, dtype, fill_value=fill, overwrite=True, attrs=attrs)
    from ..store.stages import fingerprint

    # the data the iterations read: a replaced or re-clustered set must not reuse earlier iterations' sums
    data_key = fingerprint({"created": ps.info.get("created"), "n": ps.n, "clusters": labels.tobytes().hex()})
    pdict = asdict(params)
    gpus = gpu_workers(client) if client is not None else []
    device = device if device != "auto" or gpus else "numpy"  # CPU workers: numpy, no torch import
    history, refs = [], None
    shape = (len(clusters), C, 2, 3, n, n, n // 2 + 1)
    for it in range(params.iterations + 1):
        stage = f"average.{set_name}.{name}.it{it}"
        task = functools.partial(_iteration_task, set_name=set_name, name=name, clusters=clusters, iteration=it,
                                 refs=refs, params=pdict, device=device)
        run_chunks(store, stage, ps.n_chunks, task, params={"p": pdict, "clusters": clusters, "refs": refs,
                                                            "data": data_key},
                   client=client, restart=restart or _changed(store, stage, pdict, clusters, refs, data_key),
                   progress=progress, gpu=bool(gpus))
        flat = sum(r.astype(np.float64) for _, r in StageRecord.open(store, stage).iter_results())
        n_sums = int(np.prod(shape))
        total = flat[:n_sums].reshape(shape)
        counts = flat[n_sums:n_sums + len(clusters) * C].reshape(len(clusters), C)
        score_sum, score_n = flat[-2:]
        maps = np.zeros((len(clusters), C, n, n, n), np.float32)
        obs = np.zeros_like(maps)
        half_maps = np.zeros((len(clusters), 2, C, n, n, n), np.float32)
        half_obs = np.zeros_like(half_maps)
        registration = {}
        for ci in range(len(clusters)):
            for k in range(C):
                maps[ci, k], obs[ci, k] = average_from_sums(total[ci, k].sum(0))
                for h in (0, 1):  # the next iteration's references: the common low-passed start, then each half's own
                    if it == 0:
                        half_maps[ci, h, k], half_obs[ci, h, k] = lowpass(maps[ci, k], params.start_lowpass), obs[ci, k]
                    else:
                        half_maps[ci, h, k], half_obs[ci, h, k] = average_from_sums(total[ci, k, h])
                if it > 0 and total[ci, k, 0].any() and total[ci, k, 1].any():  # half 2 into half 1's frame
                    moved, moved_obs, a, t, _ = register_map(half_maps[ci, 0, k], half_obs[ci, 0, k],
                                                             half_maps[ci, 1, k], half_obs[ci, 1, k], params.align)
                    half_maps[ci, 1, k], half_obs[ci, 1, k] = moved, moved_obs
                    registration[ci, k] = (a, t)
                    maps[ci, k] = 0.5 * (half_maps[ci, 0, k] + moved)
                    obs[ci, k] = np.maximum(half_obs[ci, 0, k], moved_obs)
        meta = {"set": set_name, "clusters": clusters, "classes": C, "iteration": it}
        vs = ps.voxel_size or 1.0
        store.write_map(f"{name}.it{it}", maps.reshape(-1, n, n, n), vs, attrs=meta)
        store.write_map(f"{name}.it{it}.observed", obs.reshape(-1, n, n, n), vs, attrs=meta)
        refs = f"{name}.it{it}.halves"
        store.write_map(refs, half_maps.reshape(-1, n, n, n), vs, attrs={**meta, "layout": "cluster, half, class"})
        store.write_map(f"{refs}.observed", half_obs.reshape(-1, n, n, n), vs, attrs=meta)
        history.append({"iteration": it, "sizes": counts.astype(int).tolist(),
                        "mean_score": float(score_sum / score_n) if score_n else None})
    _final_poses(ps, name, clusters, labels, registration)
    # final: the combined averages; the resolution from the FSC of the independently refined (and registered)
    # half-set averages
    results = []
    for ci, c in enumerate(clusters):
        for k in range(C):
            halves = ([half_maps[ci, h, k] for h in (0, 1)] if params.iterations > 0
                      else [average_from_sums(total[ci, k, h])[0] for h in (0, 1)])
            freq, curve = fsc(halves[0], halves[1], ps.voxel_size or 1.0)
            results.append({"cluster": c, "class": k, "members": history[-1]["sizes"][ci][k], "gold_standard": True,
                            "half_set_resolution_A": resolution(freq, curve), "fsc": curve.tolist()})
    store.write_map(name, maps.reshape(-1, n, n, n), ps.voxel_size or 1.0,
                    attrs={"set": set_name, "clusters": clusters, "classes": C, "history": history,
                           "params": pdict, "results": [{k: v for k, v in r.items() if k != "fsc"} for r in results]})
    for r in results:
        store.write_curve(f"{name}.fsc.c{r['cluster']}.k{r['class']}", {"freq": freq, "fsc": np.asarray(r["fsc"])},
                          attrs={"half_set_resolution_A": r["half_set_resolution_A"], "gold_standard": True})
    return {"history": history, "results": results, "maps": name}
