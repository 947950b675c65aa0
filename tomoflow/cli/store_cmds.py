"""``tomoflow info``, ``import-tomogram``, ``export-mrc``, ``export-omezarr``, ``export-star``, ``import-star``: the
store and its files."""

from __future__ import annotations

import json
import os

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
    from ..store.omezarr import import_omezarr, inspect_omezarr

    p = params(ImportParams, a)
    is_zarr = os.path.isdir(a.source)  # an OME-Zarr image is a folder; anything else must be MRC
    # problems with the input are reported before a store is created
    if is_zarr:
        inspect_omezarr(a.source, voxel_size=p.voxel_size)
    else:
        inspect_mrc(a.source)
    load = import_omezarr if is_zarr else import_mrc
    with writable_store(a.store) as store:
        info = load(store, a.source, name=p.name, voxel_size=p.voxel_size, chunk=p.chunk, levels=p.levels,
                    tilt_range=p.tilt_range, tilt_axis=p.tilt_axis, overwrite=a.overwrite,
                    extra_attrs=p.relion_attrs())
    z, y, x = info.shape
    print(f"imported {a.source} as tomogram '{info.name}': {x} x {y} x {z}, {info.voxel_size:.4g} A/voxel, "
          f"{info.levels} levels")
    return 0


def cmd_export_omezarr(a) -> int:
    from ..store import Store
    from ..store.omezarr import export_omezarr

    store = Store.open(a.store, mode="r")
    out = export_omezarr(store, store.require("tomograms", a.tomogram), a.output, ngff=a.ngff, chunk=a.chunk,
                         levels=a.levels, overwrite=a.overwrite)
    zf = {"0.5": 3, "0.4": 2}[a.ngff]
    print(f"wrote tomogram '{a.tomogram}' to {out} as OME-Zarr {a.ngff} (zarr v{zf})")
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
                    tomoflow_columns=a.tomoflow_columns, fmt=a.format, tomograms_star=a.tomograms_star)
    fmt = "relion4" if a.pixel_coords and a.format == "relion5" else a.format
    print(f"wrote {n} particles of '{a.set}' to {a.output} ({fmt})"
          + (f" and their tomograms to {a.tomograms_star}" if a.tomograms_star else ""))
    return 0


def cmd_import_star(a) -> int:
    from ..io.star import read_particles_star, read_tomograms_star
    from ..store.exchange import import_star

    read_particles_star(a.star)  # bad files are reported before a store is created
    if a.tomograms:
        read_tomograms_star(a.tomograms)
    with writable_store(a.store) as store:
        ps = import_star(store, a.star, a.set, pixel_size=a.pixel_size, tomogram=a.tomogram,
                         tomogram_size=a.tomogram_size, voxel_size=a.voxel_size, tomograms_star=a.tomograms,
                         chunk=a.chunk, overwrite=a.overwrite)
    print(f"imported {ps.n} particles from {a.star} as particle set '{a.set}'")
    return 0


def add_parsers(sub) -> None:
    s = sub.add_parser("info", help="what a store holds and which stages finished")
    s.add_argument("store")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("import-tomogram", help="copy a tomogram (MRC file or OME-Zarr image) into a store "
                                               "(created if missing)")
    s.add_argument("store")
    s.add_argument("source", help="an MRC file, or an OME-Zarr image folder (NGFF 0.4 zarr v2, e.g. from the CZ "
                                  "cryoET data portal, or NGFF 0.5 zarr v3): its highest-resolution level is copied "
                                  "and the voxel size read from its scale")
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

    s = sub.add_parser("export-omezarr", help="write a tomogram as a standalone OME-Zarr image")
    s.add_argument("store")
    s.add_argument("tomogram")
    s.add_argument("-o", "--output", required=True, help="the OME-Zarr folder to create (e.g. TS_01.zarr)")
    s.add_argument("--ngff", choices=("0.5", "0.4"), default="0.5",
                   help="0.5: zarr v3 as in the store (default); 0.4: zarr v2 as the CZ cryoET data portal and "
                        "copick write it (voxel size rounded to 3 decimals)")
    s.add_argument("--chunk", type=int, help="chunk edge, voxels (default: the store's for 0.5, 256 for 0.4)")
    s.add_argument("--levels", type=int, help="pyramid levels to write, from full resolution (default: all)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output (once the new one is "
                                                            "complete)")
    s.set_defaults(func=cmd_export_omezarr)

    s = sub.add_parser("export-star", help="write a particle set as a RELION 5 (or 4, or Warp/M) particle STAR file",
                       description="RELION 5 (default): data_general, data_optics (tilt-series pixel size, voltage, "
                                   "Cs, amplitude contrast from what the store knows; assumptions are written as "
                                   "comments in the file), particles in centred Å with the pose split back into "
                                   "subtomogram and particle angles when the set came from such a file. relion4: "
                                   "rlnCoordinateX/Y/Z in tilt-series pixels. warp: Warp/M's particle file (pixels "
                                   "from the centre of voxel 0, rlnMicrographName = <tomogram>.tomostar).")
    s.add_argument("store")
    s.add_argument("set")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--format", choices=("relion5", "relion4", "warp"), default="relion5",
                   help="file convention (default relion5)")
    s.add_argument("--tomograms-star", metavar="PATH", help="also write RELION 5's tomograms.star for the tomograms "
                                                          "used (bin-1 size, tilt-series pixel size, binning)")
    s.add_argument("--pixel-coords", action="store_true", help="same as --format relion4")
    s.add_argument("--pixel-size", type=float, help="Å per pixel of written pixel coordinates (default: the tilt "
                                                    "series pixel size for relion4, the voxel size for warp)")
    s.add_argument("--tomoflow-columns", action="store_true", help="also write true class, split, score, wedge")
    s.set_defaults(func=cmd_export_star)

    s = sub.add_parser("import-star", help="read a RELION 3/4/5, Warp/M or pytom particle STAR file into a new set",
                       description="Poses: RELION 5 subtomogram angles are composed with the particle angles "
                                   "(A = A_subtomogram A_particle); origin shifts are applied (centre = coordinate "
                                   "- A_subtomogram origin) and kept for export. rlnClassNumber becomes the class "
                                   "labels (names '1', '2', ...). Particles take the missing wedge of their "
                                   "tomogram in the store. The poses are kept in the table; `average` still starts "
                                   "reference-free from the identity unless given --from-poses.")
    s.add_argument("store")
    s.add_argument("star")
    s.add_argument("--set", required=True, help="particle set name")
    s.add_argument("--tomograms", metavar="TOMOGRAMS_STAR", help="RELION 5 tomograms.star: each tomogram's size, "
                                                                 "tilt-series pixel size, binning and optics")
    s.add_argument("--pixel-size", type=float, help="Å per pixel of rlnCoordinateX/Y/Z (default: the optics "
                                                    "group's tilt-series pixel size, the detector pixel size, or "
                                                    "the tomogram's voxel size)")
    s.add_argument("--tomogram", help="tomogram name for files without rlnTomoName or rlnMicrographName")
    s.add_argument("--tomogram-size", type=int, nargs=3, metavar=("X", "Y", "Z"),
                   help="size in voxels of tomograms not in the store (with --voxel-size)")
    s.add_argument("--voxel-size", type=float, help="Å per voxel of --tomogram-size")
    s.add_argument("--chunk", type=int, default=256, help="particles per chunk (default 256)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_import_star)
