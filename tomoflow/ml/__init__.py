"""Models and learning on arrays: the 3D CNNs (Keras 3, backend-neutral), augmentation, training loops and
deep-feature computation. No store, engine, dask or distributed here: data come in as arrays or any
chunked source (:class:`tomoflow.ml.training.ArraySource`, or a particle set passed in by :mod:`tomoflow.ops`)."""
