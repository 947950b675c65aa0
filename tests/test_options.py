"""tomoflow.params (every verb's parameters) and tomoflow.options (CLI options and pipeline checks made from them)."""

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from tomoflow import options as O
from tomoflow.experiments.accuracy_grid import GridParams
from tomoflow.experiments.leave_one_out import LeaveOneOutParams
from tomoflow.params import (ALL_PARAMS, AlignParams, AverageParams, CrowdedSpec, DatasetSpec, DogParams, DomainParams,
                             EvaluateParams, ExtractParams, FeatureParams, FilterParams, ImportParams, KMeansParams,
                             MatchParams, Microscope, RifParams, TrainParams, opt)

REPO = Path(__file__).resolve().parents[1]

# DatasetSpec().to_json() and CrowdedSpec().to_json() of the classes at commit 5ac5627 (stores use them as resume keys)
HEAD_DATASET_JSON = (
    '{"box": 40, "classes": ["6zu5", "4v8r", "5cvz", "6wg6"], "include_empty": true, "max_shift": 4.0, '
    '"method": "fourier", "microscope": {"amplitude_contrast": 0.07, "cs_mm": 2.0, "defocus_um": -5.0, "mtf": true, '
    '"voltage_kv": 300.0}, "per_class": 100, "resolution": 9.2, "seed": 0, "snrs": [0.1], "tilt_axis": 0.0, '
    '"tilt_ranges": [60.0], "tilt_step": 2.0, "voxel_size": 9.2}')
HEAD_CROWDED_JSON = (
    '{"box": 40, "classes": ["6zu5", "4v8r", "5cvz", "6wg6", "3o21"], "microscope": {"amplitude_contrast": 0.07, '
    '"cs_mm": 2.0, "defocus_um": -5.0, "mtf": true, "voltage_kv": 300.0}, "n_particles": 100, "resolution": 9.2, '
    '"seed": 0, "shape": [100, 256, 256], "snr": 0.1, "tilt_range": 60.0, "tilt_step": 2.0, "voxel_size": 9.2}')
# DatasetSpec(classes=("a",), snrs=(0.5, inf), tilt_ranges=(40.0,), include_empty=False, box=16, microscope={...})
HEAD_DATASET_JSON_2 = (
    '{"box": 16, "classes": ["a"], "include_empty": false, "max_shift": 4.0, "method": "fourier", "microscope": '
    '{"amplitude_contrast": 0.1, "cs_mm": 2.7, "defocus_um": -3.0, "mtf": false, "voltage_kv": 200.0}, '
    '"per_class": 100, "resolution": 9.2, "seed": 0, "snrs": [0.5, Infinity], "tilt_axis": 0.0, "tilt_ranges": '
    '[40.0], "tilt_step": 2.0, "voxel_size": 9.2}')

ALL = ALL_PARAMS + (GridParams, LeaveOneOutParams)  # the experiments keep theirs beside them
NAMES = [c.__name__ for c in ALL]


def parse(cls, *argv, **kw):
    p = argparse.ArgumentParser()
    O.add_arguments(p, cls, **kw)
    return O.from_namespace(cls, p.parse_args([str(a) for a in argv]))


def get(obj, path):
    for p in path:
        obj = getattr(obj, p)
    return obj


# ---- defaults: one truth ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=NAMES)
def test_defaults_are_the_dataclass_defaults(cls):
    d, inst = O.defaults(cls), cls()
    assert list(d) == [o.name for o in O.options(cls)]
    for o in O.options(cls):
        v = get(inst, o.path)
        assert d[o.name] == (tuple(v[::-1]) if o.xyz else v), o.name
    assert O.build(cls, d) == inst
    assert O.build(cls, {}) == inst


@pytest.mark.parametrize("cls", ALL, ids=NAMES)
def test_argparse_without_options_gives_the_defaults(cls):
    assert parse(cls) == cls()


@pytest.mark.parametrize("cls", ALL, ids=NAMES)
def test_check_of_nothing_fills_every_default(cls):
    assert O.check(cls, {}, where="s") == O.defaults(cls)
    assert O.check(cls, None, where="s") == O.defaults(cls)


