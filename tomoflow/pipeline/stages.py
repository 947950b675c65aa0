"""What each pipeline stage type does, and which keys it takes: a thin call of a driver (:mod:`tomoflow.ops`).

Every stage type is a :class:`StageType`: the Params class its keys come from (:mod:`tomoflow.params`, through
:mod:`tomoflow.options`, so a default is written once) plus the stage's own keys (which sets, which files).
Every stage reads from and writes to the run's store, so a stage can run alone on a store an earlier run
filled; each returns a small JSON-able summary. The seed paper's experiments register their stage types
from :mod:`tomoflow.experiments.stages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..options import Option
from ..params import (AverageParams, CrowdedSpec, DatasetSpec, DogParams, EvaluateParams, ExtractParams, FeatureParams,
                      FilterParams, ImportParams, KMeansParams, MatchParams, TrainParams)
from ..params import SaliencyDenoiseParams, SaliencyPickParams
from ..params import AutoClassParams, FamlParams
from ..params import AutoencoderFilterParams, AutoencoderParams, EncodeParams, SemiSupervisedParams
from ..params import DomainParams, OpenSetParams


@dataclass
class Context:
    store: object  # tomoflow.store.Store
    client: object | None  # distributed.Client or None (run in this process)
    out: Path  # the run's output folder: relative paths in stages are taken from here
    progress: bool = True

    def path(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else self.out / q


@dataclass(frozen=True)
class StageType:
    """A stage type: ``run(ctx, params, keys)`` gets the ``params`` instance (None when the type has no Params
    class) and ``keys``, the stage's own keys (public name -> value)."""

    run: Callable
    params: type | None = None
    keys: tuple[Option, ...] = ()


def key(name: str, type=str, default=None, help: str = "", **kw) -> Option:
    """A stage's own key (not a Params field)."""
    return Option(name=name, type=type, default=default, help=help, **kw)


@dataclass(frozen=True)
class ClustersOption(Option):
    """'all' or a list of cluster ids."""

    def coerce(self, value, where: str = ""):
        if value == "all" or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in value)):
            return value
        raise ValueError(f"{where}: '{self.name}' must be 'all' or a list of int, got {value!r}")


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


def simulate_tomograms(ctx: Context, spec: CrowdedSpec, k: dict) -> dict:
    """``count`` tomograms ``<name>0``, ``<name>1``, ... (seeds ``seed``, ``seed + 1``, ...); their true
    particles merged into the set ``truth``."""
    from dataclasses import replace

    from ..ops.simulate import simulate_tomogram

    names, placed = [], 0
    for i in range(k["count"]):
        name = f"{k['name']}{i}"
        one = replace(spec, seed=spec.seed + i)
        placed += simulate_tomogram(ctx.store, name, one, client=ctx.client, progress=ctx.progress)["placed"]
        names.append(name)
    merge_sets(ctx.store, [f"{n}_truth" for n in names], k["truth"])
    return {"tomograms": names, "particles": placed, "truth": k["truth"]}


def simulate_subtomograms(ctx: Context, spec: DatasetSpec, k: dict) -> dict:
    from ..ops.simulate import simulate_dataset

    run = simulate_dataset(ctx.store, k["set"], spec, chunk=k["chunk"], client=ctx.client, progress=ctx.progress)
    return {"set": k["set"], "chunks": run.n_chunks, "computed": run.computed, "skipped": run.skipped}


def _derived(store, name: str) -> bool:
    """A tomogram a stage made from another (a filtered copy, a score map): not picked unless named."""
    return name.endswith("_scores") or "derived_from" in store.attrs("tomograms", name)


def _tomograms(ctx: Context, names) -> list[str]:
    from ..errors import InputError

    tomos = list(names) if names else [t for t in ctx.store.names("tomograms") if not _derived(ctx.store, t)]
    if not tomos:
        raise InputError(str(ctx.store.path), "no tomograms to pick from")
    return tomos


def _template(ctx: Context, name: str, tomogram: str, level: int, box: int, *, unbinned_mtf: bool = True):
    """The CTF-filtered template of structure ``name`` at the tomogram's voxel size at ``level``; the MTF is the
    unbinned detector's (as ``tomoflow pick template``) unless ``unbinned_mtf`` is False (the binned voxel's,
    as the ``pick`` stage's ``method: template`` always did)."""
    from ..errors import InputError
    from ..simulate.templates import structure_template

    if not name:
        raise InputError(str(ctx.store.path), "template matching needs 'template' (a structure name or file)")
    vs = ctx.store.attrs("tomograms", tomogram)["voxel_size"]
    return structure_template(name, vs * 2**level, box, detector_voxel=vs if unbinned_mtf else None)


