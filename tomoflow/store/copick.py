"""copick projects to and from the store: the layout the CZ cryoET data portal, DeepFindET and copick-tomotwin share.

A local copick project is a JSON config (``config_type: "filesystem"``, ``overlay_root: "local:///…"``, optional
``static_root``, ``pickable_objects``) and, under each root, ``ExperimentRuns/<run>/``:

* tomograms at ``VoxelSpacing<spacing:.3f>/<tomo_type>.zarr`` (OME-NGFF 0.4, zarr v2; written and read here
  through :mod:`.omezarr`);
* picks at ``Picks/<user_id>_<session_id>_<object>.json``: points with ``location`` (Å), a 4x4 ``transformation_``,
  ``instance_id`` and ``score``.

copick 1.x needs zarr 2 and tomoflow zarr 3, so the layout is written and read here with the standard library
(tests check it with copick's own API in a second interpreter). Conventions, as copick 1.31 defines them:

* Positions. copick's ``location`` is Å from voxel (0, 0, 0) with no half-voxel offset: location = voxel index x
  spacing (``copick.util.formats.relion_coordinates_to_angstrom`` adds the tomogram centre ``shape / 2 * spacing`` to
  RELION centred coordinates; its tomograms carry an OME scale and no translation). That is tomoflow's table
  convention (:mod:`tomoflow.kernels.geometry`), so x, y, z pass through unchanged.
* Shifts. The transform's translation is a shift in Å added to the location (``CopickPoint``,
  ``CopickPicks.full_positions``): the particle centre is ``location + transformation[:3, 3]``. Export writes the
  centre as the location and a zero translation; import adds the translation.
* Rotations. ``transformation[:3, :3]`` rotates object (reference) coordinates into the tomogram
  (``CopickPoint.transformation``), and ``copick.util.relion.relion_rows_to_poses`` builds it from RELION angles as
  ``Rotation.from_euler("ZYZ", angles).inv()``: that is RELION's Euler matrix A, which
  :func:`tomoflow.kernels.geometry.relion_matrix` returns (it maps the reference into the tomogram as well).
* Names. Object names, user and session ids may not hold ``<>:"/\\|?*``, control characters, white space or ``_``
  (``copick.util.escape.sanitize_name``; the picks file name is split at ``_``). A session ``"0"`` marks picks a tool
  made (``CopickPicks.from_tool``).

tomoflow's cluster ids travel as pick sessions: the particles of cluster k are the session ``cluster<k>``, those of
no cluster the session given (default ``"0"``). Object names come from the set's class names (``true_class``) where
it has them, else from a name the caller gives, else from the set's name. On import, object names become the set's
class names (``true_class``), as copick objects are what a particle is (an annotation), not a finding of a method.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..kernels.geometry import relion_angles, relion_matrix
from .core import Store, check_name
from .exchange import _inherit_wedges
from .particles import ParticleSet, create_particle_set

CONFIG_NAME = "config.json"  # the file ``copick config filesystem`` writes by default
DEFAULT_SESSION = "0"  # copick's session of tool-made picks
CLUSTER_SESSION = re.compile(r"^cluster(\d+)$")
# copick.util.escape.sanitize_name: these characters become "-"
_INVALID = re.compile(r'[<>:"/\\|?*\x00-\x1F\x7F\s_]')
_COLORS = [(31, 119, 180, 255), (255, 127, 14, 255), (44, 160, 44, 255), (214, 39, 40, 255), (148, 103, 189, 255),
           (140, 86, 75, 255), (227, 119, 194, 255), (127, 127, 127, 255), (188, 189, 34, 255), (23, 190, 207, 255)]
_ORTHO_TOL = 1e-4  # how far a transform's 3x3 part may be from a rotation (JSON keeps 17 digits; this is slack)


def sanitize_name(name: str) -> str:
    """``name`` as copick allows it (``copick.util.escape.sanitize_name``); empty results are refused by callers."""
    return _INVALID.sub("-", str(name)).strip("-")


def spacing_folder(voxel_spacing: float) -> str:
    """``VoxelSpacing10.000``: copick's folder for a voxel spacing (``CopickVoxelSpacingFSSpec.static_path``)."""
    return f"VoxelSpacing{float(voxel_spacing):.3f}"


