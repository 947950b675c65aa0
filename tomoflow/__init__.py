"""tomoflow: a batch engine for cryo-electron tomography on Dask.

Kernels (``tomoflow.io``, and later simulation, picking, models, alignment) are plain
numpy/scipy functions on one chunk; ``tomoflow.store`` owns the Zarr layout;
``tomoflow.engine`` maps kernels over chunks and records finished chunks.
"""

__version__ = "0.1.0"
