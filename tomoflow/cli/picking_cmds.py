"""``tomoflow filter``, ``tomoflow pick dog``, ``tomoflow extract``, ``tomoflow evaluate picks``."""

from __future__ import annotations

import json

from .simulate_cmds import _cluster_args


def cmd_filter(a) -> int:
    from ..blockwise import filter_tomogram
    from ..engine import cluster_client
    from ..store import Store

    params = {"gaussian": {"sigma": a.sigma}, "dog": {"sigma": a.sigma, "k": a.k},
              "diffusion": {"iterations": a.iterations, "kappa": a.kappa, "gamma": a.gamma,
                            "option": a.option}}[a.filter]
    store = Store.open(a.store)
    store.require("tomograms", a.tomogram)
    with cluster_client(a.scheduler, a.workers) as client:
        run = filter_tomogram(store, a.tomogram, a.out, a.filter, params, level=a.level, client=client,
                              overwrite=a.overwrite)
    print(f"tomogram '{a.out}' = {a.filter} {params} of '{a.tomogram}' level {a.level}: {run.computed} blocks "
          f"computed, {run.skipped} already done")
    return 0


def cmd_pick_dog(a) -> int:
    from ..engine import cluster_client
    from ..picking import DogParams, pick_dog
    from ..store import Store

    store = Store.open(a.store)
    store.require("tomograms", a.tomogram)
    params = DogParams(sigma_A=a.sigma, k=a.k, polarity=a.polarity, threshold=a.threshold,
                       min_distance_A=a.min_distance, level=a.level)
    with cluster_client(a.scheduler, a.workers) as client:
        r = pick_dog(store, a.tomogram, a.out, params, client=client, overwrite=a.overwrite)
    print(f"picked {r['picked']} particles in '{a.tomogram}' into particle set '{a.out}'")
    return 0


def cmd_pick_template(a) -> int:
    from pathlib import Path

    from ..engine import cluster_client
    from ..io.mrc import read_mrc
    from ..store import Store, tomogram_info
    from ..template_matching import MatchParams, pick_template, structure_template

    store = Store.open(a.store)
    info = tomogram_info(store, store.require("tomograms", a.tomogram))
    vs = info.voxel_size * 2**a.level
    if Path(a.template).suffix in (".mrc", ".map"):
        template, tvs = read_mrc(a.template)
        if abs(tvs - vs) > 0.01 * vs:
            from ..errors import InputError

            raise InputError(a.template, f"template voxel size {tvs:g} A differs from the tomogram's {vs:g} A "
                                         f"at level {a.level}")
    else:
        template = structure_template(a.template, vs, a.template_box, detector_voxel=info.voxel_size)
    params = MatchParams(angular_step=a.angular_step, threshold=a.threshold, min_distance_A=a.min_distance,
                         level=a.level)
    with cluster_client(a.scheduler, a.workers) as client:
        r = pick_template(store, a.tomogram, a.out, template, params, client=client, overwrite=a.overwrite,
                          workdir=store.path / ".staging", device=a.device)
    print(f"picked {r['picked']} particles in '{a.tomogram}' into '{a.out}' ({r['rotations']} rotations); "
          f"score map in tomogram '{a.out}_scores'")
    return 0


def cmd_extract(a) -> int:
    from ..engine import cluster_client
    from ..extract import extract
    from ..store import ParticleSet, Store

    store = Store.open(a.store)
    ParticleSet(store, a.picks)
    with cluster_client(a.scheduler, a.workers) as client:
        r = extract(store, a.picks, a.out, a.box, level=a.level, edge=a.edge, chunk=a.chunk, client=client,
                    overwrite=a.overwrite)
    print(f"extracted {r['extracted']} subtomograms of {a.box}^3 into '{a.out}'; "
          f"{r['dropped_at_edge']} dropped at the tomogram edge")
    return 0