def _pick_each(ctx: Context, k: dict, method: str, one) -> dict:
    parts, counts = [], {}
    for t in _tomograms(ctx, k["tomograms"]):
        out = f"{k['out']}.{t}"
        counts[t] = one(t, out)["picked"]
        parts.append(out)
    merge_sets(ctx.store, parts, k["out"], attrs={"picking": {"method": method, "per_tomogram": counts}})
    return {"picks": k["out"], "per_tomogram": counts}


def pick(ctx: Context, p: DogParams, k: dict) -> dict:
    """DoG picking of every tomogram (or those named) into one set. ``method: template`` is kept for older
    files: template matching at the ``angular_step`` and ``level`` given, other settings default (use the
    ``pick_template`` stage to set them all)."""
    from ..ops.pick import pick_dog, pick_template

    if k["method"] == "template":
        mp = MatchParams(angular_step=k["angular_step"], level=p.level)
        return _pick_each(ctx, k, "template", lambda t, out: pick_template(
            ctx.store, t, out, _template(ctx, k["template"], t, p.level, k["template_box"], unbinned_mtf=False), mp,
            client=ctx.client,
            overwrite=True, progress=ctx.progress))
    return _pick_each(ctx, k, "dog", lambda t, out: pick_dog(ctx.store, t, out, p, client=ctx.client, overwrite=True,
                                                             progress=ctx.progress))


def pick_template(ctx: Context, p: MatchParams, k: dict) -> dict:
    """Template matching of every tomogram (or those named) into one set; GPU workers when present."""
    from ..ops.pick import pick_template as match

    return _pick_each(ctx, k, "template", lambda t, out: match(
        ctx.store, t, out, _template(ctx, k["template"], t, p.level, k["template_box"]), p, client=ctx.client,
        overwrite=True, progress=ctx.progress, device=k["device"]))


def evaluate_picks(ctx: Context, p: EvaluateParams, k: dict) -> dict:
    from ..ops.label import label_picks, score_picks
    from ..store import ParticleSet

    res = score_picks(ctx.store, k["picks"], k["truth"], p.tolerance)
    if k["label"]:
        res["labels"] = label_picks(ctx.store, k["picks"], k["truth"], p.tolerance)
    ParticleSet(ctx.store, k["picks"]).set_attrs({"evaluation": res})
    return {x: res[x] for x in ("n_pred", "n_truth", "precision", "recall", "f1")}


def extract(ctx: Context, p: ExtractParams, k: dict) -> dict:
    from ..ops.extraction import extract as cut

    return cut(ctx.store, k["picks"], k["out"], p.box, level=p.level, edge=p.edge, chunk=p.chunk,
               client=ctx.client, overwrite=True, progress=ctx.progress, flip_bright=p.flip_bright)


def train(ctx: Context, params: TrainParams, k: dict) -> dict:
    """Training is one task: on a GPU worker when the cluster has one, else on a CPU worker (warned), or
    here without a cluster."""
    from ..ops.training import check_model_name, train_on
    from ..store import ParticleSet

    check_model_name(params.model)
    out = ctx.path(k["model_file"])
    meta = train_on(ctx.client, ctx.store, k["set"], out, params, progress=ctx.progress)
    summary = {"model": params.model, "model_file": str(out), "epochs": params.epochs, "precision": meta["precision"],
               **{x: meta[x] for x in ("n_train", "n_validation", "best_epoch", "n_test")},
               "test_accuracy": meta["test"]["accuracy"]}
    ParticleSet(ctx.store, k["set"]).set_attrs({"training": {**summary, "confusion": meta["test"]["confusion"],
                                                             "history": meta["history"]}})
    return summary


def features(ctx: Context, p: FeatureParams, k: dict) -> dict:
    from ..ops.features import extract_features

    return extract_features(ctx.store, k["set"], ctx.path(k["model_file"]), layer=p.layer, name=p.name,
                            batch_size=p.batch_size, precision=p.precision, client=ctx.client, progress=ctx.progress,
                            overwrite="changed")


