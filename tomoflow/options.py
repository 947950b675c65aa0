"""Command-line options and pipeline-schema entries made from a Params dataclass (:mod:`tomoflow.params`).

One :class:`Option` per field, nested dataclass fields flattened (``AverageParams.align.coarse_step`` is
the option ``angular_step``). An option's public name is the pipeline key and, as ``--name-with-dashes``,
the command-line flag; defaults come from the dataclass only.

* :func:`add_arguments` / :func:`from_namespace`: argparse options and the instance from parsed args;
* :func:`check` / :func:`build`: type-check a pipeline mapping of public names (defaults filled in) and
  the instance from such a mapping;
* :func:`options`, :func:`schema`, :func:`defaults`: what a class offers.

Bad values (a wrong type, a choice not allowed, one the dataclass rejects) raise ValueError.
Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from dataclasses import dataclass

__all__ = ["Option", "options", "schema", "defaults", "add_arguments", "from_namespace", "check", "build"]

_SCALARS = (bool, int, float, str)
_TYPE_WORDS = {bool: "bool", int: "int", float: "int or float", str: "str"}
_ONE = {bool: "true or false", int: "int", float: "number", str: "string"}
_PLURAL = {bool: "true/false values", int: "ints", float: "numbers", str: "strings"}


@dataclass(frozen=True)
class Option:
    """One parameter in its public form.

    ``type``: the (element) type, one of bool, int, float, str; ``nargs``: None for a scalar, "+" for a
    tuple of any length, n for a tuple of exactly n; ``optional``: None is allowed; ``path``: attribute names
    from the Params class down to the field (empty for options not in a class); ``xyz``: a (z, y, x) field
    whose public form is X Y Z."""

    name: str
    type: type = str
    default: object = None
    help: str = ""
    choices: tuple | None = None
    nargs: int | str | None = None
    optional: bool = False
    path: tuple[str, ...] = ()
    xyz: bool = False
    aliases: tuple[str, ...] = ()
    short: str | None = None
    metavar: object = None
    required: bool = False

    @property
    def kind(self) -> str:
        """What a value must be, in words (for error messages)."""
        if self.choices is not None and self.nargs is None:
            k = _either(self.choices)
        elif self.nargs is None:
            k = _TYPE_WORDS[self.type]
        elif self.nargs == "+":
            k = f"a list of {_PLURAL[self.type]} (or one {_ONE[self.type]})"
        else:
            k = f"a list of {self.nargs} {_PLURAL[self.type]}"
        return k + (" or null" if self.optional else "")

    @property
    def dest(self) -> str:
        return self.name

    @property
    def flags(self) -> list[str]:
        long = ["--" + n.replace("_", "-") for n in (self.name, *self.aliases)]
        return ([self.short] if self.short else []) + long

    def coerce(self, value, where: str = ""):
        """``value`` (from a pipeline file) in public form, or ValueError naming the key and what it must be."""
        if value is None and self.optional:
            return None
        if self.nargs is None:
            if not _scalar_ok(value, self.type):
                raise ValueError(f"{where}: '{self.name}' must be {self.kind}, got {value!r}")
            self._check_choice(value, where)
            return value
        if not isinstance(value, (list, tuple)):
            if self.nargs not in ("+", 1):
                raise ValueError(f"{where}: '{self.name}' must be {self.kind}, got {value!r}")
            value = (value,)
        if (self.nargs != "+" and len(value) != self.nargs) or not all(_scalar_ok(v, self.type) for v in value):
            raise ValueError(f"{where}: '{self.name}' must be {self.kind}, got {list(value)!r}")
        for v in value:
            self._check_choice(v, where)
        return tuple(value)

    def _check_choice(self, v, where):
        if self.choices is not None and v not in self.choices:
            raise ValueError(f"{where}: '{self.name}' must be {_either(self.choices)}, got {v!r}")


def _either(choices) -> str:
    """'a' or 'b'; 'a', 'b' or 'c'."""
    words = [repr(c) for c in choices]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _scalar_ok(v, t) -> bool:
    if t is bool:
        return isinstance(v, bool)
    if isinstance(v, bool):  # never a number or a string
        return False
    if t is float:
        return isinstance(v, (int, float))  # ints are kept as given (resume keys of specs stay as they were)
    return isinstance(v, t)


def _field_type(tp, where: str):
    """(type, nargs, optional) of a field annotation."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{where}: unsupported type {tp}")
        optional, tp = True, args[0]
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            elem, nargs = args[0], "+"
        elif args and all(a is args[0] for a in args):
            elem, nargs = args[0], len(args)
        else:
            raise TypeError(f"{where}: unsupported tuple type {tp} (use tuple[T, ...] or tuple[T, T, ...])")
    else:
        elem, nargs = tp, None
    if elem not in _SCALARS:
        raise TypeError(f"{where}: unsupported type {tp}")
    return elem, nargs, optional


