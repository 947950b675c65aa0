"""A user's own tomograms, no ground truth (seed 000 sections 2.3 and 4): import with their acquisition metadata,
cut background from the data, simulate a training set that matches the data, name what each cluster's average is.

The path: :func:`import_tomograms` (voxel size, tilt range and axis, microscope per tomogram; the contrast detected)
-> the tilt range estimated where unknown (:func:`estimate_wedges`) -> picking and extraction (as for any data;
bright tomograms are flipped to the dark convention of the simulator at extraction) -> :func:`cut_background`
(boxes away from every pick) -> :func:`simulate_matched` (known structures simulated at the data's voxel size, box,
tilt range, axis, microscope and SNR estimated from the data, plus the data's own background as a class) -> train,
features, k-means, averages -> :func:`match_structures` (the known structure each average matches, or "unknown")
-> :func:`export_clusters` (a RELION 5 STAR of each cluster's particles and its average as MRC).
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..params import DatasetSpec, ImportParams, Microscope
from ..store import ParticleSet, Store, import_mrc, open_level, tomogram_info

# per-tomogram metadata keys a user may give (YAML mapping name -> keys, or CSV columns with a "name" column)
META_KEYS = ("voxel_size", "tilt_min", "tilt_max", "tilt_axis", "defocus", "voltage", "cs", "amplitude_contrast",
             "tilt_series_pixel_size", "binning")


def _new_set(store: Store, name: str, columns: dict, volumes, *, overwrite: bool = False, **kw) -> ParticleSet:
    """A particle set with its volumes, built in staging and moved into place only once every volume is written
    (``volumes``: an iterable of (start row, array) blocks)."""
    from ..store.particles import build_particle_set, group_path

    with store.staged("particles", name, overwrite=overwrite) as g:
        build_particle_set(g, columns, **kw)
        ps = ParticleSet(store, name, staged_at=group_path(g))
        for start, block in volumes:
            ps.write_volumes(start, np.asarray(block, np.float32))
    return ParticleSet(store, name)


def read_metadata(path) -> dict[str, dict]:
    """Per-tomogram metadata from a YAML mapping ``{name: {voxel_size: .., tilt_min: .., ...}}`` or a CSV file with
    a ``name`` column and any of :data:`META_KEYS`; names are the MRC files' names without extension."""
    p = Path(path)
    if not p.is_file():
        raise InputError(str(path), "no such metadata file")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(p.read_text()) or {}
            rows = {str(k): dict(v or {}) for k, v in doc.items()} if isinstance(doc, dict) else None
        else:
            with open(p, newline="") as f:
                rows = {r.pop("name"): r for r in csv.DictReader(f)}
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(str(path), f"not a metadata table ({exc})") from None
    if rows is None:
        raise InputError(str(path), "a metadata file maps each tomogram's name to its values")
    out = {}
    for name, row in rows.items():
        unknown = sorted(set(row) - set(META_KEYS))
        if unknown:
            raise InputError(str(path), f"tomogram '{name}': unknown key '{unknown[0]}' (known: {', '.join(META_KEYS)})")
        try:
            out[name] = {k: float(v) for k, v in row.items() if v not in (None, "")}
        except ValueError as exc:
            raise InputError(str(path), f"tomogram '{name}': {exc}") from None
    return out


