"""Simulation drivers: labelled subtomogram sets and crowded tomograms built in the store through the engine.

The physics lives in :mod:`tomoflow.simulate`; here each chunk of particles (or group of tilt images) is one
resumable engine task that reads its part of the plan from the store and writes its result by region.
"""

from __future__ import annotations

import functools

import numpy as np
import zarr

from ..engine import run_chunks
from ..errors import StoreError
from ..params import CrowdedSpec, DatasetSpec, Microscope
from ..simulate.crowded import (TILTS_PER_TASK, backproject_block, noise_sigma, place_particles, project_tilt_group,
                                ramp_filter)
from ..simulate.subtomograms import particle_table, reference_variances, simulate_rows
from ..simulate.tiltseries import crowded_scheme
from ..store import ParticleSet, Store, TomogramWriter, create_particle_set
from ..store.tomograms import block_regions


def simulate_chunk(store_path: str, chunk: int, *, set_name: str) -> None:
    """Engine task: simulate one particle chunk of a dataset and write it by region."""
    ps = ParticleSet(Store.open(store_path), set_name)
    sim = ps.info["simulation"]
    spec = DatasetSpec.from_json(sim["spec"])
    refvar = {float(k): v for k, v in sim["reference_variance"].items()}
    sl = ps.chunk_slice(chunk)
    cols = ["true_rot", "true_tilt", "true_psi", "true_class", "snr", "tilt_max", "true_shift_x", "true_shift_y",
            "true_shift_z"]
    table = ps.rows(sl, cols)
    ps.write_volumes(sl.start, simulate_rows(spec, table, range(sl.start, sl.stop), refvar))


def simulate_dataset(store, set_name: str, spec: DatasetSpec, *, chunk: int = 256, client=None,
                     overwrite: bool = False, progress: bool | None = None):
    """Create particle set ``set_name`` and simulate its volumes (resumable: reruns skip finished chunks)."""
    stage = f"simulate.{set_name}"
    if store.has("particles", set_name) and not overwrite:
        ps = ParticleSet(store, set_name)
        if ps.info.get("simulation", {}).get("spec") != spec.to_json():
            raise StoreError(str(store.path), f"particle set '{set_name}' exists with another simulation spec "
                                              "(use --overwrite)")
    else:
        refvar = reference_variances(spec)
        mic = spec.microscope if isinstance(spec.microscope, dict) else spec.microscope.as_dict()
        ps = create_particle_set(
            store, set_name, particle_table(spec), box_size=spec.box, chunk=chunk, voxel_size=spec.voxel_size,
            class_names=spec.class_names, overwrite=overwrite,
            attrs={"simulation": {"spec": spec.to_json(), "reference_variance": {str(k): v for k, v in refvar.items()}},
                   "microscope": {"voltage": mic["voltage_kv"], "cs": mic["cs_mm"],
                                  "amplitude_contrast": mic["amplitude_contrast"]}})
        if store.has("stages", stage):
            store.delete("stages", stage)
    task = functools.partial(simulate_chunk, set_name=set_name)
    return run_chunks(store, stage, ps.n_chunks, task, params={"spec": spec.to_json(), "chunk": chunk},
                      client=client, progress=progress)


def project_chunk(store_path: str, chunk: int, *, name: str) -> None:
    """Engine task: one group of tilt images of the tilt series ``name``."""
    store = Store.open(store_path)
    g = zarr.open_group(str(store.node_path("tiltseries", name)), mode="r+")
    meta = g.attrs["tomoflow"]
    spec = CrowdedSpec.from_json(meta["spec"])
    ps = ParticleSet(store, f"{name}_truth")
    t = ps.rows(slice(0, ps.n), ["x", "y", "z", "true_class", "true_rot", "true_tilt", "true_psi"])
    placements = {"xyz": np.stack([t["x"], t["y"], t["z"]], 1) / spec.voxel_size, "class": t["true_class"],
                  "angles": np.stack([t["true_rot"], t["true_tilt"], t["true_psi"]], 1)}
    n_tilts = len(crowded_scheme(spec).angles())
    tilts = range(chunk * TILTS_PER_TASK, min((chunk + 1) * TILTS_PER_TASK, n_tilts))
    g["data"][tilts.start:tilts.stop] = project_tilt_group(spec, placements, tilts, meta["noise_sigma"])


def simulate_tomogram(store, name: str, spec: CrowdedSpec, *, client=None, overwrite: bool = False,
                      progress: bool | None = None) -> dict:
    """Place particles, simulate the tilt series (resumable) and reconstruct tomogram ``name``."""
    js = spec.to_json()
    angles = crowded_scheme(spec).angles()
    truth_name = f"{name}_truth"
    same = store.has("tiltseries", name) and store.attrs("tiltseries", name).get("spec") == js
    if not same or overwrite:
        place = place_particles(spec)
        n = len(place["xyz"])
        geo = {name: {"shape": list(spec.shape), "voxel_size": spec.voxel_size}}
        create_particle_set(store, truth_name, {
            "tomogram": np.full(n, name, dtype=object), "x": place["xyz"][:, 0] * spec.voxel_size,
            "y": place["xyz"][:, 1] * spec.voxel_size, "z": place["xyz"][:, 2] * spec.voxel_size,
            "true_rot": place["angles"][:, 0], "true_tilt": place["angles"][:, 1], "true_psi": place["angles"][:, 2],
            "true_class": place["class"], "tilt_min": np.full(n, -spec.tilt_range),
            "tilt_max": np.full(n, spec.tilt_range)}, class_names=list(spec.classes), voxel_size=spec.voxel_size,
            tomograms=geo, overwrite=True, attrs={"simulation": {"spec": js}})
        nz, ny, nx = spec.shape
        with store.staged("tiltseries", name, overwrite=True) as g:
            g.create_array("data", shape=(len(angles), ny, nx), chunks=(1, ny, nx), dtype="float32", fill_value=0)
            g.attrs["tomoflow"] = {"kind": "tiltseries", "spec": js, "angles": angles.tolist(), "tilt_axis": 0.0,
                                   "voxel_size": spec.voxel_size, "noise_sigma": noise_sigma(spec)}
        if store.has("stages", f"project.{name}"):
            store.delete("stages", f"project.{name}")
    n_groups = -(-len(angles) // TILTS_PER_TASK)
    run_chunks(store, f"project.{name}", n_groups, functools.partial(project_chunk, name=name),
               params={"spec": js}, client=client, progress=progress)
    data = zarr.open_array(str(store.node_path("tiltseries", name) / "data"), mode="r")
    shape, chunk = spec.shape, 128
    with TomogramWriter(store, name, shape, np.float32, voxel_size=spec.voxel_size, chunk=chunk,
                        tilt_range=(-spec.tilt_range, spec.tilt_range), tilt_axis=0.0, overwrite=True,
                        source=f"simulated: tiltseries/{name}",
                        # reconstructed at the tilt-series pixel size: what a RELION export needs to know
                        extra_attrs={"microscope": Microscope(**spec.microscope).as_dict(),
                                     "tilt_series_pixel_size": spec.voxel_size, "binning": 1.0}) as w:
        for region in block_regions(shape, (chunk, chunk, shape[2])):
            rows = ramp_filter(data[:, region[1], :].astype(np.float64))
            w.write(region, backproject_block(rows, angles, shape, region[0], region[2]))
    return {"placed": int(store.attrs("particles", truth_name)["n"])}