def cluster(ctx: Context, p: KMeansParams, k: dict) -> dict:
    from ..ops.cluster import kmeans
    from ..report.plots import size_summary

    r = kmeans(ctx.store, k["set"], p, features=k["features"], client=ctx.client, progress=ctx.progress,
               overwrite=k["overwrite"])
    return {"k": p.k, "iterations": r["iterations"], "converged": r["converged"], **size_summary(r["sizes"])}


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


def average(ctx: Context, p: AverageParams, k: dict) -> dict:
    from ..ops.average import classify
    from ..store import ParticleSet

    labels = ParticleSet(ctx.store, k["set"]).rows(slice(0, None), ["cluster"])["cluster"]
    clusters = select_clusters(labels, k["clusters"], k["min_members"], k["largest"])
    r = classify(ctx.store, k["set"], k["name"], p, clusters=clusters, client=ctx.client, progress=ctx.progress)
    res = [{x: v for x, v in one.items() if x != "fsc"} for one in r["results"]]
    return {"maps": k["name"], "clusters": clusters, "results": res}


def average_ml(ctx: Context, p: FamlParams, k: dict) -> dict:
    """FAML averaging / classification of the whole set (seed 002, 3.3.3)."""
    from ..ops.faml import average_ml as run

    r = run(ctx.store, k["set"], k["name"], p, client=ctx.client, progress=ctx.progress)
    return {"maps": k["name"], "results": r["results"]}


def classify_auto(ctx: Context, p: AutoClassParams, k: dict) -> dict:
    """Classification of aligned particles with the number of classes found by an automatic cut-off (3.3.2)."""
    from ..ops.autoclass import classify_auto as run

    r = run(ctx.store, k["set"], k["average"], k["name"], p, client=ctx.client, progress=ctx.progress)
    return {"classes": r["classes"], "sizes": r["sizes"], "maps": k["name"]}


def report(ctx: Context, _, k: dict) -> dict:
    from ..report.html import write_report

    out = ctx.path(k["out"])
    write_report(ctx.store, out, set_name=k["set"], picks=k["picks"], truth=k["truth"], average=k["average"],
                 features=k["features"], tsne_points=k["tsne_points"], training=k["training"] or None)
    return {"report": str(out)}


# ---- issue 24 parts 1-2: autoencoder grouping and filtering, semi-supervised classifier (seed 002, 3.4.2-3) ------
def autoencoder_train(ctx: Context, p: AutoencoderParams, k: dict) -> dict:
    from ..ops.autoencoder import train_autoencoder

    out = ctx.path(k["model_file"])
    meta = train_autoencoder(ctx.store, k["set"], out, p, client=ctx.client, progress=ctx.progress, resume=True)
    loss = meta["history"].get("loss") or []
    return {"model_file": str(out), "latent": meta["latent"], "n_train": meta["n_train"],
            "loss_first": loss[0] if loss else None, "loss_last": loss[-1] if loss else None,
            "precision": meta["precision"]}


def autoencoder_encode(ctx: Context, p: EncodeParams, k: dict) -> dict:
    from ..ops.autoencoder import encode_autoencoder

    return encode_autoencoder(ctx.store, k["set"], ctx.path(k["model_file"]), name=p.name, batch_size=p.batch_size,
                              precision=p.precision, client=ctx.client, progress=ctx.progress, overwrite="changed")


def autoencoder_filter(ctx: Context, p: AutoencoderFilterParams, k: dict) -> dict:
    from ..ops.autoencoder import filter_autoencoder

    r = filter_autoencoder(ctx.store, k["set"], ctx.path(k["model_file"]), k["out"], p, features=k["features"],
                           client=ctx.client, progress=ctx.progress, overwrite=True)
    return {x: r[x] for x in ("scores", "sizes", "kept_clusters", "kept", "of")}


def train_semisupervised(ctx: Context, p: SemiSupervisedParams, k: dict) -> dict:
    from ..ops.semisupervised import train_semisupervised as run

    out = ctx.path(k["model_file"])
    meta = run(ctx.store, k["set"], out, p, client=ctx.client, progress=ctx.progress, resume=True)
    return {"model_file": str(out), "n_labelled": meta["n_labelled"], "n_train": meta["n_train"],
            "n_test": meta["n_test"], "test_accuracy": meta["test"]["accuracy"], "precision": meta["precision"]}


