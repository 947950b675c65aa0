"""``classify-auto``: classification of aligned particles with the number of classes found, not given (seed 002
section 3.3.2; kernels in :mod:`tomoflow.kernels.autoclass`), through the engine.

Stage 1, one task per chunk of particles: each particle brought to the reference frame by the pose an averaging
run found (``<average>_pose_final``, else ``<average>_pose``; a one-class run, so all poses share one frame),
binned to half size, returned with its turned wedge. The driver reduces (PCA of the imputed particles), clusters
(Ward) and cuts automatically; labels in ``<name>_class``. Stage 2, one task per chunk: each class's wedge-weighted
sums at full size; the class averages in map ``<name>``. Both stages are resumable.
"""

from __future__ import annotations

import functools

import numpy as np

from ..engine import run_chunks
from ..errors import InputError
from ..kernels.autoclass import aligned_spectrum, choose_classes, half_size
from ..kernels.averaging import accumulate, average_from_sums
from ..kernels.geometry import relion_matrix
from ..kernels.wedge import hermitian_wedge
from ..params import AutoClassParams
from ..store import ParticleSet, Store, check_name
from ..store.stages import StageRecord, fingerprint
from .common import require_wedges


def _poses_array(store: Store, ps: ParticleSet, average: str) -> str:
    check_name(average, "map name")
    store.require("maps", average)
    info = store.attrs("maps", average)
    if info.get("set") != ps.name:
        raise InputError(average, f"map holds averages of set '{info.get('set')}', not '{ps.name}'")
    if int(info.get("classes", 0)) != 1 or list(info.get("clusters", [-1])) != [-1]:
        raise InputError(average, "needs a one-class average of the whole set (its poses then share one frame); "
                                  "run average --classes 1 (or average-ml --classes 1) first")
    for arr in (f"{average}_pose_final", f"{average}_pose"):
        if arr in ps.arrays() and ps.array(arr).attrs.get("tomoflow", {}).get("average") == average:
            return arr
    raise InputError(average, f"no pose array '{average}_pose_final' or '{average}_pose' written by that averaging")


def _check(store: Store, set_name: str, average: str, name: str, params: AutoClassParams):
    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    if ps.n < 2 * params.min_members:
        raise InputError(set_name, f"{ps.n} particles; need at least {2 * params.min_members} (2 x --min-members)")
    require_wedges(ps)
    poses = _poses_array(store, ps, average)
    check_name(name, "map name")
    arr = f"{name}_class"
    check_name(arr, "array name")
    if arr in ps.arrays() and ps.array(arr).attrs.get("tomoflow", {}).get("autoclass") != name:
        raise InputError(ps.name, f"array '{arr}' exists and was not written by classify-auto '{name}'; choose "
                                  "another --name")
    if store.has("maps", name) and store.attrs("maps", name).get("autoclass") != name:
        raise InputError(str(store.path), f"map '{name}' exists and was not written by classify-auto; choose "
                                          "another --name")
    return ps, poses


def _chunk_inputs(ps: ParticleSet, sl: slice, poses: str):
    rows = ps.rows(sl, ["tilt_min", "tilt_max", "tilt_axis"])
    pose = np.asarray(ps.array(poses)[sl], np.float64)
    wedges = [hermitian_wedge(ps.box_size, float(a), float(b), float(c))
              for a, b, c in zip(rows["tilt_min"], rows["tilt_max"], rows["tilt_axis"])]
    return ps.read_volumes(sl), wedges, relion_matrix(pose[:, 0], pose[:, 1], pose[:, 2]), pose[:, 3:]


def _spectra_task(store_path: str, chunk: int, *, set_name: str, poses: str) -> np.ndarray:
    ps = ParticleSet(Store.open(store_path), set_name)
    vols, wedges, mats, shifts = _chunk_inputs(ps, ps.chunk_slice(chunk), poses)
    m = half_size(ps.box_size)
    out = [aligned_spectrum(v, w, a, t, m) for v, w, a, t in zip(vols, wedges, mats, shifts)]
    return np.stack([np.stack([f.real, f.imag, o]) for f, o in out]).astype(np.float32).ravel()


def _average_task(store_path: str, chunk: int, *, set_name: str, poses: str, name: str, classes: int) -> np.ndarray:
    ps = ParticleSet(Store.open(store_path), set_name)
    sl = ps.chunk_slice(chunk)
    vols, wedges, mats, shifts = _chunk_inputs(ps, sl, poses)
    labels = np.asarray(ps.array(f"{name}_class")[sl])
    n = ps.box_size
    sums = np.zeros((classes, 3, n, n, n // 2 + 1))
    for v, w, a, t, k in zip(vols, wedges, mats, shifts, labels):
        accumulate(sums[k], v, w, a, t)
    return sums.ravel()


def classify_auto(store: Store, set_name: str, average: str, name: str, params: AutoClassParams = AutoClassParams(),
                  *, client=None, restart: bool = False, progress: bool | None = None) -> dict:
    """Classify the particles of ``set_name`` aligned by averaging run ``average``; the number of classes is chosen
    by the leave-one-out FSC score. Returns {"classes", "sizes", "scores" (per number of classes), "maps"}."""
    ps, poses = _check(store, set_name, average, name, params)
    n, m = ps.box_size, half_size(ps.box_size)
    data = fingerprint({"created": ps.info.get("created"), "n": ps.n, "poses": poses,
                        "average": store.attrs("maps", average).get("created")})
    stage = f"classify_auto.{set_name}.{name}.spectra"
    key = {"data": data}
    stale = store.has("stages", stage) and store.attrs("stages", stage).get("params") != key
    run_chunks(store, stage, ps.n_chunks, functools.partial(_spectra_task, set_name=set_name, poses=poses),
               params=key, client=client, restart=restart or stale, progress=progress)
    parts = [r for _, r in sorted(StageRecord.open(store, stage).iter_results(), key=lambda cr: cr[0])]
    x = np.concatenate(parts).reshape(ps.n, 3, m, m, m // 2 + 1)
    spectra, observed = (x[:, 0] + 1j * x[:, 1]).astype(np.complex64), x[:, 2] > 0.5
    labels, k, scores = choose_classes(spectra, observed, params.components, params.max_classes, params.min_members)
    ps.create_array(f"{name}_class", (), "int32", fill_value=-1, overwrite=True, attrs={"autoclass": name})
    ps.array(f"{name}_class")[:] = labels
    stage2 = f"classify_auto.{set_name}.{name}.average"
    key2 = {"data": data, "labels": fingerprint({"l": labels.tobytes().hex()})}
    stale = store.has("stages", stage2) and store.attrs("stages", stage2).get("params") != key2
    run_chunks(store, stage2, ps.n_chunks, functools.partial(_average_task, set_name=set_name, poses=poses, name=name,
                                                             classes=k),
               params=key2, client=client, restart=restart or stale, progress=progress)
    total = sum(r.astype(np.float64) for _, r in StageRecord.open(store, stage2).iter_results())
    total = total.reshape(k, 3, n, n, n // 2 + 1)
    maps = np.stack([average_from_sums(total[c])[0] for c in range(k)])
    sizes = np.bincount(labels, minlength=k).tolist()
    store.write_map(name, maps, ps.voxel_size or 1.0,
                    attrs={"set": set_name, "autoclass": name, "average": average, "classes": k, "sizes": sizes,
                           "scores": {str(c): s for c, s in scores.items()}, "params": params.__dict__})
    return {"classes": k, "sizes": sizes, "scores": scores, "maps": name}