def test_public_names_and_paths():
    by = {o.name: o.path for o in O.options(AverageParams)}
    assert by == {"classes": ("classes",), "iterations": ("iterations",), "seed": ("seed",),
                  "angular_step": ("align", "coarse_step"), "fine_step": ("align", "fine_step"),
                  "candidates": ("align", "candidates"), "max_shift": ("align", "max_shift"),
                  "lowpass": ("align", "lowpass"), "from_poses": ("from_poses",), "start_lowpass": ("start_lowpass",)}
    assert [o.name for o in O.options(DogParams)] == ["sigma", "k", "polarity", "threshold", "min_distance", "level"]
    ds = O.schema(DatasetSpec)
    assert ds["structures"].path == ("classes",) and ds["snr"].path == ("snrs",)
    assert ds["tilt_range"].path == ("tilt_ranges",) and ds["empty"].path == ("include_empty",)
    assert ds["voltage"].path == ("microscope", "voltage_kv") and ds["defocus"].path == ("microscope", "defocus_um")
    assert O.schema(CrowdedSpec)["particles"].path == ("n_particles",)
    assert "microscope" not in ds and "align" not in O.schema(AverageParams)


def test_option_kinds():
    ds, cs, ip = O.schema(DatasetSpec), O.schema(CrowdedSpec), O.schema(ImportParams)
    assert (ds["snr"].type, ds["snr"].nargs, ds["snr"].optional) == (float, "+", False)
    assert (ds["structures"].type, ds["structures"].nargs) == (str, "+")
    assert (ds["empty"].type, ds["empty"].nargs) == (bool, None)
    assert (cs["shape"].type, cs["shape"].nargs, cs["shape"].xyz) == (int, 3, True)
    assert (ip["tilt_range"].type, ip["tilt_range"].nargs, ip["tilt_range"].optional) == (float, 2, True)
    assert (ip["voxel_size"].type, ip["voxel_size"].optional) == (float, True)
    assert O.schema(MatchParams)["min_distance"].optional and not O.schema(DogParams)["min_distance"].optional
    assert O.schema(DogParams)["polarity"].choices == ("dark", "bright", "auto")
    assert O.schema(FilterParams)["option"].choices == (1, 2)


def test_schema_exclude():
    s = O.schema(ExtractParams, exclude=("chunk",))
    assert list(s) == ["box", "level", "edge", "flip_bright"]
    with pytest.raises(ValueError, match="no option 'nope'"):
        O.schema(ExtractParams, exclude=("nope",))


# ---- command line ----------------------------------------------------------------------------------------------
def test_argparse_values_land_in_nested_fields():
    a = parse(AverageParams, "--classes", 2, "--angular-step", 15, "--max-shift", 3, "--lowpass", 0.25)
    assert a == AverageParams(classes=2, align=AlignParams(coarse_step=15.0, max_shift=3.0, lowpass=0.25))
    d = parse(DogParams, "--sigma", 30, "--min-distance", 50, "--polarity", "bright", "--level", 0)
    assert (d.sigma_A, d.min_distance_A, d.polarity, d.level) == (30.0, 50.0, "bright", 0)
    s = parse(DatasetSpec, "--structures", "a", "b", "--snr", 0.5, "inf", "--tilt-range", 40, 60, "--voltage", 200,
              "--defocus", -3, "--no-mtf", "--no-empty", "--method", "wbp", "--per-class", 7)
    assert s.classes == ("a", "b") and s.snrs == (0.5, float("inf")) and s.tilt_ranges == (40.0, 60.0)
    assert s.microscope == Microscope(voltage_kv=200.0, defocus_um=-3.0, mtf=False)
    assert (s.include_empty, s.method, s.per_class) == (False, "wbp", 7)
    assert isinstance(s.classes, tuple) and isinstance(s.snrs, tuple)