# ---- a user's own tomograms (tomoflow.ops.own_data) -------------------------------------------------------------
def import_tomograms(ctx: Context, p: ImportParams, k: dict) -> dict:
    """MRC files (paths or glob patterns, relative to the pipeline's --out folder) with their metadata."""
    from ..ops.own_data import import_tomograms as run, read_metadata

    meta = read_metadata(ctx.path(k["metadata"])) if k["metadata"] else None
    files = [str(ctx.path(f)) for f in k["files"]]
    contrast = run(ctx.store, files, metadata=meta, params=p, contrast=k["contrast"], overwrite=True,
                   progress=ctx.progress)
    return {"tomograms": sorted(contrast), "contrast": contrast}


def filter_tomograms(ctx: Context, p: FilterParams, k: dict) -> dict:
    """Each tomogram (or those named) filtered into a new tomogram ``<name><suffix>`` (pick those with ``pick``'s
    ``tomograms`` key)."""
    from ..ops.filter import filter_tomogram
    from ..ops.own_data import _set_tomogram_attrs

    names = k["tomograms"] or [t for t in ctx.store.names("tomograms") if not _derived(ctx.store, t)]
    for t in names:
        filter_tomogram(ctx.store, t, f"{t}{k['suffix']}", p.kind, p.kernel_params(), level=p.level,
                        client=ctx.client, overwrite=True, progress=ctx.progress)
        _set_tomogram_attrs(ctx.store, f"{t}{k['suffix']}", {"derived_from": t})
    return {"filtered": [f"{t}{k['suffix']}" for t in names]}


def pick_saliency(ctx: Context, p: SaliencyPickParams, k: dict) -> dict:
    """Saliency picking (super-voxels, Robust PCA; template-free) of every tomogram (or those named) into one set."""
    from ..ops.saliency import pick_saliency as run

    return _pick_each(ctx, k, "saliency", lambda t, out: run(ctx.store, t, out, p, client=ctx.client, overwrite=True,
                                                             progress=ctx.progress))


def denoise_saliency(ctx: Context, p: SaliencyDenoiseParams, k: dict) -> dict:
    """Each tomogram (or those named) denoised by saliency-weighted smoothing into ``<name><suffix>``."""
    from ..ops.own_data import _set_tomogram_attrs
    from ..ops.saliency import denoise_saliency as run

    names = k["tomograms"] or [t for t in ctx.store.names("tomograms") if not _derived(ctx.store, t)]
    for t in names:
        run(ctx.store, t, f"{t}{k['suffix']}", p, client=ctx.client, overwrite=True, progress=ctx.progress)
        _set_tomogram_attrs(ctx.store, f"{t}{k['suffix']}", {"derived_from": t})
    return {"denoised": [f"{t}{k['suffix']}" for t in names]}


def estimate_wedge(ctx: Context, _, k: dict) -> dict:
    from ..ops.own_data import estimate_wedges

    got = estimate_wedges(ctx.store, list(k["tomograms"]) or None)
    return {"estimated": {n: list(v) for n, v in got.items() if v}, "known": [n for n, v in got.items() if not v]}


def cut_background(ctx: Context, _, k: dict) -> dict:
    from ..ops.own_data import cut_background as run

    return run(ctx.store, k["picks"], k["out"], per_tomogram=k["per_tomogram"], box=k["box"], level=k["level"],
               min_distance_A=k["min_distance"] or None, flip_bright=k["flip_bright"], seed=k["seed"], overwrite=True)


def simulate_training(ctx: Context, _, k: dict) -> dict:
    from ..ops.own_data import simulate_matched

    return simulate_matched(ctx.store, k["particles"], k["background"], k["out"], k["structures"],
                            per_class=k["per_class"], seed=k["seed"], client=ctx.client, progress=ctx.progress)


def match_structures(ctx: Context, _, k: dict) -> dict:
    """Name each average by the known structure it matches (or "unknown"); kept in the map's attributes."""
    from ..ops.own_data import match_structures as run

    res = run(ctx.store, k["average"], k["structures"], threshold_nm=k["threshold_nm"])
    maps, vs, info = ctx.store.read_map(k["average"])
    ctx.store.write_map(k["average"], maps, vs, attrs={**{x: v for x, v in info.items() if x not in (
        "kind", "voxel_size", "shape", "created")}, "matches": [{x: v for x, v in r.items() if x != "all"}
                                                               for r in res]})
    return {"matches": {str(r["cluster"]): r["match"] for r in res}}


