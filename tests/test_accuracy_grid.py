"""Seed 000 Table 2 machinery on a tiny grid: cells computed once and resumed, the table beside the paper's."""

import json
from dataclasses import replace

import pytest

pytest.importorskip("keras")

from tomoflow.experiments.accuracy_grid import GridParams, PAPER, bar, markdown_table, run_grid  # noqa: E402
from tomoflow.store import Store  # noqa: E402


def _cell_scores(store, cell, workdir):
    """(CNN accuracy, CNN accuracy with test-time turns, RIF-SVM accuracy) on a grid cell's test split, from the
    saved model and the stored SVM predictions, without evaluate() or svm_classify()."""
    import numpy as np

    from tomoflow.experiments.accuracy_grid import cell_name, model_path
    from tomoflow.ml.augment import wedge_preserving_turn
    from tomoflow.ml.training import TEST, load_trained, standardize
    from tomoflow.store import ParticleSet

    ps = ParticleSet(store, cell_name(cell["snr"], cell["tilt"]))
    t = ps.table_frame()
    test = np.flatnonzero(t.split.values == TEST)
    truth = t.true_class.values[test]
    model, _ = load_trained(model_path(workdir, cell["snr"], cell["tilt"], "dsrf3d"))
    x = standardize(ps.volumes.oindex[test])[..., 0]
    probs = np.stack([model.predict(np.stack([wedge_preserving_turn(v, w) for v in x])[..., None], verbose=0)
                      for w in range(4)])
    svm = np.asarray(ps.array("rif_svm_class")[:])[test]
    return (np.mean(probs[0].argmax(1) == truth), np.mean(probs.mean(0).argmax(1) == truth),
            np.mean(svm == truth))


def test_tiny_grid_runs_resumes_and_tabulates(tmp_path):
    store = Store.create(tmp_path / "g.zarr")
    p = GridParams(snrs=(1000.0, 0.5), tilts=(60.0,), structures=("6zu5", "3o21"), models=("dsrf3d",),
                   per_class=8, epochs=2, box=16, voxel_size=18.4, seed=1)
    cells = run_grid(store, p, tmp_path / "grid", log=lambda m: None)
    assert [(c["snr"], c["tilt"]) for c in cells] == [(1000.0, 60.0), (0.5, 60.0)]
    # Each cell's scores, recomputed here from what it saved: the CNN's (plain, and the mean of its predictions on
    # the 4 wedge-preserving views) from its saved model on the cell's test split, RIF-SVM's from its stored
    # predictions on that split. At SNR 1000 this 2-epoch model's turn score (7/12) is not its plain one (4/12),
    # so a swap shows. Fails if run_cell records `meta["test"]["accuracy_turns"]` as the plain score, or if
    # svm_train_test divides by every row (`np.trace(conf) / len(y)`) instead of the test rows.
    for c in cells:
        plain, turned, svm = _cell_scores(store, c, tmp_path / "grid")
        assert c["n"] == 24 and (c["dsrf3d"], c["dsrf3d_turns"], c["rif_svm"]) == pytest.approx((plain, turned, svm),
                                                                                                abs=1e-12)
        assert c["rif_svm"] >= 0.75  # the rotation-invariant baseline separates 3 classes at SNR 1000 and 0.5
    again = run_grid(store, p, tmp_path / "grid", log=lambda m: (_ for _ in ()).throw(AssertionError(m)))
    assert again == json.loads((tmp_path / "grid" / "grid-cells.json").read_text())["cells"]  # nothing recomputed
    table = markdown_table(cells, ("dsrf3d",))
    assert f"({PAPER[(0.5, 60)][1]:.3f})" in table and table.count("\n") == 3
    asked = markdown_table(cells, ("dsrf3d",), snrs=(1000, 0.5, 0.1), tilts=(60, 40))
    assert asked.count("\n") == 4 and asked.count("not run") == 2 + 3 * 2  # SNR 0.1 at +-60; the +-40 column
    b = bar(cells)
    assert b["dsrf3d_snr0.1_60"] is None and b["dsrf3d_bar_met"] is False and b["cells_run"] == 2
    assert b["cnn_ge_rif_every_cell_turns"] is not None
    rec = tmp_path / "grid" / "grid-cells.json"
    old = json.loads(rec.read_text())
    for c in old["cells"]:
        del c["dsrf3d_turns"]  # a grid recorded before test-time turns: scored from the saved models on resume
    rec.write_text(json.dumps(old))
    assert run_grid(store, p, tmp_path / "grid", log=lambda m: None) == cells
    # a model added later is trained on each recorded cell's dataset; the cells are not simulated again and the
    # finished methods keep their records (fails if the models are part of the resume key: the grid restarts)
    model_file = tmp_path / "grid" / "grid.snr1000.tilt60.dsrf3d.keras"
    stamp = model_file.stat().st_mtime_ns
    more = run_grid(store, replace(p, models=("dsrf3d", "inception3d")), tmp_path / "grid", log=lambda m: None)
    assert [(c["snr"], c["tilt"]) for c in more] == [(1000.0, 60.0), (0.5, 60.0)]
    for c, c0 in zip(more, cells):
        assert {k: c[k] for k in c0} == c0 and 0 <= c["inception3d"] <= 1 and "inception3d_s" in c
    assert model_file.stat().st_mtime_ns == stamp


