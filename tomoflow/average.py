"""Reference-free averaging and classification of subtomograms (seed 000 section 3.3), through the engine.

One iteration = one engine stage over the particle chunks: every task aligns each member particle of the
chunk (of every cluster being processed) to each current class average of its cluster with the
wedge-constrained correlation of :mod:`tomoflow.align`, puts it in the best-scoring class, and returns
per-(cluster, class, half-set) partial sums of the wedge-weighted spectra sum_i F_i W_i and weights
sum_i W_i in the reference frame; its members' classes, poses and scores are written by region into
per-particle arrays. The driver adds the partial sums and forms each average as
F = sum F_i W_i / sum W_i where sum W_i >= 1/2 (0 elsewhere), so the missing wedges fill each other in.
Iteration 0 puts every member in a random class (seeded) with its table pose (identity for unaligned
particles). Averaging is classification with one class. Every iteration's stage is resumable; the
averages of each iteration are kept as maps ``<name>.it<k>``; the gold-standard FSC of the final
averages uses the two half-sets (even / odd particle index) averaged apart.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from .align import AlignParams, Reference, align, centred_to_rfft, particle_wedge, spectrum
from .engine import run_chunks
from .geometry import relion_angles, relion_matrix, rotate_volume
from .store import ParticleSet, Store


@dataclass(frozen=True)
class AverageParams:
    classes: int = 3
    iterations: int = 5
    seed: int = 0
    align: AlignParams = field(default_factory=AlignParams)


# ---- kernels ---------------------------------------------------------------------------------------------
def to_reference_frame(particle: np.ndarray, a: np.ndarray, shift_xyz) -> np.ndarray:
    """Undo ``particle = rotate_volume(reference, a, shift_xyz)``."""
    return rotate_volume(particle, a.T, -a.T @ np.asarray(shift_xyz, float), order=1)


def accumulate(sums: np.ndarray, particle: np.ndarray, wedge_centred: np.ndarray, a: np.ndarray, shift_xyz) -> None:
    """Add one particle's wedge-weighted spectrum and weight, in the reference frame, to ``sums`` (3, n, n, n//2+1)."""
    f = spectrum(to_reference_frame(particle, a, shift_xyz))
    w = centred_to_rfft(np.clip(rotate_volume(wedge_centred.astype(np.float32), a.T, order=1), 0, 1))
    sums[0] += (f * w).real
    sums[1] += (f * w).imag
    sums[2] += w


