"""CNN throughput at float32 and bf16 on this machine (issue 23), side by side in one run.

    python benchmarks/bench_precision.py [--boxes 32 40] [--models ...] [--batch 64] [--train-batch 32] [--batches 3]

Per model and box: inference (``predict_on_batch``, batch 64) and training (``train_on_batch``, SGD Nesterov, batch
32) subtomograms/s at float32 and at ``mixed_bfloat16`` (the model copied by
:func:`tomoflow.ml.precision.with_precision`, as the train and features stages run it), each after one warm-up batch, float32 and bf16 timed alternately batch by
batch so that other load on the machine falls on both; the ratio bf16 / float32; and the float32 2048^2 matmul
GFLOP/s of the same run (Keras backend) with the share of it each float32 model reaches. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time

import numpy as np


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown"


def alternate(fns: dict, batches: int) -> dict:
    """Median seconds per call of each function, called in turn ``batches`` times after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(batches):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boxes", type=int, nargs="+", default=[32, 40])
    ap.add_argument("--models", nargs="+", default=["inception3d", "dsrf3d", "dsrf3d_v2", "rb3d", "cb3d"])
    ap.add_argument("--batch", type=int, default=64, help="inference batch")
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=3, help="timed batches per measurement (after one warm-up)")
    a = ap.parse_args()
    import keras

    from bench_models import flops_per_sample
    from tomoflow.ml.models import build_model
    from tomoflow.ml.precision import BF16_CPU_FLAGS, cpu_flags, with_precision

    flags = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
    print(f"backend {keras.backend.backend()}, {os.cpu_count()} cores, {cpu_model()}, bf16 flags: "
          f"{', '.join(flags) or 'none'}", flush=True)
    m = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    km = keras.ops.convert_to_tensor(m)
    t = alternate({"mm": lambda: keras.ops.convert_to_numpy(keras.ops.matmul(km, km))}, 5)["mm"]
    peak = 2.0 * 2048**3 / t / 1e9
    print(f"float32 2048^2 matmul: {peak:.1f} GFLOP/s", flush=True)
    rng = np.random.default_rng(0)
    print("| model | box | inference /s f32 | bf16 | ratio | f32 % of matmul | training /s f32 | bf16 | ratio | "
          "f32 % of matmul |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for box in a.boxes:
        x = rng.standard_normal((a.batch, box, box, box, 1)).astype(np.float32)
        xt = x[:a.train_batch]
        y = keras.utils.to_categorical(rng.integers(0, 23, a.train_batch), 23)
        for name in a.models:
            keras.utils.set_random_seed(0)
            base = build_model(name, box, 23)
            f = flops_per_sample(base)
            models = {}
            for prec in ("float32", "mixed_bfloat16"):
                mdl = with_precision(base, prec)
                mdl.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                            loss="categorical_crossentropy")
                models[prec] = mdl
            inf = alternate({p: (lambda md=md: md.predict_on_batch(x)) for p, md in models.items()}, a.batches)
            tr = alternate({p: (lambda md=md: md.train_on_batch(xt, y)) for p, md in models.items()}, a.batches)
            i32, i16 = a.batch / inf["float32"], a.batch / inf["mixed_bfloat16"]
            t32, t16 = a.train_batch / tr["float32"], a.train_batch / tr["mixed_bfloat16"]
            print(f"| {name} | {box} | {i32:.1f} | {i16:.1f} | {i16 / i32:.2f}x | {100 * i32 * f / 1e9 / peak:.0f}% | "
                  f"{t32:.1f} | {t16:.1f} | {t16 / t32:.2f}x | {100 * t32 * 3 * f / 1e9 / peak:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
