"""What each pipeline stage type does: a thin call of the library function with the stage's
checked parameters (see :mod:`.schema`). Every stage reads from and writes to the run's store, so
a stage can run alone on a store an earlier run filled; each returns a small JSON-able summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Context:
    store: object  # tomoflow.store.Store
    client: object | None  # distributed.Client or None (run in this process)
    out: Path  # the run's output folder: relative paths in stages are taken from here
    progress: bool = True

    def path(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else self.out / q


def merge_sets(store, names: list[str], out: str, attrs: dict | None = None) -> int:
    """One table-only particle set ``out`` holding the rows of ``names`` in order (same class names)."""
    import pandas as pd

    from ..store import ParticleSet, create_particle_set

    sets = [ParticleSet(store, n) for n in names]
    frames = [s.table_frame() for s in sets]
    table = pd.concat(frames, ignore_index=True)
    geo = {}
    for s in sets:
        geo.update(s.info.get("tomograms") or {})
    create_particle_set(store, out, {c: table[c].to_numpy() for c in table.columns}, class_names=sets[0].class_names,
                        voxel_size=sets[0].voxel_size, tomograms=geo or None, overwrite=True,
                        attrs={"merged_from": names, **(attrs or {})})
    return len(table)


def simulate_tomograms(ctx: Context, p: dict) -> dict:
    from ..simulate.crowded import CrowdedSpec, simulate_tomogram

    x, y, z = p["shape"]
    names, placed = [], 0
    for i in range(p["count"]):
        name = f"{p['name']}{i}"
        spec = CrowdedSpec(classes=tuple(p["classes"]), shape=(z, y, x), n_particles=p["particles"], snr=p["snr"],
                           tilt_range=p["tilt_range"], voxel_size=p["voxel_size"], resolution=p["voxel_size"],
                           seed=p["seed"] + i)
        placed += simulate_tomogram(ctx.store, name, spec, client=ctx.client, progress=ctx.progress)["placed"]
        names.append(name)
    merge_sets(ctx.store, [f"{n}_truth" for n in names], p["truth"])
    return {"tomograms": names, "particles": placed, "truth": p["truth"]}


def simulate_subtomograms(ctx: Context, p: dict) -> dict:
    from ..simulate.subtomograms import DatasetSpec, simulate_dataset

    spec = DatasetSpec(classes=tuple(p["structures"]), per_class=p["per_class"], snrs=(p["snr"],),
                       tilt_ranges=(p["tilt_range"],), include_empty=p["empty"], box=p["box"],
                       voxel_size=p["voxel_size"], resolution=2 * p["voxel_size"], seed=p["seed"])
    run = simulate_dataset(ctx.store, p["set"], spec, chunk=p["chunk"], client=ctx.client, progress=ctx.progress)
    return {"set": p["set"], "chunks": run.n_chunks, "computed": run.computed, "skipped": run.skipped}


def pick(ctx: Context, p: dict) -> dict:
    from ..errors import InputError
    from ..picking import DogParams, pick_dog

    tomos = p["tomograms"] or ctx.store.names("tomograms")
    tomos = [t for t in tomos if not t.endswith("_scores")]
    if not tomos:
        raise InputError(str(ctx.store.path), "no tomograms to pick from")
    parts, counts = [], {}
    for t in tomos:
        out = f"{p['out']}.{t}"
        if p["method"] == "dog":
            r = pick_dog(ctx.store, t, out, DogParams(sigma_A=p["sigma"], k=p["k"], threshold=p["threshold"],
                                                      min_distance_A=p["min_distance"], level=p["level"]),
                         client=ctx.client, overwrite=True, progress=ctx.progress)
        else:
            from ..template_matching import MatchParams, pick_template, structure_template

            if not p["template"]:
                raise InputError(ctx.store.path, "pick: method 'template' needs 'template' (a structure name)")
            vs = ctx.store.attrs("tomograms", t)["voxel_size"] * 2 ** p["level"]
            r = pick_template(ctx.store, t, out, structure_template(p["template"], vs, 24),
                              MatchParams(angular_step=p["angular_step"], level=p["level"]), client=ctx.client,
                              overwrite=True, progress=ctx.progress)
        parts.append(out)
        counts[t] = r["picked"]
    merge_sets(ctx.store, parts, p["out"], attrs={"picking": {"method": p["method"], "per_tomogram": counts}})
    return {"picks": p["out"], "per_tomogram": counts}


def evaluate_picks(ctx: Context, p: dict) -> dict:
    from ..evaluate import evaluate_picks as score, label_picks
    from ..store import ParticleSet

    picks, truth = ParticleSet(ctx.store, p["picks"]), ParticleSet(ctx.store, p["truth"])
    res = score(picks.table_frame(), truth.table_frame(), p["tolerance"], truth.class_names)
    if p["label"]:
        res["labels"] = label_picks(ctx.store, p["picks"], p["truth"], p["tolerance"])
    ParticleSet(ctx.store, p["picks"]).set_attrs({"evaluation": res})
    return {k: res[k] for k in ("n_pred", "n_truth", "precision", "recall", "f1")}


def extract(ctx: Context, p: dict) -> dict:
    from ..extract import extract as cut

    return cut(ctx.store, p["picks"], p["out"], p["box"], level=p["level"], edge=p["edge"], chunk=p["chunk"],
               client=ctx.client, overwrite=True, progress=ctx.progress)


def train(ctx: Context, p: dict) -> dict:
    """Training is one task: on a GPU worker when the cluster has one, else on a CPU worker (warned), or
    here without a cluster."""
    from ..store import ParticleSet
    from ..training import TrainParams, train_on

    params = TrainParams(model=p["model"], epochs=p["epochs"], batch_size=p["batch_size"],
                         learning_rate=p["learning_rate"], optimizer=p["optimizer"],
                         train_fraction=p["train_fraction"],
                         validation_fraction=p["validation_fraction"], seed=p["seed"])
    out = ctx.path(p["model_file"])
    meta = train_on(ctx.client, ctx.store, p["set"], out, params, progress=ctx.progress)
    summary = {"model": params.model, "model_file": str(out), "epochs": params.epochs,
               **{k: meta[k] for k in ("n_train", "n_validation", "best_epoch", "n_test")},
               "test_accuracy": meta["test"]["accuracy"]}
    ParticleSet(ctx.store, p["set"]).set_attrs({"training": {**summary, "confusion": meta["test"]["confusion"],
                                                             "history": meta["history"]}})
    return summary


def features(ctx: Context, p: dict) -> dict:
    from ..features import extract_features

    return extract_features(ctx.store, p["set"], ctx.path(p["model_file"]), layer=p["layer"], name=p["name"],
                            batch_size=p["batch_size"], client=ctx.client, progress=ctx.progress)


def cluster(ctx: Context, p: dict) -> dict:
    from ..cluster import KMeansParams, kmeans
    from ..report import size_summary

    r = kmeans(ctx.store, p["set"], KMeansParams(k=p["k"], seed=p["seed"]), features=p["features"],
               client=ctx.client, progress=ctx.progress)
    return {"k": p["k"], "iterations": r["iterations"], "converged": r["converged"], **size_summary(r["sizes"])}


def select_clusters(labels: np.ndarray, clusters, min_members: int = 1, largest: int = 0) -> list[int]:
    """The clusters to average: ``clusters`` ("all" or ids) with at least ``min_members`` members, the
    ``largest`` biggest of them when ``largest`` > 0 (ties to the lower id), in id order; [-1] (the whole
    set) when none qualifies (e.g. the set is not clustered)."""
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    size = dict(zip(ids.tolist(), counts.tolist()))
    if clusters == "all":
        pool = [c for c in sorted(size) if size[c] >= min_members]
    else:
        pool = [int(c) for c in clusters]
    if largest > 0:
        pool = sorted(sorted(pool, key=lambda c: (-size.get(c, 0), c))[:largest])
    return pool or [-1]


def average(ctx: Context, p: dict) -> dict:
    from ..align import AlignParams
    from ..average import AverageParams, classify
    from ..store import ParticleSet

    labels = ParticleSet(ctx.store, p["set"]).rows(slice(0, None), ["cluster"])["cluster"]
    clusters = select_clusters(labels, p["clusters"], p["min_members"], p["largest"])
    params = AverageParams(classes=p["classes"], iterations=p["iterations"], seed=p["seed"],
                           align=AlignParams(coarse_step=p["angular_step"]))
    r = classify(ctx.store, p["set"], p["name"], params, clusters=clusters, client=ctx.client,
                 progress=ctx.progress)
    res = [{k: v for k, v in x.items() if k != "fsc"} for x in r["results"]]
    return {"maps": p["name"], "clusters": clusters, "results": res}


def accuracy_grid(ctx: Context, p: dict) -> dict:
    """Seed 000 Table 2 (see :mod:`tomoflow.accuracy_grid`); writes ``out`` (markdown, ours beside the paper's)."""
    from ..accuracy_grid import GridParams, bar, markdown_table, run_grid

    gp = GridParams(snrs=tuple(float(x) for x in p["snrs"]), tilts=tuple(float(x) for x in p["tilts"]),
                    structures=tuple(p["structures"]), models=tuple(p["models"]), rif_svm=p["rif_svm"],
                    scale=p["scale"], per_class=p["per_class"], epochs=p["epochs"], seed=p["seed"])
    cells = run_grid(ctx.store, gp, ctx.out / "grid", client=ctx.client, progress=ctx.progress,
                     log=lambda m: print(f"tomoflow: {m}", flush=True))
    table = markdown_table(cells, gp.models, gp.snrs, gp.tilts)
    turned = markdown_table(cells, gp.models, gp.snrs, gp.tilts, turns=True)
    ctx.path(p["out"]).write_text(f"# Table 2 ({gp.scale} scale): ours (paper)\n\n{table}\n\n## CNNs with "
                                  f"test-time turns (mean over the 4 wedge-preserving views)\n\n{turned}\n")
    return {"cells": len(cells), "table": str(ctx.path(p["out"])), **bar(cells)}


def leave_one_out(ctx: Context, p: dict) -> dict:
    """Seed 000 section 3.3 (see :mod:`tomoflow.leave_one_out`); writes ``out`` (markdown) and a PNG of slices."""
    from ..leave_one_out import LeaveOneOutParams, run_leave_one_out, slices_figure

    lp = LeaveOneOutParams(structures=tuple(p["structures"]), model=p["model"], scale=p["scale"], snr=p["snr"],
                           tilt=p["tilt"], per_class=p["per_class"], epochs=p["epochs"], box=p["box"],
                           voxel_size=float(p["voxel_size"]), k=p["k"],
                           classes=p["classes"], iterations=p["iterations"], threshold_nm=p["threshold_nm"],
                           seed=p["seed"], enrichment=p["enrichment"])
    work = ctx.out / f"loo-{lp.model}"
    res = run_leave_one_out(ctx.store, lp, work, client=ctx.client, progress=ctx.progress,
                            log=lambda m: print(f"tomoflow: {m}", flush=True))
    png = ctx.path(p["out"]).with_suffix(".png")
    slices_figure(res, ctx.store, lp, work, png)
    under = sum(r["under_threshold"] for r in res)
    rows = "\n".join(f"| {r['class']} | {r['cluster']} ({r['cluster_size']}) | {r['cluster_share']:.2f} | "
                      f"{r['subclass_size']} | {r['subclass_share']:.2f} | {r['discrepancy_nm']:.2f} |" for r in res)
    ctx.path(p["out"]).write_text(
        f"# Leave-one-out discovery ({lp.model}, {lp.scale} scale, SNR {lp.snr:g}, +-{lp.tilt:g})\n\n"
        f"{under}/{len(res)} under {lp.threshold_nm:g} nm (paper: 16/22 Inception3D, 18/22 DSRF3D); "
        f"most enriched by the {lp.enrichment} rule.\n\n"
        "| left out | cluster (size) | share of it | class size | share of class | discrepancy (nm) |\n"
        f"|---|---|---|---|---|---|\n{rows}\n\n![slices]({png.name})\n")
    return {"classes": len(res), "under_threshold": under, "table": str(ctx.path(p["out"]))}


def report(ctx: Context, p: dict) -> dict:
    from ..report_html import write_report

    out = ctx.path(p["out"])
    write_report(ctx.store, out, set_name=p["set"], picks=p["picks"], truth=p["truth"], average=p["average"],
                 features=p["features"], tsne_points=p["tsne_points"])
    return {"report": str(out)}


RUNNERS = {"simulate_tomograms": simulate_tomograms, "simulate_subtomograms": simulate_subtomograms, "pick": pick,
           "evaluate_picks": evaluate_picks, "extract": extract, "train": train, "features": features,
           "cluster": cluster, "average": average, "accuracy_grid": accuracy_grid,
           "leave_one_out": leave_one_out, "report": report}
