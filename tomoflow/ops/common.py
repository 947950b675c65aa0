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
