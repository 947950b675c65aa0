"""``tomoflow train``, ``tomoflow features``, ``tomoflow rif-svm``."""

from __future__ import annotations


def cmd_train(a) -> int:
    from ..store import ParticleSet, Store
    from ..training import TrainParams, train

    store = Store.open(a.store)
    ParticleSet(store, a.set)
    from ..models import MODELS

    if a.model.lower().replace("-", "_") not in MODELS:
        from ..errors import InputError

        raise InputError(a.model, f"unknown model (have: {', '.join(MODELS)})")
    params = TrainParams(model=a.model, epochs=a.epochs, batch_size=a.batch_size, learning_rate=a.learning_rate,
                         optimizer=a.optimizer, train_fraction=a.train_fraction,
                         validation_fraction=a.validation_fraction, seed=a.seed, rotate=a.rotate)
    meta = train(store, a.set, a.output, params)
    print(f"trained {a.model} on {meta['n_train']} subtomograms of '{a.set}' ({len(meta['class_names'])} classes); "
          f"kept epoch {meta['best_epoch']} of {params.epochs} (lowest loss on {meta['n_validation']} validation); "
          f"test accuracy {meta['test']['accuracy']:.3f} on {meta['n_test']}; saved {a.output}")
    return 0


def cmd_features(a) -> int:
    from ..engine import cluster_client
    from ..features import extract_features
    from ..store import ParticleSet, Store

    store = Store.open(a.store)
    ParticleSet(store, a.set)
    with cluster_client(a.scheduler, a.workers) as client:
        r = extract_features(store, a.set, a.model, layer=a.layer, name=a.name, batch_size=a.batch_size,
                             client=client, overwrite=a.overwrite)
    where = f"{r['gpu_workers']} GPU workers" if r["gpu_workers"] else "CPU"
    print(f"features '{a.name}' ({r['features']} per particle, layer {a.layer}) and predicted classes of "
          f"{r['particles']} particles of '{a.set}' on {where}: {r['computed']} chunks computed, "
          f"{r['skipped']} already done")
    return 0


def cmd_rif_svm(a) -> int:
    from ..engine import cluster_client
    from ..rif import RifParams, compute_rif, svm_classify
    from ..store import ParticleSet, Store
    from ..training import TEST, TRAIN, assign_split

    store = Store.open(a.store)
    ps = ParticleSet(store, a.set)
    params = RifParams(lmax=a.lmax, space=a.space)
    with cluster_client(a.scheduler, a.workers) as client:
        r = compute_rif(store, a.set, params, client=client, overwrite=a.overwrite)
    split = ps.rows(slice(0, ps.n), ["split"])["split"]
    if a.new_split or not ((split == TRAIN).any() and (split == TEST).any()):
        assign_split(ps, a.train_fraction, a.seed)
    s = svm_classify(store, a.set, seed=a.seed)
    print(f"RIF ({r['features']} per particle, {a.space} shells, lmax {a.lmax}) of {r['particles']} particles; "
          f"RBF SVM {s['best_params']} trained on {s['n_train']}: test accuracy {s['accuracy']:.3f} on "
          f"{s['n_test']}; predictions in array '{s['array']}'")
    return 0


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a 3D CNN classifier on a particle set with true classes")
    t.add_argument("store")
    t.add_argument("set")
    t.add_argument("-o", "--output", required=True, help="model file (.keras)")
    t.add_argument("--model", default="dsrf3d", help="inception3d, dsrf3d, dsrf3d_v2, rb3d or cb3d (default dsrf3d)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--learning-rate", type=float, default=0.01)
    t.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                   help="sgd: the paper's (Nesterov momentum, decay); adam: trains small sets "
                        "(try --learning-rate 1e-3)")
    t.add_argument("--train-fraction", type=float, default=0.5, help="stratified by class (default 0.5)")
    t.add_argument("--rotate", type=float, default=0.0,
                   help="share of training draws turned to a random orientation in their own wedge (default 0: "
                        "half turns only)")
    t.add_argument("--validation-fraction", type=float, default=0.1,
                   help="of the train part, held out to pick the epoch kept (default 0.1; 0 keeps the last)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)
    from .simulate_cmds import _cluster_args

    f = sub.add_parser("features", help="deep structural features and predicted classes of a particle set")
    f.add_argument("store")
    f.add_argument("set")
    f.add_argument("--model", required=True, help="model file saved by tomoflow train (.keras)")
    f.add_argument("--layer", default="logits", help="layer whose output is the feature (default logits: the "
                                                     "last layer without its softmax)")
    f.add_argument("--name", default="features", help="per-particle array name (default features)")
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--overwrite", action="store_true", help="recompute with another model or layer")
    _cluster_args(f)
    f.set_defaults(func=cmd_features)

    r = sub.add_parser("rif-svm", help="baseline: rotation-invariant spherical-harmonic features + RBF SVM")
    r.add_argument("store")
    r.add_argument("set")
    r.add_argument("--lmax", type=int, default=10, help="highest spherical-harmonic degree (default 10)")
    r.add_argument("--space", choices=["fourier", "real"], default="fourier",
                   help="shells of the Fourier amplitude (default; translation-invariant) or of the density")
    r.add_argument("--new-split", action="store_true", help="draw a new split instead of the table's")
    r.add_argument("--train-fraction", type=float, default=0.5)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--overwrite", action="store_true")
    _cluster_args(r)
    r.set_defaults(func=cmd_rif_svm)