def _safe(name: str, what: str, where) -> str:
    """A path component taken from a user or a file: never a way out of its folder."""
    name = str(name)
    if not name or "/" in name or "\\" in name or ".." in name or name.startswith("."):
        raise InputError(where, f"invalid {what} {name!r}: no slashes, no '..', not empty")
    return name


def _copick_name(name: str, what: str, where) -> str:
    """A name given for copick (object, user, session): it must already be one copick accepts."""
    _safe(name, what, where)
    if sanitize_name(name) != name:
        fixed = sanitize_name(name)
        hint = f" (e.g. {fixed!r})" if fixed else ""
        raise InputError(where, f"invalid {what} {name!r}: copick names may not hold <>:\"/\\|?*, spaces or '_'{hint}")
    return name


def _derived_name(name: str, what: str, where) -> str:
    """A name tomoflow derives (a class name, a set name), made into one copick accepts."""
    fixed = sanitize_name(name)
    if not fixed or ".." in fixed or fixed.startswith("."):
        raise InputError(where, f"{what} {name!r} gives no usable copick object name; name the object (--object)")
    return fixed


# -- the config ----------------------------------------------------------------------------------
@dataclass
class Project:
    """A local copick project: its config file, the config, and its overlay and static roots."""
    config_path: Path
    config: dict
    overlay: Path
    static: Path | None

    @property
    def roots(self) -> list[Path]:
        """Where to read: the overlay first (copick writes there), then the static root."""
        return [self.overlay] + ([self.static] if self.static and self.static != self.overlay else [])


def _local_root(uri, config_path: Path, key: str) -> Path:
    """A ``local://`` (or ``file://``, or plain) root as a path; any other file system is not a local project."""
    if not isinstance(uri, str) or not uri:
        raise InputError(config_path, f"{key} must be a non-empty string")
    for prefix in ("local://", "file://"):
        if uri.startswith(prefix):
            uri = uri[len(prefix):]
            break
    else:
        if "://" in uri:
            raise InputError(config_path, f"{key} {uri!r} is not on a local file system (only local:// projects)")
    return Path(os.path.abspath(uri))  # as fsspec does: a relative root is relative to the working folder


def _config_in(folder: Path) -> Path | None:
    """A folder's copick config: ``config.json``, else its only JSON file that is a copick config, else None."""
    if (folder / CONFIG_NAME).is_file():
        return folder / CONFIG_NAME
    found = [f for f in sorted(folder.glob("*.json")) if _looks_like_config(f)]
    if len(found) > 1:
        raise InputError(folder, f"several copick configs here ({', '.join(f.name for f in found)}); name one")
    return found[0] if found else None


def read_project(config_or_dir) -> Project:
    """The copick project of a config file, or of a folder holding ``config.json`` (or exactly one copick config)."""
    p = Path(config_or_dir).absolute()
    if p.is_dir():
        cand = _config_in(p)
        if cand is None:
            raise InputError(p, f"no {CONFIG_NAME} (nor another copick config) in this folder")
        p = cand
    if not p.is_file():
        raise InputError(p, "no such copick config file")
    try:
        config = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(p, f"not a readable JSON file ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(p, "a copick config is a JSON object")
    kind = config.get("config_type", "filesystem")
    if kind != "filesystem":
        raise InputError(p, f"config_type {kind!r}: only local (filesystem) copick projects are supported")
    if "overlay_root" not in config:
        raise InputError(p, "no overlay_root: not a copick filesystem config")
    objects = config.get("pickable_objects", [])
    if not isinstance(objects, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in objects):
        raise InputError(p, "pickable_objects must be a list of objects with a name")
    overlay = _local_root(config["overlay_root"], p, "overlay_root")
    static = config.get("static_root")
    static = _local_root(static, p, "static_root") if static else None
    return Project(p, config, overlay, static)


def _looks_like_config(path: Path) -> bool:
    try:
        c = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(c, dict) and "overlay_root" in c and "pickable_objects" in c


def _atomic_write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=4, allow_nan=False))
    os.replace(tmp, path)