def import_tomograms(store: Store, files, *, metadata: dict | None = None, params: ImportParams = ImportParams(),
                     contrast: str = "auto", overwrite: bool = False, progress: bool | None = None) -> dict:
    """Import MRC tomograms or OME-Zarr images (paths or glob patterns) with their metadata (:func:`read_metadata`; the MRC header's
    voxel size otherwise). Each tomogram's attributes get its microscope and its contrast ("dark" or "bright":
    ``contrast``, or detected from its values when "auto"). Returns {name: contrast}."""
    from glob import glob

    from .pick import tomogram_polarity

    if contrast not in ("auto", "dark", "bright"):
        raise InputError("contrast", f"is auto, dark or bright, not {contrast!r}")
    paths = []
    for f in files:
        hits = sorted(glob(str(f))) if any(c in str(f) for c in "*?[") else [str(f)]
        if not hits:
            raise InputError(str(f), "no file matches")
        paths += hits
    metadata = metadata or {}
    names = [Path(p).name.split(".")[0] for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(twice[0], "two files would be tomograms of this one name; rename one")
    from ..io.mrc import inspect_mrc
    from ..store.omezarr import import_omezarr, inspect_omezarr, looks_like_zarr

    for path, name in zip(paths, names):  # every header before anything is written (MRC files or OME-Zarr folders)
        if looks_like_zarr(path):
            inspect_omezarr(path, voxel_size=metadata.get(name, {}).get("voxel_size", params.voxel_size))
        else:
            inspect_mrc(path)
    unknown = sorted(set(metadata) - set(names))
    if unknown:
        raise InputError(unknown[0], "metadata for a tomogram that is not among the files")
    plan = []
    for path, name in zip(paths, names):  # every tomogram's values checked before anything is written
        m = metadata.get(name, {})
        tilt = (m["tilt_min"], m["tilt_max"]) if "tilt_min" in m and "tilt_max" in m else params.tilt_range
        ip = ImportParams(voxel_size=m.get("voxel_size", params.voxel_size), tilt_range=tilt,
                          tilt_axis=m.get("tilt_axis", params.tilt_axis), chunk=params.chunk, levels=params.levels,
                          tilt_series_pixel_size=m.get("tilt_series_pixel_size", params.tilt_series_pixel_size),
                          binning=m.get("binning", params.binning))
        mic = Microscope(**{k: v for k, v in (("voltage_kv", m.get("voltage")), ("cs_mm", m.get("cs")),
                                              ("defocus_um", m.get("defocus")),
                                              ("amplitude_contrast", m.get("amplitude_contrast"))) if v is not None})
        plan.append((path, name, ip, mic))
    out = {}
    for path, name, ip, mic in plan:
        load = import_omezarr if looks_like_zarr(path) else functools.partial(import_mrc, progress=progress)
        info = load(store, path, name=name, voxel_size=ip.voxel_size, chunk=ip.chunk, levels=ip.levels,
                    tilt_range=ip.tilt_range, tilt_axis=ip.tilt_axis, overwrite=overwrite,
                    extra_attrs={"microscope": mic.as_dict(), **ip.relion_attrs()})
        c = contrast
        if c == "auto":
            c = tomogram_polarity(store, info.name)  # detected: nothing recorded yet
        _set_tomogram_attrs(store, info.name, {"contrast": c})
        out[info.name] = c
    return out


def _set_tomogram_attrs(store: Store, name: str, extra: dict) -> None:
    import zarr

    g = zarr.open_group(str(store.node_path("tomograms", name)), mode="r+")
    g.attrs["tomoflow"] = {**g.attrs["tomoflow"], **extra}


def estimate_wedges(store: Store, names=None) -> dict:
    """The tilt range of every tomogram (or those named) that has none, estimated from its Fourier amplitudes
    (tilt axis y) and written to its attributes. Returns {name: (min, max) or None when it was known}."""
    from ..kernels.estimate import estimate_tilt_range, tomogram_blocks_for_wedge

    out = {}
    for name in names or [t for t in store.names("tomograms") if not t.endswith("_scores")]:
        info = tomogram_info(store, name)
        if info.tilt_range is not None:
            out[name] = None
            continue
        lo, hi = estimate_tilt_range(tomogram_blocks_for_wedge(open_level(store, name, 0)))
        _set_tomogram_attrs(store, name, {"tilt_range": [lo, hi], "tilt_range_estimated": True})
        out[name] = (lo, hi)
    return out


def cut_background(store: Store, picks: str, out: str, *, per_tomogram: int = 50, box: int = 32, level: int = 0,
                   min_distance_A: float | None = None, flip_bright: bool = True, seed: int = 0,
                   overwrite: bool = False) -> dict:
    """A particle set ``out`` of ``box``^3 boxes at random positions of each tomogram of ``picks``, each at least
    ``min_distance_A`` (default: one box) from every pick: the data's own background, labelled "background".
    Bright tomograms are flipped to the dark convention when ``flip_bright`` (as extraction does)."""
    from ..kernels.background import background_positions
    from ..kernels.extraction import cut_box
    from ..kernels.peaks import level_to_angstrom

    src = ParticleSet(store, picks)
    t = src.table_frame(["tomogram", "x", "y", "z", "tilt_min", "tilt_max", "tilt_axis"])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBAC6]))
    rows, vols = [], []
    for name in sorted(t.tomogram.unique()):
        info = tomogram_info(store, name)
        vs = info.voxel_size * 2**level
        vol = open_level(store, name, level)
        sel = t[t.tomogram == name]
        picks_zyx = (sel[["z", "y", "x"]].to_numpy() / info.voxel_size - (2**level - 1) / 2) / 2**level
        dist = (min_distance_A / vs) if min_distance_A else float(box)
        pos = background_positions(vol.shape, picks_zyx, per_tomogram, box, dist, rng)
        sign = -1.0 if flip_bright and store.attrs("tomograms", name).get("contrast") == "bright" else 1.0
        for p in pos:
            vols.append(sign * cut_box(vol, p - box // 2, box))
            xyz = level_to_angstrom(p, level, info.voxel_size)[::-1]
            tilt = info.tilt_range or (np.nan, np.nan)
            rows.append({"tomogram": name, "x": xyz[0], "y": xyz[1], "z": xyz[2], "tilt_min": tilt[0],
                         "tilt_max": tilt[1], "tilt_axis": info.tilt_axis, "vs": vs})
    if not rows:
        raise InputError(picks, "no room for background boxes away from the picks")
    if max(r["vs"] for r in rows) > min(r["vs"] for r in rows) * (1 + 1e-3):
        raise InputError(picks, "its tomograms have different voxel sizes: cut background for each apart")
    cols = {k: np.asarray([r[k] for r in rows]) for k in rows[0] if k != "vs"}
    cols["true_class"] = np.zeros(len(rows), np.int32)
    _new_set(store, out, cols, [(0, np.stack(vols))], overwrite=overwrite, box_size=box, chunk=256,
             voxel_size=rows[0]["vs"], class_names=["background"], tomograms=src.info.get("tomograms"),
             attrs={"background": {"from": picks, "level": level, "min_distance_voxels": dist}})
    return {"boxes": len(rows), "tomograms": int(t.tomogram.nunique())}


def matched_spec(store: Store, particles: str, background: str, structures, *, per_class: int = 200,
                 seed: int = 0) -> tuple[DatasetSpec, dict]:
    """The simulation spec that matches the data: the particles' box and voxel size, the tomograms' tilt range
    (half of its span, symmetric) and axis, microscope (the first tomogram's), and the SNR estimated against the
    data's own background (:func:`tomoflow.kernels.background.snr_from_background`)."""
    from ..kernels.background import snr_from_background

    ps, bg = ParticleSet(store, particles), ParticleSet(store, background)
    if ps.box_size is None or bg.box_size != ps.box_size or not np.isclose(bg.voxel_size or 0, ps.voxel_size or 0):
        raise InputError(background, f"background boxes ({bg.box_size}^3 of {bg.voxel_size} Å) must match the "
                                     f"particles' ({ps.box_size}^3 of {ps.voxel_size} Å)")
    t = ps.rows(slice(0, ps.n), ["tomogram", "tilt_min", "tilt_max", "tilt_axis"])
    half = float(np.nanmedian((t["tilt_max"] - t["tilt_min"]) / 2)) if np.isfinite(t["tilt_min"]).any() else 60.0
    first = sorted(set(t["tomogram"]))[0]
    mic = store.attrs("tomograms", first).get("microscope") if store.has("tomograms", first) else None
    n = min(ps.n, 256)
    rng = np.random.default_rng(seed)
    snr = snr_from_background(ps.read_rows(np.sort(rng.choice(ps.n, n, replace=False))),
                              bg.read_volumes(slice(0, min(bg.n, 256))))
    spec = DatasetSpec(classes=tuple(structures), per_class=per_class, snrs=(round(snr, 4),),
                       tilt_ranges=(round(min(max(half, 1.0), 90.0), 2),), include_empty=False, box=ps.box_size,
                       voxel_size=float(ps.voxel_size), resolution=2 * float(ps.voxel_size),
                       tilt_axis=float(np.nanmedian(t["tilt_axis"])), microscope=mic or Microscope(), seed=seed)
    return spec, {"snr": snr, "tilt_half_range": half, "microscope_from": first if mic else "default"}


def simulate_matched(store: Store, particles: str, background: str, out: str, structures, *, per_class: int = 200,
                     seed: int = 0, client=None, progress: bool | None = None) -> dict:
    """Training set ``out``: the known ``structures`` simulated to match the data (:func:`matched_spec`) plus the
    data's own background boxes as the class "background" (as many as it has, at most ``per_class``)."""
    from ..ops.simulate import simulate_dataset

    spec, how = matched_spec(store, particles, background, structures, per_class=per_class, seed=seed)
    sim = f"{out}.simulated"
    simulate_dataset(store, sim, spec, chunk=128, client=client, progress=progress, overwrite=True)
    s, bg = ParticleSet(store, sim), ParticleSet(store, background)
    n_bg = min(bg.n, per_class)
    n = s.n + n_bg
    label = np.concatenate([s.rows(slice(0, s.n), ["true_class"])["true_class"], np.full(n_bg, len(spec.classes))])
    wedge = {k: np.concatenate([s.rows(slice(0, s.n), [k])[k], bg.rows(slice(0, n_bg), [k])[k]])
             for k in ("tilt_min", "tilt_max", "tilt_axis")}
    blocks = [(a, s.read_volumes(slice(a, min(a + 128, s.n)))) for a in range(0, s.n, 128)]
    ps = _new_set(store, out, {"tomogram": np.full(n, "", dtype=object), "true_class": label, **wedge},
                  [*blocks, (s.n, bg.read_volumes(slice(0, n_bg)))], overwrite=True, box_size=spec.box, chunk=128,
                  voxel_size=spec.voxel_size, class_names=[*spec.classes, "background"],
                  attrs={"matched_simulation": {**how, "spec": spec.to_json(), "background": background,
                                                "simulated": sim}})
    return {"set": out, "particles": n, "snr": how["snr"], "tilt_half_range": how["tilt_half_range"],
            "classes": ps.class_names}


def match_structures(store: Store, average: str, structures, *, threshold_nm: float = 7.0,
                     predictions: str | None = "features") -> list[dict]:
    """For every map of the averages ``average``: the known structure it matches best (structural discrepancy,
    FSC 0.5 after alignment, to the structure's CTF-filtered map), named only when that is within ``threshold_nm``
    and, where the CNN's predicted classes of the members are known (array ``<predictions>_class`` of the averaged
    set), most members are predicted as that structure too; otherwise "unknown": a cluster that may hold a
    structure the CNN was not trained on. (At small boxes every blob agrees with every map to low resolution,
    so the map alone names too readily.)"""
    from ..kernels.fsc import structural_discrepancy
    from ..simulate.templates import structure_template

    maps, vs, info = store.read_map(average)
    box = maps.shape[-1]
    mic, detector = _microscope_of(store, info.get("set"))
    refs = {s: structure_template(s, vs, box, resolution=2 * vs, microscope=mic, detector_voxel=detector)
            for s in structures}
    votes = _predicted_votes(store, info.get("set"), predictions)
    out = []
    for i, r in enumerate(info.get("results", [{"cluster": -1, "class": 0}] * len(maps))):
        d = {s: structural_discrepancy(ref, maps[i], vs)["discrepancy_nm"] for s, ref in refs.items()}
        best = min(d, key=d.get) if d else None
        predicted, share = votes(r["cluster"]) if votes else (None, None)
        named = bool(best) and d[best] < threshold_nm and (predicted is None or predicted == best)
        out.append({"cluster": r["cluster"], "class": r["class"], "best": best,
                    "discrepancy_nm": d.get(best) if best else None, "predicted": predicted,
                    "predicted_share": share, "match": best if named else "unknown", "all": d})
    return out


def _microscope_of(store: Store, set_name: str | None):
    """(microscope, unbinned voxel size) of the first tomogram of the set, as recorded at import; (None, None)
    (the defaults) when unknown."""
    if not set_name or not store.has("particles", set_name):
        return None, None
    ps = ParticleSet(store, set_name)
    names = sorted(set(ps.rows(slice(0, min(ps.n, 1000)), ["tomogram"])["tomogram"]))
    for t in names:
        if t and store.has("tomograms", t):
            a = store.attrs("tomograms", t)
            mic = a.get("microscope")
            return (Microscope(**mic) if mic else None), a.get("voxel_size")
    return None, None


def _predicted_votes(store: Store, set_name: str | None, predictions: str | None):
    """cluster -> (the class most members are predicted as, its share), from the CNN's predicted classes; None
    when the set has none."""
    if not predictions or not set_name or not store.has("particles", set_name):
        return None
    ps = ParticleSet(store, set_name)
    arr = f"{predictions}_class"
    if arr not in ps.arrays():
        return None
    names = ps.array(arr).attrs.get("tomoflow", {}).get("class_names") or []
    pred = np.asarray(ps.array(arr)[:])
    labels = ps.rows(slice(0, ps.n), ["cluster"])["cluster"]

    def vote(cluster):
        p = pred[(labels == cluster) if cluster >= 0 else np.ones(ps.n, bool)]
        p = p[(p >= 0) & (p < len(names))]
        if not len(p):
            return None, None
        top = int(np.bincount(p).argmax())
        return names[top], float(np.mean(p == top))

    return vote


def export_clusters(store: Store, set_name: str, average: str, out_dir, *, clusters="all") -> list[dict]:
    """For each chosen cluster (ids, or "all" that were averaged): a RELION 5 particle STAR of its particles
    (``cluster_<id>.star``) and its average as MRC with its voxel size (``cluster_<id>_average.mrc``)."""
    from ..io.mrc import write_mrc
    from ..store.exchange import export_star

    maps, vs, info = store.read_map(average)
    results = info.get("results", [])
    done = {r["cluster"]: i for i, r in enumerate(results) if r.get("class", 0) == 0}
    chosen = sorted(done) if clusters == "all" else [int(c) for c in clusters]
    missing = [c for c in chosen if c not in done]
    if missing:
        raise InputError(average, f"cluster {missing[0]} was not averaged (have: {sorted(done)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ps = ParticleSet(store, set_name)
    t = ps.rows(slice(0, ps.n), ["cluster", "x", "y", "z"])
    labels = t["cluster"]
    arrays = ps.arrays()
    key = next((k for k in (f"{average}_pose_final", f"{average}_pose") if k in arrays), None)
    pose = np.asarray(ps.array(key)[:], np.float64) if key else None  # in the final map's frame where recorded
    classes = np.asarray(ps.array(f"{average}_class")[:]) if f"{average}_class" in ps.arrays() else None
    written = []
    for c in chosen:
        tag = "all" if c < 0 else str(c)
        member = labels == c if c >= 0 else np.ones(ps.n, bool)
        if classes is not None and int(info.get("classes", 1)) > 1:
            member &= classes == 0  # the particles of the map written beside them (class 0)
        cols = {}
        if pose is not None:  # the poses the average was made with; the refined centre is position + shift
            p = pose[member]
            cols = {"rot": p[:, 0], "tilt": p[:, 1], "psi": p[:, 2]}
            for i, axis in enumerate("xyz"):
                cols[axis] = t[axis][member] + p[:, 3 + i] * vs
        star = out_dir / f"cluster_{tag}.star"
        n = export_star(store, set_name, star, rows=member, columns=cols)
        mrc = out_dir / f"cluster_{tag}_average.mrc"
        write_mrc(mrc, maps[done[c]], vs)
        written.append({"cluster": c, "particles": int(n), "star": str(star), "average": str(mrc)})
    (out_dir / "clusters.json").write_text(json.dumps(written, indent=1))
    return written
