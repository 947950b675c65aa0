"""``average-ml``: FAML, fast alignment + maximum-likelihood averaging (seed 002 section 3.3.3), through the engine.

One EM iteration = one engine stage over the particle chunks: every task runs :func:`tomoflow.kernels.faml.em_chunk`
on its chunk against the previous iteration's model (class maps, noise variance per Fourier shell, class priors)
and returns the partial sums of the M-step; its particles' most probable class, pose and posterior weight are
written by region. The driver adds the sums and writes the next model as map ``<name>.it<k>`` (its sigma2 and
priors in the map's attributes, read by the next stage's tasks). Iteration 0 is the reference-free start (random
classes, identity poses, low-passed). Every stage is resumable; a stage recorded against another model (an earlier
iteration recomputed) or other data is recomputed.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import asdict

import numpy as np

from ..engine import run_chunks
from ..errors import InputError
from ..kernels.align import Reference
from ..kernels.faml import em_chunk, maps_from_sums
from ..kernels.wedge import hermitian_wedge
from ..params import FamlParams
from ..store import ParticleSet, Store
from ..store.stages import StageRecord, fingerprint
from .common import check_average_outputs, require_wedges

_MODEL: dict = {}  # per worker: (store, map name, creation time, params) -> the model with prepared references
_LOCK = threading.Lock()


def _arrays(name: str):
    mine = {"average": name, "method": "faml"}  # marks the arrays as this run's, so no other array is overwritten
    return [(f"{name}_class", (), "int32", -1, mine),
            (f"{name}_pose", (6,), "float32", 0, {**mine, "columns": "rot tilt psi shift_x shift_y shift_z"}),
            (f"{name}_weight", (), "float32", np.nan, mine)]


def check_inputs(store: Store, set_name: str, name: str, params: FamlParams) -> ParticleSet:
    """Every refusal before anything is written."""
    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    if ps.n < 2 * params.classes:
        raise InputError(set_name, f"{ps.n} particles for {params.classes} classes; need at least 2 per class")
    require_wedges(ps)  # the likelihood is over each particle's observed region: it must be known
    check_average_outputs(store, ps, name, _arrays(name))
    return ps


def _model(store: Store, name: str, p: FamlParams):
    key = (str(store.path), name, store.attrs("maps", name).get("created"), p)
    with _LOCK:
        if key not in _MODEL:
            _MODEL.clear()  # one iteration's model at a time
            maps, _, info = store.read_map(name)
            obs, _, _ = store.read_map(f"{name}.observed")
            refs = [Reference(m, o > 0.5, p.alignment()) for m, o in zip(maps, obs)]
            _MODEL[key] = (maps, obs, np.asarray(info["sigma2"]), np.asarray(info["priors"]), refs)
        return _MODEL[key]


def _task(store_path: str, chunk: int, *, set_name: str, name: str, model: str | None, params: dict) -> np.ndarray:
    p = FamlParams(**params)
    store = Store.open(store_path)
    ps = ParticleSet(store, set_name)
    sl = ps.chunk_slice(chunk)
    rows = ps.rows(sl, ["tilt_min", "tilt_max", "tilt_axis"])
    n = ps.box_size
    wedges = [hermitian_wedge(n, float(a), float(b), float(c))
              for a, b, c in zip(rows["tilt_min"], rows["tilt_max"], rows["tilt_axis"])]
    flat, cls, pose, weight, _ = em_chunk(ps.read_volumes(sl), wedges, _model(store, model, p) if model else None,
                                          p.alignment(), p.candidates, classes=p.classes, seed=p.seed,
                                          start=sl.start)
    ps.array(f"{name}_class")[sl] = cls
    ps.array(f"{name}_pose")[sl] = pose
    ps.array(f"{name}_weight")[sl] = weight
    return flat


def average_ml(store: Store, set_name: str, name: str, params: FamlParams = FamlParams(), *, client=None,
               restart: bool = False, progress: bool | None = None) -> dict:
    """FAML averaging (``params.classes`` 1) or classification of the whole set. Returns per-iteration records
    and per-class results; maps ``<name>`` (final) and ``<name>.it<k>``, arrays ``<name>_class``,
    ``<name>_pose`` (the most probable candidate's pose) and ``<name>_weight`` (its posterior weight)."""
    ps = check_inputs(store, set_name, name, params)
    n, K = ps.box_size, params.classes
    if any(arr not in ps.arrays() for arr, *_ in _arrays(name)):
        restart = True  # arrays made anew: no earlier iteration's record can stand for them
    for arr, tail, dtype, fill, attrs in _arrays(name):
        if restart or arr not in ps.arrays():
            ps.create_array(arr, tail, dtype, fill_value=fill, overwrite=True, attrs=attrs)
    data_key = fingerprint({"created": ps.info.get("created"), "n": ps.n})
    pdict = asdict(params)
    vs = ps.voxel_size or 1.0
    history, model, model_id = [], None, None
    for it in range(params.iterations + 1):
        stage = f"average_ml.{set_name}.{name}.it{it}"
        # the model the stage read, by its content: an earlier iteration recomputed differently makes this one stale
        key = {"p": pdict, "data": data_key, "model": model_id}
        stale = store.has("stages", stage) and store.attrs("stages", stage).get("params") != key
        task = functools.partial(_task, set_name=set_name, name=name, model=model, params=pdict)
        run_chunks(store, stage, ps.n_chunks, task, params=key, client=client, restart=restart or stale,
                   progress=progress)
        flat = sum(r.astype(np.float64) for _, r in StageRecord.open(store, stage).iter_results())
        maps, obs, sigma2, priors, ll = maps_from_sums(flat, n, K, params.start_lowpass if it == 0 else None)
        history.append({"iteration": it, "mean_loglik": None if it == 0 else ll, "priors": priors.tolist()})
        meta = {"set": set_name, "clusters": [-1], "classes": K, "iteration": it, "method": "faml",
                "sigma2": sigma2.tolist(), "priors": priors.tolist()}
        model, model_id = f"{name}.it{it}", hashlib.sha256(flat.tobytes()).hexdigest()[:16]
        if not (store.has("maps", model) and store.has("maps", f"{model}.observed")
                and store.attrs("maps", f"{model}.observed").get("model_id") == model_id):
            store.write_map(model, maps, vs, attrs={**meta, "model_id": model_id})
            store.write_map(f"{model}.observed", obs, vs, attrs={**meta, "model_id": model_id})  # written last
    cls = np.asarray(ps.array(f"{name}_class")[:])
    results = [{"class": k, "members": int((cls == k).sum()), "prior": float(priors[k])} for k in range(K)]
    attrs = {"set": set_name, "clusters": [-1], "classes": K, "method": "faml", "history": history, "params": pdict,
             "results": results, "sigma2": sigma2.tolist(), "priors": priors.tolist()}
    store.write_map(name, maps, vs, attrs=attrs)
    store.write_map(f"{name}.observed", obs, vs, attrs=attrs)
    return {"history": history, "results": results, "maps": name}