def _is_params(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.lru_cache(maxsize=None)
def _options(cls) -> tuple[Option, ...]:
    if not _is_params(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    out: list[Option] = []
    _collect(cls, cls(), (), out)
    seen: dict[str, Option] = {}
    for o in out:
        for n in (o.name, *o.aliases):
            if n in seen:
                raise ValueError(f"{cls.__name__}: public name '{n}' of {'.'.join(o.path)} is also that of "
                                 f"{'.'.join(seen[n].path)}")
            seen[n] = o
    return tuple(out)


def _collect(cls, instance, prefix: tuple, out: list) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, path, value = hints[f.name], prefix + (f.name,), getattr(instance, f.name)
        if _is_params(tp):
            _collect(tp, value, path, out)
            continue
        md = f.metadata
        elem, nargs, optional = _field_type(tp, f"{cls.__name__}.{f.name}")
        xyz = bool(md.get("xyz"))
        if xyz and not isinstance(nargs, int):
            raise TypeError(f"{cls.__name__}.{f.name}: xyz needs a fixed-length tuple")
        default = tuple(value[::-1]) if xyz and value is not None else value
        metavar = md.get("metavar")
        if metavar is None and xyz:
            metavar = ("X", "Y", "Z")[-nargs:] if nargs <= 3 else None
        out.append(Option(name=md.get("name") or f.name, type=elem, default=default, help=md.get("help") or "",
                          choices=md.get("choices"), nargs=nargs, optional=optional, path=path, xyz=xyz,
                          aliases=tuple(md.get("aliases") or ()), short=md.get("short"), metavar=metavar))


def options(cls) -> list[Option]:
    """One :class:`Option` per field of ``cls``, nested dataclasses flattened, in field order."""
    return list(_options(cls))


def schema(cls, *, exclude=()) -> dict[str, Option]:
    """Public name -> :class:`Option`, without the names in ``exclude``."""
    _known(cls, exclude, "exclude")
    return {o.name: o for o in _options(cls) if o.name not in exclude}


def defaults(cls) -> dict:
    """Public name -> default (public form: tuples, X Y Z for xyz fields)."""
    return {o.name: o.default for o in _options(cls)}


def _known(cls, names, what: str) -> None:
    have = {o.name for o in _options(cls)}
    bad = sorted(set(names) - have)
    if bad:
        raise ValueError(f"{cls.__name__} has no option '{bad[0]}' (given in {what}; have: {', '.join(sorted(have))})")


def _construct(cls, public: dict):
    """The instance of ``cls`` from a complete dict of public name -> public value."""
    tree: dict = {}
    for o in _options(cls):
        v = public[o.name]
        if isinstance(v, list):
            v = tuple(v)
        if o.xyz and v is not None:
            v = tuple(v[::-1])
        node = tree
        for p in o.path[:-1]:
            node = node.setdefault(p, {})
        node[o.path[-1]] = v
    try:
        return _make(cls, tree)
    except TypeError as exc:
        raise ValueError(f"{cls.__name__}: {exc}") from None


def _make(cls, tree: dict):
    hints = typing.get_type_hints(cls)
    kw = {}
    for f in dataclasses.fields(cls):
        if f.init and f.name in tree:
            kw[f.name] = _make(hints[f.name], tree[f.name]) if _is_params(hints[f.name]) else tree[f.name]
    return cls(**kw)


# ---- command line -----------------------------------------------------------------------------------------
def _show(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return " ".join(_show(x) for x in v) if v else "none"
    return str(v)


def _marker(cls) -> str:
    return f"_options_of_{cls.__module__}.{cls.__qualname__}"


def add_arguments(parser, cls, *, exclude=(), defaults: dict | None = None) -> None:
    """Add an argparse option per :class:`Option` of ``cls`` (but those in ``exclude``) to ``parser`` (or a group).

    bool: ``--name`` / ``--no-name``; tuples: nargs "+" or a fixed count; defaults are the dataclass's,
    shown at the end of the help text, unless ``defaults`` (public name -> value) overrides one."""
    defaults = dict(defaults or {})
    _known(cls, exclude, "exclude")
    _known(cls, defaults, "defaults")
    added = []
    for o in _options(cls):
        if o.name in exclude:
            continue
        default = defaults.get(o.name, o.default)
        help = o.help.replace("%", "%%")
        if default is not None:
            help += (" " if help else "") + f"(default {_show(default)})"
        kw = {"dest": o.dest, "default": list(default) if isinstance(default, tuple) else default, "help": help}
        if o.type is bool and o.nargs is None:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = o.type
            if o.nargs is not None:
                kw["nargs"] = o.nargs
            if o.choices is not None:
                kw["choices"] = list(o.choices)
            if o.metavar is not None:
                kw["metavar"] = o.metavar
        parser.add_argument(*o.flags, **kw)
        added.append(o.name)
    parser.set_defaults(**{_marker(cls): tuple(added)})


def from_namespace(cls, ns, **overrides):
    """The instance of ``cls`` from parsed arguments; ``overrides`` (public name -> public value) win, and
    options not added by :func:`add_arguments` take their defaults. ValueError when the dataclass rejects it."""
    _known(cls, overrides, "overrides")
    added = getattr(ns, _marker(cls), None)
    public = {}
    for o in _options(cls):
        if o.name in overrides:
            public[o.name] = overrides[o.name]
        elif (added is None or o.name in added) and hasattr(ns, o.dest):
            public[o.name] = getattr(ns, o.dest)
        else:
            public[o.name] = o.default
    return _construct(cls, public)


# ---- pipeline files -----------------------------------------------------------------------------------------
def check(cls, given, *, where: str, exclude=(), extra=()) -> dict:
    """``given`` (a pipeline mapping of public names) type-checked, with defaults filled in: public name -> value.

    ``exclude``: options of ``cls`` not allowed here (set by the caller); ``extra``: further :class:`Option`
    (keys of the stage itself, not of ``cls``), checked and filled in alike (``required`` ones must be given).
    Aliases are accepted and returned under the public name. A scalar is accepted for a list. The values
    of ``cls`` must also make a valid instance. Errors: ValueError starting with ``where``."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValueError(f"{where}: parameters must be a mapping, not {type(given).__name__}")
    spec = dict(schema(cls, exclude=exclude))
    for o in extra:
        if o.name in spec:
            raise ValueError(f"{where}: extra key '{o.name}' is also an option of {cls.__name__}")
        spec[o.name] = o
    names = {n: o for o in spec.values() for n in (o.name, *o.aliases)}
    out: dict = {}
    keys: dict = {}  # public name -> the key given for it
    for key, value in given.items():
        o = names.get(key)
        if o is None:
            raise ValueError(f"{where}: unknown key '{key}' (allowed: {', '.join(spec)})")
        if o.name in out:
            raise ValueError(f"{where}: '{keys[o.name]}' and '{key}' are the same parameter; give one")
        out[o.name], keys[o.name] = o.coerce(value, where), key
    for o in spec.values():
        if o.name not in out:
            if o.required:
                raise ValueError(f"{where}: missing required key '{o.name}'")
            out[o.name] = o.default
    result = {o.name: out[o.name] for o in spec.values()}  # in the schema's order
    own = {k: v for k, v in result.items() if k in _names(cls)}
    try:
        _construct(cls, {**defaults(cls), **own})  # what the dataclass rejects is reported now
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return result


def _names(cls) -> set[str]:
    return {o.name for o in _options(cls)}


def build(cls, values: dict, *, ignore=()):
    """The instance of ``cls`` from public name -> value (missing names: defaults; aliases accepted).

    Names in ``ignore`` (strings or :class:`Option`, e.g. a stage's own keys) are skipped; any other name that
    is not an option of ``cls`` is a ValueError, as is a value of the wrong type or one the dataclass rejects."""
    skip = {o.name if isinstance(o, Option) else o for o in ignore}
    given = {k: v for k, v in values.items() if k not in skip}
    return _construct(cls, check(cls, given, where=cls.__name__))
