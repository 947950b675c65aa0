"""tomoflow: a batch engine for cryo-electron tomography on Dask.

The front door (``import tomoflow as tf``), lazily, so ``tomoflow info`` stays fast:

* ``tf.Store``, ``tf.ParticleSet``: the project store;
* the Params classes (``tf.DogParams``, ``tf.TrainParams``, ...): every verb's parameters and defaults;
* one function per verb over a store (a :class:`Store` or its path): ``tf.simulate_tomogram``, ``tf.pick_dog``,
  ``tf.extract``, ``tf.train``, ``tf.extract_features``, ``tf.kmeans``, ``tf.classify``, ... (see :data:`VERBS`);
* ``tf.run_pipeline``, ``tf.load_pipeline``, ``tf.cluster_client`` (a LocalCluster, or a running scheduler);
* arrays-in functions: ``tf.kernels`` (numpy/scipy) and ``tf.ml`` (models, training, features).

Layers (a test, tests/test_architecture.py, enforces the import rules; see ARCHITECTURE.md):

* ``kernels/`` pure array kernels; ``ml/`` models and learning on arrays; ``simulate/`` physics;
  ``io/`` file formats; ``params``/``options``/``errors`` leaves. None of these imports ``store``, ``engine``,
  ``ops``, ``pipeline``, ``cli``, ``dask`` or ``distributed``.
* ``store/`` the Zarr layout (imports neither the engine nor ``ops``); ``engine`` maps chunk tasks over a store.
* ``ops/`` the only layer that drives kernels over the store through the engine, one driver per verb.
* ``pipeline/``, ``cli/``, ``report/`` on top; ``experiments/`` (the seed paper's) is imported only by
  ``pipeline`` and ``cli``.
"""

from __future__ import annotations

import functools
import importlib

__version__ = "0.1.0"

# name -> module (relative to tomoflow) for the lazy front door
_PLAIN = {
    "Store": "store", "ParticleSet": "store", "create_particle_set": "store", "import_mrc": "store",
    "run_pipeline": "pipeline", "load_pipeline": "pipeline", "cluster_client": "engine", "local_cluster": "engine",
    "InputError": "errors", "TomoflowError": "errors",
}
_PARAMS = ("Microscope", "DatasetSpec", "CrowdedSpec", "ImportParams", "FilterParams", "DogParams", "MatchParams",
           "ExtractParams", "EvaluateParams", "TrainParams", "FeatureParams", "RifParams", "KMeansParams",
           "AlignParams", "AverageParams", "SaliencyParams", "SaliencyPickParams", "SaliencyDenoiseParams",
           "AutoencoderParams", "EncodeParams", "AutoencoderFilterParams", "SemiSupervisedParams",
           "OpenSetParams", "DomainParams")
VERBS = ("simulate_dataset", "simulate_tomogram", "filter_tomogram", "pick_dog", "pick_template", "pick_saliency",
         "denoise_saliency", "extract",
         "score_picks", "label_picks", "estimate_wedge", "estimate_snr", "train", "assign_split", "extract_features",
         "compute_rif", "svm_classify", "kmeans", "assign_clusters", "classify", "average_ml", "classify_auto",
         "compute_pose_normalized", "train_autoencoder", "encode_autoencoder", "filter_autoencoder",
         "train_semisupervised", "openset_features", "adapt_domain",
         "import_tomograms", "estimate_wedges", "cut_background", "simulate_matched", "match_structures",
         "export_clusters")
_SUBPACKAGES = ("kernels", "ml", "ops", "simulate", "io", "store", "engine", "params", "options", "pipeline", "report")

__all__ = ["__version__", *_PLAIN, *_PARAMS, *VERBS, *_SUBPACKAGES]


def _verb(name: str):
    """The driver ``tomoflow.ops.<name>``, taking a :class:`Store` or the path of one as its first argument."""
    ops = importlib.import_module(".ops", __name__)
    fn = getattr(importlib.import_module(f".ops.{ops.VERBS[name]}", __name__), name)

    @functools.wraps(fn)
    def verb(store, *args, **kwargs):
        if not hasattr(store, "root"):
            from .store import Store

            store = Store.open(store)
        return fn(store, *args, **kwargs)

    return verb


def __getattr__(name: str):
    if name in _PLAIN:
        value = getattr(importlib.import_module(f".{_PLAIN[name]}", __name__), name)
    elif name in _PARAMS:
        value = getattr(importlib.import_module(".params", __name__), name)
    elif name in VERBS:
        value = _verb(name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'tomoflow' has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted(__all__)
