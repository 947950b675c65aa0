"""The layers' import rules (ARCHITECTURE.md), the one source of truth for parameters, and the front door.

Imports are read from the source (every ``import`` / ``from ... import``, at the top of a module or inside a
function: a lazy import is still a dependency), so the rules hold for every code path, not only for what one
test happens to import."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "tomoflow"

# layer (module prefix) -> modules it must never import
PURE = ("tomoflow.store", "tomoflow.engine", "tomoflow.ops", "tomoflow.pipeline", "tomoflow.cli", "tomoflow.report",
        "tomoflow.experiments", "dask", "distributed")
RULES = {
    "tomoflow.kernels": PURE + ("tomoflow.ml", "tomoflow.simulate", "tensorflow", "keras"),
    "tomoflow.ml": PURE + ("tomoflow.simulate",),
    "tomoflow.simulate": PURE + ("tomoflow.ml",),
    "tomoflow.io": PURE + ("tomoflow.ml", "tomoflow.simulate"),
    "tomoflow.params": PURE + ("tomoflow.ml", "tomoflow.simulate", "tomoflow.io", "numpy"),
    "tomoflow.options": PURE + ("tomoflow.ml", "tomoflow.simulate", "tomoflow.io", "tomoflow.params", "numpy"),
    "tomoflow.errors": PURE + ("tomoflow.ml", "tomoflow.simulate", "tomoflow.io", "tomoflow.kernels"),
    "tomoflow.store": ("tomoflow.engine", "tomoflow.ops", "tomoflow.pipeline", "tomoflow.cli", "tomoflow.report",
                       "tomoflow.experiments", "tomoflow.ml", "distributed"),
    "tomoflow.engine": ("tomoflow.ops", "tomoflow.pipeline", "tomoflow.cli", "tomoflow.report", "tomoflow.experiments",
                        "tomoflow.kernels", "tomoflow.ml", "tomoflow.simulate"),
    "tomoflow.ops": ("tomoflow.pipeline", "tomoflow.cli", "tomoflow.report", "tomoflow.experiments"),
    "tomoflow.report": ("tomoflow.pipeline", "tomoflow.cli", "tomoflow.experiments"),
}
ONLY_FROM = {  # a module only these layers may import
    "tomoflow.experiments": ("tomoflow.experiments", "tomoflow.pipeline", "tomoflow.cli"),
    "tomoflow.cli": ("tomoflow.cli", "tomoflow.__main__"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, text: str | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved; ``from a import b`` gives
    ``a.b`` as well as ``a``, since b may be a submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def modules():
    return sorted(PKG.rglob("*.py"))


def violations(files=None, texts=None) -> list[str]:
    bad = []
    for f in files or modules():
        me = module_name(f)
        deps = imports_of(f, (texts or {}).get(f))
        for layer, banned in RULES.items():
            if _within(me, layer):
                bad += [f"{me} imports {d}" for d in sorted(deps) for b in banned if _within(d, b)]
        for target, allowed in ONLY_FROM.items():
            if not any(_within(me, a) for a in allowed):
                bad += [f"{me} imports {d}" for d in sorted(deps) if _within(d, target)]
    return bad


def test_layers_import_only_what_their_rules_allow():
    assert violations() == []


def test_the_rule_check_catches_a_forbidden_import():
    """The checker itself: a kernel that imports the store (inside a function too), and a library module that
    imports the experiments, are both reported (the check is not vacuous)."""
    fake = PKG / "kernels" / "geometry.py"
    text = fake.read_text() + "\ndef f():\n    from ..store import Store\n    from ..experiments import stages\n"
    found = violations([fake], {fake: text})
    assert "tomoflow.kernels.geometry imports tomoflow.store" in found
    assert any("imports tomoflow.experiments" in v for v in found)


def test_cli_modules_do_not_import_each_other():
    """Each verb group's module uses only the shared command shape (cli.common); only main imports the groups."""
    for f in (PKG / "cli").glob("*_cmds.py"):
        deps = {d for d in imports_of(f) if _within(d, "tomoflow.cli")}
        assert deps <= {"tomoflow.cli", "tomoflow.cli.common"} | {f"tomoflow.cli.common.{n}" for n in
                                                                  ("add_cluster_args", "add_params", "params",
                                                                   "store_and_cluster", "writable_store",
                                                                   "EXIT_INPUT")}, (f.name, deps)


