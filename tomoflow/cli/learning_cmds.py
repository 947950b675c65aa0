"""``tomoflow train``, ``tomoflow features``, ``tomoflow rif-svm``."""

from __future__ import annotations

from ..params import FeatureParams, RifParams, TrainParams
from .common import add_cluster_args, add_params, params, store_and_cluster


def cmd_train(a) -> int:
    from ..ops.training import check_model_name, train

    p = params(TrainParams, a)
    check_model_name(p.model)
    with store_and_cluster(a, sets=[a.set], cluster=False) as (store, _):
        meta = train(store, a.set, a.output, p)
    print(f"trained {p.model} on {meta['n_train']} subtomograms of '{a.set}' ({len(meta['class_names'])} classes); "
          f"kept epoch {meta['best_epoch']} of {p.epochs} (lowest loss on {meta['n_validation']} validation); "
          f"test accuracy {meta['test']['accuracy']:.3f} on {meta['n_test']}; {meta['precision']}; saved {a.output}")
    return 0


def cmd_features(a) -> int:
    from ..ops.features import extract_features

    p = params(FeatureParams, a)
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        r = extract_features(store, a.set, a.model, layer=p.layer, name=p.name, batch_size=p.batch_size,
                             precision=p.precision, client=client, overwrite=a.overwrite)
    where = f"{r['gpu_workers']} GPU workers" if r["gpu_workers"] else "CPU"
    print(f"features '{p.name}' ({r['features']} per particle, layer {p.layer}) and predicted classes of "
          f"{r['particles']} particles of '{a.set}' on {where}: {r['computed']} chunks computed, "
          f"{r['skipped']} already done; precision {r['precision']}")
    return 0


def cmd_rif_svm(a) -> int:
    from ..ml.training import TEST, TRAIN
    from ..ops.rif import compute_rif, svm_classify
    from ..ops.training import assign_split
    from ..store import ParticleSet

    from ..errors import InputError
    from ..store import Store

    p = params(RifParams, a)
    ps = ParticleSet(Store.open(a.store), a.set)
    if (ps.rows(slice(0, ps.n), ["true_class"])["true_class"] < 0).any():  # before any work is written
        raise InputError(a.set, "particle set has particles without a true class (labels): the SVM needs them")
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        r = compute_rif(store, a.set, p, client=client, overwrite=a.overwrite)
    ps = ParticleSet(store, a.set)
    split = ps.rows(slice(0, ps.n), ["split"])["split"]
    if a.new_split or not ((split == TRAIN).any() and (split == TEST).any()):
        assign_split(ps, a.train_fraction, a.seed)
    s = svm_classify(store, a.set, seed=a.seed)
    print(f"RIF ({r['features']} per particle, {p.space} shells, lmax {p.lmax}) of {r['particles']} particles; "
          f"RBF SVM {s['best_params']} trained on {s['n_train']}: test accuracy {s['accuracy']:.3f} on "
          f"{s['n_test']}; predictions in array '{s['array']}'")
    return 0


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a 3D CNN classifier on a particle set with true classes")
    t.add_argument("store")
    t.add_argument("set")
    t.add_argument("-o", "--output", required=True, help="model file (.keras)")
    add_params(t, TrainParams)
    t.set_defaults(func=cmd_train)

    f = sub.add_parser("features", help="deep structural features and predicted classes of a particle set")
    f.add_argument("store")
    f.add_argument("set")
    f.add_argument("--model", required=True, help="model file saved by tomoflow train (.keras)")
    add_params(f, FeatureParams)
    f.add_argument("--overwrite", action="store_true", help="recompute with another model or layer")
    add_cluster_args(f)
    f.set_defaults(func=cmd_features)

    r = sub.add_parser("rif-svm", help="baseline: rotation-invariant spherical-harmonic features + RBF SVM")
    r.add_argument("store")
    r.add_argument("set")
    add_params(r, RifParams)
    r.add_argument("--new-split", action="store_true", help="draw a new split instead of the table's")
    r.add_argument("--train-fraction", type=float, default=0.5)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--overwrite", action="store_true")
    add_cluster_args(r)
    r.set_defaults(func=cmd_rif_svm)