def test_todays_command_lines_still_parse():
    """Flags of the commands at HEAD (tomoflow/cli/*.py) are the public names."""
    parse(DatasetSpec, "--structures", "4v8r", "--per-class", 3, "--snr", 0.1, "--tilt-range", 60, "--no-empty",
          "--method", "fourier", "--max-shift", 2, "--box", 16, "--voxel-size", 12, "--resolution", 24,
          "--tilt-step", 3, "--tilt-axis", 5, "--seed", 1, "--voltage", 300, "--cs", 2, "--defocus", -5,
          "--amplitude-contrast", 0.07, "--no-mtf")
    c = parse(CrowdedSpec, "--shape", 64, 48, 32, "--structures", "3o21", "--particles", 5, "--snr", 0.5,
              "--tilt-range", 50)
    assert (c.shape, c.n_particles, c.snr, c.tilt_range) == ((32, 48, 64), 5, 0.5, 50.0)
    i = parse(ImportParams, "--name", "t", "--voxel-size", 8.5, "--chunk", 16, "--levels", 2,
              "--tilt-range", -50, 50, "--tilt-axis", 3)
    assert i == ImportParams(name="t", voxel_size=8.5, chunk=16, levels=2, tilt_range=(-50.0, 50.0), tilt_axis=3.0)
    assert parse(KMeansParams, "-k", 6).k == 6 and parse(KMeansParams, "--k", 7, "--max-iter", 9).max_iter == 9
    t = parse(TrainParams, "--epochs", 1, "--batch-size", 8, "--learning-rate", 1e-3, "--optimizer", "adam",
              "--train-fraction", 0.6, "--rotate", 0.5, "--validation-fraction", 0, "--seed", 2)
    assert (t.epochs, t.batch_size, t.optimizer, t.rotate, t.validation_fraction) == (1, 8, "adam", 0.5, 0.0)
    assert parse(MatchParams, "--angular-step", 60, "--threshold", 4, "--min-distance", 70).min_distance_A == 70.0
    assert parse(ExtractParams, "--box", 16, "--edge", "pad").edge == "pad"
    assert parse(EvaluateParams, "--tolerance", 15).tolerance == 15.0
    assert parse(FeatureParams, "--layer", "x", "--name", "cli", "--batch-size", 4) == FeatureParams("x", "cli", 4)
    assert parse(RifParams, "--lmax", 4, "--space", "real") == RifParams(lmax=4, space="real")
    f = parse(FilterParams, "--filter", "diffusion", "--iterations", 3, "--kappa", 2, "--gamma", 0.05, "--option", 2)
    assert f.kernel_params() == {"iterations": 3, "kappa": 2.0, "gamma": 0.05, "option": 2}


def test_bool_options_on_and_off():
    assert parse(DatasetSpec, "--no-empty").include_empty is False
    assert parse(DatasetSpec, "--empty").include_empty is True
    assert parse(TrainParams, "--no-augment").augment is False
    assert parse(GridParams, "--no-rif-svm").rif_svm is False
    assert parse(CrowdedSpec, "--no-mtf").microscope.mtf is False
    with pytest.raises(SystemExit):
        parse(TrainParams, "--augment", "no")


def test_xyz_is_reversed_both_ways():
    assert O.defaults(CrowdedSpec)["shape"] == (256, 256, 100)
    assert CrowdedSpec().shape == (100, 256, 256)
    assert parse(CrowdedSpec, "--shape", 10, 20, 30).shape == (30, 20, 10)
    assert O.build(CrowdedSpec, {"shape": [10, 20, 30]}).shape == (30, 20, 10)
    assert O.check(CrowdedSpec, {"shape": [10, 20, 30]}, where="s")["shape"] == (10, 20, 30)
    with pytest.raises(SystemExit):
        parse(CrowdedSpec, "--shape", 10, 20)


def test_choices_and_types_on_the_command_line():
    for argv in (["--polarity", "grey"], ["--k", "x"], ["--level", "1.5"]):
        with pytest.raises(SystemExit):
            parse(DogParams, *argv)
    with pytest.raises(SystemExit):
        parse(FilterParams, "--option", 3)