# -- export --------------------------------------------------------------------------------------
@dataclass
class CopickExport:
    """What :func:`export_copick` wrote."""
    config: Path
    runs: list[str] = field(default_factory=list)
    tomograms: list[Path] = field(default_factory=list)
    picks: dict[str, int] = field(default_factory=dict)  # picks file -> number of points


def _point(x, y, z, rot, tilt, psi, score) -> dict:
    t = np.eye(4)
    t[:3, :3] = relion_matrix(rot, tilt, psi)  # object -> tomogram, no shift: the location is the centre
    return {"location": {"x": float(x), "y": float(y), "z": float(z)}, "transformation_": t.tolist(),
            "instance_id": 0, "score": float(score) if math.isfinite(score) else None}


def _object_names(ps: ParticleSet, table, given: str | None, where) -> np.ndarray:
    """The copick object name of every particle of ``ps``: its class name, else ``given``, else the set's name."""
    fallback = _copick_name(given, "object name", where) if given else _derived_name(ps.name, "particle set name",
                                                                                  where)
    names = np.full(len(table), fallback, dtype=object)
    classes = ps.class_names
    if classes and "true_class" in table:
        tc = np.asarray(table["true_class"], np.int64)
        for k, cname in enumerate(classes):
            names[tc == k] = _derived_name(cname, "class name", where)
    return names


def _voxel_spacing_of(store: Store, ps: ParticleSet | None, tomogram: str, given: float | None, where) -> float:
    known = None
    if store.has("tomograms", tomogram):
        known = float(store.attrs("tomograms", tomogram)["voxel_size"])
    elif ps is not None:
        geo = ps.tomogram_geometry(tomogram)
        known = float(geo["voxel_size"]) if geo else ps.voxel_size
    if given is not None:
        if not (math.isfinite(given) and given > 0):
            raise InputError(where, f"voxel spacing must be a positive number, not {given}")
        if known is not None and store.has("tomograms", tomogram) and spacing_folder(known) != spacing_folder(given):
            raise InputError(where, f"voxel spacing {given} differs from tomogram '{tomogram}' ({known} Å/voxel), "
                                    "which is exported at its own spacing")
        return float(given)
    if known is None:
        raise InputError(where, f"the voxel size of tomogram '{tomogram}' is unknown; give --voxel-spacing")
    return known


