"""The numeric precision the CNNs run at (issue 23): float32, or Keras' mixed policies with bf16 / fp16 compute.

* :func:`resolve_precision` turns the option (``auto``, ``float32``, ``mixed_bfloat16``, ``mixed_float16``) into
  the policy used. ``auto`` is the measured rule: ``mixed_bfloat16`` where the hardware the model runs on computes
  bf16 natively (a GPU that reports bf16 support; else a CPU whose flags include ``amx_bf16`` or ``avx512_bf16``),
  float32 elsewhere (emulated bf16 is slower than float32). On such a CPU DSRF3D at 40^3 ran 2-4x faster in
  inference and ~2.4x in training (benchmarks/RESULTS.md), and tests/test_precision.py checks that accuracy,
  predictions and features are unchanged within stated tolerances, which is the rule's other half.
* :func:`with_precision` gives a copy of a model whose layers compute at that policy (the same weights, kept
  float32 either way), with the ``logits`` and ``probabilities`` layers left in float32: the features and the
  softmax come out float32, as Keras' mixed-precision guide advises for the output. The copy is made with
  per-layer dtype policies, never the process-wide global policy, so concurrent tasks of one worker process
  cannot see each other's precision.
"""

from __future__ import annotations

from pathlib import Path

from ..params import PRECISIONS, ParamError

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # native bf16 dot products (Intel AMX, AVX512-BF16 on Intel and AMD)
FLOAT32_LAYERS = ("logits", "probabilities")  # the features and the softmax: always computed in float32


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags listed in ``cpuinfo`` (Linux ``/proc/cpuinfo``; empty where unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / arm64
            flags.update(value.split())
    return flags


def accelerator() -> dict | None:
    """The GPU the Keras backend would run on, as {"bf16": bool, "fp16": bool}, or None when it runs on the CPU."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return None
            cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0)
            return {"bf16": tuple(cc) >= (8, 0), "fp16": True}  # bf16 tensor cores from Ampere (8.0)
        if backend == "torch":
            import torch

            if not torch.cuda.is_available():
                return None
            return {"bf16": bool(torch.cuda.is_bf16_supported()), "fp16": True}
        if backend == "jax":
            import jax

            if jax.default_backend() == "cpu":
                return None
            return {"bf16": True, "fp16": True}
    except Exception:  # a backend that cannot tell: treat as CPU, the safe side of the rule
        return None
    return None


def default_precision(flags: set[str], gpu: dict | None) -> str:
    """The rule behind ``auto``: bf16 where the device computes it natively, else float32."""
    if gpu is not None:
        return "mixed_bfloat16" if gpu.get("bf16") else "float32"
    return "mixed_bfloat16" if any(f in flags for f in BF16_CPU_FLAGS) else "float32"


_NO_GPU = object()


def resolve_precision(precision: str = "auto", *, cpuinfo: str | Path = "/proc/cpuinfo", gpu=_NO_GPU) -> str:
    """The policy ``precision`` stands for here: ``auto`` by :func:`default_precision`; the others as given,
    except ``mixed_float16`` without a GPU (TensorFlow's CPU kernels lack float16 pooling; on CPU fp16 is emulated
    anyway). ``gpu``: what :func:`accelerator` would say (tests pass None for a CPU-only machine)."""
    if precision not in PRECISIONS:
        raise ParamError("precision", f"is one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "float32" or precision == "mixed_bfloat16":
        return precision
    if gpu is _NO_GPU:
        gpu = accelerator()
    if precision == "mixed_float16":
        if gpu is None or not gpu.get("fp16"):
            raise ParamError("precision", "mixed_float16 needs a GPU (the CPU backend has no float16 kernels for "
                                          "every layer); use mixed_bfloat16 or float32")
        return precision
    return default_precision(cpu_flags(cpuinfo), gpu)


def model_precision(model) -> str:
    """The policy the model's hidden layers compute at (its first layer with weights, the output layers aside)."""
    for layer in model.layers:
        if layer.weights and layer.name not in FLOAT32_LAYERS:
            return layer.dtype_policy.name
    return "float32"


def with_precision(model, precision: str):
    """``model`` itself when it already computes at ``precision`` (a resolved policy, not ``auto``), else a copy
    with the same weights whose layers compute at it, the :data:`FLOAT32_LAYERS` in float32."""
    import keras

    if precision == "auto":
        raise ValueError("resolve 'auto' first (resolve_precision)")
    if model_precision(model) == precision and all(
            model.get_layer(n).dtype_policy.name == "float32" for n in FLOAT32_LAYERS if _has(model, n)):
        return model

    def clone(layer):
        cfg = layer.get_config()
        if "dtype" in cfg and type(layer).__name__ != "InputLayer":
            cfg["dtype"] = "float32" if layer.name in FLOAT32_LAYERS else precision
        return layer.__class__.from_config(cfg)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())  # variables are float32 under every policy
    return copy


def _has(model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)
