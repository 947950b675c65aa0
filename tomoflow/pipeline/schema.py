"""The pipeline file format and its check.

A pipeline is a YAML mapping::

    name: demo                    # optional, default: the file name
    store: demo.zarr              # the project store, relative to the run's output folder
    workers: 2                    # optional: local cluster size when neither --scheduler nor --local is given
    stages:                       # run in order; each item is {TYPE: {key: value, ...}} or a bare TYPE
      - simulate_tomograms: {count: 2, particles: 300}
      - pick: {method: dog}
      ...

Every stage type has a fixed set of keys with types and defaults (:data:`STAGES`); an unknown type,
an unknown key, a missing required key or a value of the wrong type is one :class:`InputError` that
names the file, the stage and the problem. Nothing runs before the whole file checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

REQUIRED = object()
STR, INT, NUM, BOOL = (str,), (int,), (int, float), (bool,)
LIST_STR, LIST_INT, LIST_NUM = ("list", str), ("list", int), ("list", (int, float))
INT_OR_ALL = ((int,), "all")

# stage type -> {key: (type, default)}; a default of REQUIRED makes the key required
STAGES: dict[str, dict[str, tuple]] = {
    "simulate_tomograms": {
        "count": (INT, 2), "name": (STR, "tomo"), "shape": (LIST_INT, [384, 384, 160]), "particles": (INT, 200),
        "classes": (LIST_STR, ["6zu5", "4v8r", "5cvz", "6wg6"]), "snr": (NUM, 0.5), "tilt_range": (NUM, 60.0),
        "voxel_size": (NUM, 9.2), "truth": (STR, "truth"), "seed": (INT, 0)},
    "simulate_subtomograms": {
        "set": (STR, REQUIRED), "structures": (LIST_STR, ["6zu5", "4v8r", "5cvz", "6wg6"]), "per_class": (INT, 100),
        "snr": (NUM, 0.1), "tilt_range": (NUM, 60.0), "box": (INT, 32), "voxel_size": (NUM, 12.0),
        "empty": (BOOL, True), "chunk": (INT, 256), "seed": (INT, 0)},
    "pick": {
        "method": (("dog", "template"), "dog"), "tomograms": (LIST_STR, []), "out": (STR, "picks"),
        "sigma": (NUM, 70.0), "k": (NUM, 1.1), "threshold": (NUM, 2.5), "min_distance": (NUM, 100.0),
        "level": (INT, 1), "template": (STR, ""), "angular_step": (NUM, 30.0)},
    "evaluate_picks": {"picks": (STR, "picks"), "truth": (STR, "truth"), "tolerance": (NUM, 80.0),
                       "label": (BOOL, True)},
    "extract": {"picks": (STR, "picks"), "out": (STR, "particles"), "box": (INT, 32), "level": (INT, 0),
                "edge": (("drop", "pad"), "drop"), "chunk": (INT, 128)},
    "train": {"set": (STR, "particles"), "model_file": (STR, "model.keras"), "model": (STR, "dsrf3d"),
              "epochs": (INT, 10), "batch_size": (INT, 32), "learning_rate": (NUM, 0.01),
              "optimizer": (("sgd", "adam"), "sgd"), "train_fraction": (NUM, 0.5), "validation_fraction": (NUM, 0.1),
              "seed": (INT, 0)},
    "features": {"set": (STR, "particles"), "model_file": (STR, "model.keras"), "layer": (STR, "logits"),
                 "name": (STR, "features"), "batch_size": (INT, 64)},
    "cluster": {"set": (STR, "particles"), "features": (STR, "features"), "k": (INT, 100), "seed": (INT, 0)},
    "average": {"set": (STR, "particles"), "name": (STR, "average"), "clusters": (INT_OR_ALL, "all"),
                "min_members": (INT, 10), "largest": (INT, 0), "classes": (INT, 1), "iterations": (INT, 3),
                "angular_step": (NUM, 30.0), "seed": (INT, 0)},
    "accuracy_grid": {
        "scale": (("small", "paper"), "small"), "snrs": (LIST_NUM, [1000, 0.5, 0.1, 0.05, 0.03]),
        "tilts": (LIST_NUM, [60, 50, 40]), "structures": (LIST_STR, []),
        "models": (LIST_STR, ["inception3d", "dsrf3d"]), "rif_svm": (BOOL, True), "per_class": (INT, 0),
        "epochs": (INT, 0), "seed": (INT, 0), "out": (STR, "table2.md")},
    "leave_one_out": {
        "scale": (("small", "paper"), "small"), "model": (STR, "dsrf3d"),
        "structures": (LIST_STR, []), "snr": (NUM, 0.1), "tilt": (NUM, 60.0), "per_class": (INT, 0),
        "epochs": (INT, 0), "box": (INT, 0), "voxel_size": (NUM, 0), "k": (INT, 0), "classes": (INT, 3),
        "iterations": (INT, 5), "threshold_nm": (NUM, 7.0), "seed": (INT, 0), "out": (STR, "leave_one_out.md"),
        "enrichment": (("hypergeometric", "share"), "hypergeometric")},
    "report": {"set": (STR, "particles"), "picks": (STR, "picks"), "truth": (STR, "truth"),
               "average": (STR, "average"), "features": (STR, "features"), "out": (STR, "report.html"),
               "tsne_points": (INT, 2000)},
}
TOP_KEYS = {"name", "store", "workers", "stages"}


@dataclass(frozen=True)
class Stage:
    type: str
    params: dict
    index: int  # 1-based position in the file


@dataclass(frozen=True)
class Pipeline:
    name: str
    store: str
    workers: int | None
    stages: tuple[Stage, ...]
    path: str


def _type_ok(value, kind) -> bool:
    if isinstance(kind, tuple) and kind and kind[0] == "list":
        return isinstance(value, list) and all(_type_ok(v, (kind[1],)) for v in value)
    if isinstance(kind, tuple) and len(kind) == 2 and kind[1] == "all":  # int list or the word "all"
        return value == "all" or (isinstance(value, list) and all(_type_ok(v, INT) for v in value))
    if kind and all(isinstance(k, str) for k in kind):  # a choice of words
        return value in kind
    if isinstance(value, bool) and bool not in kind:
        return False
    return isinstance(value, kind)


def _describe(kind) -> str:
    if kind and kind[0] == "list":
        return "a list of numbers" if isinstance(kind[1], tuple) else f"a list of {kind[1].__name__}"
    if len(kind) == 2 and kind[1] == "all":
        return "'all' or a list of int"
    if all(isinstance(k, str) for k in kind):
        return " or ".join(repr(k) for k in kind)
    return " or ".join(k.__name__ for k in kind)


def check_stage(kind: str, given, where: str, path: str) -> dict:
    """The stage's parameters with defaults filled in, or an InputError naming the problem."""
    if kind not in STAGES:
        raise InputError(path, f"{where}: unknown stage type '{kind}' (have: {', '.join(STAGES)})")
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise InputError(path, f"{where} ({kind}): parameters must be a mapping, not {type(given).__name__}")
    spec = STAGES[kind]
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise InputError(path, f"{where} ({kind}): unknown key '{unknown[0]}' (allowed: {', '.join(spec)})")
    out = {}
    for key, (t, default) in spec.items():
        if key not in given:
            if default is REQUIRED:
                raise InputError(path, f"{where} ({kind}): missing required key '{key}'")
            out[key] = default
            continue
        if not _type_ok(given[key], t):
            raise InputError(path, f"{where} ({kind}): '{key}' must be {_describe(t)}, got {given[key]!r}")
        out[key] = given[key]
    return out


