"""Labelled datasets of simulated subtomograms (seed 000, section 3.1.1), built in the store.

A dataset is the grid SNR x tilt range x class (the structures plus, optionally, an "empty"
class of noise only) x ``per_class`` particles, in that nesting order. The particle table is
made first, in one process, from the seed: every particle's class, SNR, tilt range, uniform
random rotation and random shift. Volumes are then simulated chunk by chunk (one task per chunk,
by :func:`tomoflow.ops.simulate.simulate_dataset`); each particle's noise comes from its own
``SeedSequence([seed, index])``. The same seed therefore gives bit-identical data whatever the
number of workers or the chunk size.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..kernels.geometry import relion_angles, relion_matrix
from ..kernels.rotations import random_rotations
from ..params import EMPTY, DatasetSpec  # noqa: F401
from .optics import Microscope
from .structures import structure_density
from .tiltseries import TiltSeriesSimulator, dataset_scheme


def particle_table(spec: DatasetSpec) -> dict:
    """Every particle's class, SNR, tilt range, rotation (RELION angles) and shift, from the seed; the rotation and
    shift go into the answer-key columns ``true_rot, true_tilt, true_psi, true_shift_*`` (Å), never the pose columns."""
    n_cls, per = len(spec.class_names), spec.per_class
    i = np.arange(spec.n)
    cls = (i // per) % n_cls
    tilt = np.asarray(spec.tilt_ranges, float)[(i // (per * n_cls)) % len(spec.tilt_ranges)]
    snr = np.asarray(spec.snrs, float)[i // (per * n_cls * len(spec.tilt_ranges))]
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x5EED]))
    angles = relion_angles(random_rotations(spec.n, rng))
    direction = rng.standard_normal((spec.n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = spec.max_shift * rng.random(spec.n) ** (1.0 / 3.0)  # uniform in the ball
    shift = direction * radius[:, None] * spec.voxel_size  # Å
    return {"tomogram": np.full(spec.n, "", dtype=object), "true_rot": angles[:, 0], "true_tilt": angles[:, 1],
            "true_psi": angles[:, 2], "true_class": cls, "snr": snr, "tilt_min": -tilt, "tilt_max": tilt,
            "tilt_axis": np.full(spec.n, spec.tilt_axis), "true_shift_x": shift[:, 0], "true_shift_y": shift[:, 1],
            "true_shift_z": shift[:, 2]}


@lru_cache(maxsize=8)
def _simulator(spec_json: str, tilt_range: float) -> TiltSeriesSimulator:
    spec = DatasetSpec.from_json(spec_json)
    return TiltSeriesSimulator(spec.box, spec.voxel_size, dataset_scheme(spec, tilt_range), Microscope(**spec.microscope),
                               method=spec.method)


@lru_cache(maxsize=64)
def _map_ft(spec_json: str, tilt_range: float, name: str) -> np.ndarray:
    spec = DatasetSpec.from_json(spec_json)
    return _simulator(spec_json, tilt_range).map_transform(class_density(spec, name))


def class_density(spec: DatasetSpec, name: str) -> np.ndarray:
    return structure_density(name, spec.box, spec.voxel_size, spec.resolution)


def reference_variances(spec: DatasetSpec) -> dict[float, float]:
    """Per tilt range: the mean signal variance of the classes' noise-free subtomograms (unrotated).
    Sets the noise level of the empty class, so that its noise matches the dataset's SNR."""
    js = spec.to_json()
    out = {}
    for t in spec.tilt_ranges:
        sim = _simulator(js, t)
        out[t] = float(np.mean([np.var(sim.reconstruct(sim.projections(_map_ft(js, t, c), np.eye(3))))
                                for c in spec.classes]))
    return out


def simulate_rows(spec: DatasetSpec, table: dict, rows: range, refvar: dict) -> np.ndarray:
    """The volumes of particles ``rows`` (a kernel: numpy in, numpy out)."""
    js = spec.to_json()
    out = np.empty((len(rows), spec.box, spec.box, spec.box), np.float32)
    names = spec.class_names
    for k, i in enumerate(rows):
        t = float(table["tilt_max"][k])
        name = names[int(table["true_class"][k])]
        ft = None if name == EMPTY else _map_ft(js, t, name)
        a = relion_matrix(table["true_rot"][k], table["true_tilt"][k], table["true_psi"][k])
        shift = np.array([table["true_shift_x"][k], table["true_shift_y"][k], table["true_shift_z"][k]]) / spec.voxel_size
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, int(i)]))
        out[k], _ = _simulator(js, t).simulate(ft, a, shift, float(table["snr"][k]), rng,
                                               reference_variance=refvar[t])
    return out
