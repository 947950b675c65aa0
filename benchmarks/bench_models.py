"""CNN and RIF throughput on this machine (issue 5).

    python benchmarks/bench_models.py [--boxes 40 32] [--models ...] [--batch 64] [--seconds 8]

Per model and box: inference and training subtomograms/s (batch 64, float32, after a warm-up), the
model's FLOPs per subtomogram counted from its layers (convolutions and dense layers, 2 FLOPs per
multiply-add; training = 3 x inference: forward, and backward for inputs and weights), the achieved
GFLOP/s, and its ratio to this machine's float32 matmul GFLOP/s measured in the same run (a 2048^2
matmul through the same backend, and through numpy). Then the RIF features' seconds per
subtomogram at each box and the end-to-end features stage (through the engine, 1 and 2 workers).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def flops_per_sample(model) -> float:
    total = 0.0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv3D":
            out = layer.output.shape[1:]
            cin = layer.input.shape[-1]
            total += 2.0 * np.prod(out[:3]) * np.prod(layer.kernel_size) * cin * out[-1]
        elif kind == "Dense":
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def timed(fn, seconds: float) -> float:
    fn()  # warm-up (graph building, allocation)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def matmul_gflops(seconds: float) -> tuple[float, float]:
    import keras

    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    ka = keras.ops.convert_to_tensor(a)
    t_k = timed(lambda: keras.ops.convert_to_numpy(keras.ops.matmul(ka, ka)), seconds)
    t_n = timed(lambda: a @ a, seconds)
    f = 2.0 * 2048**3
    return f / t_k / 1e9, f / t_n / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boxes", type=int, nargs="+", default=[40, 32])
    ap.add_argument("--models", nargs="+", default=["inception3d", "dsrf3d", "dsrf3d_v2", "rb3d", "cb3d"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--skip-engine", action="store_true")
    a = ap.parse_args()
    import keras

    from tomoflow.ml.models import build_model

    print(f"backend {keras.backend.backend()}, {os.cpu_count()} cores", flush=True)
    peak_k, peak_n = matmul_gflops(a.seconds)
    print(f"float32 2048^2 matmul: {peak_k:.1f} GFLOP/s ({keras.backend.backend()}), {peak_n:.1f} GFLOP/s (numpy)",
          flush=True)
    rng = np.random.default_rng(0)
    print("| model | box | GFLOP/subtomogram | inference /s | GFLOP/s | % of matmul | training /s | GFLOP/s | "
          "% of matmul |")
    print("|---|---|---|---|---|---|---|---|---|")
    for box in a.boxes:
        x = rng.standard_normal((a.batch, box, box, box, 1)).astype(np.float32)
        y = keras.utils.to_categorical(rng.integers(0, 23, a.batch), 23)
        for name in a.models:
            keras.utils.set_random_seed(0)
            model = build_model(name, box, 23)
            model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                          loss="categorical_crossentropy")
            f = flops_per_sample(model)
            t_inf = timed(lambda: model.predict_on_batch(x), a.seconds)
            t_tr = timed(lambda: model.train_on_batch(x, y), a.seconds)
            inf, tr = a.batch / t_inf, a.batch / t_tr
            gi, gt = inf * f / 1e9, tr * 3 * f / 1e9
            print(f"| {name} | {box} | {f / 1e9:.2f} | {inf:.1f} | {gi:.1f} | {100 * gi / peak_k:.0f}% | {tr:.1f} | "
                  f"{gt:.1f} | {100 * gt / peak_k:.0f}% |", flush=True)
    from tomoflow.kernels.rif import rif_features

    for box in a.boxes:
        v = rng.standard_normal((box,) * 3)
        t = timed(lambda: rif_features(v), 2.0)
        print(f"RIF features, {box}^3: {t * 1e3:.2f} ms per subtomogram (one core)", flush=True)
    if not a.skip_engine:
        engine_figures(a)


def engine_figures(a) -> None:
    """The features stage end to end (store read, standardise, predict, write by region) on 1 and 2 workers."""
    import tempfile
    from pathlib import Path

    from distributed import Client

    from tomoflow.engine import local_cluster
    from tomoflow.ops.features import extract_features
    from tomoflow.ml.models import build_model
    from tomoflow.store import Store, create_particle_set
    from tomoflow.ml.training import save_trained

    box, n = 40, 2048
    work = Path(tempfile.mkdtemp(prefix="tomoflow-bench-"))
    store = Store.create(work / "s.zarr")
    vols = np.random.default_rng(1).standard_normal((n, box, box, box)).astype(np.float32)
    ps = create_particle_set(store, "p", {"x": np.zeros(n), "y": np.zeros(n), "z": np.zeros(n)}, box_size=box,
                             chunk=256)
    ps.write_volumes(0, vols)
    save_trained(build_model("dsrf3d", box, 23), work / "m.keras", {"class_names": [str(i) for i in range(23)],
                                                                   "box_size": box, "voxel_size": 9.2})
    for workers in (1, 2):
        with local_cluster(workers, dashboard=False) as cluster, Client(cluster) as client:
            t0 = time.perf_counter()
            extract_features(store, "p", work / "m.keras", name=f"w{workers}", client=client, progress=False)
            dt = time.perf_counter() - t0
        print(f"features stage, dsrf3d 40^3, {n} particles, {workers} worker(s): {dt:.1f} s, {n / dt:.1f} "
              f"subtomograms/s (model loading included)", flush=True)


if __name__ == "__main__":
    main()