def export_copick(store: Store, project_dir, *, sets=(), tomograms=(), voxel_spacing: float | None = None,
                  user_id: str = "tomoflow", session_id: str = DEFAULT_SESSION, tomo_type: str = "tomoflow",
                  objects=None, overwrite: bool = False) -> CopickExport:
    """Create or extend the local copick project in ``project_dir``: one run per tomogram, named as the tomogram.

    ``sets``: particle sets whose picks are written, per object name and per pick session (cluster k is the session
    ``cluster<k>``; unclustered particles the session ``session_id``). ``objects``: object names for sets without
    class names, a list in the order of ``sets`` or a dict by set name. ``tomograms``: the runs to write (default:
    every tomogram the sets' particles lie in); each one the store holds is written as ``tomo_type`` at its voxel
    spacing. ``voxel_spacing``: the runs' spacing (default: each tomogram's voxel size, which a tomogram the store
    holds must match). ``project_dir`` may name an existing config file. An existing picks file or tomogram is
    replaced only with ``overwrite``. Everything is checked before anything is written.
    """
    from .omezarr import export_omezarr

    project_dir = Path(project_dir)
    where = str(project_dir)
    user_id = _copick_name(user_id, "user id", where)
    session_id = _copick_name(session_id, "session id", where)
    tomo_type = _safe(tomo_type, "tomogram type", where)
    sets, tomograms = list(dict.fromkeys(sets)), list(dict.fromkeys(tomograms))
    if not sets and not tomograms:
        raise InputError(where, "nothing to export: name particle sets (--set) or tomograms (--tomogram)")
    if isinstance(objects, dict):
        given = dict(objects)
        unknown = set(given) - set(sets)
        if unknown:
            raise InputError(where, f"object names given for sets not exported: {', '.join(sorted(unknown))}")
    else:
        names = list(objects or ())
        if len(names) > len(sets):
            raise InputError(where, f"{len(names)} object names for {len(sets)} particle sets")
        given = dict(zip(sets, names))
    for t in tomograms:
        store.require("tomograms", t)

    # the project: an existing config (the file named, or the folder's) is extended, else one is made in the
    # folder, which becomes its overlay root
    cfg_path = project_dir if project_dir.is_file() else (_config_in(project_dir) if project_dir.is_dir() else None)
    if cfg_path is not None:
        project = read_project(cfg_path)
        config = dict(project.config)
    else:
        cfg_path = project_dir / CONFIG_NAME
        config = {"config_type": "filesystem", "name": project_dir.name or "tomoflow", "description":
                  "written by tomoflow export-copick", "version": "0.2.0", "pickable_objects": [],
                  "overlay_root": "local://" + str(project_dir.absolute()), "overlay_fs_args": {"auto_mkdir": True}}
        project = Project(cfg_path, config, project_dir.absolute(), None)

    # picks: (run, session, object) -> points, from every set
    files: dict[tuple[str, str, str], list] = {}
    owner: dict[tuple[str, str, str], str] = {}
    spacing: dict[str, float] = {}
    for s in sets:
        ps = ParticleSet(store, s)
        t = ps.table_frame(["tomogram", "x", "y", "z", "rot", "tilt", "psi", "cluster", "score", "true_class"])
        objs = _object_names(ps, t, given.get(s), where)
        keep = np.ones(len(t), bool) if not tomograms else t["tomogram"].isin(tomograms).to_numpy()
        xyz = t[["x", "y", "z"]].to_numpy(np.float64)
        ang = t[["rot", "tilt", "psi"]].to_numpy(np.float64)
        bad = keep & ~(np.isfinite(xyz).all(1) & np.isfinite(ang).all(1))
        if bad.any():
            raise InputError(where, f"particle {int(np.argmax(bad))} of set '{s}' has no finite position or angles")
        for run in dict.fromkeys(t["tomogram"][keep]):
            _safe(run, "tomogram (run) name", where)
            vs = _voxel_spacing_of(store, ps, run, voxel_spacing, where)
            if spacing.setdefault(run, vs) != vs:
                raise InputError(where, f"tomogram '{run}' has different voxel sizes in the sets exported")
        clusters, scores = t["cluster"].to_numpy(np.int64), t["score"].to_numpy(np.float64)
        runs = t["tomogram"].to_numpy(object)
        for i in np.flatnonzero(keep):
            sess = f"cluster{clusters[i]}" if clusters[i] >= 0 else session_id
            key = (runs[i], sess, objs[i])
            if owner.setdefault(key, s) != s:
                raise InputError(where, f"sets '{owner[key]}' and '{s}' both give picks of object '{objs[i]}' in run "
                                        f"'{runs[i]}' session '{sess}'; name their objects apart (--object)")
            files.setdefault(key, []).append(_point(*xyz[i], *ang[i], scores[i]))
    for run in tomograms:
        spacing.setdefault(run, _voxel_spacing_of(store, None, run, voxel_spacing, where))

    # what goes where, and whether it would replace something
    runs_dir = project.overlay / "ExperimentRuns"
    tomo_jobs = [(run, runs_dir / run / spacing_folder(vs) / f"{tomo_type}.zarr") for run, vs in spacing.items()
                 if store.has("tomograms", run)]
    pick_paths = {key: runs_dir / key[0] / "Picks" / f"{user_id}_{key[1]}_{key[2]}.json" for key in files}
    if not overwrite:
        for p in [p for _, p in tomo_jobs] + list(pick_paths.values()):
            if p.exists():
                raise InputError(p, "already exists in the copick project (use --overwrite to replace it)")

    # the config: new objects appended with labels and colours not yet taken
    pobjs = [dict(o) for o in config.get("pickable_objects", [])]
    have = {o["name"] for o in pobjs}
    labels = {o.get("label", 1) for o in pobjs}  # copick reads a missing label as 1
    for name in sorted({key[2] for key in files} - have):
        label = next(k for k in range(1, len(labels) + 2) if k not in labels)
        labels.add(label)
        pobjs.append({"name": name, "is_particle": True, "label": label,
                      "color": list(_COLORS[(label - 1) % len(_COLORS)]), "radius": None})
    config["pickable_objects"] = pobjs

    out = CopickExport(project.config_path)
    for run, path in tomo_jobs:
        out.tomograms.append(Path(export_omezarr(store, run, path, ngff="0.4", overwrite=overwrite)))
    for run in spacing:  # a run is a folder; one without picks or a tomogram still shows in copick
        (runs_dir / run).mkdir(parents=True, exist_ok=True)
    for key, points in files.items():
        run, sess, obj = key
        mats = np.array([[p["transformation_"][i][j] for i in range(3) for j in range(3)] for p in points])
        doc = {"pickable_object_name": obj, "user_id": user_id, "session_id": sess, "run_name": run,
               "voxel_spacing": round(spacing[run], 3), "unit": "angstrom", "points": points,
               # a picker without orientations leaves every rotation the identity: copick then ignores them
               "trust_orientation": bool(not np.allclose(mats, np.eye(3).ravel()))}
        _atomic_write_json(pick_paths[key], doc)
        out.picks[str(pick_paths[key])] = len(points)
    _atomic_write_json(project.config_path, config)
    out.runs = list(spacing)
    return out