def test_import_tomoflow_is_light():
    """The front door is lazy: importing tomoflow (or building the CLI parser) loads no numpy, dask or keras."""
    code = ("import sys, tomoflow, tomoflow.cli.main as m; m.build_parser(); "
            "print(sorted(k for k in ('numpy', 'dask', 'distributed', 'keras', 'zarr', 'scipy') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_front_door_names(tmp_path):
    import tomoflow as tf

    from tomoflow import ops, params

    assert tf.DogParams is params.DogParams and tf.Store.__name__ == "Store"
    assert tf.pick_dog.__wrapped__ is ops.pick_dog and tf.kernels.rotate_volume.__module__ == "tomoflow.kernels.geometry"
    for verb in tf.VERBS:
        assert callable(getattr(tf, verb)), verb
    with pytest.raises(AttributeError):
        tf.no_such_thing  # noqa: B018


# ---- one source of truth for parameters ---------------------------------------------------------------------
def _commands():
    """(command words, parser, Params classes it takes) for every command built from Params."""
    from tomoflow.cli.main import build_parser
    from tomoflow.params import (AverageParams, CrowdedSpec, DatasetSpec, DogParams, EvaluateParams, ExtractParams,
                                 FeatureParams, FilterParams, ImportParams, KMeansParams, MatchParams, RifParams,
                                 TrainParams)
    from tomoflow.params import SaliencyDenoiseParams, SaliencyPickParams

    table = {("import-tomogram",): ImportParams, ("simulate", "subtomograms"): DatasetSpec,
             ("simulate", "tomogram"): CrowdedSpec, ("filter",): FilterParams, ("pick", "dog"): DogParams,
             ("pick", "template"): MatchParams, ("extract",): ExtractParams, ("evaluate", "picks"): EvaluateParams,
             ("train",): TrainParams, ("features",): FeatureParams, ("rif-svm",): RifParams,
             ("cluster",): KMeansParams, ("average",): AverageParams,
             ("pick", "saliency"): SaliencyPickParams, ("denoise",): SaliencyDenoiseParams}
    root = build_parser()

    def sub(parser, word):
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return action.choices[word]

    out = []
    for words, cls in table.items():
        p = root
        for w in words:
            p = sub(p, w)
        out.append((words, p, cls))
    return out


def test_every_verb_has_params_and_the_cli_defaults_are_theirs():
    from tomoflow import options

    for words, parser, cls in _commands():
        dests = {a.dest: a for a in parser._actions}
        for o in options.options(cls):
            if words == ("filter",) and o.name == "filter":  # the positional FILTER argument
                continue
            assert o.dest in dests, (words, o.name)  # every field reachable from the command line
            default = dests[o.dest].default
            assert (tuple(default) if isinstance(default, list) else default) == o.default, (words, o.name)
        assert options.from_namespace(cls, parser.parse_args(_required(words))) == cls() or words == ("filter",)


def _required(words):
    return {("import-tomogram",): ["s.zarr", "t.mrc"], ("simulate", "subtomograms"): ["s", "--set", "x"],
            ("simulate", "tomogram"): ["s", "--name", "t"], ("filter",): ["s", "t", "gaussian", "--out", "f"],
            ("pick", "dog"): ["s", "t", "--out", "p"], ("pick", "template"): ["s", "t", "--out", "p", "--template", "x"],
            ("extract",): ["s", "p", "--out", "x"], ("evaluate", "picks"): ["s", "--picks", "p", "--truth", "t"],
            ("train",): ["s", "x", "-o", "m.keras"], ("features",): ["s", "x", "--model", "m"],
            ("rif-svm",): ["s", "x"], ("cluster",): ["s", "x"], ("average",): ["s", "x", "--name", "a"],
            ("pick", "saliency"): ["s", "t", "--out", "p"], ("denoise",): ["s", "t", "--out", "d"]}[words]


def test_every_stage_takes_its_params_with_their_defaults():
    """Each pipeline stage type takes every field of its Params class, with the class's defaults, and the
    CLI of the same verb has the same defaults (so a pipeline and a command line mean the same thing)."""
    from tomoflow import options
    from tomoflow.pipeline.schema import check_stage, stage_params
    from tomoflow.pipeline.stages import STAGES

    for kind, st in STAGES.items():
        if st.params is None:
            continue
        required = {o.name: "x" for o in st.keys if o.required}
        values = check_stage(kind, required, "stage 1", "f.yaml")
        for o in options.options(st.params):
            assert values[o.name] == o.default, (kind, o.name)
        params, keys = stage_params(kind, values)
        assert params == st.params(), kind
        assert set(keys) == {o.name for o in st.keys}


def test_a_changed_default_reaches_cli_and_schema(monkeypatch):
    """Change a Params default in one place: the command line and the pipeline schema both follow."""
    import dataclasses

    from tomoflow import options
    from tomoflow.params import KMeansParams
    from tomoflow.pipeline.schema import check_stage

    changed = dataclasses.make_dataclass("KMeansParams", [(f.name, f.type, dataclasses.field(
        default=7 if f.name == "k" else f.default, metadata=f.metadata)) for f in dataclasses.fields(KMeansParams)],
        frozen=True)
    monkeypatch.setattr("tomoflow.pipeline.stages.STAGES", {
        **__import__("tomoflow.pipeline.stages", fromlist=["STAGES"]).STAGES})
    from tomoflow.pipeline import stages

    stages.STAGES["cluster"] = dataclasses.replace(stages.STAGES["cluster"], params=changed)
    assert check_stage("cluster", {}, "stage 1", "f.yaml")["k"] == 7
    p = argparse.ArgumentParser()
    options.add_arguments(p, changed)
    assert p.parse_args([]).k == 7


def test_verbs_stay_functions_after_every_driver_module_is_imported():
    """A verb never shares its name with a module of ``tomoflow.ops`` (an imported submodule would shadow it)."""
    import importlib
    import inspect

    import tomoflow as tf
    from tomoflow import ops

    for f in (PKG / "ops").glob("*.py"):
        importlib.import_module(f"tomoflow.ops.{f.stem}" if f.stem != "__init__" else "tomoflow.ops")
    for name in ops.VERBS:
        assert inspect.isfunction(getattr(ops, name)), name
    for name in tf.VERBS:
        assert inspect.isfunction(getattr(tf, name).__wrapped__), name
