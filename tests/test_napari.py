"""The napari reader: a store opens as layers in Å (no display, napari not needed: the reader's data tuples)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import yaml

from tomoflow.napari import get_reader
from tomoflow.store import Store, create_particle_set, import_mrc
from conftest import write_mrc


def test_a_store_opens_as_tomograms_points_and_maps(tmp_path, rng):
    s = Store.create(tmp_path / "s.zarr")
    import_mrc(s, write_mrc(tmp_path / "t.mrc", rng.normal(size=(20, 24, 28)).astype(np.float32), voxel_size=9.2),
               name="t1", chunk=16)
    create_particle_set(s, "p", {"tomogram": ["t1"] * 3, "x": [10.0, 20, 30], "y": [1.0, 2, 3], "z": [5.0, 6, 7],
                                 "cluster": [0, 1, 1]}, box_size=8, voxel_size=9.2)
    create_particle_set(s, "empty", {"tomogram": ["t1"], "x": [np.nan]})  # no position: no layer
    s.write_map("avg", np.ones((8, 8, 8), np.float32), 9.2)
    assert get_reader(str(tmp_path / "t.mrc")) is None and get_reader(str(tmp_path)) is None
    layers = get_reader(str(s.path))(str(s.path))
    kinds = {(kw["name"], kind) for _, kw, kind in layers}
    assert kinds == {("t1", "image"), ("p", "points"), ("avg", "image")}
    tomo = next(d for d, kw, k in layers if kw["name"] == "t1")
    kw = next(kw for d, kw, k in layers if kw["name"] == "t1")
    assert kw["multiscale"] and np.allclose(kw["scale"], 9.2) and [a.shape for a in tomo][0] == (20, 24, 28)
    pts, kw = next((d, kw) for d, kw, k in layers if k == "points")
    assert np.allclose(pts, [[5, 1, 10], [6, 2, 20], [7, 3, 30]])  # (z, y, x) in Å, the tomogram's frame
    assert kw["face_color"] == "cluster" and list(kw["properties"]["cluster"]) == [0, 1, 1]
    assert np.isclose(kw["size"], 8 * 9.2)


def test_the_manifest_names_a_reader_that_exists():
    man = yaml.safe_load((Path(importlib.import_module("tomoflow").__file__).parent / "napari.yaml").read_text())
    commands = {c["id"]: c["python_name"] for c in man["contributions"]["commands"]}
    for r in man["contributions"]["readers"]:
        module, func = commands[r["command"]].split(":")
        assert callable(getattr(importlib.import_module(module), func))
    assert man["name"] == "tomoflow"