def cmd_evaluate_picks(a) -> int:
    from ..evaluate import evaluate_picks
    from ..store import ParticleSet, Store

    store = Store.open(a.store, mode="r")
    truth = ParticleSet(store, a.truth)
    res = evaluate_picks(ParticleSet(store, a.picks).table_frame(), truth.table_frame(), a.tolerance,
                         truth.class_names)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{res['n_pred']} picks vs {res['n_truth']} true particles within {a.tolerance:g} A: precision "
          f"{res['precision']:.3f}, recall {res['recall']:.3f}, F1 {res['f1']:.3f}")
    for name, c in res["per_class"].items():
        print(f"  {name}: recall {c['recall']:.3f} of {c['n']}")
    return 0


def cmd_estimate_wedge(a) -> int:
    import numpy as np

    from ..estimate import estimate_tilt_range, tomogram_blocks_for_wedge
    from ..store import ParticleSet, Store, open_level

    store = Store.open(a.store, mode="r")
    if a.tomogram:
        store.require("tomograms", a.tomogram)
        lo, hi = estimate_tilt_range(tomogram_blocks_for_wedge(open_level(store, a.tomogram, a.level)))
        what = f"tomogram '{a.tomogram}'"
    else:
        ps = ParticleSet(store, a.set)
        n = min(ps.n, a.max_particles)
        lo, hi = estimate_tilt_range(ps.read_volumes(slice(0, n)).astype(np.float64))
        what = f"{n} subtomograms of '{a.set}'"
    print(f"estimated tilt range of {what}: {lo:+.0f} to {hi:+.0f} degrees (tilt axis y)")
    return 0


def cmd_estimate_snr(a) -> int:
    from ..errors import StoreError
    from ..estimate import snr_from_pairs
    from ..store import ParticleSet, Store

    store = Store.open(a.store, mode="r")
    ps = ParticleSet(store, a.set)
    idx = list(range(ps.n))
    if a.cls is not None:
        if a.cls not in ps.class_names:
            raise StoreError(a.store, f"particle set '{a.set}' has no class '{a.cls}' (have: {ps.class_names})")
        cls = ps.table(["true_class"]).true_class.values
        idx = [i for i in idx if cls[i] == ps.class_names.index(a.cls)]
    vols = ps.volumes.get_orthogonal_selection((idx,))
    r = snr_from_pairs(vols, a.pairs, a.seed)
    print(f"SNR {r['snr']:.3g} (median {r['median']:.3g}) from {r['pairs']} pairs of {len(idx)} aligned subtomograms")
    return 0


def _picker(psub, name: str, help: str):
    p = psub.add_parser(name, help=help)
    p.add_argument("store")
    p.add_argument("tomogram")
    p.add_argument("--out", required=True, help="particle set for the picks")
    return p


