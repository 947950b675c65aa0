"""Report sections that need no ground truth (a user's own tomograms): where the picks are and how they score,
the deep features coloured by cluster and by tomogram, and each cluster's average named by the known structure it
matches (or "unknown"). :func:`tomoflow.report.html.write_report` uses them when a set has no true classes."""

from __future__ import annotations

import html

import numpy as np

from .plots import _pyplot


def picks_overview(store, picks) -> str:
    """Pick-score histogram per tomogram, and the picks over a central slab of each tomogram (2x binned)."""
    from ..store import open_level, tomogram_info

    t = picks.table_frame(["tomogram", "x", "y", "z", "score"])
    if not len(t):
        return ""
    from .html import _png

    plt = _pyplot()
    names = sorted(t.tomogram.unique())
    fig, ax = plt.subplots(figsize=(5, 3))
    for name in names:
        s = t.score[t.tomogram == name].to_numpy()
        ax.hist(s[np.isfinite(s)], bins=30, histtype="step", label=f"{name} ({len(s)})")
    ax.set_xlabel("pick score")
    ax.set_ylabel("picks")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = "<h2>Picks</h2><p>Score of every pick, per tomogram:</p>" + _png(fig)
    for name in names[:6]:
        info = tomogram_info(store, name)
        level = min(1, info.levels - 1)
        vol = open_level(store, name, level)
        f = 2**level * info.voxel_size
        sel = t[t.tomogram == name]
        off = (2**level - 1) / 2 / 2**level  # a level-L voxel's centre: (2^L - 1) / 2 level-0 voxels in
        zl, yl, xl = (sel[a] / f - off for a in ("z", "y", "x"))
        zc = int(np.clip(np.median(zl), 0, vol.shape[0] - 1))
        slab = np.asarray(vol[max(0, zc - 2):zc + 3]).astype(np.float32).mean(0)
        near = np.abs(zl - zc) < max(8, vol.shape[0] / 8)
        fig, ax = plt.subplots(figsize=(5, 5 * vol.shape[1] / max(vol.shape[2], 1)))
        ax.imshow(slab, cmap="gray", origin="lower")
        ax.scatter(xl[near], yl[near], s=40, facecolors="none", edgecolors="#e33", linewidths=0.8)
        ax.set_title(f"{name}: central slab (z = {zc}), {int(near.sum())} of {len(sel)} picks near it", fontsize=8)
        ax.axis("off")
        fig.tight_layout()
        out += _png(fig)
    return out


def tsne_by_cluster_and_tomogram(ps, features: str, n_points: int) -> str:
    if features not in ps.arrays():
        return ""
    from sklearn.manifold import TSNE

    from .html import _png

    x = ps.array(features)[...]
    lab = ps.rows(slice(0, ps.n), ["cluster", "tomogram"])
    idx = np.random.default_rng(0).permutation(len(x))[:n_points]
    if len(idx) < 5:
        return ""
    emb = TSNE(n_components=2, perplexity=min(30.0, max(2.0, len(idx) / 10)), init="pca",
               random_state=0).fit_transform(x[idx].astype(np.float64))
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key, title in ((axes[0], "cluster", "cluster"), (axes[1], "tomogram", "tomogram")):
        values = lab[key][idx]
        for v in sorted(set(values.tolist())):
            sel = values == v
            ax.scatter(emb[sel, 0], emb[sel, 1], s=6, label=f"{v} ({int(sel.sum())})")
        ax.set_title(f"coloured by {title}", fontsize=9)
        if len(set(values.tolist())) <= 20:
            ax.legend(fontsize=6, markerscale=2)
    fig.suptitle(f"t-SNE of '{features}' ({len(idx)} particles; no true classes)", fontsize=9)
    fig.tight_layout()
    return ("<h2>Deep structural features</h2><p>t-SNE of the deep features, coloured by cluster (left) and by "
            "tomogram (right): no true classes are known.</p>" + _png(fig))


def matched_averages(store, ps, name: str) -> str:
    """Per-cluster averages with half-set FSC and the known structure each matches (map attribute ``matches``,
    written by :func:`tomoflow.ops.own_data.match_structures`), or "unknown"."""
    if name not in store.names("maps"):
        return ""
    from .html import _png, _table, central_slices

    maps, vs, info = store.read_map(name)
    matches = {(m["cluster"], m["class"]): m for m in info.get("matches", [])}
    plt = _pyplot()
    cards, rows = [], []
    for i, r in enumerate(info.get("results", [])):
        c, k = r["cluster"], r["class"]
        m = matches.get((c, k), {})
        what = m.get("match", "not matched")
        disc = m.get("discrepancy_nm")
        fig, ax = plt.subplots(figsize=(4, 2.6))
        curve, _ = store.read_curve(f"{name}.fsc.c{c}.k{k}")
        ax.plot(curve["freq"][1:] * 10, curve["fsc"][1:], label="half sets")
        ax.axhline(0.5, color="grey", lw=0.7, ls="--")
        ax.set_xlabel("spatial frequency (1/nm)")
        ax.set_ylabel("FSC")
        ax.set_ylim(-0.2, 1.05)
        fig.tight_layout()
        title = f"cluster {c}: {r['members']} particles, {what}"
        best = f"best {m.get('best')} at {disc:.2f} nm" if disc is not None else ""
        cards.append(f'<div class="card">{central_slices(maps[i], title)}{_png(fig)}<p>'
                     f"{html.escape(what)} ({html.escape(best)}); {_fsc_kind(r)} FSC 0.5 at "
                     f"{r['half_set_resolution_A'] / 10:.2f} nm</p></div>")
        said = f"{m['predicted']} ({m['predicted_share']:.2f})" if m.get("predicted") else "-"
        rows.append((c, r["members"], what, m.get("best") or "", disc if disc is not None else "-", said,
                     f"{r['half_set_resolution_A'] / 10:.2f}" + ("" if r.get("gold_standard") else " *")))
    return ("<h2>Per-cluster averages</h2><p>Each average is compared with every known structure (FSC 0.5 after "
            "alignment) and named when the closest is within the threshold and most of the cluster's particles are "
            "predicted as that structure by the CNN; otherwise \"unknown\": a candidate for a structure not in the "
            "training set.</p>"
            + _table(("cluster", "particles", "is", "closest known", "discrepancy (nm)", "CNN's majority (share)",
                      "gold-standard FSC 0.5 (nm; * halves not independent)"), rows)
            + f'<div class="grid">{"".join(cards)}</div>')


def _fsc_kind(r: dict) -> str:
    """Maps averaged before issue 22 aligned both halves to one reference: their figure is not gold-standard."""
    return "gold-standard" if r.get("gold_standard") else "half-set (not independent, optimistic)"
