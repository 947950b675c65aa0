"""Ground truth stays in the answer key: simulation writes it there, and no reference-free method reads it.

Every read of a particle table is recorded with the module that asked for it, while the demo's chain and the
seed paper's discovery protocol (leave-one-out) run in this process. Only the simulator, scoring (labelling
picks from the truth, the report, the leave-one-out's choice of the enriched cluster and its discrepancy) and
plain copies of whole tables (extraction, merging sets) may read answer-key columns; supervised training (and
the SVM baseline) reads ``true_class`` as its labels and nothing else of the key. Feature extraction, k-means,
alignment and averaging read none of it."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from tomoflow.store import ANSWER_KEY, TRUE_POSE, ParticleSet

SIMULATOR = ("tomoflow.ops.simulate",)
SCORING = ("tomoflow.ops.label", "tomoflow.report", "tomoflow.experiments.leave_one_out")
COPIES = ("tomoflow.ops.extraction", "tomoflow.pipeline.stages")  # whole tables copied into a new set
LABELS = ("tomoflow.ops.training", "tomoflow.ops.rif")  # supervised: true_class only
BLIND = ("tomoflow.ops.features", "tomoflow.ops.cluster", "tomoflow.ops.average", "tomoflow.ops.pick",
         "tomoflow.kernels", "tomoflow.ml")


@pytest.fixture
def reads(monkeypatch):
    """[(module, columns)] of every read of table values; columns None = the whole table. (Listing the column
    names, as writes do, reads no values and is not recorded.)"""
    out = []
    real_table, real_rows = ParticleSet.table, ParticleSet.rows

    def caller():
        return next((f.frame.f_globals.get("__name__", "?") for f in inspect.stack()[2:]
                     if not f.frame.f_globals.get("__name__", "").startswith("tomoflow.store")), "?")

    def table(self, columns=None, *, load=True):
        if load:
            out.append((caller(), None if columns is None else tuple(columns)))
        return real_table(self, columns, load=load)

    def rows(self, sl, columns):
        out.append((caller(), tuple(columns)))
        return real_rows(self, sl, columns)

    monkeypatch.setattr(ParticleSet, "table", table)
    monkeypatch.setattr(ParticleSet, "rows", rows)
    return out


def _check(reads) -> set[str]:
    modules = set()
    for mod, cols in reads:
        modules.add(mod)
        key = set(ANSWER_KEY) if cols is None else set(cols) & set(ANSWER_KEY)
        if not key or mod.startswith(SIMULATOR + SCORING):
            continue
        if cols is None:
            assert mod.startswith(COPIES), f"{mod} read the whole table (answer key included)"
        elif mod.startswith(LABELS):
            assert key == {"true_class"}, f"{mod} read {key}"
        else:
            raise AssertionError(f"{mod} read answer-key columns {sorted(key)}")
    return modules


def test_the_demo_chain_reads_no_answer_key_outside_scoring(tmp_path, reads):
    from tomoflow.pipeline import parse_pipeline, run_pipeline

    doc = {"store": "s.zarr", "stages": [
        {"simulate_tomograms": {"count": 1, "shape": [160, 160, 64], "particles": 24, "snr": 1.0,
                                "classes": ["6zu5", "4v8r"], "seed": 1}},
        "pick", "evaluate_picks", {"extract": {"box": 24, "chunk": 16}}, {"train": {"epochs": 1, "batch_size": 8}},
        "features", {"cluster": {"k": 2}}, {"average": {"classes": 1, "iterations": 1, "min_members": 2}},
        {"report": {"tsne_points": 100}}]}
    run_pipeline(parse_pipeline(doc, "t.yaml"), out=tmp_path, local=0, progress=False, performance_report=False)
    modules = _check(reads)
    # the blind stages did read their tables (the check saw them) ...
    assert {"tomoflow.ops.average", "tomoflow.ops.label", "tomoflow.ops.training"} <= modules
    # ... and the picks carry the truth only in the answer key
    from tomoflow.store import Store

    ps = ParticleSet(Store.open(tmp_path / "s.zarr"), "picks")
    frame = ps.table_frame()
    matched = frame.true_class < len(ps.class_names) - 1
    assert matched.any() and np.isfinite(frame.loc[matched, list(TRUE_POSE[:3])].to_numpy()).all()
    assert (frame[["rot", "tilt", "psi"]].to_numpy() == 0).all()  # DoG gives no pose, labelling adds none


def test_leave_one_out_reads_no_answer_key_outside_scoring(tmp_path, reads):
    from tomoflow.experiments.leave_one_out import LeaveOneOutParams, run_leave_one_out
    from tomoflow.store import Store

    store = Store.create(tmp_path / "s.zarr")
    p = LeaveOneOutParams(structures=("6zu5", "3o21"), snr=1000.0, per_class=8, epochs=1, box=16, voxel_size=18.4,
                          k=2, classes=1, iterations=1)
    run_leave_one_out(store, p, tmp_path / "loo", log=lambda m: None)
    assert {"tomoflow.ops.average", "tomoflow.experiments.leave_one_out"} <= _check(reads)


def test_averaging_starts_from_the_table_pose_only_when_asked(tmp_path):
    """Iteration 0 is the identity pose unless ``from_poses``: the same particles with poses written into
    rot/tilt/psi give another iteration-0 average only with from_poses."""
    from tomoflow.ops.average import classify
    from tomoflow.ops.simulate import simulate_dataset
    from tomoflow.params import AverageParams, DatasetSpec
    from tomoflow.store import Store

    store = Store.create(tmp_path / "s.zarr")
    simulate_dataset(store, "d", DatasetSpec(classes=("4v8r",), per_class=6, snrs=(1000.0,), box=16, voxel_size=24.0,
                                             resolution=48.0, include_empty=False, seed=2), progress=False)
    ps = ParticleSet(store, "d")
    plain = AverageParams(classes=1, iterations=0)
    classify(store, "d", "a", plain, progress=False)
    t = ps.rows(slice(0, ps.n), list(TRUE_POSE[:3]))
    ps.write_columns(0, {"rot": t["true_rot"], "tilt": t["true_tilt"], "psi": t["true_psi"]})  # e.g. from a STAR
    classify(store, "d", "b", plain, progress=False)
    classify(store, "d", "c", AverageParams(classes=1, iterations=0, from_poses=True), progress=False)
    a, b, c = (store.read_map(n)[0][0] for n in ("a", "b", "c"))
    assert np.array_equal(a, b)  # the table's pose is not read by default
    assert not np.allclose(a, c)
    assert np.asarray(ps.array("c_pose")[:, :3]) == pytest.approx(np.stack([t["true_rot"], t["true_tilt"],
                                                                              t["true_psi"]], 1), abs=1e-3)