def export_clusters(ctx: Context, _, k: dict) -> dict:
    from ..ops.own_data import export_clusters as run

    done = run(ctx.store, k["set"], k["average"], ctx.path(k["out"]), clusters=k["clusters"])
    return {"clusters": len(done), "folder": str(ctx.path(k["out"]))}


# ---- issue 24 parts 3-4: open-set features, adversarial domain adaptation (seed 002, 3.4.4 and 3.4.1) ---------------
def train_openset(ctx: Context, p: OpenSetParams, k: dict) -> dict:
    """Open-set features: training is one task, the features one task per chunk."""
    from ..ops.openset import openset_features

    out = ctx.path(k["model_file"])
    m = openset_features(ctx.store, k["set"], out, p, client=ctx.client, progress=ctx.progress, resume=True)
    return {"model_file": str(out), "features": p.name, "loss": p.loss, "best_epoch": m["best_epoch"],
            "test_accuracy": m["test"]["accuracy"]}


def adapt_domain(ctx: Context, p: DomainParams, k: dict) -> dict:
    """Train on ``source``, adapt adversarially to ``target`` (unlabelled), predict the target."""
    from ..ops.domain import adapt_domain as run

    out = ctx.path(k["model_file"])
    m = run(ctx.store, k["source"], k["target"], out, p, client=ctx.client, progress=ctx.progress, resume=True)
    return {"model_file": str(out), "arrays": list(m["features"]), "source_test_accuracy": m["source_test_accuracy"]}


_SET = key("set", str, "particles", "particle set")
_PICK_KEYS = (key("tomograms", str, (), "tomograms to pick (default: all)", nargs="+"),
              key("out", str, "picks", "particle set of the picks"),
              key("template", str, "", "template matching: structure name or model file"),
              key("template_box", int, 24, "template box, voxels"))

