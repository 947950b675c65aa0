"""Plots (PNG) shared by the CLI, the benchmarks and the demo report."""

from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def size_summary(sizes) -> dict:
    """Numbers that say how even a partition is: sizes sorted, largest share, Gini coefficient, tiny clusters."""
    s = np.sort(np.asarray(sizes, float))
    n = s.sum()
    gini = float(1 - 2 * np.sum(np.cumsum(s) / n) / len(s) + 1 / len(s)) if n else float("nan")
    return {"clusters": int(len(s)), "largest_share": float(s[-1] / n), "gini": gini,
            "under_1_percent_of_mean": int((s < 0.01 * s.mean()).sum()), "median": float(np.median(s))}


def cluster_size_plot(partitions: dict, path) -> None:
    """Cluster sizes of one or more partitions, largest first (seed 000 Figure 5 style)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for label, sizes in partitions.items():
        s = np.sort(np.asarray(sizes))[::-1]
        summ = size_summary(s)
        ax.plot(np.arange(1, len(s) + 1), s, marker=".", lw=1, label=f"{label} (Gini {summ['gini']:.2f})")
    ax.set_xlabel("cluster rank")
    ax.set_ylabel("particles")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