def test_help_ends_with_the_default():
    p = argparse.ArgumentParser()
    O.add_arguments(p, DatasetSpec)
    helps = {a.dest: a.help for a in p._actions}
    assert helps["per_class"].endswith("(default 100)")
    assert helps["structures"].endswith("(default 6zu5 4v8r 5cvz 6wg6)")
    assert helps["voxel_size"].endswith("(default 9.2)")
    assert helps["empty"].endswith("(default on)")
    assert "--no-empty" in p.format_help() and "--no-mtf" in p.format_help()
    p = argparse.ArgumentParser()
    O.add_arguments(p, CrowdedSpec)
    assert {a.dest: a.help for a in p._actions}["shape"].endswith("(default 256 256 100)")


def test_exclude_and_default_override():
    p = argparse.ArgumentParser()
    p.add_argument("--name", default="stage-level")  # the command's own option of the same name
    O.add_arguments(p, ImportParams, exclude=("name",), defaults={"chunk": 64})
    ns = p.parse_args(["--name", "x"])
    assert ImportParams().chunk == 128
    assert O.from_namespace(ImportParams, ns) == ImportParams(chunk=64)  # name not taken from the other option
    assert O.from_namespace(ImportParams, ns, name="y", tilt_range=[-40, 40]) == \
        ImportParams(name="y", chunk=64, tilt_range=(-40, 40))
    with pytest.raises(SystemExit):
        p.parse_args(["--voxel-size", "1", "--levels"])
    with pytest.raises(ValueError, match="no option 'nope'"):
        O.add_arguments(argparse.ArgumentParser(), ImportParams, exclude=("nope",))
    with pytest.raises(ValueError, match="no option 'nope'"):
        O.from_namespace(ImportParams, ns, nope=1)


def test_positional_kept_by_the_command():
    """A command that takes a parameter itself (tomoflow filter's positional FILTER) excludes it and overrides."""
    p = argparse.ArgumentParser()
    p.add_argument("filter", choices=["gaussian", "dog", "diffusion"])
    O.add_arguments(p, FilterParams, exclude=("filter",))
    ns = p.parse_args(["dog", "--sigma", "3"])
    f = O.from_namespace(FilterParams, ns, filter=ns.filter)
    assert f == FilterParams(kind="dog", sigma=3.0) and f.kernel_params() == {"sigma": 3.0, "k": 1.1}


def test_dataclass_rejections_are_value_errors():
    with pytest.raises(ValueError, match="K > 1"):
        parse(DogParams, "--k", 1)
    with pytest.raises(ValueError, match="tilt ranges"):
        parse(DatasetSpec, "--tilt-range", 95)
    with pytest.raises(ValueError, match="K > 1"):
        O.build(DogParams, {"k": 1.0})
    with pytest.raises(ValueError, match="per_class"):
        O.check(DatasetSpec, {"per_class": 0}, where="stage 2 (simulate_subtomograms)")


# ---- pipeline files ------------------------------------------------------------------------------------------
def test_check_fills_defaults_and_keeps_given_values():
    r = O.check(DatasetSpec, {"snr": 0.5, "box": 16, "voxel_size": 24, "empty": False}, where="s")
    assert r == {**O.defaults(DatasetSpec), "snr": (0.5,), "box": 16, "voxel_size": 24, "empty": False}
    spec = O.build(DatasetSpec, r)
    assert (spec.snrs, spec.box, spec.voxel_size, spec.include_empty) == ((0.5,), 16, 24, False)
    a = O.build(AverageParams, O.check(AverageParams, {"classes": 1, "angular_step": 20}, where="s"))
    assert a == AverageParams(classes=1, align=AlignParams(coarse_step=20))