STAGES: dict[str, StageType] = {
    "simulate_tomograms": StageType(simulate_tomograms, CrowdedSpec, (
        key("count", int, 2, "tomograms"), key("name", str, "tomo", "tomogram name prefix"),
        key("truth", str, "truth", "particle set of all true particles"))),
    "simulate_subtomograms": StageType(simulate_subtomograms, DatasetSpec, (
        key("set", str, None, "particle set", required=True), key("chunk", int, 256, "particles per chunk"))),
    "pick": StageType(pick, DogParams, (
        key("method", str, "dog", "dog; or template (see the pick_template stage)", choices=("dog", "template")),
        *_PICK_KEYS, key("angular_step", float, 30.0, "method template: degrees between rotations"))),
    "pick_template": StageType(pick_template, MatchParams, (
        *_PICK_KEYS, key("device", str, "auto", "numpy, or torch on cpu/cuda; auto: CUDA where a worker has it",
                         choices=("auto", "numpy", "cpu", "cuda")))),
    "evaluate_picks": StageType(evaluate_picks, EvaluateParams, (
        key("picks", str, "picks"), key("truth", str, "truth"),
        key("label", bool, True, "give the picks the classes of the true particles they match"))),
    "extract": StageType(extract, ExtractParams, (key("picks", str, "picks"), key("out", str, "particles"))),
    "train": StageType(train, TrainParams, (_SET, key("model_file", str, "model.keras", "the trained model"))),
    "features": StageType(features, FeatureParams, (_SET, key("model_file", str, "model.keras", "the trained model"))),
    "cluster": StageType(cluster, KMeansParams, (_SET, key("features", str, "features", "per-particle array"),
                                                 key("overwrite", bool, False, "replace a cluster column k-means "
                                                                              "did not write"))),
    "average": StageType(average, AverageParams, (
        _SET, key("name", str, "average", "name of the maps and arrays"),
        ClustersOption(name="clusters", default="all", help="'all' or a list of cluster ids"),
        key("min_members", int, 10, "clusters with fewer members are left out"),
        key("largest", int, 0, "only the largest N of them (0: all)"))),
    "average_ml": StageType(average_ml, FamlParams, (
        _SET, key("name", str, "average_ml", "name of the maps and arrays"))),
    "classify_auto": StageType(classify_auto, AutoClassParams, (
        _SET, key("average", str, "average", "the averaging run whose poses align the particles"),
        key("name", str, "autoclass", "name of the labels array and class averages"))),
    "report": StageType(report, None, (
        _SET, key("picks", str, "picks"), key("truth", str, "truth"), key("average", str, "average"),
        key("features", str, "features"), key("out", str, "report.html"), key("tsne_points", int, 2000),
        key("training", str, "", "the set the CNN was trained on, when not 'set' (own data: the simulated set)"))),
    "import_tomograms": StageType(import_tomograms, ImportParams, (
        key("files", str, None, "MRC files or glob patterns", nargs="+", required=True),
        key("metadata", str, "", "YAML or CSV of per-tomogram voxel_size, tilt_min/max, tilt_axis, defocus, ..."),
        key("contrast", str, "auto", "particles dark (raw data) or bright (inverted); auto: detected",
            choices=("auto", "dark", "bright")))),
    "filter": StageType(filter_tomograms, FilterParams, (
        key("tomograms", str, (), "tomograms to filter (default: all)", nargs="+"),
        key("suffix", str, "_filtered", "the filtered tomogram is <name><suffix>"))),
    "pick_saliency": StageType(pick_saliency, SaliencyPickParams, (
        key("tomograms", str, (), "tomograms to pick (default: all)", nargs="+"),
        key("out", str, "picks", "particle set of the picks"))),
    "denoise_saliency": StageType(denoise_saliency, SaliencyDenoiseParams, (
        key("tomograms", str, (), "tomograms to denoise (default: all)", nargs="+"),
        key("suffix", str, "_denoised", "the denoised tomogram is <name><suffix>"))),
    "estimate_wedge": StageType(estimate_wedge, None, (
        key("tomograms", str, (), "tomograms (default: all whose tilt range is unknown)", nargs="+"),)),
    "cut_background": StageType(cut_background, None, (
        key("picks", str, "picks"), key("out", str, "background"),
        key("per_tomogram", int, 50, "boxes per tomogram"), key("box", int, 32, "box edge, voxels"),
        key("level", int, 0, "pyramid level"), key("min_distance", float, 0.0, "Å from every pick (0: one box)"),
        key("flip_bright", bool, True, "negate boxes of bright tomograms"), key("seed", int, 0))),
    "simulate_training": StageType(simulate_training, None, (
        key("particles", str, "particles", "the extracted set the training must match"),
        key("background", str, "background", "boxes of the data's own background"),
        key("out", str, "training"),
        key("structures", str, ("6zu5", "4v8r", "5cvz", "6wg6"), "embedded names or PDB/mmCIF files", nargs="+"),
        key("per_class", int, 200, "subtomograms per structure"), key("seed", int, 0))),
    "match_structures": StageType(match_structures, None, (
        key("average", str, "average"),
        key("structures", str, ("6zu5", "4v8r", "5cvz", "6wg6"), "the known structures", nargs="+"),
        key("threshold_nm", float, 7.0, "an average is that structure when within this discrepancy"))),
    "export_clusters": StageType(export_clusters, None, (
        _SET, key("average", str, "average"), key("out", str, "results", "folder for the STAR and MRC files"),
        ClustersOption(name="clusters", default="all", help="'all' or a list of cluster ids"))),
    "autoencoder_train": StageType(autoencoder_train, AutoencoderParams, (
        _SET, key("model_file", str, "autoencoder.keras", "the trained autoencoder"))),
    "autoencoder_encode": StageType(autoencoder_encode, EncodeParams, (
        _SET, key("model_file", str, "autoencoder.keras", "the trained autoencoder"))),
    "autoencoder_filter": StageType(autoencoder_filter, AutoencoderFilterParams, (
        _SET, key("model_file", str, "autoencoder.keras", "the trained autoencoder"),
        key("features", str, "ae_latent", "the codes array the set was clustered on"),
        key("out", str, "filtered", "particle set of the clusters kept"))),
    "train_semisupervised": StageType(train_semisupervised, SemiSupervisedParams, (
        _SET, key("model_file", str, "semisupervised.keras", "the trained classifier"))),
    "train_openset": StageType(train_openset, OpenSetParams, (
        _SET, key("model_file", str, "openset.keras", "the trained feature network"))),
    "adapt_domain": StageType(adapt_domain, DomainParams, (
        key("source", str, None, "labelled particle set", required=True),
        key("target", str, None, "particle set to adapt to (its labels are not read)", required=True),
        key("model_file", str, "adapted.keras", "the adapted classifier (<stem>.source.keras: before adaptation)"))),
}


def _register_experiments() -> None:
    from ..experiments.stages import STAGES as EXPERIMENTS

    for name, (run, params, keys) in EXPERIMENTS.items():
        STAGES[name] = StageType(run, params, tuple(key(*k) for k in keys))


_register_experiments()