def test_leave_one_out_on_a_tiny_set(tmp_path):
    from tomoflow.experiments.leave_one_out import LeaveOneOutParams, most_enriched, run_leave_one_out

    import numpy as np

    groups, is_c = np.array([0, 0, 1, 1, 1]), np.array([1, 0, 1, 1, 0], bool)
    assert most_enriched(groups, is_c, [0, 1], "share") == (1, 2 / 3, 2)
    # a singleton of C against a group of 20 holding 18 C, in a population of 100 with 20 C
    groups = np.r_[0, np.ones(20, int), np.full(79, 2)]
    is_c = np.r_[True, np.arange(20) < 18, np.zeros(79, bool)]
    assert most_enriched(groups, is_c, [0, 1, 2], "share") == (0, 1.0, 1)
    assert most_enriched(groups, is_c, [0, 1, 2]) == (1, 0.9, 18)
    # a pure population: every group has P = 1, so the larger count of C wins
    assert most_enriched(np.array([0, 1, 1, 2]), np.ones(4, bool), [0, 1, 2]) == (1, 1.0, 2)
    # nearly pure (34 C of 35): a singleton of C (P = 0.97) is not significant; the group with most C wins
    assert most_enriched(np.r_[0, np.ones(34, int)], np.r_[True, np.arange(34) < 33], [0, 1]) == (1, 33 / 34, 33)
    assert most_enriched(np.r_[0, np.ones(34, int)], np.r_[True, np.arange(34) < 33], [0, 1], "share") == (0, 1.0, 1)
    with pytest.raises(ValueError, match="unknown enrichment rule 'max'"):
        most_enriched(groups, is_c, [0], "max")
    store = Store.create(tmp_path / "l.zarr")
    p = LeaveOneOutParams(structures=("6zu5", "3o21"), snr=1000.0, per_class=12, epochs=2, box=16, voxel_size=18.4,
                          k=3, classes=2, iterations=1)
    # a subset first (``left_out``): only that class runs; the whole run then adds the other and keeps its record
    part = run_leave_one_out(store, replace(p, left_out=("3o21",)), tmp_path / "loo", log=lambda m: None)
    assert [r["class"] for r in part] == ["3o21"]
    logged = []
    res = run_leave_one_out(store, p, tmp_path / "loo", log=logged.append)
    assert [r["class"] for r in res] == ["6zu5", "3o21"] and len(logged) == 1 and res[1] == part[0]
    for r in res:
        assert r["members_of_c"] == 12 and 0 < r["cluster_share"] <= 1
        # the discrepancy recorded is that of the saved average to C's true map, in nm: recomputed here, and
        # within what a 16-voxel box of 1.84 nm resolves (Nyquist 3.68 nm .. the first shell, 29.44 nm). Fails if
        # run_class records the resolution in Å (`d["resolution_A"]`) or against another class's map.
        from tomoflow.kernels.fsc import structural_discrepancy
        from tomoflow.simulate.templates import structure_template

        true = structure_template(r["class"], 18.4, 16, resolution=2 * 18.4)
        average = np.load(tmp_path / "loo" / f"loo.{r['class']}.average.npy")
        assert r["discrepancy_nm"] == pytest.approx(structural_discrepancy(true, average, 18.4)["discrepancy_nm"])
        assert 2 * 1.84 <= r["discrepancy_nm"] <= 16 * 1.84
    for r in res:  # the chosen cluster holds more of C than the set does (12 of 36)
        assert r["cluster_share"] > 12 / 36
    assert all(r["trained"] for r in res)
    assert run_leave_one_out(store, p, tmp_path / "loo", log=lambda m: (_ for _ in ()).throw(AssertionError)) == res
    # only a later step changes: the classes rerun, the models trained without each class are reused
    again = run_leave_one_out(store, replace(p, enrichment="share", classes=3), tmp_path / "loo", log=lambda m: None)
    assert [r["class"] for r in again] == ["6zu5", "3o21"] and not any(r["trained"] for r in again)


