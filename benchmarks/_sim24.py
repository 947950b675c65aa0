"""Data for the issue 24 benchmarks (bench_openset.py, bench_domain.py): labelled subtomograms simulated into a
store under ``work`` and kept as .npy beside it, so reruns reuse them (box 16, 24 Å voxels, 6ZU5 4V8R 5CVZ 6WG6 +
empty, 100 per class at SNR 0.1 unless told otherwise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

STRUCTURES = ("6zu5", "4v8r", "5cvz", "6wg6")
# the datasets measured on 2026-12-02 (benchmarks/RESULTS.md, issue 24 parts 3-4): name -> DatasetSpec changes
DATASETS = {
    "os1": dict(snrs=(1.0,), per_class=60, seed=11),
    "os01": dict(snrs=(0.1,), per_class=100, seed=12),
    "src": dict(seed=1),
    "src_test": dict(seed=3),
    "tgt_wbp_df2": dict(seed=2, method="wbp", defocus_um=-2.0),
    "tgt_df2": dict(seed=4, defocus_um=-2.0),
    "tgt_wbp": dict(seed=5, method="wbp"),
    # a second simulation of tgt_wbp_df2's shift, made after the domain-adaptation defaults were chosen on it: the
    # held-out check of those defaults
    "tgt_wbp_df2_b": dict(seed=6, method="wbp", defocus_um=-2.0),
}


def load(work: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(volumes, true classes) of dataset ``name``, simulated on first use."""
    from tomoflow.ops.simulate import simulate_dataset
    from tomoflow.params import DatasetSpec, Microscope
    from tomoflow.store import ParticleSet, Store

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    x_path, y_path = work / f"{name}.npy", work / f"{name}_y.npy"
    if not x_path.exists():
        kw = dict(DATASETS[name])
        defocus = kw.pop("defocus_um", None)
        spec = {**dict(classes=STRUCTURES, per_class=100, snrs=(0.1,), box=16, voxel_size=24.0, resolution=24.0), **kw}
        if defocus is not None:
            spec["microscope"] = Microscope(defocus_um=defocus)
        s = work / "s.zarr"
        store = Store.open(s) if s.exists() else Store.create(s)
        simulate_dataset(store, name, DatasetSpec(**spec), chunk=64, progress=False)
        ps = ParticleSet(store, name)
        np.save(x_path, np.asarray(ps.volumes[:]))
        np.save(y_path, ps.rows(slice(0, ps.n), ["true_class"])["true_class"])
    return np.load(x_path), np.load(y_path).astype(int)
