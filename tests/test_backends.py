"""A model saved under one Keras backend gives the same features under the others (train with TensorFlow on a
laptop, extract features with PyTorch or JAX on GPU nodes). Skipped where a backend is not installed (CI has
only TensorFlow); run on machines that have them."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

SCRIPT = """
import json, sys, numpy as np
from tomoflow.ml.features import cached_feature_model, compute_features
model, _ = cached_feature_model(sys.argv[1])
f, p = compute_features(model, np.load(sys.argv[2]), batch_size=4)
import keras; print(json.dumps({"backend": keras.backend.backend(), "f": f.tolist()}))
"""


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_saved_model_gives_the_same_features_on_another_backend(tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} not installed")
    from tomoflow.ml.features import cached_feature_model, compute_features
    from tomoflow.ml.models import build_model
    from tomoflow.ml.training import save_trained

    keras.utils.set_random_seed(3)
    model = build_model("inception3d", 16, 3)
    save_trained(model, tmp_path / "m.keras", {"class_names": ["a", "b", "c"], "box_size": 16, "voxel_size": 10.0})
    x = np.random.default_rng(0).normal(size=(6, 16, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    here, _ = compute_features(cached_feature_model(tmp_path / "m.keras")[0], x, batch_size=4)
    env = {"KERAS_BACKEND": backend, "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.keras"), str(tmp_path / "x.npy")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["backend"] == backend
    np.testing.assert_allclose(np.array(r["f"]), here, rtol=1e-4, atol=1e-4)
