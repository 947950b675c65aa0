"""``tomoflow cluster``, ``tomoflow average``, ``tomoflow fsc``."""

from __future__ import annotations

from ..params import AutoClassParams, AverageParams, FamlParams, KMeansParams
from .common import add_cluster_args, add_params, params, store_and_cluster


def cmd_cluster(a) -> int:
    from ..ops.cluster import kmeans

    p = params(KMeansParams, a)
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        r = kmeans(store, a.set, p, features=a.features, client=client, overwrite=a.overwrite)
    sizes = sorted(r["sizes"])
    print(f"k-means of '{a.set}' array '{a.features}': {p.k} clusters in {r['iterations']} iterations "
          f"({'converged' if r['converged'] else 'not converged'}), inertia {r['inertia']:.4g}; cluster sizes "
          f"min {sizes[0]}, median {sizes[len(sizes) // 2]}, max {sizes[-1]}; labels in the table's 'cluster' "
          f"column, sizes in curve '{a.set}.cluster_sizes'")
    if a.plot:
        from ..report.plots import cluster_size_plot

        cluster_size_plot({"k-means": r["sizes"]}, a.plot)
        print(f"wrote {a.plot}")
    return 0


def cmd_average(a) -> int:
    from ..ops.average import classify

    p = params(AverageParams, a)
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        r = classify(store, a.set, a.name, p, clusters=a.clusters or [-1], client=client, restart=a.restart)
    for res in r["results"]:
        where = "whole set" if res["cluster"] < 0 else f"cluster {res['cluster']}"
        print(f"{where}, class {res['class']}: {res['members']} particles, gold-standard resolution (FSC 0.5 of the "
              f"half-sets refined apart) {res['half_set_resolution_A'] / 10:.2f} nm")
    print(f"averages in map '{a.name}' (per iteration: '{a.name}.it<k>'); classes, poses and scores in arrays "
          f"'{a.name}_class', '{a.name}_pose', '{a.name}_score'")
    return 0


def cmd_average_ml(a) -> int:
    from ..ops.faml import average_ml

    p = params(FamlParams, a)
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        r = average_ml(store, a.set, a.name, p, client=client, restart=a.restart)
    last = r["history"][-1]["mean_loglik"]
    for res in r["results"]:
        print(f"class {res['class']}: {res['members']} particles (most probable), prior {res['prior']:.3f}")
    print(f"FAML: {p.iterations} EM iterations over {p.candidates} candidate poses per particle and class"
          + (f", mean log-likelihood {last:.6g}" if last is not None else ""))
    print(f"maps '{a.name}' (per iteration: '{a.name}.it<k>'); classes, poses and posterior weights in arrays "
          f"'{a.name}_class', '{a.name}_pose', '{a.name}_weight'")
    return 0


def cmd_classify_auto(a) -> int:
    from ..ops.autoclass import classify_auto

    p = params(AutoClassParams, a)
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        r = classify_auto(store, a.set, a.average, a.name, p, client=client, restart=a.restart)
    print(f"{r['classes']} classes found (cut-off chosen automatically among 1-{p.max_classes}); sizes "
          f"{r['sizes']}; score per number of classes " + ", ".join(f"{k}: {s:.4f}" for k, s in r["scores"].items()))
    print(f"labels in array '{a.name}_class', class averages in map '{a.name}'")
    return 0


def cmd_export_clusters(a) -> int:
    from ..ops.own_data import export_clusters

    with store_and_cluster(a, mode="r+", sets=[a.set], cluster=False) as (store, _):
        store.require("maps", a.average)
        done = export_clusters(store, a.set, a.average, a.output, clusters=a.clusters or "all")
    for d in done:
        print(f"cluster {d['cluster']}: {d['particles']} particles -> {d['star']}, average -> {d['average']}")
    return 0


def cmd_fsc(a) -> int:
    from ..errors import InputError
    from ..io.mrc import read_mrc
    from ..kernels.fsc import structural_discrepancy

    m1, v1 = read_mrc(a.a)
    m2, v2 = read_mrc(a.b)
    if m1.shape != m2.shape or len(set(m1.shape)) != 1:
        raise InputError(a.b, f"shape {m2.shape} does not match {a.a}'s {m1.shape} (need equal cubic maps)")
    vs = a.voxel_size or v1
    if not vs or vs <= 0:
        raise InputError(a.a, "no voxel size in the header; give --voxel-size")
    r = structural_discrepancy(m1, m2, vs, align=a.align, threshold=a.threshold)
    for f, c in zip(r["freq"], r["fsc"]):
        if f > 0:
            print(f"{1 / f:8.1f} A  {c:7.4f}")
    print(f"FSC {a.threshold} at {r['resolution_A']:.1f} A: structural discrepancy {r['discrepancy_nm']:.2f} nm"
          + (f" (after aligning {a.b} onto {a.a}, score {r['pose']['score']:.3f})" if r["pose"] else ""))
    return 0


