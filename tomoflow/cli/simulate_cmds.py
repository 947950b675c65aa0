"""``tomoflow simulate subtomograms|tomogram``."""

from __future__ import annotations

import argparse


def _microscope_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("microscope (seed 000 defaults)")
    g.add_argument("--voltage", type=float, default=300.0, help="kV (default 300)")
    g.add_argument("--cs", type=float, default=2.0, help="spherical aberration, mm (default 2)")
    g.add_argument("--defocus", type=float, default=-5.0, help="um, negative = underfocus (default -5)")
    g.add_argument("--amplitude-contrast", type=float, default=0.07, help="(default 0.07)")
    g.add_argument("--no-mtf", action="store_true", help="leave out the detector MTF sinc(pi w / 2)")


def _cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where to run")
    g.add_argument("--workers", type=int, help="local cluster worker processes (default: all cores; 0 = in this "
                                                "process)")
    g.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:port)")


def _microscope(a):
    from ..simulate.optics import Microscope

    return Microscope(a.voltage, a.cs, a.defocus, a.amplitude_contrast, not a.no_mtf)


def cmd_simulate_subtomograms(a) -> int:
    from ..engine import cluster_client
    from ..simulate.structures import resolve_structure
    from ..simulate.subtomograms import DatasetSpec, simulate_dataset
    from .main import writable_store

    for s in a.structures:
        resolve_structure(s)  # unknown names or bad files are reported before a store is touched
    spec = DatasetSpec(classes=tuple(a.structures), per_class=a.per_class, snrs=tuple(a.snr),
                       tilt_ranges=tuple(a.tilt_range), include_empty=not a.no_empty, box=a.box,
                       voxel_size=a.voxel_size, resolution=a.resolution, tilt_step=a.tilt_step,
                       tilt_axis=a.tilt_axis, max_shift=a.max_shift, method=a.method,
                       microscope=_microscope(a).as_dict(), seed=a.seed)
    with writable_store(a.store) as store, cluster_client(a.scheduler, a.workers) as client:
        run = simulate_dataset(store, a.set, spec, chunk=a.chunk, client=client, overwrite=a.overwrite)
    print(f"particle set '{a.set}': {spec.n} subtomograms of {spec.box}^3 ({len(spec.class_names)} classes x "
          f"{spec.per_class} x SNR {list(spec.snrs)} x tilt +-{list(spec.tilt_ranges)}); {run.computed} chunks "
          f"computed, {run.skipped} already done")
    return 0


def cmd_simulate_tomogram(a) -> int:
    from ..engine import cluster_client
    from ..simulate.crowded import CrowdedSpec, simulate_tomogram
    from ..simulate.structures import resolve_structure
    from .main import writable_store

    for s in a.structures:
        resolve_structure(s)
    x, y, z = a.shape
    spec = CrowdedSpec(classes=tuple(a.structures), shape=(z, y, x), n_particles=a.particles, snr=a.snr,
                       tilt_range=a.tilt_range, tilt_step=a.tilt_step, box=a.box, voxel_size=a.voxel_size,
                       resolution=a.resolution, microscope=_microscope(a).as_dict(), seed=a.seed)
    with writable_store(a.store) as store, cluster_client(a.scheduler, a.workers) as client:
        info = simulate_tomogram(store, a.name, spec, client=client, overwrite=a.overwrite)
    print(f"tomogram '{a.name}': {x} x {y} x {z} voxels with {info['placed']} particles "
          f"(truth in particle set '{a.name}_truth')")
    return 0


def add_parsers(sub) -> None:
    sim = sub.add_parser("simulate", help="simulate subtomograms or crowded tomograms into a store")
    ssub = sim.add_subparsers(dest="what", required=True, metavar="WHAT")

    s = ssub.add_parser("subtomograms", help="a labelled set: classes x count x SNR x tilt range (+ empty)")
    s.add_argument("store")
    s.add_argument("--set", required=True, help="particle set name")
    s.add_argument("--structures", nargs="+", default=["6zu5", "4v8r", "5cvz", "6wg6"],
                   help="embedded structure names or PDB/mmCIF files (default: 6zu5 4v8r 5cvz 6wg6)")
    s.add_argument("--per-class", type=int, default=100)
    s.add_argument("--snr", type=float, nargs="+", default=[0.1], help="target SNRs (default 0.1; inf: no noise)")
    s.add_argument("--tilt-range", type=float, nargs="+", default=[60.0], help="half tilt ranges, deg (default 60)")
    s.add_argument("--no-empty", action="store_true", help="leave out the empty (noise-only) class")
    s.add_argument("--method", choices=["fourier", "wbp"], default="fourier",
                   help="reconstruction: direct Fourier inversion (default) or weighted back-projection")
    s.add_argument("--max-shift", type=float, default=4.0, help="random shift radius, voxels (default 4)")
    _common_geometry(s, box=40)
    s.add_argument("--chunk", type=int, default=256, help="particles per chunk (default 256)")
    s.add_argument("--overwrite", action="store_true")
    _microscope_args(s)
    _cluster_args(s)
    s.set_defaults(func=cmd_simulate_subtomograms)

    t = ssub.add_parser("tomogram", help="a crowded tomogram with ground-truth particles")
    t.add_argument("store")
    t.add_argument("--name", required=True, help="tomogram name")
    t.add_argument("--shape", type=int, nargs=3, default=[256, 256, 100], metavar=("X", "Y", "Z"))
    t.add_argument("--structures", nargs="+", default=["6zu5", "4v8r", "5cvz", "6wg6", "3o21"])
    t.add_argument("--particles", type=int, default=100, help="particles to place (fewer if they do not fit)")
    t.add_argument("--snr", type=float, default=0.1)
    t.add_argument("--tilt-range", type=float, default=60.0)
    _common_geometry(t, box=40)
    t.add_argument("--overwrite", action="store_true")
    _microscope_args(t)
    _cluster_args(t)
    t.set_defaults(func=cmd_simulate_tomogram)


def _common_geometry(p, *, box):
    p.add_argument("--box", type=int, default=box, help=f"box edge in voxels (default {box})")
    p.add_argument("--voxel-size", type=float, default=9.2, help="Å (default 9.2)")
    p.add_argument("--resolution", type=float, default=9.2, help="density map resolution, Å (default 9.2)")
    p.add_argument("--tilt-step", type=float, default=2.0, help="deg (default 2)")
    p.add_argument("--tilt-axis", type=float, default=0.0, help="deg from y in the x-y plane (default 0)")
    p.add_argument("--seed", type=int, default=0)
