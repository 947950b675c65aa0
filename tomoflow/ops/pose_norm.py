"""Pose-normalised volumes of a particle set (the seed 000 Figure 5 baseline) as the per-particle array ``pose_norm``."""

from __future__ import annotations

import functools

from ..kernels.pose_norm import pose_normalized_features
from ..store import ParticleSet, Store
from .common import fresh_arrays


def _task(store_path: str, chunk: int, *, set_name: str, name: str, out_box: int, polarity: str) -> None:
    ps = ParticleSet(Store.open(store_path), set_name)
    sl = ps.chunk_slice(chunk)
    ps.array(name)[sl] = pose_normalized_features(ps.read_volumes(sl), out_box, polarity)


def compute_pose_normalized(store: Store, set_name: str, *, name: str = "pose_norm", out_box: int = 16,
                            polarity: str = "dark", client=None, progress: bool | None = None) -> dict:
    ps = ParticleSet(store, set_name)
    task = functools.partial(_task, set_name=set_name, name=name, out_box=out_box, polarity=polarity)
    run = fresh_arrays(store, ps, f"pose_norm.{set_name}.{name}", {"box": out_box, "polarity": polarity},
                       [(name, (out_box**3,), "float32", 0, {"pose_norm": {"box": out_box, "polarity": polarity}})],
                       task, client=client, progress=progress, fresh=True)
    return {"particles": ps.n, "features": out_box**3, "computed": run.computed}
