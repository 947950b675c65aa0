"""The pipeline file format and its check.

A pipeline is a YAML mapping::

    name: demo                    # optional, default: the file name
    store: demo.zarr              # the project store, relative to the run's output folder
    workers: 2                    # optional: local cluster size when neither --scheduler nor --local is given
    stages:                       # run in order; each item is {TYPE: {key: value, ...}} or a bare TYPE
      - simulate_tomograms: {count: 2, particles: 300}
      - pick: {method: dog}
      ...

Every stage type (:data:`tomoflow.pipeline.stages.STAGES`) takes the fields of one Params class
(:mod:`tomoflow.params`, by their public names, with the class's defaults) plus keys of its own; an unknown
type, an unknown key, a missing required key, a value of the wrong type or one the Params class rejects is
one :class:`InputError` that names the file, the stage and the problem. Nothing runs before the whole file
checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

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


@dataclass(frozen=True)
class _NoParams:
    """The Params of a stage type that has only keys of its own."""


def check_stage(kind: str, given, where: str, path: str) -> dict:
    """The stage's parameters (public names) with defaults filled in, or an InputError naming the problem."""
    from .. import options
    from .stages import STAGES

    if kind not in STAGES:
        raise InputError(path, f"{where}: unknown stage type '{kind}' (have: {', '.join(STAGES)})")
    st = STAGES[kind]
    try:
        return options.check(st.params or _NoParams, given, where=f"{where} ({kind})", extra=st.keys)
    except ValueError as exc:
        raise InputError(path, str(exc)) from None


def stage_params(kind: str, values: dict):
    """(Params instance or None, the stage's own keys) from checked ``values``."""
    from .. import options
    from .stages import STAGES

    st = STAGES[kind]
    own = {o.name: values[o.name] for o in st.keys}
    return (options.build(st.params, values, ignore=st.keys) if st.params else None), own


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


MAX_FILE_BYTES = 1 << 20


def _loader():
    """PyYAML's safe loader without aliases: ``*name`` can make a few hundred bytes expand to gigabytes
    ("billion laughs"); pipeline files never need them."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in pipeline files",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)

    return NoAliases


def load_pipeline(path) -> Pipeline:
    """Read and check a pipeline file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(str(path), "no such pipeline file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise InputError(str(path), f"a pipeline file is at most {MAX_FILE_BYTES // 1024} KB")
    try:
        doc = yaml.load(p.read_text(), Loader=_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(str(path), f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_pipeline(doc, str(path))
