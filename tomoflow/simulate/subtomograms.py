"""Labelled datasets of simulated subtomograms (seed 000, section 3.1.1), built in the store.

A dataset is the grid SNR x tilt range x class (the structures plus, optionally, an "empty"
class of noise only) x ``per_class`` particles, in that nesting order. The particle table is
made first, in one process, from the seed: every particle's class, SNR, tilt range, uniform
random rotation and random shift. Volumes are then simulated chunk by chunk (one task per chunk,
through :func:`tomoflow.engine.run_chunks`); each particle's noise comes from its own
``SeedSequence([seed, index])``. The same seed therefore gives bit-identical data whatever the
number of workers or the chunk size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from ..geometry import relion_angles, relion_matrix, random_rotations
from .density import DEFAULT_RESOLUTION, DEFAULT_VOXEL, density_map
from .optics import Microscope
from .structures import resolve_structure
from .tiltseries import TiltScheme, TiltSeriesSimulator

EMPTY = "empty"


@dataclass(frozen=True)
class DatasetSpec:
    classes: tuple[str, ...] = ("6zu5", "4v8r", "5cvz", "6wg6")
    per_class: int = 100
    snrs: tuple[float, ...] = (0.1,)
    tilt_ranges: tuple[float, ...] = (60.0,)  # symmetric: +-60 degrees
    include_empty: bool = True
    box: int = 40
    voxel_size: float = DEFAULT_VOXEL
    resolution: float = DEFAULT_RESOLUTION
    tilt_step: float = 2.0
    tilt_axis: float = 0.0
    max_shift: float = 4.0  # voxels: shift drawn uniformly in a ball of this radius
    method: str = "fourier"
    microscope: dict = field(default_factory=lambda: Microscope().as_dict())
    seed: int = 0

    def __post_init__(self):
        if not self.classes:
            raise ValueError("a dataset needs at least one structure")
        if self.per_class < 1 or self.box < 8:
            raise ValueError("per_class must be >= 1 and box >= 8")
        if any(not s > 0 for s in self.snrs):
            raise ValueError(f"SNRs must be > 0 (use inf for noise-free), got {self.snrs}")
        if any(not 0 < t <= 90 for t in self.tilt_ranges):
            raise ValueError(f"tilt ranges are half-ranges in (0, 90] degrees, got {self.tilt_ranges}")

    @property
    def class_names(self) -> list[str]:
        return list(self.classes) + ([EMPTY] if self.include_empty else [])

    @property
    def n(self) -> int:
        return len(self.snrs) * len(self.tilt_ranges) * len(self.class_names) * self.per_class

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DatasetSpec":
        d = json.loads(text)
        for k in ("classes", "snrs", "tilt_ranges"):
            d[k] = tuple(d[k])
        return cls(**d)

    def scheme(self, tilt_range: float) -> TiltScheme:
        return TiltScheme(-tilt_range, tilt_range, self.tilt_step, self.tilt_axis)


def particle_table(spec: DatasetSpec) -> dict:
    """Every particle's class, SNR, tilt range, rotation (RELION angles) and shift, from the seed."""
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
    return {"tomogram": np.full(spec.n, "", dtype=object), "rot": angles[:, 0], "tilt": angles[:, 1],
            "psi": angles[:, 2], "true_class": cls, "snr": snr, "tilt_min": -tilt, "tilt_max": tilt,
            "tilt_axis": np.full(spec.n, spec.tilt_axis), "shift_x": shift[:, 0], "shift_y": shift[:, 1],
            "shift_z": shift[:, 2]}


@lru_cache(maxsize=8)
def _simulator(spec_json: str, tilt_range: float) -> TiltSeriesSimulator:
    spec = DatasetSpec.from_json(spec_json)
    return TiltSeriesSimulator(spec.box, spec.voxel_size, spec.scheme(tilt_range), Microscope(**spec.microscope),
                               method=spec.method)


@lru_cache(maxsize=64)
def _map_ft(spec_json: str, tilt_range: float, name: str) -> np.ndarray:
    spec = DatasetSpec.from_json(spec_json)
    return _simulator(spec_json, tilt_range).map_transform(class_density(spec, name))


def class_density(spec: DatasetSpec, name: str) -> np.ndarray:
    return density_map(resolve_structure(name), spec.box, spec.voxel_size, spec.resolution)


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
        a = relion_matrix(table["rot"][k], table["tilt"][k], table["psi"][k])
        shift = np.array([table["shift_x"][k], table["shift_y"][k], table["shift_z"][k]]) / spec.voxel_size
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, int(i)]))
        out[k], _ = _simulator(js, t).simulate(ft, a, shift, float(table["snr"][k]), rng,
                                               reference_variance=refvar[t])
    return out


def simulate_chunk(store_path: str, chunk: int, *, set_name: str) -> None:
    """Engine task: simulate one particle chunk of a dataset and write it by region."""
    from ..store import ParticleSet, Store

    ps = ParticleSet(Store.open(store_path), set_name)
    sim = ps.info["simulation"]
    spec = DatasetSpec.from_json(sim["spec"])
    refvar = {float(k): v for k, v in sim["reference_variance"].items()}
    sl = ps.chunk_slice(chunk)
    cols = ["rot", "tilt", "psi", "true_class", "snr", "tilt_max", "shift_x", "shift_y", "shift_z"]
    table = ps.rows(sl, cols)
    ps.write_volumes(sl.start, simulate_rows(spec, table, range(sl.start, sl.stop), refvar))


def simulate_dataset(store, set_name: str, spec: DatasetSpec, *, chunk: int = 256, client=None,
                     overwrite: bool = False, progress: bool | None = None):
    """Create particle set ``set_name`` and simulate its volumes (resumable: reruns skip finished chunks)."""
    import functools

    from ..engine import run_chunks
    from ..store import ParticleSet, create_particle_set

    stage = f"simulate.{set_name}"
    if store.has("particles", set_name) and not overwrite:
        ps = ParticleSet(store, set_name)
        if ps.info.get("simulation", {}).get("spec") != spec.to_json():
            from ..errors import StoreError

            raise StoreError(str(store.path), f"particle set '{set_name}' exists with another simulation spec "
                                              "(use --overwrite)")
    else:
        refvar = reference_variances(spec)
        mic = spec.microscope
        ps = create_particle_set(
            store, set_name, particle_table(spec), box_size=spec.box, chunk=chunk, voxel_size=spec.voxel_size,
            class_names=spec.class_names, overwrite=overwrite,
            attrs={"simulation": {"spec": spec.to_json(), "reference_variance": {str(k): v for k, v in refvar.items()}},
                   "microscope": {"voltage": mic["voltage_kv"], "cs": mic["cs_mm"],
                                  "amplitude_contrast": mic["amplitude_contrast"]}})
        if store.has("stages", stage):
            store.delete("stages", stage)
    task = functools.partial(simulate_chunk, set_name=set_name)
    return run_chunks(store, stage, ps.n_chunks, task, params={"spec": spec.to_json(), "chunk": chunk},
                      client=client, progress=progress)
