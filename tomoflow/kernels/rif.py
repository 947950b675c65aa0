"""RIF-SVM: the rotation-invariant-feature baseline of seed 000 (sections 2.4 and 3.2.1).

Features (after Xu, Zhang & Alber 2009): the subtomogram's Fourier amplitude |F| (invariant to
translation) is sampled on concentric shells around the zero frequency, each shell is expanded in
real spherical harmonics with pyshtools (Driscoll-Healy grid), and the power per degree l of every
shell is kept: sum_m c_lm^2 does not change when the volume rotates. |F| is centrosymmetric, so only
even degrees carry power; those are kept. ``space="real"`` samples the density around the box centre
instead (rotation-invariant about the centre, not translation-invariant).

The classifier (:func:`svm_train_test`) is scikit-learn's RBF SVM on standardised features, C and gamma
chosen by 3-fold cross-validation on the training part; :mod:`tomoflow.ops.rif` runs both over a particle
set, on the same split as the CNNs.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from ..params import RifParams
from .geometry import box_center


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


def svm_train_test(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, n_classes: int,
                   seed: int = 0) -> tuple[np.ndarray, dict]:
    """RBF SVM on standardised ``x`` trained on the rows ``train`` (bool) with labels ``y``, C and gamma chosen
    by (up to) 3-fold stratified cross-validation there; (predicted class of every row, {accuracy and
    confusion on the rows ``test``, best_params})."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    folds = max(2, min(3, int(np.bincount(y[train]).min())))
    grid = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="rbf")),
                        {"svc__C": [1.0, 10.0, 100.0], "svc__gamma": ["scale", 0.1, 0.01]},
                        cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    grid.fit(x[train], y[train])
    pred = grid.predict(x).astype(np.int32)
    conf = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(conf, (y[test], pred[test]), 1)
    return pred, {"accuracy": float(np.trace(conf) / conf.sum()), "confusion": conf.tolist(),
                  "best_params": {k: v for k, v in grid.best_params_.items()}}
