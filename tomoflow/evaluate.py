"""Picking evaluation against ground truth (SHREC style): one-to-one matching within a tolerance."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def match(pred: np.ndarray, truth: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of predicted to true positions (n, 3) with distance <= tolerance.
    Returns the index pairs (pred_idx, truth_idx)."""
    if len(pred) == 0 or len(truth) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    d = np.linalg.norm(pred[:, None, :] - truth[None, :, :], axis=2)
    cost = np.where(d <= tolerance, d, 1e12)
    pi, ti = linear_sum_assignment(cost)
    ok = cost[pi, ti] <= tolerance
    return pi[ok], ti[ok]


def evaluate_picks(pred, truth, tolerance: float, class_names=()) -> dict:
    """Precision, recall and F1 over all tomograms, and recall per true class.

    ``pred`` and ``truth`` are DataFrames with tomogram, x, y, z (Å); truth has true_class.
    """
    tp = 0
    found = np.zeros(len(truth), bool)
    for tomo in sorted(set(truth.tomogram) | set(pred.tomogram)):
        p = pred[pred.tomogram == tomo]
        t = truth[truth.tomogram == tomo]
        pi, ti = match(p[["x", "y", "z"]].to_numpy(), t[["x", "y", "z"]].to_numpy(), tolerance)
        tp += len(pi)
        found[np.flatnonzero((truth.tomogram == tomo).to_numpy())[ti]] = True
    precision = tp / len(pred) if len(pred) else 0.0
    recall = tp / len(truth) if len(truth) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_class = {}
    classes = truth.true_class.to_numpy()
    for c in np.unique(classes):
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        sel = classes == c
        per_class[name] = {"n": int(sel.sum()), "recall": float(found[sel].mean())}
    return {"n_pred": int(len(pred)), "n_truth": int(len(truth)), "true_positives": int(tp),
            "precision": precision, "recall": recall, "f1": f1, "tolerance_A": tolerance, "per_class": per_class}


def label_picks(store, picks: str, truth: str, tolerance: float) -> dict:
    """Give the picks of set ``picks`` the class and pose of the true particle each matches (one-to-one,
    within ``tolerance`` Å); unmatched picks get the extra class "background". For simulated data:
    the labels a CNN trains on and the report scores against."""
    from .store import ParticleSet

    ps, tr = ParticleSet(store, picks), ParticleSet(store, truth)
    p, t = ps.table_frame(), tr.table_frame()
    names = tr.class_names + ["background"]
    cls = np.full(len(p), len(names) - 1, np.int32)
    angles = np.zeros((len(p), 3))
    for tomo in sorted(set(p.tomogram)):
        pi_all = np.flatnonzero((p.tomogram == tomo).to_numpy())
        ti_all = np.flatnonzero((t.tomogram == tomo).to_numpy())
        pi, ti = match(p.iloc[pi_all][["x", "y", "z"]].to_numpy(), t.iloc[ti_all][["x", "y", "z"]].to_numpy(),
                       tolerance)
        rows = t.iloc[ti_all[ti]]
        cls[pi_all[pi]] = rows.true_class.to_numpy()
        angles[pi_all[pi]] = rows[["rot", "tilt", "psi"]].to_numpy()
    ps.write_columns(0, {"true_class": cls, "rot": angles[:, 0], "tilt": angles[:, 1], "psi": angles[:, 2]})
    ps.set_attrs({"class_names": names, "labels_from": {"truth": truth, "tolerance_A": tolerance}})
    return {"matched": int((cls < len(names) - 1).sum()), "background": int((cls == len(names) - 1).sum())}
