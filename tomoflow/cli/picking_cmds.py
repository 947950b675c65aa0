"""``tomoflow pick dog|template|saliency``, ``tomoflow extract``, ``tomoflow evaluate picks``."""

from __future__ import annotations

import json

from ..params import DogParams, EvaluateParams, ExtractParams, MatchParams, SaliencyPickParams
from .common import add_cluster_args, add_params, params, store_and_cluster


def cmd_pick_dog(a) -> int:
    from ..ops.pick import pick_dog

    p = params(DogParams, a)
    with store_and_cluster(a, tomograms=[a.tomogram]) as (store, client):
        r = pick_dog(store, a.tomogram, a.out, p, client=client, overwrite=a.overwrite)
    print(f"picked {r['picked']} particles in '{a.tomogram}' into particle set '{a.out}'")
    return 0


def cmd_pick_saliency(a) -> int:
    from ..ops.saliency import pick_saliency

    p = params(SaliencyPickParams, a)
    with store_and_cluster(a, tomograms=[a.tomogram]) as (store, client):
        r = pick_saliency(store, a.tomogram, a.out, p, client=client, overwrite=a.overwrite)
    print(f"picked {r['picked']} salient spots in '{a.tomogram}' into particle set '{a.out}'")
    return 0


def _template(store, a, p: MatchParams):
    from pathlib import Path

    from ..errors import InputError
    from ..io.mrc import read_mrc
    from ..simulate.templates import structure_template
    from ..store import tomogram_info

    info = tomogram_info(store, a.tomogram)
    vs = info.voxel_size * 2**p.level
    if Path(a.template).suffix in (".mrc", ".map"):
        template, tvs = read_mrc(a.template)
        if abs(tvs - vs) > 0.01 * vs:
            raise InputError(a.template, f"template voxel size {tvs:g} A differs from the tomogram's {vs:g} A "
                                         f"at level {p.level}")
        return template
    return structure_template(a.template, vs, a.template_box, detector_voxel=info.voxel_size)


def cmd_pick_template(a) -> int:
    from ..ops.pick import pick_template

    p = params(MatchParams, a)
    with store_and_cluster(a, tomograms=[a.tomogram], cluster=False) as (store, _):
        template = _template(store, a, p)
    with store_and_cluster(a, tomograms=[a.tomogram]) as (store, client):
        r = pick_template(store, a.tomogram, a.out, template, p, client=client, overwrite=a.overwrite,
                          workdir=store.path / ".staging", device=a.device)
    print(f"picked {r['picked']} particles in '{a.tomogram}' into '{a.out}' ({r['rotations']} rotations); "
          f"score map in tomogram '{a.out}_scores'")
    return 0


def cmd_extract(a) -> int:
    from ..ops.extraction import extract

    p = params(ExtractParams, a)
    with store_and_cluster(a, sets=[a.picks]) as (store, client):
        r = extract(store, a.picks, a.out, p.box, level=p.level, edge=p.edge, chunk=p.chunk, client=client,
                    overwrite=a.overwrite, flip_bright=p.flip_bright)
    print(f"extracted {r['extracted']} subtomograms of {p.box}^3 into '{a.out}'; "
          f"{r['dropped_at_edge']} dropped at the tomogram edge")
    return 0


def cmd_evaluate_picks(a) -> int:
    from ..ops.label import score_picks

    p = params(EvaluateParams, a)
    with store_and_cluster(a, mode="r", sets=[a.picks, a.truth], cluster=False) as (store, _):
        res = score_picks(store, a.picks, a.truth, p.tolerance)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{res['n_pred']} picks vs {res['n_truth']} true particles within {p.tolerance:g} A: precision "
          f"{res['precision']:.3f}, recall {res['recall']:.3f}, F1 {res['f1']:.3f}")
    for name, c in res["per_class"].items():
        print(f"  {name}: recall {c['recall']:.3f} of {c['n']}")
    return 0


def _picker(psub, name: str, help: str):
    p = psub.add_parser(name, help=help)
    p.add_argument("store")
    p.add_argument("tomogram")
    p.add_argument("--out", required=True, help="particle set for the picks")
    return p


def add_parsers(sub) -> None:
    pick = sub.add_parser("pick", help="pick particles in a tomogram")
    psub = pick.add_subparsers(dest="method", required=True, metavar="METHOD")
    d = _picker(psub, "dog", "difference-of-Gaussian picking (seed 000: sigma 7 nm, K 1.1)")
    add_params(d, DogParams)
    d.add_argument("--overwrite", action="store_true")
    add_cluster_args(d)
    d.set_defaults(func=cmd_pick_dog)

    sp = _picker(psub, "saliency", "template-free picking at the peaks of a saliency map (super-voxels, Robust PCA; "
                                   "seed 002, section 3.2.3)")
    add_params(sp, SaliencyPickParams)
    sp.add_argument("--overwrite", action="store_true")
    add_cluster_args(sp)
    sp.set_defaults(func=cmd_pick_saliency)

    t = _picker(psub, "template", "wedge-aware, locally normalised template matching over rotations")
    t.add_argument("--template", required=True,
                   help="embedded structure name, PDB/mmCIF file (CTF-filtered), or an MRC map at the level's voxel size")
    t.add_argument("--template-box", type=int, default=24, help="template box for structures, voxels (default 24)")
    add_params(t, MatchParams)
    t.add_argument("--device", choices=["auto", "numpy", "cpu", "cuda"], default="auto",
                   help="correlate with numpy, or torch on cpu/cuda; auto: CUDA where a worker has it, else numpy. "
                        "Blocks go to workers started with --resources GPU=n when there are any")
    t.add_argument("--overwrite", action="store_true")
    add_cluster_args(t)
    t.set_defaults(func=cmd_pick_template)

    e = sub.add_parser("extract", help="cut subtomograms around picked positions into a particle set")
    e.add_argument("store")
    e.add_argument("picks", help="particle set with positions")
    e.add_argument("--out", required=True)
    add_params(e, ExtractParams)
    e.add_argument("--overwrite", action="store_true")
    add_cluster_args(e)
    e.set_defaults(func=cmd_extract)

    ev = sub.add_parser("evaluate", help="evaluate results against ground truth")
    esub = ev.add_subparsers(dest="what", required=True, metavar="WHAT")
    p = esub.add_parser("picks", help="precision, recall and F1 of picks (one-to-one within a tolerance)")
    p.add_argument("store")
    p.add_argument("--picks", required=True)
    p.add_argument("--truth", required=True)
    add_params(p, EvaluateParams)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate_picks)
