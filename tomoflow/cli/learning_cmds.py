"""``tomoflow train``, ``tomoflow features``, ``tomoflow rif-svm``, ``tomoflow train-openset``, ``tomoflow adapt-domain``, ``tomoflow autoencoder``, ``tomoflow semisupervised``."""

from __future__ import annotations

from ..params import FeatureParams, RifParams, TrainParams
from ..params import AutoencoderFilterParams, AutoencoderParams, EncodeParams, SemiSupervisedParams
from ..params import DomainParams, OpenSetParams
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


def cmd_autoencoder_train(a) -> int:
    from ..ops.autoencoder import train_autoencoder

    p = params(AutoencoderParams, a)
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        meta = train_autoencoder(store, a.set, a.output, p, client=client, resume=a.resume)
    loss = meta["history"].get("loss") or [float("nan")]
    print(f"trained the autoencoder ({meta['latent']}-long codes, {'pose-normalised ' if p.pose_norm else ''}"
          f"{meta['input_box']}^3 input) on {meta['n_train']} subtomograms of '{a.set}': reconstruction MSE "
          f"{loss[0]:.3f} -> {loss[-1]:.3f}; {meta['precision']}; saved {a.output}")
    return 0


def cmd_autoencoder_encode(a) -> int:
    from ..ops.autoencoder import encode_autoencoder

    p = params(EncodeParams, a)
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        r = encode_autoencoder(store, a.set, a.model, name=p.name, batch_size=p.batch_size, precision=p.precision,
                               client=client, overwrite=a.overwrite)
    where = f"{r['gpu_workers']} GPU workers" if r["gpu_workers"] else "CPU"
    print(f"codes '{p.name}' ({r['latent']} per particle) of {r['particles']} particles of '{a.set}' on {where}: "
          f"{r['computed']} chunks computed, {r['skipped']} already done; cluster them with "
          f"'tomoflow cluster {a.store} {a.set} --features {p.name}'")
    return 0


def cmd_autoencoder_filter(a) -> int:
    from ..ops.autoencoder import filter_autoencoder

    p = params(AutoencoderFilterParams, a)
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        r = filter_autoencoder(store, a.set, a.model, a.out, p, features=a.features, client=client,
                               overwrite=a.overwrite)
    ranked = sorted(range(len(r["scores"])), key=lambda c: -r["scores"][c])
    offs = r["offsets"]
    print("cluster  size  score  offset  kept")
    for c in ranked:
        off = "     -" if offs is None or offs[c] is None else f"{offs[c]:6.3f}"
        print(f"{c:7d} {r['sizes'][c]:5d} {r['scores'][c]:6.3f}  {off}  {'yes' if c in r['kept_clusters'] else 'no'}")
    extra = f"; {r['dropped_off_centre']} off-centre members dropped" if r["dropped_off_centre"] else ""
    print(f"kept {r['kept']} of {r['of']} particles ({len(r['kept_clusters'])} clusters{extra}) as '{a.out}'")
    return 0


def cmd_semisupervised(a) -> int:
    from ..ops.semisupervised import train_semisupervised

    p = params(SemiSupervisedParams, a)
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        meta = train_semisupervised(store, a.set, a.output, p, client=client, resume=a.resume)
    print(f"trained the semi-supervised autoencoding classifier on '{a.set}': {meta['n_labelled']} labelled of "
          f"{meta['n_train']} training subtomograms ({len(meta['class_names'])} classes); test accuracy "
          f"{meta['test']['accuracy']:.3f} on {meta['n_test']}; {meta['precision']}; saved {a.output} (predictions "
          f"and features: tomoflow features --model {a.output})")
    return 0


def cmd_train_openset(a) -> int:
    from ..ops.openset import check_openset, openset_features

    p = params(OpenSetParams, a)
    with store_and_cluster(a, sets=[a.set], cluster=False) as (store, _):
        check_openset(store, a.set, p)  # before a cluster starts
    with store_and_cluster(a, sets=[a.set]) as (store, client):
        m = openset_features(store, a.set, a.output, p, client=client)
    left = f", without {', '.join(p.exclude)}" if p.exclude else ""
    print(f"trained the open-set network ({p.loss}, {p.model}) on {m['n_train']} subtomograms of '{a.set}' "
          f"({len(m['class_names'])} classes{left}); kept epoch {m['best_epoch']}; test accuracy "
          f"{m['test']['accuracy']:.3f} on {m['n_test']}; features in array '{p.name}' "
          f"({m['features_run']['features']} per particle); saved {a.output}")
    return 0