def add_parsers(sub) -> None:
    f = sub.add_parser("filter", help="filter a tomogram into a new one (Gaussian, DoG, anisotropic diffusion)")
    f.add_argument("store")
    f.add_argument("tomogram")
    f.add_argument("filter", choices=["gaussian", "dog", "diffusion"])
    f.add_argument("--out", required=True, help="name of the filtered tomogram")
    f.add_argument("--level", type=int, default=0, help="pyramid level of the input (default 0)")
    f.add_argument("--sigma", type=float, default=2.0, help="Gaussian / DoG sigma in voxels (default 2)")
    f.add_argument("--k", type=float, default=1.1, help="DoG ratio K (default 1.1)")
    f.add_argument("--iterations", type=int, default=10, help="diffusion iterations (default 10)")
    f.add_argument("--kappa", type=float, default=1.0, help="diffusion edge threshold (default 1)")
    f.add_argument("--gamma", type=float, default=0.1, help="diffusion step, <= 1/6 (default 0.1)")
    f.add_argument("--option", type=int, choices=[1, 2], default=1, help="conduction function (default 1)")
    f.add_argument("--overwrite", action="store_true")
    _cluster_args(f)
    f.set_defaults(func=cmd_filter)

    pick = sub.add_parser("pick", help="pick particles in a tomogram")
    psub = pick.add_subparsers(dest="method", required=True, metavar="METHOD")
    d = _picker(psub, "dog", "difference-of-Gaussian picking (seed 000: sigma 7 nm, K 1.1)")
    d.add_argument("--sigma", type=float, default=70.0, help="Å (default 70)")
    d.add_argument("--k", type=float, default=1.1)
    d.add_argument("--polarity", choices=["dark", "bright"], default="dark",
                   help="particles darker (default, as after the CTF) or brighter than the background")
    d.add_argument("--threshold", type=float, default=2.5, help="std above the response mean (default 2.5)")
    d.add_argument("--min-distance", type=float, default=100.0, help="Å between picks (default 100)")
    d.add_argument("--level", type=int, default=1, help="pyramid level to pick on (default 1: 2x binned)")
    d.add_argument("--overwrite", action="store_true")
    _cluster_args(d)
    d.set_defaults(func=cmd_pick_dog)

    t = _picker(psub, "template", "wedge-aware, locally normalised template matching over rotations")
    t.add_argument("--template", required=True,
                   help="embedded structure name, PDB/mmCIF file (CTF-filtered), or an MRC map at the level's voxel size")
    t.add_argument("--template-box", type=int, default=24, help="template box for structures, voxels (default 24)")
    t.add_argument("--angular-step", type=float, default=30.0, help="degrees (default 30: 551 rotations)")
    t.add_argument("--threshold", type=float, default=5.0, help="std above the score map mean (default 5)")
    t.add_argument("--min-distance", type=float, help="Å between picks (default: 0.7 x the template radius)")
    t.add_argument("--level", type=int, default=1, help="pyramid level (default 1: 2x binned)")
    t.add_argument("--device", choices=["auto", "numpy", "cpu", "cuda"], default="auto",
                   help="correlate with numpy, or torch on cpu/cuda; auto: CUDA where a worker has it, else numpy. "
                        "Blocks go to workers started with --resources GPU=n when there are any")
    t.add_argument("--overwrite", action="store_true")
    _cluster_args(t)
    t.set_defaults(func=cmd_pick_template)

    e = sub.add_parser("extract", help="cut subtomograms around picked positions into a particle set")
    e.add_argument("store")
    e.add_argument("picks", help="particle set with positions")
    e.add_argument("--out", required=True)
    e.add_argument("--box", type=int, default=40)
    e.add_argument("--level", type=int, default=0)
    e.add_argument("--edge", choices=["drop", "pad"], default="drop",
                   help="particles whose box crosses the edge: drop (default) or pad with their mean")
    e.add_argument("--chunk", type=int, default=256)
    e.add_argument("--overwrite", action="store_true")
    _cluster_args(e)
    e.set_defaults(func=cmd_extract)

    est = sub.add_parser("estimate", help="estimate the SNR or the missing wedge from data")
    esub2 = est.add_subparsers(dest="what", required=True, metavar="WHAT")
    w = esub2.add_parser("wedge", help="tilt range from the Fourier amplitudes (tilt axis y)")
    w.add_argument("store")
    g = w.add_mutually_exclusive_group(required=True)
    g.add_argument("--tomogram")
    g.add_argument("--set", help="particle set of subtomograms")
    w.add_argument("--level", type=int, default=0)
    w.add_argument("--max-particles", type=int, default=200)
    w.set_defaults(func=cmd_estimate_wedge)
    sn = esub2.add_parser("snr", help="SNR from pairs of aligned subtomograms of one structure (Frank & Al-Ali)")
    sn.add_argument("store")
    sn.add_argument("set", help="particle set of aligned subtomograms (same orientation)")
    sn.add_argument("--class", dest="cls", help="use only particles of this true class")
    sn.add_argument("--pairs", type=int, default=100)
    sn.add_argument("--seed", type=int, default=0)
    sn.set_defaults(func=cmd_estimate_snr)

    ev = sub.add_parser("evaluate", help="evaluate results against ground truth")
    esub = ev.add_subparsers(dest="what", required=True, metavar="WHAT")
    p = esub.add_parser("picks", help="precision, recall and F1 of picks (one-to-one within a tolerance)")
    p.add_argument("store")
    p.add_argument("--picks", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--tolerance", type=float, default=80.0, help="Å (default 80)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate_picks)
