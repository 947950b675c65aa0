"""3D CNN subtomogram classifiers in Keras 3 (seed 000 section 2.2, seed 002 section 3.4.1).

Only ``keras`` layers are used, so the same code runs on the TensorFlow (default), JAX or PyTorch
backend (``KERAS_BACKEND``). Every model ends with a linear dense layer named ``logits`` followed
by a softmax named ``probabilities``: the deep structural features of seed 000 (section 2.3) are
the ``logits`` output.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .architectures import MODELS, build_model, feature_model  # noqa: E402

__all__ = ["MODELS", "build_model", "feature_model"]