def add_parsers(sub) -> None:
    c = sub.add_parser("cluster", help="k-means over-partition of per-particle features")
    c.add_argument("store")
    c.add_argument("set")
    c.add_argument("--features", default="features", help="per-particle array to cluster (default features)")
    add_params(c, KMeansParams)
    c.add_argument("--plot", help="write the cluster-size histogram to this PNG")
    c.add_argument("--overwrite", action="store_true", help="replace a cluster column k-means did not write")
    add_cluster_args(c)
    c.set_defaults(func=cmd_cluster)

    v = sub.add_parser("average", help="reference-free averaging / classification of clusters",
                       description="Reference-free by default: iteration 0 averages every particle at the identity "
                                   "pose, whatever poses the table holds (e.g. from an imported STAR file or template "
                                   "matching); --from-poses starts from the table's rot/tilt/psi instead. Every "
                                   "particle needs a missing wedge (tilt range); particles without one are refused.")
    v.add_argument("store")
    v.add_argument("set")
    v.add_argument("--name", required=True, help="name of the result maps and arrays")
    v.add_argument("--clusters", type=int, nargs="+", help="cluster ids to process (default: the whole set)")
    add_params(v, AverageParams)
    v.add_argument("--restart", action="store_true", help="recompute every iteration")
    add_cluster_args(v)
    v.set_defaults(func=cmd_average)

    ml = sub.add_parser("average-ml", help="FAML: fast alignment + maximum-likelihood averaging / classification",
                        description="Reference-free EM (seed 002, 3.3.3): each particle's likelihood over a short "
                                    "list of candidate poses from the fast alignment, with a Gaussian noise model "
                                    "over its observed Fourier region (missing wedge left out), noise variance per "
                                    "shell re-estimated each iteration. Every particle needs a tilt range.")
    ml.add_argument("store")
    ml.add_argument("set")
    ml.add_argument("--name", required=True, help="name of the result maps and arrays")
    add_params(ml, FamlParams)
    ml.add_argument("--restart", action="store_true", help="recompute every iteration")
    add_cluster_args(ml)
    ml.set_defaults(func=cmd_average_ml)

    ca = sub.add_parser("classify-auto", help="classification of aligned particles with an automatic number of "
                                              "classes (PCA, Ward, cut-off by a leave-one-out FSC score)")
    ca.add_argument("store")
    ca.add_argument("set")
    ca.add_argument("--average", required=True, help="the averaging run whose poses align the particles "
                                                     "(<average>_pose_final, else <average>_pose; one class)")
    ca.add_argument("--name", required=True, help="name of the labels array (<name>_class) and class averages")
    add_params(ca, AutoClassParams)
    ca.add_argument("--restart", action="store_true", help="recompute every stage")
    add_cluster_args(ca)
    ca.set_defaults(func=cmd_classify_auto)

    x = sub.add_parser("export-clusters", help="each averaged cluster as a RELION 5 particle STAR and its average "
                                               "as MRC")
    x.add_argument("store")
    x.add_argument("set")
    x.add_argument("--average", default="average", help="the maps written by average (default average)")
    x.add_argument("--clusters", type=int, nargs="+", help="cluster ids (default: every cluster averaged)")
    x.add_argument("-o", "--output", required=True, help="folder for cluster_<id>.star and cluster_<id>_average.mrc")
    x.set_defaults(func=cmd_export_clusters)

    f = sub.add_parser("fsc", help="FSC and structural discrepancy (resolution at FSC 0.5) of two MRC maps")
    f.add_argument("a")
    f.add_argument("b")
    f.add_argument("--voxel-size", type=float, help="Å per voxel (default: from A's header)")
    f.add_argument("--threshold", type=float, default=0.5)
    f.add_argument("--no-align", dest="align", action="store_false", help="compare as they are (default: align "
                                                                           "B onto A first)")
    f.set_defaults(func=cmd_fsc)
