"""RIF-SVM: the rotation-invariant-feature baseline of seed 000 (sections 2.4 and 3.2.1).

Features (after Xu, Zhang & Alber 2009): the subtomogram's Fourier amplitude |F| (invariant to
translation) is sampled on concentric shells around the zero frequency, each shell is expanded in
real spherical harmonics with pyshtools (Driscoll-Healy grid), and the power per degree l of every
shell is kept: sum_m c_lm^2 does not change when the volume rotates. |F| is centrosymmetric, so only
even degrees carry power; those are kept. ``space="real"`` samples the density around the box centre
instead (rotation-invariant about the centre, not translation-invariant).

The classifier is scikit-learn's RBF SVM on standardised features, C and gamma chosen by 3-fold
cross-validation on the training split, trained and tested on the same split as the CNNs (the
particle table's ``split`` column). Feature extraction runs through the engine, one task per
particle chunk, into the per-particle array ``rif``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .engine import run_chunks
from .geometry import box_center
from .store import ParticleSet, Store


@dataclass(frozen=True)
class RifParams:
    lmax: int = 10  # highest spherical-harmonic degree
    space: str = "fourier"  # "fourier": shells of |F| (translation-invariant); "real": shells of the density
    max_radius: float = 0.9  # outermost shell as a fraction of the box half-width


@functools.lru_cache(maxsize=8)
def _shell_points(box: int, lmax: int, max_radius: float):
    """Sampling coordinates (3, shells * n * 2n) of all shells on a Driscoll-Healy grid, in (z, y, x)."""
    n = 2 * (lmax + 1)
    theta = np.pi * np.arange(n) / n  # colatitude; the first band is the north pole
    phi = 2 * np.pi * np.arange(2 * n) / (2 * n)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    unit = np.stack([np.cos(t), np.sin(t) * np.sin(p), np.sin(t) * np.cos(p)])  # (z, y, x)
    radii = np.arange(1, int(max_radius * (box // 2)) + 1, dtype=np.float64)
    c = box_center(box)
    pts = c + radii[:, None, None, None] * unit[None]  # (shells, 3, n, 2n)
    return np.ascontiguousarray(pts.transpose(1, 0, 2, 3).reshape(3, -1)), len(radii), n


def rif_features(volume: np.ndarray, params: RifParams = RifParams()) -> np.ndarray:
    """Rotation-invariant features of one (D, D, D) volume: sqrt(power per degree) per shell."""
    import pyshtools

    v = np.asarray(volume, np.float64)
    v = (v - v.mean()) / (v.std() + 1e-12)
    box = v.shape[0]
    if params.space == "fourier":
        v = np.abs(np.fft.fftshift(np.fft.fftn(v))) / box**1.5  # zero frequency at index box // 2
    elif params.space != "real":
        raise ValueError(f"space must be 'fourier' or 'real', got {params.space!r}")
    pts, shells, n = _shell_points(box, params.lmax, params.max_radius)
    samples = ndimage.map_coordinates(v, pts, order=1, mode="nearest").reshape(shells, n, 2 * n)
    degrees = np.arange(0, params.lmax + 1, 2 if params.space == "fourier" else 1)
    out = np.empty((shells, len(degrees)))
    for s in range(shells):
        cilm = pyshtools.expand.SHExpandDH(samples[s], sampling=2, lmax_calc=params.lmax)
        out[s] = np.sqrt((cilm**2).sum(axis=(0, 2)))[degrees]
    return out.ravel().astype(np.float32)


def rif_batch(volumes: np.ndarray, params: RifParams = RifParams()) -> np.ndarray:
    return np.stack([rif_features(v, params) for v in volumes])


def _rif_task(store_path: str, chunk: int, *, set_name: str, name: str, params: dict) -> None:
    ps = ParticleSet(Store.open(store_path), set_name)
    sl = ps.chunk_slice(chunk)
    ps.array(name)[sl] = rif_batch(ps.read_volumes(sl), RifParams(**params))


def compute_rif(store: Store, set_name: str, params: RifParams = RifParams(), *, name: str = "rif", client=None,
                overwrite: bool = False, progress: bool | None = None) -> dict:
    """Rotation-invariant features of every particle of ``set_name`` into the per-particle array ``name``."""
    from .errors import InputError

    ps = ParticleSet(store, set_name)
    if ps.box_size is None:
        raise InputError(set_name, "particle set holds no volumes")
    n_feat = rif_features(np.zeros((ps.box_size,) * 3), params).size
    fresh = overwrite or name not in ps.arrays()
    if fresh:
        ps.create_array(name, (n_feat,), "float32", overwrite=True, attrs={"rif": asdict(params)})
    task = functools.partial(_rif_task, set_name=set_name, name=name, params=asdict(params))
    run = run_chunks(store, f"rif.{set_name}.{name}", ps.n_chunks, task, params=asdict(params), client=client,
                     restart=fresh, progress=progress)
    return {"particles": ps.n, "features": n_feat, "computed": run.computed, "skipped": run.skipped}


def svm_classify(store: Store, set_name: str, *, features: str = "rif", seed: int = 0, out: str | None = None) -> dict:
    """RBF SVM trained on the ``train`` and ``validation`` splits of ``features`` (the half a CNN trained on)
    and tested on the ``test`` split.

    C and gamma are chosen by 3-fold cross-validation on the training split. Predicted classes of every
    particle go into the array ``out`` (default ``<features>_svm_class``)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from .training import TEST, TRAIN, VALIDATION

    ps = ParticleSet(store, set_name)
    x = np.asarray(ps.array(features)[:])
    t = ps.rows(slice(0, ps.n), ["split", "true_class"])
    train, test = np.isin(t["split"], (TRAIN, VALIDATION)), t["split"] == TEST
    if not train.any() or not test.any():
        raise ValueError(f"particle set '{set_name}' has no train/test split (train a CNN first, or assign one)")
    y = t["true_class"]
    folds = max(2, min(3, int(np.bincount(y[train]).min())))
    grid = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="rbf")),
                        {"svc__C": [1.0, 10.0, 100.0], "svc__gamma": ["scale", 0.1, 0.01]},
                        cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    grid.fit(x[train], y[train])
    pred = grid.predict(x).astype(np.int32)
    n = len(ps.class_names)
    conf = np.zeros((n, n), np.int64)
    np.add.at(conf, (y[test], pred[test]), 1)
    out = out or f"{features}_svm_class"
    ps.create_array(out, (), "int32", fill_value=-1, overwrite=True, attrs={"svm": {k: str(v) for k, v in
                                                                                   grid.best_params_.items()}})
    ps.array(out)[:] = pred
    return {"accuracy": float(np.trace(conf) / conf.sum()), "confusion": conf.tolist(),
            "best_params": {k: v for k, v in grid.best_params_.items()}, "n_train": int(train.sum()),
            "n_test": int(test.sum()), "array": out}
