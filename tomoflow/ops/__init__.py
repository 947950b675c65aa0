"""Drivers: the only layer that maps kernels over the store through the engine, one function per verb.

Each driver opens what it needs in the store, runs one engine task per chunk (particles or tomogram blocks;
resumable, GPU-routed where it helps) calling a kernel from :mod:`tomoflow.kernels` or :mod:`tomoflow.ml`,
and writes results by region. Import the verbs from here (lazily: ``from tomoflow.ops import pick_dog``).
"""

from __future__ import annotations

import importlib

VERBS = {
    "simulate_dataset": "simulate", "simulate_tomogram": "simulate",
    "filter_tomogram": "filter",
    "pick_dog": "pick", "pick_template": "pick",
    "pick_saliency": "saliency", "denoise_saliency": "saliency",
    "extract": "extraction",
    "score_picks": "label", "label_picks": "label",
    "estimate_wedge": "estimate", "estimate_snr": "estimate",
    "train": "training", "train_on": "training", "assign_split": "training", "check_model_name": "training",
    "extract_features": "features",
    "compute_rif": "rif", "svm_classify": "rif",
    "kmeans": "cluster", "assign_clusters": "cluster",
    "classify": "average",
    "average_ml": "faml", "classify_auto": "autoclass",
    "compute_pose_normalized": "pose_norm",
    "train_autoencoder": "autoencoder", "encode_autoencoder": "autoencoder", "filter_autoencoder": "autoencoder",
    "train_semisupervised": "semisupervised",
    "openset_features": "openset", "adapt_domain": "domain",
    "import_tomograms": "own_data", "estimate_wedges": "own_data", "cut_background": "own_data",
    "simulate_matched": "own_data", "match_structures": "own_data", "export_clusters": "own_data",
}

__all__ = sorted(VERBS)


def __getattr__(name: str):
    # a verb never shares its name with a module of this package, so an imported submodule cannot shadow it
    if name in VERBS:
        return getattr(importlib.import_module(f".{VERBS[name]}", __name__), name)
    raise AttributeError(f"module 'tomoflow.ops' has no attribute {name!r}")