def average_from_sums(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(average map, observed region in centred layout) from summed spectra and weights."""
    n = sums.shape[1]
    w = sums[2]
    ok = w >= 0.5
    f = np.where(ok, (sums[0] + 1j * sums[1]) / np.maximum(w, 1e-12), 0)
    vol = np.fft.fftshift(np.fft.irfftn(f, s=(n,) * 3, axes=(0, 1, 2)))
    obs_half = ok
    full = np.zeros((n,) * 3, bool)  # back to the full centred layout via Hermitian symmetry
    full[..., : n // 2 + 1] = obs_half
    neg = (-np.arange(n)) % n
    full[..., n // 2 + 1:] = obs_half[neg][:, neg][..., (-np.arange(n // 2 + 1, n)) % n]
    return vol.astype(np.float32), np.fft.fftshift(full)


# ---- the engine task -------------------------------------------------------------------------------------
_REFS: dict = {}  # per worker: (store, map name) -> prepared references


def _references(store: Store, name: str, params: AlignParams):
    key = (str(store.path), name)
    if key not in _REFS:
        _REFS.clear()  # one iteration's references at a time
        maps, _, info = store.read_map(name)
        obs, _, _ = store.read_map(f"{name}.observed")
        shape = (len(info["clusters"]), int(info["classes"])) + maps.shape[1:]
        maps, obs = maps.reshape(shape), obs.reshape(shape)
        _REFS[key] = [[Reference(maps[c, k], obs[c, k] > 0.5, params) for k in range(maps.shape[1])]
                      for c in range(maps.shape[0])]
    return _REFS[key]


def _iteration_task(store_path: str, chunk: int, *, set_name: str, name: str, clusters: list, iteration: int,
                    refs: str | None, params: dict) -> np.ndarray:
    p = AverageParams(**{**params, "align": AlignParams(**params["align"])})
    store = Store.open(store_path)
    ps = ParticleSet(store, set_name)
    sl = ps.chunk_slice(chunk)
    rows = ps.rows(sl, ["cluster", "rot", "tilt", "psi", "tilt_min", "tilt_max", "tilt_axis"])
    n, C = ps.box_size, p.classes
    sums = np.zeros((len(clusters), C, 2, 3, n, n, n // 2 + 1))
    cls = np.full(sl.stop - sl.start, -1, np.int32)
    pose = np.zeros((sl.stop - sl.start, 6), np.float32)
    score = np.full(sl.stop - sl.start, np.nan, np.float32)
    members = [np.flatnonzero(rows["cluster"] == c) if c >= 0 else np.arange(len(cls)) for c in clusters]
    counts = np.zeros((len(clusters), C))
    if not any(len(m) for m in members):
        return np.concatenate([sums.reshape(-1), counts.ravel(), [0.0, 0.0]])
    vols = ps.read_volumes(sl)
    ref_sets = _references(store, refs, p.align) if refs else None
    wedges: dict = {}
    for ci, idx in enumerate(members):
        for j in idx:
            key = (float(rows["tilt_min"][j]), float(rows["tilt_max"][j]), float(rows["tilt_axis"][j]))
            if key not in wedges:
                wedges[key] = particle_wedge(n, *key)
            w = wedges[key]
            g = sl.start + j
            if ref_sets is None:
                rng = np.random.default_rng(np.random.SeedSequence([p.seed, g, 0xA7E]))
                k, a, t, s = int(rng.integers(C)), relion_matrix(rows["rot"][j], rows["tilt"][j], rows["psi"][j]), \
                    np.zeros(3), np.nan
            else:
                best = max(((align(vols[j], w, ref), kk) for kk, ref in enumerate(ref_sets[ci])),
                           key=lambda r: r[0][2])
                (a, t, s), k = best
            accumulate(sums[ci, k, g % 2], vols[j], w, a, t)
            cls[j], score[j] = k, s
            counts[ci, k] += 1
            pose[j] = np.concatenate([relion_angles(a).ravel(), t])
    ps.array(f"{name}_class")[sl] = cls
    ps.array(f"{name}_pose")[sl] = pose
    ps.array(f"{name}_score")[sl] = score
    scored = score[np.isfinite(score)]
    return np.concatenate([sums.reshape(-1), counts.ravel(), [scored.sum(), len(scored)]])


def classify(store: Store, set_name: str, name: str, params: AverageParams = AverageParams(), *,
             clusters=(-1,), client=None, restart: bool = False, progress: bool | None = None) -> dict:
    """Reference-free classification (``params.classes`` > 1) or averaging (1 class) of each cluster in
    ``clusters`` (-1: the whole set), all clusters in the same stages. Returns per-iteration records."""
    from .errors import InputError
    from .fsc import fsc, resolution
    from .store.stages import StageRecord

    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    clusters = [int(c) for c in clusters]
    labels = ps.rows(slice(0, ps.n), ["cluster"])["cluster"]
    sizes = [int(ps.n if c < 0 else (labels == c).sum()) for c in clusters]
    if min(sizes) < 2:
        raise InputError(set_name, f"clusters {clusters} have {sizes} members; need at least 2 each")
    n, C = ps.box_size, params.classes
    for suffix, tail, dtype, fill in (("class", (), "int32", -1), ("pose", (6,), "float32", 0),
                                      ("score", (), "float32", np.nan)):
        if restart or f"{name}_{suffix}" not in ps.arrays():
            ps.create_array(f"{name}_{suffix}", tail, dtype, fill_value=fill, overwrite=True,
                            attrs={"columns": "rot tilt psi shift_x shift_y shift_z"} if suffix == "pose" else None)
    pdict = asdict(params)
    history, refs = [], None
    shape = (len(clusters), C, 2, 3, n, n, n // 2 + 1)
    for it in range(params.iterations + 1):
        stage = f"average.{set_name}.{name}.it{it}"
        task = functools.partial(_iteration_task, set_name=set_name, name=name, clusters=clusters, iteration=it,
                                 refs=refs, params=pdict)
        run_chunks(store, stage, ps.n_chunks, task, params={"p": pdict, "clusters": clusters, "refs": refs},
                   client=client, restart=restart, progress=progress)
        flat = sum(r.astype(np.float64) for _, r in StageRecord.open(store, stage).iter_results())
        n_sums = int(np.prod(shape))
        total = flat[:n_sums].reshape(shape)
        counts = flat[n_sums:n_sums + len(clusters) * C].reshape(len(clusters), C)
        score_sum, score_n = flat[-2:]
        maps = np.zeros((len(clusters), C, n, n, n), np.float32)
        obs = np.zeros_like(maps)
        for ci in range(len(clusters)):
            for k in range(C):
                maps[ci, k], obs[ci, k] = average_from_sums(total[ci, k].sum(0))
        refs = f"{name}.it{it}"
        meta = {"set": set_name, "clusters": clusters, "classes": C, "iteration": it}
        store.write_map(refs, maps.reshape(-1, n, n, n), ps.voxel_size or 1.0, attrs=meta)
        store.write_map(f"{refs}.observed", obs.reshape(-1, n, n, n), ps.voxel_size or 1.0, attrs=meta)
        history.append({"iteration": it, "sizes": counts.astype(int).tolist(),
                        "mean_score": float(score_sum / score_n) if score_n else None})
    # final: averages, gold-standard half-set FSC per class
    results = []
    for ci, c in enumerate(clusters):
        for k in range(C):
            halves = [average_from_sums(total[ci, k, h])[0] for h in (0, 1)]
            freq, curve = fsc(halves[0], halves[1], ps.voxel_size or 1.0)
            results.append({"cluster": c, "class": k, "members": history[-1]["sizes"][ci][k],
                            "half_set_resolution_A": resolution(freq, curve), "fsc": curve.tolist()})
    store.write_map(name, maps.reshape(-1, n, n, n), ps.voxel_size or 1.0,
                    attrs={"set": set_name, "clusters": clusters, "classes": C, "history": history,
                           "params": pdict, "results": [{k: v for k, v in r.items() if k != "fsc"} for r in results]})
    for r in results:
        store.write_curve(f"{name}.fsc.c{r['cluster']}.k{r['class']}", {"freq": freq, "fsc": np.asarray(r["fsc"])},
                          attrs={"half_set_resolution_A": r["half_set_resolution_A"]})
    return {"history": history, "results": results, "maps": name}
