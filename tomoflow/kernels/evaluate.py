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


def matched_truth(pred, truth, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``pred`` (DataFrame: tomogram, x, y, z in Å), the index of the row of ``truth`` it matches
    one-to-one within ``tolerance`` in the same tomogram, or -1. Returns (truth index, matched mask)."""
    idx = np.full(len(pred), -1, np.int64)
    for tomo in sorted(set(pred.tomogram)):
        pi_all = np.flatnonzero((pred.tomogram == tomo).to_numpy())
        ti_all = np.flatnonzero((truth.tomogram == tomo).to_numpy())
        pi, ti = match(pred.iloc[pi_all][["x", "y", "z"]].to_numpy(), truth.iloc[ti_all][["x", "y", "z"]].to_numpy(),
                       tolerance)
        idx[pi_all[pi]] = ti_all[ti]
    return idx, idx >= 0
