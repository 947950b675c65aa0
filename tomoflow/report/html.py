"""``report.html``: one self-contained page (images embedded as PNG data) of what a run found.

Sections, each shown when the store holds what it needs: the dataset (tomograms, particle sets, true
classes), picking against the ground truth (precision, recall, F1, recall per class), the CNN (test
accuracy and confusion matrix), a t-SNE map of the deep features coloured by true class, the
cluster-size histogram, and per-cluster averages (central slices, half-set FSC, FSC to the true map
of the cluster's majority class, structural discrepancy in nm).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from .plots import _pyplot, size_summary

CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse;"
       "margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
       "img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;padding:6px;"
       "width:340px}.card img{width:330px}h2{border-bottom:2px solid #ccc}")


def _png(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(header, rows) -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3f}" if abs(x) < 1000 else f"{x:.0f}"
    return html.escape(str(x))


def central_slices(vol: np.ndarray, title: str) -> str:
    plt = _pyplot()
    c = vol.shape[0] // 2
    fig, axes = plt.subplots(1, 3, figsize=(6, 2.2))
    for ax, img, lab in zip(axes, (vol[c], vol[:, c], vol[:, :, c]), ("z (x-y)", "y (x-z)", "x (y-z)")):
        ax.imshow(img, cmap="gray", origin="lower")
        ax.set_title(lab, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _dataset(store, set_name, truth) -> str:
    from ..store.summary import summarize

    s = summarize(store)
    rows = [(t["name"], " x ".join(map(str, t["shape_zyx"][::-1])), t["voxel_size"],
             "" if not t["tilt_range"] else f"{t['tilt_range'][0]:g}..{t['tilt_range'][1]:g}")
            for t in s["tomograms"] if not t["name"].endswith("_scores")]
    out = "<h2>Dataset</h2>" + _table(("tomogram", "size x, y, z", "Å/voxel", "tilt range"), rows)
    out += _table(("particle set", "particles", "box", "arrays"),
                  [(p["name"], p["n"], p["box_size"] or "", ", ".join(p["arrays"])) for p in s["particles"]
                   if "." not in p["name"]])
    if truth in store.names("particles"):
        from ..store import ParticleSet

        ts = ParticleSet(store, truth)
        cls = ts.rows(slice(0, ts.n), ["true_class"])["true_class"]
        out += "<p>True particles per class: " + ", ".join(
            f"{html.escape(n)} {int((cls == i).sum())}" for i, n in enumerate(ts.class_names)) + "</p>"
    return out


def _picking(ps) -> str:
    ev = ps.info.get("evaluation")
    if not ev:
        return ""
    out = (f"<h2>Picking</h2><p>{ev['n_pred']} picks vs {ev['n_truth']} true particles (within "
           f"{ev['tolerance_A']:g} Å, one-to-one): precision {ev['precision']:.3f}, recall {ev['recall']:.3f}, "
           f"<b>F1 {ev['f1']:.3f}</b>.</p>")
    return out + _table(("class", "true particles", "recall"),
                        [(k, v["n"], v["recall"]) for k, v in ev["per_class"].items()])


def _cnn(ps) -> str:
    tr = ps.info.get("training")
    if not tr:
        return ""
    names = ps.class_names
    conf = np.asarray(tr["confusion"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(conf, cmap="Blues")
    for (i, j), v in np.ndenumerate(conf):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="red" if i != j and v else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return (f"<h2>CNN</h2><p>{html.escape(tr['model'])}, {tr['epochs']} epochs on {tr['n_train']} subtomograms; "
            f"<b>test accuracy {tr['test_accuracy']:.3f}</b> on {tr['n_test']}.</p>" + _png(fig)
            + _table(["true \\ predicted"] + names, [[names[i]] + list(map(int, r)) for i, r in enumerate(conf)]))


def _tsne(ps, features, n_points) -> str:
    if features not in ps.arrays():
        return ""
    from sklearn.manifold import TSNE

    x = ps.array(features)[...]
    cls = ps.rows(slice(0, ps.n), ["true_class"])["true_class"]
    idx = np.random.default_rng(0).permutation(len(x))[:n_points]
    emb = TSNE(n_components=2, perplexity=min(30.0, max(5.0, len(idx) / 10)), init="pca",
               random_state=0).fit_transform(x[idx].astype(np.float64))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for c, name in enumerate(ps.class_names):
        sel = cls[idx] == c
        if sel.any():
            ax.scatter(emb[sel, 0], emb[sel, 1], s=6, label=f"{name} ({int(sel.sum())})")
    ax.legend(fontsize=7, markerscale=2)
    ax.set_title(f"t-SNE of '{features}' ({len(idx)} particles), coloured by true class", fontsize=9)
    fig.tight_layout()
    return "<h2>Deep structural features</h2>" + _png(fig)


def _clusters(ps) -> str:
    lab = ps.rows(slice(0, ps.n), ["cluster", "true_class"])
    if (lab["cluster"] < 0).all():
        return ""
    ids, sizes = np.unique(lab["cluster"][lab["cluster"] >= 0], return_counts=True)
    s = size_summary(sizes)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(ids, sizes, color="#4a7")
    ax.set_xlabel("cluster")
    ax.set_ylabel("particles")
    fig.tight_layout()
    names = ps.class_names
    head = (f"<h2>Clusters</h2><p>k-means: {len(ids)} clusters, largest share {s['largest_share']:.2f}, "
            f"Gini {s['gini']:.2f}.</p>" + _png(fig))
    if (lab["true_class"] < 0).all():  # no ground truth: sizes only
        return head + _table(("cluster", "particles"), [(int(c), int(n)) for c, n in zip(ids, sizes)])
    rows = []
    for c in ids:
        t = lab["true_class"][lab["cluster"] == c]
        counts = np.bincount(t[t >= 0], minlength=len(names))
        rows.append((int(c), int(len(t)), names[int(counts.argmax())] if len(names) else "",
                     float(counts.max() / max(1, len(t)))))
    return head + _table(("cluster", "particles", "majority class", "purity"), rows)


def _averages(store, ps, name) -> str:
    from ..kernels.fsc import structural_discrepancy
    from ..simulate.templates import structure_template

    if name not in store.names("maps"):
        return ""
    maps, vs, info = store.read_map(name)
    tab = ps.rows(slice(0, ps.n), ["true_class", "cluster"])
    lab, labels = tab["true_class"], tab["cluster"]
    cls_arr = ps.array(f"{name}_class")[...] if f"{name}_class" in ps.arrays() else None
    names, box = ps.class_names, maps.shape[-1]
    truth_cache, cards, rows = {}, [], []
    plt = _pyplot()
    for i, r in enumerate(info.get("results", [])):
        c, k = r["cluster"], r["class"]
        member = (labels == c) if c >= 0 else np.ones(ps.n, bool)
        if cls_arr is not None and info.get("classes", 1) > 1:
            member &= cls_arr == k
        t = lab[member]
        counts = np.bincount(t[t >= 0], minlength=len(names)) if len(names) else np.zeros(1, int)
        major = names[int(counts.argmax())] if len(names) and counts.sum() else ""
        purity = float(counts.max() / max(1, member.sum()))
        title = f"cluster {c}" + (f" class {k}" if info.get("classes", 1) > 1 else "") + f": {r['members']} particles"
        fig, ax = plt.subplots(figsize=(4, 2.6))
        curve, meta = store.read_curve(f"{name}.fsc.c{c}.k{k}")
        ax.plot(curve["freq"][1:] * 10, curve["fsc"][1:], label="half sets")
        disc = None
        if major and major != "background" and r["members"] > 0:
            try:
                if major not in truth_cache:
                    truth_cache[major] = structure_template(major, vs, box, resolution=vs)
                d = structural_discrepancy(truth_cache[major], maps[i], vs)
                disc = d["discrepancy_nm"]
                ax.plot(d["freq"][1:] * 10, d["fsc"][1:], label=f"vs true {major}")
            except Exception as exc:  # a class name that is not a structure: no true map to compare
                disc = f"no true map ({type(exc).__name__})"
        ax.axhline(0.5, color="grey", lw=0.7, ls="--")
        ax.set_xlabel("spatial frequency (1/nm)")
        ax.set_ylabel("FSC")
        ax.set_ylim(-0.2, 1.05)
        ax.legend(fontsize=7)
        fig.tight_layout()
        dtxt = f"{disc:.2f} nm" if isinstance(disc, float) else (disc or "-")
        cards.append(f'<div class="card">{central_slices(maps[i], title)}{_png(fig)}<p>majority {html.escape(major)}'
                     f" ({purity:.2f}); {_fsc_kind(r)} FSC 0.5 at {r['half_set_resolution_A'] / 10:.2f} nm; "
                     f"discrepancy to true map {html.escape(dtxt)}</p></div>")
        rows.append((c, k, r["members"], major, purity,
                     f"{r['half_set_resolution_A'] / 10:.2f}" + ("" if r.get("gold_standard") else " *"), dtxt))
    return ("<h2>Per-cluster averages</h2>" + _table(("cluster", "class", "particles", "majority class", "purity",
                                                      "gold-standard FSC 0.5 (nm; * halves not independent)",
                                                      "discrepancy to true map"), rows)
            + f'<div class="grid">{"".join(cards)}</div>')


def write_report(store, out, *, set_name: str = "particles", picks: str = "picks", truth: str = "truth",
                 average: str = "average", features: str = "features", tsne_points: int = 2000,
                 training: str | None = None) -> Path:
    """Write the report page to ``out``; sections whose inputs are absent are left out. A set without true
    classes (a user's own data) gets the sections that need no ground truth (:mod:`.own_data`); ``training``: the
    set the CNN was trained on, when it is not ``set_name``."""
    from ..store import ParticleSet
    from . import own_data

    out = Path(out)
    have = store.names("particles")
    parts = [f"<h1>tomoflow report</h1><p>store <code>{html.escape(str(store.path))}</code></p>",
             _dataset(store, set_name, truth)]
    if picks in have:
        parts.append(_picking(ParticleSet(store, picks)))
        parts.append(own_data.picks_overview(store, ParticleSet(store, picks)))
    if training and training in have:
        parts.append(_cnn(ParticleSet(store, training)))
    if set_name in have:
        ps = ParticleSet(store, set_name)
        if (ps.rows(slice(0, ps.n), ["true_class"])["true_class"] >= 0).any():
            parts += [_cnn(ps), _tsne(ps, features, tsne_points), _clusters(ps), _averages(store, ps, average)]
        else:
            parts += [own_data.tsne_by_cluster_and_tomogram(ps, features, tsne_points), _clusters(ps),
                      own_data.matched_averages(store, ps, average)]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>tomoflow report</title><style>{CSS}</style>"
            f"</head><body>{''.join(parts)}</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out


def _fsc_kind(r: dict) -> str:
    """Maps averaged before issue 22 aligned both halves to one reference: their figure is not gold-standard."""
    return "gold-standard" if r.get("gold_standard") else "half-set (not independent, optimistic)"