# -- import --------------------------------------------------------------------------------------
@dataclass
class _Picks:
    run: str
    object: str
    user: str
    session: str
    xyz: np.ndarray  # (n, 3) Å, shifts applied
    rot: np.ndarray  # (n, 3, 3) object -> tomogram
    score: np.ndarray
    path: Path


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_picks(path: Path, run: str) -> _Picks:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(path, "a copick picks file is a JSON object")
    user, sess, obj = path.stem.split("_")[:3]
    points = doc.get("points") or []
    if not isinstance(points, list):
        raise InputError(path, "points must be a list")
    trust = doc.get("trust_orientation", True) is not False
    n = len(points)
    xyz, rot, score = np.zeros((n, 3)), np.tile(np.eye(3), (n, 1, 1)), np.full(n, np.nan)
    for i, p in enumerate(points):
        loc = p.get("location") if isinstance(p, dict) else None
        if not isinstance(loc, dict) or not all(_finite(loc.get(a)) for a in "xyz"):
            raise InputError(path, f"point {i} has no finite location x, y, z")
        t = p.get("transformation_")
        t = np.eye(4) if t is None else t
        try:
            t = np.asarray(t, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(path, f"point {i}: transformation_ is not a 4x4 matrix of numbers") from None
        if t.shape != (4, 4) or not np.isfinite(t).all():
            raise InputError(path, f"point {i}: transformation_ is not a 4x4 matrix of finite numbers")
        if not np.allclose(t[3], [0, 0, 0, 1]):
            raise InputError(path, f"point {i}: the last row of transformation_ must be 0 0 0 1")
        r = t[:3, :3]
        if not (np.allclose(r @ r.T, np.eye(3), atol=_ORTHO_TOL) and np.linalg.det(r) > 0):
            raise InputError(path, f"point {i}: transformation_ does not hold a rotation")
        s = p.get("score", 1.0)
        if s is not None and not _finite(s):
            raise InputError(path, f"point {i}: score must be a finite number")
        xyz[i] = [loc["x"] + t[0, 3], loc["y"] + t[1, 3], loc["z"] + t[2, 3]]  # copick: centre = location + shift
        rot[i] = r if trust else np.eye(3)
        score[i] = np.nan if s is None else s
    return _Picks(run, obj, user, sess, xyz, rot, score, path)


def _runs(project: Project) -> list[str]:
    names = set()
    for root in project.roots:
        d = root / "ExperimentRuns"
        if d.is_dir():
            names |= {p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return sorted(names)


def _tomograms_of(project: Project, run: str) -> dict[tuple[float, str], Path]:
    """(voxel spacing, tomo type) -> zarr folder of a run; the overlay wins over the static root."""
    out = {}
    for root in reversed(project.roots):
        d = root / "ExperimentRuns" / run
        for vs_dir in d.glob("VoxelSpacing*") if d.is_dir() else ():
            try:
                vs = float(vs_dir.name[len("VoxelSpacing"):])
            except ValueError:
                continue
            for z in vs_dir.glob("*.zarr"):
                # <type>_<feature>_features.zarr beside a tomogram holds copick features, not a tomogram
                if z.is_dir() and not z.name.startswith(".") and not z.stem.endswith("_features"):
                    out[(vs, z.stem)] = z
    return out


def _zarr_shape(path: Path) -> list[int] | None:
    """The (z, y, x) shape of level 0 of an OME-Zarr tomogram (zarr v2 or v3), read from its metadata only."""
    for meta, key in ((path / "0" / ".zarray", "shape"), (path / "0" / "zarr.json", "shape")):
        if meta.is_file():
            try:
                shape = json.loads(meta.read_text()).get(key)
            except (OSError, ValueError):
                return None
            return [int(v) for v in shape] if isinstance(shape, list) and len(shape) == 3 else None
    return None


def _tomoflow_wedge(path: Path) -> dict:
    """The missing wedge a tomogram tomoflow exported records in its attributes (``tomoflow``), so that
    store -> copick -> store keeps it; {} for other tomograms (copick has no place for it)."""
    for meta in (path / ".zattrs", path / "zarr.json"):
        if meta.is_file():
            try:
                attrs = json.loads(meta.read_text())
            except (OSError, ValueError):
                return {}
            attrs = attrs.get("attributes", attrs) if meta.name == "zarr.json" else attrs
            info = attrs.get("tomoflow") if isinstance(attrs, dict) else None
            if not isinstance(info, dict):
                return {}
            tr, axis = info.get("tilt_range"), info.get("tilt_axis", 0.0)
            if (isinstance(tr, list) and len(tr) == 2 and all(_finite(v) for v in tr) and tr[0] < tr[1]
                    and _finite(axis)):
                return {"tilt_range": (float(tr[0]), float(tr[1])), "tilt_axis": float(axis)}
            return {}
    return {}


def import_copick(store: Store, config_or_dir, *, set_name: str, run: str | None = None,
                  object_name: str | None = None, user_id: str | None = None, session_id: str | None = None,
                  tomo_type: str | None = None, voxel_spacing: float | None = None, import_tomograms: bool = True,
                  chunk: int = 256, overwrite: bool = False) -> ParticleSet:
    """Read a local copick project's picks into a new table-only particle set ``set_name``.

    Picks are chosen by ``run``, ``object_name``, ``user_id`` and ``session_id`` (default: all picks of particle
    objects). Sessions ``cluster<k>`` become cluster k. Object names become the set's class names. With
    ``import_tomograms``, each run's tomogram (``tomo_type`` at ``voxel_spacing``; by default the run's only one)
    is imported as a tomogram named as the run, unless the store already holds it. Particles take the missing wedge
    of their tomogram in the store. Everything is read and checked before the store is touched.
    """
    from .omezarr import import_omezarr, inspect_omezarr

    project = read_project(config_or_dir)
    where = str(project.config_path)
    check_name(set_name, "particle set name")
    if store.has("particles", set_name) and not overwrite:
        raise InputError(store.path, f"particle set '{set_name}' already exists (use --overwrite to replace it)")
    for v, what in ((run, "run name"), (object_name, "object name"), (user_id, "user id"),
                    (session_id, "session id"), (tomo_type, "tomogram type")):
        if v is not None:
            _safe(v, what, where)
    if voxel_spacing is not None and not (math.isfinite(voxel_spacing) and voxel_spacing > 0):
        raise InputError(where, f"voxel spacing must be a positive number, not {voxel_spacing}")
    objects = {o["name"]: o for o in project.config.get("pickable_objects", [])}
    if object_name is not None and object_name not in objects:
        raise InputError(where, f"no pickable object {object_name!r} (have: {', '.join(sorted(objects)) or 'none'})")
    runs = _runs(project)
    if run is not None:
        if run not in runs:
            raise InputError(where, f"no run {run!r} in the project (have: {', '.join(runs) or 'none'})")
        runs = [run]

    picks: list[_Picks] = []
    for r in runs:
        _safe(r, "run name", where)
        seen = set()
        for root in project.roots:
            for f in sorted((root / "ExperimentRuns" / r / "Picks").glob("*.json")):
                parts = f.stem.split("_")
                if f.name.startswith(".") or len(parts) < 3 or f.name in seen:
                    continue
                u, s, o = parts[:3]
                if (user_id not in (None, u) or session_id not in (None, s) or object_name not in (None, o)
                        or not objects.get(o, {}).get("is_particle", True)):
                    continue
                seen.add(f.name)
                picks.append(_read_picks(f, r))
    picks = [p for p in picks if len(p.xyz)]
    if not picks:
        raise InputError(where, "no picks match (run, object, user, session) in this project")

    # each run's tomogram: geometry for the set, and what to import
    geometry, to_import = {}, []
    for r in dict.fromkeys(p.run for p in picks):
        check_name(r, "tomogram name (the run's name)")
        tomos = _tomograms_of(project, r)
        if voxel_spacing is not None:
            tomos = {k: v for k, v in tomos.items() if spacing_folder(k[0]) == spacing_folder(voxel_spacing)}
        if tomo_type is not None:
            tomos = {k: v for k, v in tomos.items() if k[1] == tomo_type}
        chosen = None
        if len(tomos) == 1:
            chosen = next(iter(tomos.items()))
        elif len(tomos) > 1:
            if import_tomograms and not store.has("tomograms", r):
                have = ", ".join(f"{t} at {vs:g} Å" for vs, t in sorted(tomos))
                raise InputError(where, f"run '{r}' has several tomograms ({have}); choose one (--tomo-type, "
                                        "--voxel-spacing)")
        elif import_tomograms and (tomo_type is not None or voxel_spacing is not None):
            raise InputError(where, f"run '{r}' has no tomogram of that type and spacing")
        if store.has("tomograms", r):
            a = store.attrs("tomograms", r)
            geometry[r] = {"shape": list(a["shape"]), "voxel_size": float(a["voxel_size"])}
            if import_tomograms and chosen is not None and overwrite:
                to_import.append((r, chosen[1]))
        elif chosen is not None:
            shape = _zarr_shape(chosen[1])
            if shape is None:
                raise InputError(chosen[1], "not an OME-Zarr tomogram (no 3-D array '0')")
            geometry[r] = {"shape": shape, "voxel_size": float(chosen[0][0])}
            if import_tomograms:
                to_import.append((r, chosen[1]))
    for r, path in to_import:
        inspect_omezarr(path)  # metadata problems are reported before the store is touched

    # the table
    names = sorted({p.object for p in picks})
    tomo, xyz, rot, score, cluster, tclass = [], [], [], [], [], []
    for p in picks:
        n = len(p.xyz)
        m = CLUSTER_SESSION.match(p.session)
        tomo += [p.run] * n
        xyz.append(p.xyz)
        rot.append(p.rot)
        score.append(p.score)
        cluster.append(np.full(n, int(m.group(1)) if m else -1))
        tclass.append(np.full(n, names.index(p.object)))
    xyz, rot = np.concatenate(xyz), np.concatenate(rot)
    angles = relion_angles(rot)
    cols = {"tomogram": np.asarray(tomo, dtype=object), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
            "rot": angles[:, 0], "tilt": angles[:, 1], "psi": angles[:, 2], "score": np.concatenate(score),
            "cluster": np.concatenate(cluster), "true_class": np.concatenate(tclass),
            "copick_user": np.asarray([p.user for p in picks for _ in p.xyz], dtype=object),
            "copick_session": np.asarray([p.session for p in picks for _ in p.xyz], dtype=object)}
    attrs = {"source": where, "copick": {"runs": sorted(set(tomo)), "files": [str(p.path) for p in picks]}}

    # now the store: tomograms first (the set's wedges come from them); undone if anything after fails
    imported = []
    try:
        for r, path in to_import:
            wedge = _tomoflow_wedge(path)
            import_omezarr(store, path, name=r, overwrite=overwrite, **wedge,
                           extra_attrs={"copick": {"config": where, "run": r, "tomo_type": path.stem}})
            imported.append(r)
        _inherit_wedges(store, cols)
        return create_particle_set(store, set_name, cols, box_size=None, chunk=chunk, class_names=names,
                                   tomograms=geometry, attrs=attrs, overwrite=overwrite)
    except BaseException:
        if not overwrite:
            for r in imported:
                store.delete("tomograms", r)
        raise
