"""Seed 000 section 3.3: can structures the CNN never saw be recovered? (leave-one-out discovery)

Two simulated sets of the same classes (structures + empty): ``loo.train`` and ``loo.test``. For each
structure C: train the CNN on ``loo.train`` without C; project ``loo.test`` (which holds C) to deep
features; k-means with ``k`` clusters; take the cluster most enriched in C (see :func:`most_enriched`);
classify it reference-free (``classes`` classes, ``iterations`` iterations); take the class most enriched in C
among the cluster's members; and measure the structural discrepancy (FSC 0.5, after alignment) of its average to C's
true map (the density filtered by the simulation's CTF and MTF). Seed 000 counts how many of its 22 classes
come out under 7 nm (16 with Inception3D, 18 with DSRF3D). ``features``: the CNN's logits (the seed's deep
structural features) or ``openset``, the embedding of an open-set network (seed 002, 3.4.4; the same network
below a large-margin cosine head, :mod:`tomoflow.ml.openset`) trained without C with the same recipe, so the two
can be compared on the same sets. Each class's result is recorded as it finishes;
an interrupted run resumes at the next class. Each model trained without C is kept with the key of what it
was trained on (datasets and training settings), so a rerun that changes only the later steps (``k``,
``classes``, ``iterations``, ``enrichment``, ``threshold_nm``) does not train again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..params import MODEL_NAMES, PRECISION_HELP, PRECISIONS, ParamError, opt
from .accuracy_grid import SCALE_NAMES, SET_CHUNK, precision_key, scale_settings, train_params


@dataclass(frozen=True)
class LeaveOneOutParams:
    structures: tuple[str, ...] = opt((), metavar="NAME", help="structures (default: the scale's)")
    model: str = opt("dsrf3d", choices=MODEL_NAMES, help="the CNN")
    scale: str = opt("small", choices=SCALE_NAMES, help="settings: small (CPU) or the paper's")
    snr: float = opt(0.1, help="SNR of both sets")
    tilt: float = opt(60.0, help="half tilt range, degrees")
    per_class: int = opt(0, help="subtomograms per class and set (0: the scale's)")  # per set; 0: the scale's
    epochs: int = opt(0, help="training epochs (0: the scale's)")
    box: int = opt(0, help="box edge, voxels (0: the scale's)")
    voxel_size: float = opt(0.0, help="Å per voxel (0: the scale's)")
    # 0: 100 at paper scale, else about 40 particles per cluster
    k: int = opt(0, help="k-means clusters (0: 100 at paper scale, else about 40 particles per cluster)")
    classes: int = opt(3, help="classes of the most enriched cluster")
    iterations: int = opt(5, help="averaging iterations")
    threshold_nm: float = opt(7.0, help="structural discrepancy counted as recovered, nm")
    seed: int = opt(0, help="random seed")
    enrichment: str = opt("hypergeometric", choices=("hypergeometric", "share"),  # see most_enriched
                          help="rule for the cluster most enriched in the left-out class")
    precision: str = opt("auto", choices=PRECISIONS, help=PRECISION_HELP)
    features: str = opt("cnn", choices=("cnn", "openset"),
                        help="cnn: the CNN's logits; openset: the embedding of an open-set network (large-margin "
                             "cosine loss) built on the CNN, trained the same way")
    # (last: asdict keys stage records) a subset of the structures; the datasets, models and records are those
    # of the whole run, so runs over subsets add up to the protocol (about an hour a class at the paper scale)
    left_out: tuple[str, ...] = opt((), metavar="NAME",
                                    help="structures to leave out in turn (default: every one of the set)")

    def __post_init__(self):
        known = scale_settings(self)["structures"]
        for c in self.left_out:
            if c not in known:
                raise ParamError("left_out", f"must name structures of the set ({', '.join(known)}), got '{c}'")

    def resolved(self) -> dict:
        s = scale_settings(self)
        n_test = (len(s["structures"]) + 1) * s["per_class"]
        s["k"] = self.k or (100 if self.scale == "paper" else max(2, n_test // 40))
        return s


def _datasets(store, p: LeaveOneOutParams, s: dict, client, progress):
    from ..ops.simulate import simulate_dataset
    from ..params import DatasetSpec

    for i, name in enumerate(("loo.train", "loo.test")):
        spec = DatasetSpec(classes=tuple(s["structures"]), per_class=s["per_class"], snrs=(float(p.snr),),
                           tilt_ranges=(float(p.tilt),), box=s["box"], voxel_size=s["voxel_size"],
                           resolution=2 * s["voxel_size"], include_empty=True, seed=p.seed * 2 + i + 7)
        simulate_dataset(store, name, spec, chunk=SET_CHUNK, client=client, progress=progress)


ENRICHMENT = ("hypergeometric", "share")
ALPHA = 0.05  # below this P a group counts as significantly enriched in C


def most_enriched(groups: np.ndarray, is_c: np.ndarray, candidates, rule: str = "hypergeometric"
                  ) -> tuple[int, float, int]:
    """(group, share of C, count of C) of the group most enriched in C among ``candidates``.

    ``groups`` and ``is_c`` cover the population the groups were drawn from. ``rule``:

    * ``"hypergeometric"``: the group whose count of C is least likely by chance, i.e. the smallest
      P(X >= count) for X hypergeometric (population N, K of them C, a group of n drawn), the standard
      enrichment test: a group of one C particle is not "most enriched" over a group of 60 holding 55 C.
      When no group is significantly enriched (every P >= ``ALPHA``: the population is about as rich in C
      as any group, e.g. a nearly pure cluster), the group with the most C is taken; ties go to the larger
      count of C.
    * ``"share"``: the highest share of C, ties to the larger count (a group of one C wins with share 1).
    """
    if rule not in ENRICHMENT:
        raise ValueError(f"unknown enrichment rule '{rule}' (known: {', '.join(ENRICHMENT)})")
    from scipy.stats import hypergeom

    is_c = np.asarray(is_c, bool)
    big_n, big_k = len(is_c), int(is_c.sum())
    rows = []  # (group, share, count, log P)
    for g in candidates:
        m = groups == g
        n = int(m.sum())
        if n:
            count = int(is_c[m].sum())
            rows.append((int(g), count / n, count, round(float(hypergeom.logsf(count - 1, big_n, big_k, n)), 9)))
    if not rows:
        return (-1, -1.0, -1)
    if rule == "share":
        best = max(rows, key=lambda r: (r[1], r[2]))
    elif min(r[3] for r in rows) < np.log(ALPHA):
        best = max(rows, key=lambda r: (-r[3], r[2]))
    else:
        best = max(rows, key=lambda r: (r[2], r[1]))
    return best[:3]


def _model_key(p: LeaveOneOutParams, s: dict, tp) -> str:
    """What a model trained without C depends on: the datasets and the training settings."""
    data = {k: s[k] for k in ("structures", "per_class", "box", "voxel_size")}
    train = {k: v for k, v in asdict(tp).items() if k != "precision"}
    train.update(precision_key(tp.precision))  # as keyed before the option when float32
    extra = {"features": p.features} if p.features != "cnn" else {}
    return json.dumps({**data, "snr": p.snr, "tilt": p.tilt, "seed": p.seed, "train": train, **extra},
                      sort_keys=True, default=list)


def openset_params(p: LeaveOneOutParams, tp, c: str):
    """The open-set network trained without ``c``: the CNN ``tp`` trains, with its recipe, under a cosine head."""
    from ..params import OpenSetParams

    return OpenSetParams(model=p.model, epochs=tp.epochs, batch_size=tp.batch_size, optimizer=tp.optimizer,
                         learning_rate=tp.learning_rate, train_fraction=1.0, exclude=(c,), seed=p.seed,
                         precision=p.precision, name=f"loo_openset_train_{c}")


def run_class(store, c: str, p: LeaveOneOutParams, workdir: Path, *, client=None, progress=None) -> dict:
    from ..kernels.fsc import structural_discrepancy
    from ..ops.average import classify
    from ..ops.cluster import kmeans
    from ..ops.features import extract_features
    from ..ops.training import train_on
    from ..params import AlignParams, AverageParams, KMeansParams
    from ..simulate.templates import structure_template
    from ..store import ParticleSet

    s = p.resolved()
    t0 = time.perf_counter()
    tag = p.model if p.features == "cnn" else f"openset-{p.model}"
    model = workdir / f"loo.without-{c}.{tag}.keras"
    tp = train_params(s, p.model, train_fraction=1.0, seed=p.seed, exclude=(c,), precision=p.precision)
    key_file, model_key = model.with_suffix(".key.json"), _model_key(p, s, tp)
    trained = model.exists() and key_file.exists() and key_file.read_text() == model_key
    layer = "logits"
    if p.features == "openset":
        from ..ml.openset import feature_layer
        from ..ops.openset import openset_features

        op = openset_params(p, tp, c)
        layer = feature_layer(op)
        if not trained:
            key_file.unlink(missing_ok=True)
            openset_features(store, "loo.train", model, op, client=client, progress=False, resume=True)
            key_file.write_text(model_key)
    elif not trained:
        key_file.unlink(missing_ok=True)
        train_on(client, store, "loo.train", model, tp, key=f"train-loo-{c}", progress=False, resume=True)
        key_file.write_text(model_key)
    name = f"loo_{c}"
    extract_features(store, "loo.test", model, layer=layer, name=name, precision=p.precision, client=client,
                     overwrite=True, progress=progress)
    kmeans(store, "loo.test", KMeansParams(k=s["k"], seed=p.seed), features=name, client=client, progress=progress)
    ps = ParticleSet(store, "loo.test")
    t = ps.rows(slice(0, ps.n), ["true_class", "cluster"])
    is_c = t["true_class"] == ps.class_names.index(c)
    cl, share, count = most_enriched(t["cluster"], is_c, np.unique(t["cluster"]), p.enrichment)
    params = AverageParams(classes=p.classes, iterations=p.iterations, seed=p.seed, align=AlignParams())
    r = classify(store, "loo.test", f"loo_avg_{c}", params, clusters=[cl], client=client, restart=True,
                 progress=progress)
    member = t["cluster"] == cl
    cls = ps.array(f"loo_avg_{c}_class")[...]
    k, kshare, kcount = most_enriched(cls[member], is_c[member], range(p.classes), p.enrichment)
    maps, vs, _ = store.read_map(f"loo_avg_{c}")
    true = structure_template(c, vs, s["box"], resolution=2 * s["voxel_size"])
    d = structural_discrepancy(true, maps[k], vs)
    np.save(workdir / f"loo.{c}.average.npy", maps[k])
    return {"class": c, "cluster": cl, "cluster_size": int(member.sum()), "cluster_share": share,
            "cluster_count": count, "members_of_c": int(is_c.sum()), "subclass": k, "subclass_share": kshare,
            "subclass_count": kcount, "subclass_size": int(r["history"][-1]["sizes"][0][k]),
            "discrepancy_nm": float(d["discrepancy_nm"]), "under_threshold": bool(d["discrepancy_nm"] < p.threshold_nm),
            "trained": not trained, "seconds": time.perf_counter() - t0}


def run_leave_one_out(store, p: LeaveOneOutParams, workdir, *, client=None, progress=None, log=print) -> list[dict]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    s = p.resolved()
    # runs recorded before the precision and features options stay valid; runs over any subsets share records
    fields = {k: v for k, v in asdict(p).items() if k not in ("precision", "features", "left_out")}
    if p.features != "cnn":
        fields["features"] = p.features
    key = json.dumps({**fields, **precision_key(p.precision), **s}, sort_keys=True, default=list)
    rec = workdir / "loo-classes.json"
    done = json.loads(rec.read_text()) if rec.exists() else {}
    if done.get("key") != key:
        done = {"key": key, "classes": []}
    _datasets(store, p, s, client, progress)
    have = {r["class"] for r in done["classes"]}
    for c in s["structures"]:
        if c in have or (p.left_out and c not in p.left_out):
            continue
        r = run_class(store, c, p, workdir, client=client, progress=progress)
        done["classes"].append(r)
        rec.write_text(json.dumps(done, indent=1))
        log(f"leave-one-out {c}: cluster {r['cluster']} ({r['cluster_share']:.2f} {c}), class {r['subclass']} "
            f"({r['subclass_share']:.2f}), discrepancy {r['discrepancy_nm']:.2f} nm")
    order = list(s["structures"])  # runs over subsets may have recorded the classes in any order
    return sorted(done["classes"], key=lambda r: order.index(r["class"]))


def slices_figure(results: list[dict], store, p: LeaveOneOutParams, workdir, out) -> None:
    """Central slices of the true map and of the recovered average of every class (PNG)."""
    from ..report.plots import _pyplot
    from ..simulate.templates import structure_template

    s = p.resolved()
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(results), figsize=(1.6 * len(results), 3.4), squeeze=False)
    for j, r in enumerate(results):
        avg = np.load(Path(workdir) / f"loo.{r['class']}.average.npy")
        true = structure_template(r["class"], s["voxel_size"], s["box"], resolution=2 * s["voxel_size"])
        for i, (vol, lab) in enumerate(((true, "true"), (avg, f"{r['discrepancy_nm']:.1f} nm"))):
            axes[i, j].imshow(vol[vol.shape[0] // 2], cmap="gray")
            axes[i, j].set_title(f"{r['class']} {lab}" if i == 0 else lab, fontsize=7)
            axes[i, j].axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