def test_scalar_is_accepted_for_a_list():
    r = O.check(DatasetSpec, {"snr": 0.1, "tilt_range": 60, "structures": "4v8r"}, where="s")
    assert (r["snr"], r["tilt_range"], r["structures"]) == ((0.1,), (60,), ("4v8r",))
    assert O.check(GridParams, {"snrs": [1000, 0.5], "models": "dsrf3d"}, where="s")["models"] == ("dsrf3d",)
    with pytest.raises(ValueError, match="'shape' must be a list of 3 ints"):
        O.check(CrowdedSpec, {"shape": 100}, where="s")
    with pytest.raises(ValueError, match="'tilt_range' must be a list of 2 numbers or null"):
        O.check(ImportParams, {"tilt_range": 60}, where="s")
    assert O.check(ImportParams, {"tilt_range": None}, where="s")["tilt_range"] is None
    assert O.check(ImportParams, {"tilt_range": [-60, 50]}, where="s")["tilt_range"] == (-60, 50)


def test_numbers_ints_and_bools():
    assert O.check(DogParams, {"sigma": 70}, where="s")["sigma"] == 70  # an int for a float: kept as given
    assert O.check(LeaveOneOutParams, {"voxel_size": 16}, where="s")["voxel_size"] == 16
    for cls, key, bad in [(DogParams, "sigma", True), (DogParams, "level", False), (ExtractParams, "box", 32.0),
                          (ExtractParams, "box", "32"), (DatasetSpec, "snr", [0.1, True]), (GridParams, "rif_svm", 1),
                          (GridParams, "rif_svm", "yes"), (TrainParams, "model", 3), (CrowdedSpec, "shape", [1, 2, 3.5]),
                          (MatchParams, "min_distance", "far")]:
        with pytest.raises(ValueError, match=f"stage 3 \\(x\\): '{key}' must be "):
            O.check(cls, {key: bad}, where="stage 3 (x)")
    assert O.check(MatchParams, {"min_distance": None}, where="s")["min_distance"] is None
    with pytest.raises(ValueError, match="'sigma' must be int or float, got None"):
        O.check(DogParams, {"sigma": None}, where="s")


def test_unknown_key_and_bad_choice():
    with pytest.raises(ValueError) as e:
        O.check(DogParams, {"sigma_A": 70}, where="stage 2 (pick)")
    msg = str(e.value)
    assert msg.startswith("stage 2 (pick): unknown key 'sigma_A'") and "allowed: sigma, k, polarity" in msg
    with pytest.raises(ValueError, match="'polarity' must be 'dark', 'bright' or 'auto', got 'grey'"):
        O.check(DogParams, {"polarity": "grey"}, where="s")
    with pytest.raises(ValueError, match="'edge' must be 'drop' or 'pad'"):
        O.check(ExtractParams, {"edge": "crop"}, where="s")
    with pytest.raises(ValueError, match="'option' must be 1 or 2"):
        O.check(FilterParams, {"option": 3}, where="s")
    with pytest.raises(ValueError, match="mapping"):
        O.check(DogParams, [1], where="s")
    with pytest.raises(ValueError, match="unknown key 'chunk'"):
        O.check(ExtractParams, {"chunk": 8}, where="s", exclude=("chunk",))


def test_alias_for_existing_pipelines():
    """simulate_tomograms stages say ``classes``, the command line ``--structures``: both name CrowdedSpec.classes."""
    r = O.check(CrowdedSpec, {"classes": ["6zu5"]}, where="s")
    assert r["structures"] == ("6zu5",) and "classes" not in r
    assert parse(CrowdedSpec, "--classes", "4v8r").classes == ("4v8r",)
    assert O.build(CrowdedSpec, {"classes": ["a"]}).classes == ("a",)
    with pytest.raises(ValueError, match="'classes' and 'structures' are the same parameter"):
        O.check(CrowdedSpec, {"classes": ["a"], "structures": ["b"]}, where="s")


def test_extra_stage_keys():
    extra = [O.Option("set", str, required=True), O.Option("chunk", int, 256)]
    r = O.check(DatasetSpec, {"set": "x", "box": 16}, where="s", extra=extra)
    assert r["set"] == "x" and r["chunk"] == 256 and r["box"] == 16
    with pytest.raises(ValueError, match="missing required key 'set'"):
        O.check(DatasetSpec, {}, where="s", extra=extra)
    with pytest.raises(ValueError, match="'chunk' must be int"):
        O.check(DatasetSpec, {"set": "x", "chunk": "big"}, where="s", extra=extra)
    assert O.build(DatasetSpec, r, ignore=extra).box == 16
    with pytest.raises(ValueError, match="unknown key 'set'"):
        O.build(DatasetSpec, r)


