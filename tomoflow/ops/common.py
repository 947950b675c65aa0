"""What every driver shares: the tomogram's blocks, and the "fresh arrays, then run the stage" sequence."""

from __future__ import annotations

from ..engine import StageRun, run_chunks
from ..store.stages import fingerprint
from ..store.tomograms import block_regions


def tomogram_blocks(shape, chunk: int) -> list:
    """The block regions (slices) of a tomogram of ``shape`` cut in cubes of ``chunk`` (one task each)."""
    return list(block_regions(shape, (chunk,) * 3))


def stage_params_changed(store, stage: str, params: dict) -> bool:
    """True when ``stage`` has no record yet or was recorded with other ``params``."""
    if not store.has("stages", stage):
        return True
    return store.attrs("stages", stage).get("fingerprint") != fingerprint(params)


def fresh_arrays(store, ps, stage: str, params: dict, arrays, task, *, client=None, progress=None,
                 fresh: bool | None = None, fresh_if: str = "missing", gpu: bool = False) -> StageRun:
    """Run ``task`` over the particle chunks of ``ps`` as engine stage ``stage``, writing per-particle ``arrays``
    ((name, tail shape, dtype, fill value, attrs) each).

    When the work is fresh the arrays are created anew (filled with their fill value) and the stage restarts;
    otherwise the stage resumes where it stopped. Fresh is ``fresh`` when given, else: ``fresh_if="missing"``
    an array is missing; ``"params"`` the stage was recorded with other ``params``."""
    if fresh is None:
        if fresh_if == "missing":
            fresh = any(a[0] not in ps.arrays() for a in arrays)
        else:
            fresh = stage_params_changed(store, stage, params)
    if fresh:
        for name, tail, dtype, fill, attrs in arrays:
            ps.create_array(name, tail, dtype, fill_value=fill, overwrite=True, attrs=attrs)
    return run_chunks(store, stage, ps.n_chunks, task, params=params, client=client, restart=fresh,
                      progress=progress, gpu=gpu)


def require_wedges(ps, member=None, what: str = "particles") -> None:
    """Refuse particles (of boolean mask ``member``, default all) whose missing wedge is unknown: the wedge-aware
    methods never assume full Fourier coverage without a word."""
    import numpy as np

    from ..errors import InputError

    tilt = ps.rows(slice(0, ps.n), ["tilt_min", "tilt_max"])
    blind = ~(np.isfinite(tilt["tilt_min"]) & np.isfinite(tilt["tilt_max"]))
    if member is not None:
        blind &= member
    if blind.any():
        raise InputError(ps.name, f"{int(blind.sum())} {what} have no missing wedge (tilt_min/tilt_max unknown): "
                                  "import their tomogram with --tilt-range (extraction and STAR import then take it), "
                                  "or set the table's tilt columns")


def check_average_outputs(store, ps, name: str, arrays) -> None:
    """Refuse names whose arrays or maps belong to another stage (e.g. ``--name features`` would overwrite the
    CNN's ``features_class``): ``arrays`` are the (name, ...) tuples an averaging of ``name`` writes."""
    from ..errors import InputError
    from ..store import check_name

    for arr, *_ in arrays:
        check_name(arr, "array name")
        if arr in ps.arrays() and ps.array(arr).attrs.get("tomoflow", {}).get("average") != name:
            raise InputError(ps.name, f"array '{arr}' exists and was not written by averaging '{name}'; "
                                      "choose another --name")
    check_name(name, "map name")
    if store.has("maps", name) and store.attrs("maps", name).get("set") != ps.name:
        raise InputError(str(store.path), f"map '{name}' exists and holds another set's averages; choose another "
                                          "--name")