def cmd_adapt_domain(a) -> int:
    from ..ops.domain import _check, adapt_domain, source_model_path

    p = params(DomainParams, a)
    with store_and_cluster(a, sets=[a.source, a.target], cluster=False) as (store, _):
        _check(store, a.source, a.target, p)  # before a cluster starts
    with store_and_cluster(a, sets=[a.source, a.target]) as (store, client):
        m = adapt_domain(store, a.source, a.target, a.output, p, client=client)
    print(f"trained {p.model} on '{a.source}' (test accuracy {m['source_test_accuracy']:.3f}), adapted to "
          f"{m['n_target']} unlabelled subtomograms of '{a.target}' for {p.adapt_epochs} epochs; predictions in "
          f"'{p.name}_class' (before adaptation: '{p.name}_source_class'); saved {a.output} and "
          f"{source_model_path(a.output)}")
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

    o = sub.add_parser("train-openset", help="open-set features: a network trained with a large-margin cosine loss, "
                                             "its features written for cluster")
    o.add_argument("store")
    o.add_argument("set")
    o.add_argument("-o", "--output", required=True, help="model file (.keras)")
    add_params(o, OpenSetParams)
    add_cluster_args(o)
    o.set_defaults(func=cmd_train_openset)

    d = sub.add_parser("adapt-domain", help="train on a labelled set, adapt adversarially to an unlabelled one, "
                                            "predict it")
    d.add_argument("store")
    d.add_argument("source", help="labelled particle set")
    d.add_argument("target", help="particle set to adapt to (its labels are not read)")
    d.add_argument("-o", "--output", required=True, help="adapted model file (.keras)")
    add_params(d, DomainParams)
    add_cluster_args(d)
    d.set_defaults(func=cmd_adapt_domain)

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

    ae = sub.add_parser("autoencoder", help="convolutional autoencoder: train, encode, filter clusters (AITom 3.4.2)")
    asub = ae.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = asub.add_parser("train", help="train on a particle set's (pose-normalised) subtomograms")
    t.add_argument("store")
    t.add_argument("set")
    t.add_argument("-o", "--output", required=True, help="model file (.keras)")
    add_params(t, AutoencoderParams)
    t.add_argument("--resume", action="store_true", help="continue a training stopped part-way")
    add_cluster_args(t)
    t.set_defaults(func=cmd_autoencoder_train)
    e = asub.add_parser("encode", help="latent codes of a particle set (a features array for 'tomoflow cluster')")
    e.add_argument("store")
    e.add_argument("set")
    e.add_argument("--model", required=True, help="model file saved by 'tomoflow autoencoder train'")
    add_params(e, EncodeParams)
    e.add_argument("--overwrite", action="store_true", help="recompute with another model")
    add_cluster_args(e)
    e.set_defaults(func=cmd_autoencoder_encode)
    f = asub.add_parser("filter", help="rank the k-means clusters of the codes by their decoded centres; keep the "
                                       "structured ones as a new particle set")
    f.add_argument("store")
    f.add_argument("set")
    f.add_argument("--model", required=True, help="model file saved by 'tomoflow autoencoder train'")
    f.add_argument("--out", required=True, help="the filtered particle set")
    f.add_argument("--features", default="ae_latent", help="the codes array the set was clustered on")
    add_params(f, AutoencoderFilterParams)
    f.add_argument("--overwrite", action="store_true", help="replace the set --out")
    add_cluster_args(f)
    f.set_defaults(func=cmd_autoencoder_filter)

    s = sub.add_parser("semisupervised", help="semi-supervised autoencoding classifier on partly labelled particles "
                                              "(AITom 3.4.3)")
    s.add_argument("store")
    s.add_argument("set")
    s.add_argument("-o", "--output", required=True, help="model file (.keras)")
    add_params(s, SemiSupervisedParams)
    s.add_argument("--resume", action="store_true", help="continue a training stopped part-way")
    add_cluster_args(s)
    s.set_defaults(func=cmd_semisupervised)
