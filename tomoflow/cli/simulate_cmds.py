"""``tomoflow simulate subtomograms|tomogram``: options from :class:`~tomoflow.params.DatasetSpec` and
:class:`~tomoflow.params.CrowdedSpec` (microscope included)."""

from __future__ import annotations

from ..params import CrowdedSpec, DatasetSpec
from .common import add_cluster_args, add_params, params, writable_store


def _check_structures(names) -> None:
    from ..simulate.structures import check_structure

    for s in names:
        check_structure(s)  # unknown names or bad files are reported before a store is touched


def cmd_simulate_subtomograms(a) -> int:
    from ..engine import cluster_client
    from ..ops.simulate import simulate_dataset

    spec = params(DatasetSpec, a)
    _check_structures(spec.classes)
    with writable_store(a.store) as store, cluster_client(a.scheduler, a.workers) as client:
        run = simulate_dataset(store, a.set, spec, chunk=a.chunk, client=client, overwrite=a.overwrite)
    print(f"particle set '{a.set}': {spec.n} subtomograms of {spec.box}^3 ({len(spec.class_names)} classes x "
          f"{spec.per_class} x SNR {list(spec.snrs)} x tilt +-{list(spec.tilt_ranges)}); {run.computed} chunks "
          f"computed, {run.skipped} already done")
    return 0


def cmd_simulate_tomogram(a) -> int:
    from ..engine import cluster_client
    from ..ops.simulate import simulate_tomogram

    spec = params(CrowdedSpec, a)
    _check_structures(spec.classes)
    with writable_store(a.store) as store, cluster_client(a.scheduler, a.workers) as client:
        info = simulate_tomogram(store, a.name, spec, client=client, overwrite=a.overwrite)
    z, y, x = spec.shape
    print(f"tomogram '{a.name}': {x} x {y} x {z} voxels with {info['placed']} particles "
          f"(truth in particle set '{a.name}_truth')")
    return 0


def add_parsers(sub) -> None:
    sim = sub.add_parser("simulate", help="simulate subtomograms or crowded tomograms into a store")
    ssub = sim.add_subparsers(dest="what", required=True, metavar="WHAT")

    s = ssub.add_parser("subtomograms", help="a labelled set: classes x count x SNR x tilt range (+ empty)")
    s.add_argument("store")
    s.add_argument("--set", required=True, help="particle set name")
    add_params(s, DatasetSpec)
    s.add_argument("--chunk", type=int, default=256, help="particles per chunk (default 256)")
    s.add_argument("--overwrite", action="store_true")
    add_cluster_args(s)
    s.set_defaults(func=cmd_simulate_subtomograms)

    t = ssub.add_parser("tomogram", help="a crowded tomogram with ground-truth particles")
    t.add_argument("store")
    t.add_argument("--name", required=True, help="tomogram name")
    add_params(t, CrowdedSpec)
    t.add_argument("--overwrite", action="store_true")
    add_cluster_args(t)
    t.set_defaults(func=cmd_simulate_tomogram)
