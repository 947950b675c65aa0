"""Alignment-based classification with an automatic cut-off (issue 25 part 3, seed 002 section 3.3.2)."""

import numpy as np
import pytest

from tomoflow.kernels.fsc import structural_discrepancy
from tomoflow.ops.simulate import simulate_dataset
from tomoflow.params import DatasetSpec
from tomoflow.simulate.templates import structure_template
from tomoflow.store import ParticleSet, Store
from conftest import run_cli


def _mixture(path, classes, per_class=15, snr=0.5):
    """A simulated mixture with its true poses stored as a one-class averaging run 'truth' would leave them."""
    store = Store.create(path)
    spec = DatasetSpec(classes=classes, per_class=per_class, snrs=(snr,), box=24, voxel_size=16.0, resolution=32.0,
                       include_empty=False, seed=1)
    simulate_dataset(store, "d", spec, chunk=16)
    ps = ParticleSet(store, "d")
    t = ps.rows(slice(0, ps.n), ["true_rot", "true_tilt", "true_psi", "true_shift_x", "true_shift_y", "true_shift_z"])
    pose = np.stack([t["true_rot"], t["true_tilt"], t["true_psi"], *(t[f"true_shift_{a}"] / 16.0 for a in "xyz")], 1)
    ps.create_array("truth_pose", (6,), "float32", attrs={"average": "truth"})
    ps.array("truth_pose")[:] = pose.astype(np.float32)
    store.write_map("truth", np.zeros((1, 24, 24, 24), np.float32), 16.0,
                    attrs={"set": "d", "classes": 1, "clusters": [-1]})
    return store, ps


@pytest.mark.parametrize("classes", [("6zu5", "4v8r"), ("6zu5", "4v8r", "5cvz"), ("6zu5", "4v8r", "5cvz", "6wg6")])
def test_the_number_of_classes_is_found_and_the_classes_are_pure(tmp_path, capsys, classes):
    """Mixtures of 2, 3 and 4 structures (20 each, SNR 0.5, +-60 degrees, true poses): the cut-off chosen by the
    leave-one-out FSC score gives as many classes as structures (any fixed number fails two of the cases),
    purity >= 0.9 (measured 1.0), and each class average is within 8 nm of its true map (Nyquist 3.2 nm). With
    the particles turned by trilinear interpolation the 4-structure case split the ribosome by orientation."""
    store, ps = _mixture(tmp_path / "s.zarr", classes, per_class=20)
    code, out, err = run_cli(capsys, "classify-auto", store.path, "d", "--average", "truth", "--name", "auto",
                             "--workers", "0")
    assert code == 0, err
    labels = np.asarray(ps.array("auto_class")[:])
    truth = np.asarray(ps.rows(slice(0, ps.n), ["true_class"])["true_class"])
    found = len(np.unique(labels))
    assert found == len(classes) and f"{found} classes found" in out, out
    purity = sum(np.bincount(truth[labels == c]).max() for c in range(found)) / len(labels)
    assert purity >= 0.9, purity
    maps = store.read_map("auto")[0]
    for c in range(found):
        major = np.bincount(truth[labels == c]).argmax()
        true = structure_template(classes[major], 16.0, 24, resolution=32.0)
        assert structural_discrepancy(true, maps[c], 16.0, align=False)["discrepancy_nm"] < 8.0


def test_bad_input_is_one_line_and_leaves_the_store_unchanged(tmp_path, capsys):
    store, ps = _mixture(tmp_path / "s.zarr", ("6zu5",), per_class=8)
    before = sorted(p.relative_to(store.path) for p in store.path.rglob("*"))
    for argv in (["--average", "nothing", "--name", "a"], ["--average", "truth", "--name", "a/b"],
                 ["--average", "truth", "--name", "a", "--max-classes", "1"],
                 ["--average", "truth", "--name", "truth"]):
        code, _, err = run_cli(capsys, "classify-auto", store.path, "d", *argv, "--workers", "0")
        assert code == 2 and err.startswith("tomoflow: error:") and len(err.strip().splitlines()) == 1, (argv, err)
    assert sorted(p.relative_to(store.path) for p in store.path.rglob("*")) == before


def test_pipeline_stages_average_ml_then_classify_auto(tmp_path):
    """The average_ml and classify_auto stage types run from their pipeline keys; classify_auto reads the poses a
    one-class FAML run wrote (``<name>_pose``, marked as that run's) as well as a given pose array."""
    from tomoflow.pipeline.schema import check_stage, stage_params
    from tomoflow.pipeline.stages import STAGES, Context

    store, ps = _mixture(tmp_path / "s.zarr", ("6zu5", "4v8r"), per_class=10)
    ctx = Context(store, None, tmp_path, progress=False)
    got = {}
    for kind, given in (("average_ml", {"set": "d", "name": "ml", "iterations": 1}),
                        ("classify_auto", {"set": "d", "average": "ml", "name": "after_ml"}),
                        ("classify_auto", {"set": "d", "average": "truth", "name": "auto"})):
        params, keys = stage_params(kind, check_stage(kind, given, "stage 1", "f.yaml"))
        got[given["name"]] = STAGES[kind].run(ctx, params, keys)
    assert got["ml"]["maps"] == "ml" and got["ml"]["results"][0]["members"] == 20
    assert store.read_map("ml")[0].shape == (1, 24, 24, 24)
    assert sum(got["after_ml"]["sizes"]) == 20 and store.has("maps", "after_ml")
    assert got["auto"]["classes"] == 2