def test_leave_one_out_with_open_set_features(tmp_path):
    """The protocol with ``features: openset``: an open-set network (cosine head) trained without C, its
    normalised embedding of the test set clustered. Fails if the CNN's logits are clustered instead (2 wide, not
    unit rows) or if the class is trained with C."""
    import numpy as np

    from tomoflow.experiments.leave_one_out import LeaveOneOutParams, run_leave_one_out
    from tomoflow.ml.training import load_trained
    from tomoflow.store import ParticleSet

    store = Store.create(tmp_path / "l.zarr")
    p = LeaveOneOutParams(structures=("6zu5", "3o21"), snr=1000.0, per_class=12, epochs=2, box=16, voxel_size=18.4,
                          k=3, classes=2, iterations=1, features="openset")
    res = run_leave_one_out(store, p, tmp_path / "loo", log=lambda m: None)
    assert [r["class"] for r in res] == ["6zu5", "3o21"] and all(r["trained"] for r in res)
    ps = ParticleSet(store, "loo.test")
    for r in res:
        f = np.asarray(ps.array(f"loo_{r['class']}")[:])
        assert f.shape == (36, 64) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-2)  # bf16 here
        _, meta = load_trained(tmp_path / "loo" / f"loo.without-{r['class']}.openset-dsrf3d.keras")
        assert r["class"] not in meta["class_names"] and meta["feature_layer"] == "embedding_norm"
        assert 2 * 1.84 <= r["discrepancy_nm"] <= 16 * 1.84 and r["cluster_share"] > 12 / 36


def test_scale_recipes_give_each_model_its_optimizer_and_epochs():
    import keras

    from tomoflow.experiments.accuracy_grid import SCALES, train_params
    from tomoflow.ml.training import make_optimizer
    from tomoflow.params import TrainParams

    small = dict(SCALES["small"])
    assert train_params(small, "dsrf3d").epochs == 40 and train_params(small, "inception3d").epochs == 20
    tp = train_params(small, "dsrf3d", seed=3)
    assert (tp.optimizer, tp.learning_rate, tp.seed) == ("adam", 1e-3, 3)
    assert isinstance(make_optimizer(tp), keras.optimizers.Adam)
    paper = train_params(dict(SCALES["paper"]), "inception3d")
    opt = make_optimizer(paper)
    assert isinstance(opt, keras.optimizers.SGD) and opt.nesterov and paper.epochs == 20
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer(TrainParams(optimizer="rmsprop"))


def test_experiment_stages_refuse_an_unknown_model_before_running():
    """A misspelt CNN in the Table 2 grid or leave-one-out is refused when the pipeline is read (one line), not
    after the first cell's simulation; the names are the registered models'."""
    from tomoflow import options as O
    from tomoflow.experiments.leave_one_out import LeaveOneOutParams
    from tomoflow.ml.models import MODELS
    from tomoflow.params import MODEL_NAMES

    assert MODEL_NAMES == tuple(MODELS)
    with pytest.raises(ValueError, match="'models' must be .*got 'nonsense'"):
        O.check(GridParams, {"models": ["dsrf3d", "nonsense"]}, where="s")
    with pytest.raises(ValueError, match="'model' must be .*got 'dsrf'"):
        O.check(LeaveOneOutParams, {"model": "dsrf"}, where="s")
    with pytest.raises(ValueError, match="'left_out' must name structures of the set .*got '1ake'"):
        O.check(LeaveOneOutParams, {"left_out": ["6zu5", "1ake"]}, where="s")
    with pytest.raises(ValueError, match="'left_out' must name .*got '6zu5'"):  # the set named by `structures`
        O.check(LeaveOneOutParams, {"structures": ["3o21", "2nwl"], "left_out": ["6zu5"]}, where="s")
    assert O.check(LeaveOneOutParams, {"left_out": ["6wg6"]}, where="s")["left_out"] == ("6wg6",)
    assert O.check(GridParams, {"models": ["cb3d"]}, where="s")["models"] == ("cb3d",)
