"""``autoencoder train | encode | filter``: coarse grouping and filtering of subtomograms (seed 002, 3.4.2).

* ``train``: the pose-normalised input is computed once through the engine (array ``ae_input``, one task per chunk,
  :mod:`tomoflow.ops.pose_norm`), then :func:`tomoflow.ml.autoencoder.train_autoencoder` streams it chunk by chunk;
  the training is one task, on a GPU worker when the cluster has one; resumable.
* ``encode``: one task per particle chunk (GPU workers when present) pose-normalises the raw subtomograms as the
  model's recipe says and writes their codes by region into the float32 per-particle array ``ae_latent``, which
  ``tomoflow cluster --features ae_latent`` groups; resumable like ``features``. The same pass writes
  ``ae_latent_offset``: each box's centring offset (:func:`~tomoflow.ml.autoencoder.centring_offsets`, the shift
  pose normalisation applied, as a fraction of the box edge).
* ``filter``: after that k-means, each cluster's centre (its mean code, from the k-means record) is decoded and
  scored by its contrast (:func:`~tomoflow.ml.autoencoder.cluster_scores`). ``score`` "both" (default) keeps the
  particles that pass the centring test (:func:`~tomoflow.ml.autoencoder.centred_members`: own offset <=
  ``max_offset``, or a member of a cluster whose median offset is; with ``per_particle`` own offset only) in
  clusters that pass the contrast test (a threshold, the best N, or the automatic split, among the clusters with
  centred members, weighted by their number). "contrast" is the contrast test alone (the filter before 2026-12-02:
  it keeps crops of particle edges, whose decoded centres are as structured as a particle's), "centred" the
  centring test alone (it keeps empty boxes); given ids are kept whole, as given. The members kept make a new
  particle set, volumes copied one task per chunk into a staged set that appears only when complete. The scores
  and each cluster's median offset are recorded in both sets' attributes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..engine import gpu_workers, run_chunks, run_task
from ..errors import InputError
from ..ml.autoencoder import (cached_autoencoder, centred_members, cluster_offsets, cluster_scores, encode,
                              otsu_keep, train_autoencoder as train_ml)
from ..params import AutoencoderFilterParams, AutoencoderParams
from ..store import ParticleSet, Store, check_name
from ..store.particles import build_particle_set, group_path
from ..store.stages import fingerprint
from .common import fresh_arrays
from .features import file_digest

INPUT_ARRAY = "ae_input"


class _ArraySource:
    """A per-particle array of cubes (rows of b^3) as a training source, chunk by chunk."""

    def __init__(self, ps: ParticleSet, name: str, box: int):
        self.ps, self.name, self.box_size = ps, name, box
        self.n, self.n_chunks = ps.n, ps.n_chunks

    def chunk_slice(self, i: int) -> slice:
        return self.ps.chunk_slice(i)

    def read_volumes(self, sl: slice) -> np.ndarray:
        x = np.asarray(self.ps.array(self.name)[sl], np.float32)
        return x.reshape((len(x),) + (self.box_size,) * 3)

    def read_rows(self, idx) -> np.ndarray:
        x = np.asarray(self.ps.array(self.name).oindex[np.asarray(idx, np.int64)], np.float32)
        return x.reshape((len(x),) + (self.box_size,) * 3)


def _with_volumes(store: Store, set_name: str) -> ParticleSet:
    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    return ps


def _train(store: Store, set_name: str, out: str | Path, params: AutoencoderParams, progress: bool,
           resume: bool) -> dict:
    ps = ParticleSet(store, set_name)
    info = {"voxel_size": ps.voxel_size, "set": set_name}
    members = np.arange(ps.n)
    if params.pose_norm:
        src = _ArraySource(ps, INPUT_ARRAY, params.input_box)
        return train_ml(src, members, out, params, info=info, progress=progress, resume=resume, prepared=True,
                        raw_box=ps.box_size)
    return train_ml(ps, members, out, params, info=info, progress=progress, resume=resume)


def _train_task(store_path: str, set_name: str, out: str, params: AutoencoderParams, resume: bool) -> dict:
    return _train(Store.open(store_path), set_name, out, params, False, resume)


def train_autoencoder(store: Store, set_name: str, out: str | Path, params: AutoencoderParams = AutoencoderParams(),
                      *, client=None, progress: bool = True, resume: bool = False) -> dict:
    """Train the autoencoder on every particle of ``set_name``; save to ``out`` (.keras); returns its metadata."""
    from ..ml.precision import resolve_precision

    ps = _with_volumes(store, set_name)
    resolve_precision(params.precision)  # refused before anything is written
    if ps.n < 2:
        raise InputError(set_name, f"{ps.n} particles are too few to train an autoencoder")
    if params.pose_norm:
        from .pose_norm import compute_pose_normalized

        compute_pose_normalized(store, set_name, name=INPUT_ARRAY, out_box=params.input_box,
                                polarity=params.polarity, client=client, progress=progress)
    if client is None:
        return _train(store, set_name, out, params, progress, resume)
    return run_task(client, _train_task, str(store.path), set_name, str(out), params, resume, gpu=True,
                    key=f"autoencoder-train-{set_name}", stage="autoencoder train")


def _check_model(model_path, ps: ParticleSet, precision: str):
    encoder, decoder, meta = cached_autoencoder(model_path, precision)
    if int(meta["box_size"]) != ps.box_size:
        raise InputError(str(model_path), f"model takes {meta['box_size']}^3 boxes but particle set '{ps.name}' has "
                                          f"{ps.box_size}^3")
    return encoder, decoder, meta


def _encode_task(store_path: str, chunk: int, *, set_name: str, model_path: str, name: str, batch_size: int,
                 precision: str) -> None:
    ps = ParticleSet(Store.open(store_path), set_name)
    encoder, _, meta = cached_autoencoder(model_path, precision)
    sl = ps.chunk_slice(chunk)
    codes, offsets = encode(encoder, ps.read_volumes(sl), meta, batch_size, offsets=True)
    ps.array(name)[sl] = codes
    ps.array(offset_array(name))[sl] = offsets


def offset_array(name: str) -> str:
    """The per-particle array of centring offsets written beside the codes ``name``."""
    return f"{name}_offset"


def encode_autoencoder(store: Store, set_name: str, model_path: str | Path, *, name: str = "ae_latent",
                       batch_size: int = 64, precision: str = "auto", client=None, overwrite: bool | str = False,
                       progress: bool | None = None) -> dict:
    """The latent codes of every particle of ``set_name`` into the per-particle array ``name`` (N, latent), and their
    centring offsets into ``name``_offset (N,). Resumable; another model is refused unless ``overwrite`` (True, or
    "changed": when the model differs)."""
    from ..ml.precision import resolve_precision

    ps = _with_volumes(store, set_name)
    check_name(name, "array name")
    precision = resolve_precision(precision)
    model_path = Path(model_path)
    _, _, meta = _check_model(model_path, ps, precision)
    params = {"model": file_digest(model_path), "batch": batch_size, "precision": precision}
    stage = f"autoencoder_encode.{set_name}.{name}"
    if overwrite == "changed":
        from .common import stage_params_changed

        overwrite = stage_params_changed(store, stage, params)
    task = functools.partial(_encode_task, set_name=set_name, model_path=str(model_path.resolve()), name=name,
                             batch_size=batch_size, precision=precision)
    attrs = {"model": str(model_path.resolve()), "autoencoder": True, "precision": precision}
    off_attrs = {"centring_offset": True, "unit": "fraction of the box edge", "codes": name}
    arrays = [(name, (int(meta["latent"]),), "float32", 0, attrs), (offset_array(name), (), "float32", np.nan,
                                                                   off_attrs)]
    fresh = overwrite or name not in ps.arrays() or offset_array(name) not in ps.arrays()
    run = fresh_arrays(store, ps, stage, params, arrays, task, client=client, progress=progress, fresh=fresh,
                       gpu=True)
    return {"particles": ps.n, "latent": int(meta["latent"]), "chunks": run.n_chunks, "computed": run.computed,
            "skipped": run.skipped, "gpu_workers": len(gpu_workers(client)), "precision": precision}


def select_clusters(scores: np.ndarray, sizes: np.ndarray, p: AutoencoderFilterParams) -> np.ndarray:
    """Boolean per cluster: given ids, else the best ``top``, else score >= ``min_score``, else the automatic split
    (weighted by ``sizes``); with ``p.score`` "centred" every cluster of ``sizes`` > 0. ``sizes`` are the members
    that could be kept (those passing the centring test, when it applies); clusters with none are never kept."""
    k = len(scores)
    if p.keep_clusters:
        bad = sorted(c for c in p.keep_clusters if c >= k)
        if bad:
            raise InputError("--keep-clusters", f"no cluster {bad[0]} (there are {k})")
        return np.isin(np.arange(k), p.keep_clusters) & (sizes > 0)
    if p.score == "centred" and (p.top or p.min_score is not None):
        raise InputError("--score", "centred keeps particles by their offsets alone: --top and --min-score rank the "
                                    "contrast (use --score both)")
    cand = sizes > 0
    if p.score == "centred":
        return cand
    keep = np.zeros(k, bool)
    idx = np.flatnonzero(cand)
    if p.top:
        keep[idx[np.argsort(-scores[idx], kind="stable")[:p.top]]] = True
    elif p.min_score is not None:
        keep = scores >= p.min_score
    elif len(idx):
        keep[idx] = otsu_keep(scores[idx], sizes[idx])
    return keep & cand


def _copy_task(store_path: str, chunk: int, *, src: str, out: str, staged_at: str, rows_path: str) -> None:
    store = Store.open(store_path)
    dst = ParticleSet(store, out, staged_at=staged_at)
    sl = dst.chunk_slice(chunk)
    idx = np.load(rows_path)[sl]
    dst.write_volumes(sl.start, ParticleSet(store, src).read_rows(idx))


def filter_autoencoder(store: Store, set_name: str, model_path: str | Path, out: str,
                       params: AutoencoderFilterParams = AutoencoderFilterParams(), *, features: str = "ae_latent",
                       client=None, progress: bool | None = None, overwrite: bool = False) -> dict:
    """Score the k-means clusters of ``set_name`` (clustered on the codes ``features``) by their decoded centres,
    keep the structured ones, and write their members as the new particle set ``out``. Returns the scores,
    sizes, clusters kept and particle counts."""
    ps = _with_volumes(store, set_name)
    check_name(out, "particle set name")
    if out == set_name:
        raise InputError(out, "the filtered set needs a name of its own")
    if store.has("particles", out) and not overwrite:
        raise InputError(out, "particle set already exists (use --overwrite to replace it)")
    record = ps.info.get("kmeans")
    if not record or record.get("features") != features:
        raise InputError(set_name, f"not clustered on '{features}': run 'tomoflow cluster {set_name} --features "
                                   f"{features}' first")
    _, decoder, meta = _check_model(model_path, ps, "float32")
    centres = np.asarray(record["centres"], np.float32)
    if centres.shape[1] != int(meta["latent"]):
        raise InputError(str(model_path), f"codes of {meta['latent']} do not match the clusters' {centres.shape[1]}")
    labels = ps.rows(slice(0, ps.n), ["cluster"])["cluster"].astype(np.int64)
    k = len(centres)
    centring = params.score != "contrast" and not params.keep_clusters
    med, ok = None, labels >= 0
    if centring:
        if offset_array(features) not in ps.arrays():
            raise InputError(set_name, f"no centring offsets '{offset_array(features)}' beside the codes (written by "
                                       "'tomoflow autoencoder encode' since 2026-12-02): encode again, or use "
                                       "--score contrast")
        offsets = np.asarray(ps.array(offset_array(features))[:], np.float64)
        med = cluster_offsets(offsets, labels, k)
        ok &= centred_members(offsets, labels, k, params.max_offset, params.per_particle)
    scores, _ = cluster_scores(decoder, centres)
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    centred = np.bincount(labels[ok], minlength=k)
    keep = select_clusters(scores, centred, params)
    in_kept = (labels >= 0) & keep[np.clip(labels, 0, None)]
    dropped_off_centre = int((in_kept & ~ok).sum())
    rows = np.flatnonzero(in_kept & ok)
    if len(rows) == 0:
        raise InputError(set_name, "no particle is kept (no cluster qualifies)")
    summary = {"from": set_name, "features": features, "model": str(Path(model_path).resolve()),
               "score": params.score, "max_offset": params.max_offset, "per_particle": params.per_particle,
               "scores": scores.astype(float).tolist(), "sizes": sizes.astype(int).tolist(),
               "centred": centred.astype(int).tolist(),
               "offsets": None if med is None else [None if not np.isfinite(m) else float(m) for m in med],
               "kept_clusters": np.flatnonzero(keep).astype(int).tolist(), "kept": int(len(rows)), "of": int(ps.n),
               "dropped_off_centre": dropped_off_centre}
    table = ps.table_frame().iloc[rows].reset_index(drop=True)
    columns = {c: table[c].to_numpy() for c in table.columns}
    columns["source_index"] = rows.astype(np.int64)  # the row each kept particle had in the set filtered
    key = fingerprint({"rows": fingerprint({"r": rows.tobytes().hex()}), "set": set_name, "n": ps.n})
    stage = f"autoencoder_filter.{out}"
    with store.staged("particles", out, overwrite=overwrite, key=key) as g:
        for member in list(g.keys()):  # a copy that failed half way is redone whole (it is only a copy)
            del g[member]
        build_particle_set(g, columns, box_size=ps.box_size, dtype=ps.info.get("dtype", "float32"), chunk=ps.chunk,
                           voxel_size=ps.voxel_size, class_names=ps.class_names, tomograms=ps.info.get("tomograms"),
                           attrs={"autoencoder_filter": summary})
        staged_at = str(group_path(g))
        rows_path = Path(staged_at) / "source_rows.npy"  # beside the new set: every worker reads it
        np.save(rows_path, rows)
        dst = ParticleSet(store, out, staged_at=staged_at)
        run_chunks(store, stage, dst.n_chunks, functools.partial(_copy_task, src=set_name, out=out, staged_at=staged_at,
                                                                 rows_path=str(rows_path)),
                   params={"key": key}, client=client, progress=progress, restart=True)
        rows_path.unlink()
    ps.set_attrs({"autoencoder_filter": {**summary, "out": out}})
    return summary
