"""Per-stage records of finished chunks, so that a rerun of a stage skips them.

A record is a Zarr array with one element per chunk, stored one element per Zarr chunk: each
task marks its own chunk by writing its own object, so concurrent workers never touch the same
object, and the mark is written only after the chunk's results are in the store.
The record keeps a fingerprint of the stage parameters: rerunning a stage with different
parameters is refused unless asked to restart.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import zarr

from ..errors import StoreError
from .core import Store, check_name, now


def fingerprint(params: dict) -> str:
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StageRecord:
    def __init__(self, store: Store, name: str, group: zarr.Group):
        self.store = store
        self.name = name
        self.group = group
        info = group.attrs["tomoflow"]
        self.n_chunks = int(info["n_chunks"])
        self.params = info.get("params", {})

    @classmethod
    def open_or_create(cls, store: Store, name: str, n_chunks: int, params: dict, *, restart=False) -> "StageRecord":
        check_name(name, "stage name")
        fp = fingerprint(params)
        path = store.node_path("stages", name)
        if path.exists() and restart:
            shutil.rmtree(path)
        if path.exists():
            group = zarr.open_group(str(path), mode="r+")
            info = group.attrs["tomoflow"]
            if info["fingerprint"] != fp or int(info["n_chunks"]) != int(n_chunks):
                raise StoreError(
                    str(store.path),
                    f"stage '{name}' was recorded with other parameters or chunking; "
                    "restart it (--restart) to recompute every chunk",
                )
            return cls(store, name, group)
        with store.staged("stages", name) as g:
            g.create_array("done", shape=(max(int(n_chunks), 1),), chunks=(1,), dtype="uint8", fill_value=0)
            g.attrs["tomoflow"] = {"kind": "stage", "n_chunks": int(n_chunks), "params": json.loads(
                json.dumps(params, default=str)), "fingerprint": fp, "created": now()}
        return cls(store, name, zarr.open_group(str(path), mode="r+"))

    @classmethod
    def open(cls, store: Store, name: str) -> "StageRecord":
        return cls(store, name, store.group("stages", store.require("stages", name)))

    def done_mask(self) -> np.ndarray:
        """Boolean array: True where the chunk is finished. Reads only the chunk listing."""
        mask = np.zeros(self.n_chunks, dtype=bool)
        cdir = self.store.node_path("stages", self.name) / "done" / "c"
        if cdir.is_dir():
            idx = [int(p) for p in (e.name for e in _scandir(cdir)) if p.isdigit()]
            idx = [i for i in idx if i < self.n_chunks]
            mask[idx] = True
        return mask

    def n_done(self) -> int:
        return int(self.done_mask().sum())

    def pending(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.done_mask())]

    def mark_done(self, chunk: int) -> None:
        if not 0 <= chunk < self.n_chunks:
            raise IndexError(f"chunk {chunk} out of range for stage '{self.name}' ({self.n_chunks} chunks)")
        self.group["done"][chunk] = 1

    def save_result(self, chunk: int, result: np.ndarray) -> None:
        """Keep a chunk's small result (e.g. its peak list) beside the record."""
        result = np.asarray(result)
        g = zarr.open_group(str(self.store.node_path("stages", self.name)), mode="r+")
        try:
            out = g.require_group("results")
        except zarr.errors.ContainsGroupError:  # another worker made it between the check and the create
            out = g["results"]
        out.create_array(str(chunk), shape=result.shape, dtype=result.dtype, chunks=tuple(max(1, s) for s in result.shape) or None,
                         overwrite=True)[...] = result

    def results(self) -> dict[int, np.ndarray]:
        """The saved results of the finished chunks."""
        return dict(self.iter_results())

    def iter_results(self):
        """(chunk, result) of the finished chunks, read one at a time (for reductions over many chunks)."""
        d = self.store.node_path("stages", self.name) / "results"
        if not d.is_dir():
            return
        done = self.done_mask()
        g = zarr.open_group(str(d), mode="r")
        for k in g.array_keys():
            if k.isdigit() and int(k) < self.n_chunks and done[int(k)]:
                yield int(k), g[k][...]

    @property
    def finished(self) -> bool:
        return self.n_done() == self.n_chunks


def _scandir(path):
    import os

    with os.scandir(path) as it:
        return list(it)
