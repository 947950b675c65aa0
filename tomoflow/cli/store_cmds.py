"""``tomoflow info``, ``import-tomogram``, ``export-mrc``, ``export-star``, ``import-star``: the store and its files."""

from __future__ import annotations

import json

from ..params import ImportParams
from .common import add_params, params, writable_store


def cmd_info(a) -> int:
    from ..store import Store
    from ..store.summary import format_summary, summarize

    s = summarize(Store.open(a.store, mode="r"))
    print(json.dumps(s, indent=2) if a.json else format_summary(s))
    return 0


def cmd_import_tomogram(a) -> int:
    from ..io.mrc import inspect_mrc
    from ..store import import_mrc

    p = params(ImportParams, a)
    inspect_mrc(a.mrc)  # header problems are reported before a store is created
    with writable_store(a.store) as store:
        info = import_mrc(store, a.mrc, name=p.name, voxel_size=p.voxel_size, chunk=p.chunk, levels=p.levels,
                          tilt_range=p.tilt_range, tilt_axis=p.tilt_axis, overwrite=a.overwrite)
    z, y, x = info.shape
    print(f"imported {a.mrc} as tomogram '{info.name}': {x} x {y} x {z}, {info.voxel_size:.4g} A/voxel, "
          f"{info.levels} levels")
    return 0


def cmd_export_mrc(a) -> int:
    from ..io.mrc import write_mrc
    from ..store import ParticleSet, Store, export_mrc
    from ..errors import StoreError

    store = Store.open(a.store, mode="r")
    if a.tomogram:
        export_mrc(store, store.require("tomograms", a.tomogram), a.output, level=a.level)
        what = f"tomogram '{a.tomogram}' level {a.level}"
    elif a.map:
        data, vs, _ = store.read_map(a.map)
        if data.ndim == 4:
            if a.index is None or not 0 <= a.index < len(data):
                raise StoreError(a.store, f"map '{a.map}' is a stack of {len(data)} maps; choose one with --index")
            data = data[a.index]
        write_mrc(a.output, data, vs)
        what = f"map '{a.map}'"
    else:
        ps = ParticleSet(store, a.particles)
        if a.index is None or not 0 <= a.index < ps.n:
            raise StoreError(a.store, f"particle set '{a.particles}' has {ps.n} particles; give --index 0..{ps.n - 1}")
        write_mrc(a.output, ps.read_volumes(slice(a.index, a.index + 1))[0], ps.voxel_size or 1.0)
        what = f"particle {a.index} of '{a.particles}'"
    print(f"wrote {what} to {a.output}")
    return 0


def cmd_export_star(a) -> int:
    from ..store import Store
    from ..store.exchange import export_star

    store = Store.open(a.store, mode="r")
    n = export_star(store, a.set, a.output, pixel_coords=a.pixel_coords, pixel_size=a.pixel_size,
                    tomoflow_columns=a.tomoflow_columns)
    print(f"wrote {n} particles of '{a.set}' to {a.output}")
    return 0


def cmd_import_star(a) -> int:
    from ..io.star import read_particles_star
    from ..store.exchange import import_star

    read_particles_star(a.star)  # a bad file is reported before a store is created
    with writable_store(a.store) as store:
        ps = import_star(store, a.star, a.set, pixel_size=a.pixel_size, tomogram=a.tomogram,
                         tomogram_size=a.tomogram_size, voxel_size=a.voxel_size, chunk=a.chunk,
                         overwrite=a.overwrite)
    print(f"imported {ps.n} particles from {a.star} as particle set '{a.set}'")
    return 0


def add_parsers(sub) -> None:
    s = sub.add_parser("info", help="what a store holds and which stages finished")
    s.add_argument("store")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("import-tomogram", help="copy an MRC tomogram into a store (created if missing)")
    s.add_argument("store")
    s.add_argument("mrc")
    add_params(s, ImportParams)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_import_tomogram)

    s = sub.add_parser("export-mrc", help="write a tomogram level, a map or a particle to MRC")
    s.add_argument("store")
    s.add_argument("-o", "--output", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--tomogram")
    g.add_argument("--map")
    g.add_argument("--particles", metavar="SET")
    s.add_argument("--level", type=int, default=0, help="tomogram pyramid level")
    s.add_argument("--index", type=int, help="particle index, or map index in a stack")
    s.set_defaults(func=cmd_export_mrc)

    s = sub.add_parser("export-star", help="write a particle set as a RELION 5 particle STAR file")
    s.add_argument("store")
    s.add_argument("set")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--pixel-coords", action="store_true", help="rlnCoordinateX/Y/Z in pixels instead of centred Å")
    s.add_argument("--pixel-size", type=float, help="Å per pixel for --pixel-coords (default: tomogram voxel size)")
    s.add_argument("--tomoflow-columns", action="store_true", help="also write true class, split, score, wedge")
    s.set_defaults(func=cmd_export_star)

    s = sub.add_parser("import-star", help="read a RELION particle STAR file into a new particle set")
    s.add_argument("store")
    s.add_argument("star")
    s.add_argument("--set", required=True, help="particle set name")
    s.add_argument("--pixel-size", type=float, help="Å per pixel of rlnCoordinateX/Y/Z")
    s.add_argument("--tomogram", help="tomogram name for files without rlnTomoName")
    s.add_argument("--tomogram-size", type=int, nargs=3, metavar=("X", "Y", "Z"),
                   help="size in voxels of tomograms not in the store (with --voxel-size)")
    s.add_argument("--voxel-size", type=float, help="Å per voxel of --tomogram-size")
    s.add_argument("--chunk", type=int, default=256, help="particles per chunk (default 256)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_import_star)
