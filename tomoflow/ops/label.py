"""Picks against a ground-truth set: scores (precision, recall, F1) and labels from the truth."""

from __future__ import annotations

import numpy as np

from ..kernels.evaluate import evaluate_picks, matched_truth
from ..store import ParticleSet


def score_picks(store, picks: str, truth: str, tolerance: float) -> dict:
    """Precision, recall, F1 and recall per class of set ``picks`` against set ``truth`` (SHREC style)."""
    tr = ParticleSet(store, truth)
    return evaluate_picks(ParticleSet(store, picks).table_frame(), tr.table_frame(), tolerance, tr.class_names)


def label_picks(store, picks: str, truth: str, tolerance: float) -> dict:
    """Give the picks of set ``picks`` the class of the true particle each matches (one-to-one, within
    ``tolerance`` Å) and its pose in the answer-key columns (``true_rot, true_tilt, true_psi``; the pose
    columns methods read stay as picking left them); unmatched picks get the extra class "background". For
    simulated data: the labels a CNN trains on and the report scores against."""
    ps, tr = ParticleSet(store, picks), ParticleSet(store, truth)
    p, t = ps.table_frame(), tr.table_frame()
    names = tr.class_names + ["background"]
    idx, ok = matched_truth(p, t, tolerance)
    cls = np.full(len(p), len(names) - 1, np.int32)
    angles = np.full((len(p), 3), np.nan)
    rows = t.iloc[idx[ok]]
    cls[ok] = rows.true_class.to_numpy()
    if "true_rot" in t.columns:
        angles[ok] = rows[["true_rot", "true_tilt", "true_psi"]].to_numpy()
    ps.set_columns({"true_class": cls, "true_rot": angles[:, 0], "true_tilt": angles[:, 1], "true_psi": angles[:, 2]})
    ps.set_attrs({"class_names": names, "labels_from": {"truth": truth, "tolerance_A": tolerance}})
    return {"matched": int((cls < len(names) - 1).sum()), "background": int((cls == len(names) - 1).sum())}