def parse_pipeline(doc, path: str) -> Pipeline:
    if not isinstance(doc, dict):
        raise InputError(path, "a pipeline file is a YAML mapping with 'store' and 'stages'")
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise InputError(path, f"unknown top-level key '{unknown[0]}' (allowed: {', '.join(sorted(TOP_KEYS))})")
    if not isinstance(doc.get("store"), str) or not doc["store"]:
        raise InputError(path, "'store' (the project store's path) is required and must be a string")
    workers = doc.get("workers")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise InputError(path, f"'workers' must be a non-negative int, got {workers!r}")
    items = doc.get("stages")
    if not isinstance(items, list) or not items:
        raise InputError(path, "'stages' must be a non-empty list")
    stages = []
    for i, item in enumerate(items, 1):
        where = f"stage {i}"
        if isinstance(item, str):
            kind, given = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            kind, given = next(iter(item.items()))
        else:
            raise InputError(path, f"{where}: write each stage as 'TYPE' or 'TYPE: {{key: value}}', got {item!r}")
        stages.append(Stage(kind, check_stage(kind, given, where, path), i))
    name = doc.get("name") or Path(path).stem
    return Pipeline(str(name), doc["store"], workers, tuple(stages), path)


def load_pipeline(path) -> Pipeline:
    """Read and check a pipeline file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(str(path), "no such pipeline file")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(str(path), f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_pipeline(doc, str(path))
