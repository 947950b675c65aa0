"""``tomoflow export-copick``, ``import-copick``: particle sets and tomograms to and from a copick project."""

from __future__ import annotations


def cmd_export_copick(a) -> int:
    from ..store import Store
    from ..store.copick import export_copick

    store = Store.open(a.store, mode="r")
    out = export_copick(store, a.project, sets=a.set or (), tomograms=a.tomogram or (),
                        voxel_spacing=a.voxel_spacing, user_id=a.user_id, session_id=a.session_id,
                        tomo_type=a.tomo_type, objects=a.object, overwrite=a.overwrite)
    print(f"wrote copick project {out.config}: {len(out.runs)} runs, {len(out.tomograms)} tomograms, "
          f"{sum(out.picks.values())} picks in {len(out.picks)} files")
    return 0


def cmd_import_copick(a) -> int:
    from ..store.copick import import_copick, read_project
    from .common import writable_store

    read_project(a.config)  # a bad project is reported before a store is created
    with writable_store(a.store) as store:
        ps = import_copick(store, a.config, set_name=a.set, run=a.run, object_name=a.object, user_id=a.user_id,
                           session_id=a.session_id, tomo_type=a.tomo_type, voxel_spacing=a.voxel_spacing,
                           import_tomograms=not a.no_tomograms, overwrite=a.overwrite)
    runs = ps.info.get("copick", {}).get("runs", [])
    print(f"imported {ps.n} picks from {len(runs)} runs of {a.config} as particle set '{a.set}'")
    return 0


def add_parsers(sub) -> None:
    s = sub.add_parser("export-copick", help="write particle sets and tomograms into a (new or existing) local "
                                             "copick project")
    s.add_argument("store")
    s.add_argument("project", metavar="PROJECT_DIR", help="project folder (its config.json is made or extended)")
    s.add_argument("--set", action="append", help="particle set to write as picks (repeatable)")
    s.add_argument("--tomogram", action="append",
                   help="run to write (repeatable; default: every tomogram the sets' particles lie in)")
    s.add_argument("--object", action="append", metavar="NAME",
                   help="copick object name of the n-th --set, for sets without class names (default: the set name)")
    s.add_argument("--user-id", default="tomoflow", help="copick user id of the picks (default tomoflow)")
    s.add_argument("--session-id", default="0",
                   help="copick session of unclustered picks (default 0, copick's tool session); cluster k is "
                        "session cluster<k>")
    s.add_argument("--tomo-type", default="tomoflow", help="copick tomogram type (default tomoflow)")
    s.add_argument("--voxel-spacing", type=float, help="Å per voxel for runs whose tomogram the store does not hold")
    s.add_argument("--overwrite", action="store_true", help="replace picks files and tomograms already there")
    s.set_defaults(func=cmd_export_copick)

    s = sub.add_parser("import-copick", help="read picks (and tomograms) of a local copick project into a store")
    s.add_argument("store")
    s.add_argument("config", metavar="CONFIG_OR_DIR", help="copick config file, or a folder holding config.json")
    s.add_argument("--set", required=True, help="name of the new particle set")
    s.add_argument("--run", help="only this run")
    s.add_argument("--object", help="only picks of this object")
    s.add_argument("--user-id", help="only picks of this user")
    s.add_argument("--session-id", help="only picks of this session")
    s.add_argument("--tomo-type", help="tomogram type to import (default: the run's only tomogram)")
    s.add_argument("--voxel-spacing", type=float, help="voxel spacing of the tomogram to import")
    s.add_argument("--no-tomograms", action="store_true", help="picks only; tomograms are not imported")
    s.add_argument("--overwrite", action="store_true", help="replace the set (and tomograms) of the same names")
    s.set_defaults(func=cmd_import_copick)