def test_pipeline_files_of_the_repository_check():
    """The keys the shipped pipelines give today are the public names (stage-only keys aside)."""
    yaml = pytest.importorskip("yaml")
    stage_keys = {"simulate_tomograms": (CrowdedSpec, {"count", "name", "truth"}),
                  "simulate_subtomograms": (DatasetSpec, {"set", "chunk"}),
                  "pick": (DogParams, {"method", "tomograms", "out", "template", "angular_step"}),
                  "evaluate_picks": (EvaluateParams, {"picks", "truth", "label"}),
                  "extract": (ExtractParams, {"picks", "out"}), "train": (TrainParams, {"set", "model_file"}),
                  "features": (FeatureParams, {"set", "model_file"}), "cluster": (KMeansParams, {"set", "features"}),
                  "average": (AverageParams, {"set", "name", "clusters", "min_members", "largest"}),
                  "accuracy_grid": (GridParams, {"out"}), "leave_one_out": (LeaveOneOutParams, {"out"})}
    files = sorted((REPO / "pipelines").glob("*.yaml"))
    if not files:
        pytest.skip("no pipelines/*.yaml in this checkout")
    seen = set()
    for f in files:
        for item in yaml.safe_load(f.read_text())["stages"]:
            kind, given = (item, {}) if isinstance(item, str) else next(iter(item.items()))
            if kind not in stage_keys:
                continue
            cls, own = stage_keys[kind]
            O.build(cls, {k: v for k, v in (given or {}).items() if k not in own})
            seen.add(kind)
    assert {"simulate_tomograms", "pick", "train", "average"} <= seen


