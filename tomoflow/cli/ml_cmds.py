"""``tomoflow train``."""

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
                         train_fraction=a.train_fraction, seed=a.seed)
    meta = train(store, a.set, a.output, params)
    print(f"trained {a.model} on {meta['n_train']} subtomograms of '{a.set}' ({len(meta['class_names'])} classes); "
          f"test accuracy {meta['test']['accuracy']:.3f} on {meta['n_test']}; saved {a.output}")
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
    t.add_argument("--train-fraction", type=float, default=0.5, help="stratified by class (default 0.5)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)