# ---- the classes themselves ----------------------------------------------------------------------------------
def test_params_imports_no_numpy():
    code = ("import sys, tomoflow.params, tomoflow.options; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'scipy', 'zarr', 'dask')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


def test_spec_json_is_as_before():
    assert DatasetSpec().to_json() == HEAD_DATASET_JSON
    assert CrowdedSpec().to_json() == HEAD_CROWDED_JSON
    mic = {"voltage_kv": 200.0, "cs_mm": 2.7, "defocus_um": -3.0, "amplitude_contrast": 0.1, "mtf": False}
    s = DatasetSpec(classes=("a",), snrs=(0.5, float("inf")), tilt_ranges=(40.0,), include_empty=False, box=16,
                    microscope=mic)
    assert s.to_json() == HEAD_DATASET_JSON_2
    assert s.microscope == Microscope(200.0, 2.7, -3.0, 0.1, False)
    for spec in (DatasetSpec(), CrowdedSpec(), s, CrowdedSpec(shape=(5, 6, 7), microscope=mic)):
        again = type(spec).from_json(spec.to_json())
        assert again == spec and again.to_json() == spec.to_json() and isinstance(again.microscope, Microscope)
    assert DatasetSpec.from_json(HEAD_DATASET_JSON) == DatasetSpec()
    assert CrowdedSpec.from_json(HEAD_CROWDED_JSON) == CrowdedSpec()


def test_microscope_reads_like_the_former_dict():
    spec = DatasetSpec()
    assert Microscope(**spec.microscope) == spec.microscope
    assert spec.microscope["cs_mm"] == 2.0 and dict(spec.microscope) == Microscope().as_dict()
    with pytest.raises(ValueError, match="microscope"):
        DatasetSpec(microscope={"voltage": 300})


def test_spec_behaviour_kept():
    s = DatasetSpec(classes=("a", "b"), snrs=(0.1, 0.5), per_class=3)
    assert s.class_names == ["a", "b", "empty"] and s.n == 2 * 1 * 3 * 3
    assert DatasetSpec(include_empty=False).class_names == list(DatasetSpec().classes)
    for bad in ({"classes": ()}, {"box": 4}, {"snrs": (0.0,)}, {"tilt_ranges": (95.0,)}):
        with pytest.raises(ValueError):
            DatasetSpec(**bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DatasetSpec().box = 3
    assert hash(DatasetSpec()) == hash(DatasetSpec())


@pytest.mark.parametrize("cls,head", [
    (AlignParams, [("coarse_step", 30.0), ("fine_step", 2.0), ("candidates", 2), ("max_shift", 6.0), ("lowpass", None)]),
    (KMeansParams, [("k", 100), ("max_iter", 300), ("tol", 1e-4), ("init_sample", 100_000), ("seed", 0)]),
    (RifParams, [("lmax", 10), ("space", "fourier"), ("max_radius", 0.9)]),
    (DogParams, [("sigma_A", 70.0), ("k", 1.1), ("polarity", "dark"), ("threshold", 2.5), ("min_distance_A", 100.0),
                 ("level", 1)]),
    (MatchParams, [("angular_step", 30.0), ("threshold", 5.0), ("min_distance_A", None), ("level", 1)]),
    (TrainParams, [("model", "dsrf3d"), ("epochs", 20), ("batch_size", 64), ("learning_rate", 0.01), ("decay", 1e-6),
                   ("momentum", 0.9), ("train_fraction", 0.5), ("seed", 0), ("exclude", ()),
                   ("validation_fraction", 0.1), ("augment", True), ("optimizer", "sgd"), ("rotate", 0.0),
                   ("precision", "auto"), ("recover", True), ("shuffle_mb", 1000.0)]),  # resume keys leave precision
    # out when float32; recover added last (2026-12-02), then shuffle_mb (2026-12-08, with the sliding buffer, which
    # draws other batches anyway): training keys change with each, so a training checkpointed before starts over
    # information_weight 1 (was 0) and conditioning (added last, "none"): benchmarks/notes_domain.md, 2026-12-02;
    # adapt-domain's resume key holds asdict of these
    (DomainParams, [("model", "dsrf3d"), ("epochs", 20), ("adapt_epochs", 20), ("domain_weight", 1.0),
                    ("information_weight", 1.0), ("discriminator_width", 128), ("batch_size", 32), ("optimizer", "adam"),
                    ("learning_rate", 1e-3), ("adapt_learning_rate", 1e-4), ("decay", 1e-6), ("momentum", 0.9),
                    ("train_fraction", 0.5), ("validation_fraction", 0.1), ("augment", True), ("name", "domain"),
                    ("seed", 0), ("precision", "auto"), ("conditioning", "none")]),
    (GridParams, [("snrs", (1000.0, 0.5, 0.1, 0.05, 0.03)), ("tilts", (60.0, 50.0, 40.0)), ("structures", ()),
                  ("models", ("inception3d", "dsrf3d")), ("rif_svm", True), ("scale", "small"), ("per_class", 0),
                  ("epochs", 0), ("box", 0), ("voxel_size", 0.0), ("seed", 0), ("rotate", 0.0), ("precision", "auto")]),
    (LeaveOneOutParams, [("structures", ()), ("model", "dsrf3d"), ("scale", "small"), ("snr", 0.1), ("tilt", 60.0),
                         ("per_class", 0), ("epochs", 0), ("box", 0), ("voxel_size", 0.0), ("k", 0), ("classes", 3),
                         ("iterations", 5), ("threshold_nm", 7.0), ("seed", 0), ("enrichment", "hypergeometric"),
                         ("precision", "auto"), ("features", "cnn"), ("left_out", ())]),
])
def test_fields_as_at_head(cls, head):
    """Field names, order and defaults as the classes had them (asdict of them keys stage fingerprints)."""
    assert list(dataclasses.asdict(cls()).items()) == head


def test_colliding_public_names_are_refused():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        step: float = opt(1.0, name="seed", help="x")

    @dataclasses.dataclass(frozen=True)
    class Outer:
        seed: int = opt(0, help="random seed")
        inner: Inner = opt(factory=Inner, help="inner")

    with pytest.raises(ValueError, match="public name 'seed'"):
        O.options(Outer)
