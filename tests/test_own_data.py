"""A user's own tomograms with no labels, end to end on real data: two real microtubule crops (uint16 and float32
MRC, density bright) through import, wedge estimate, picking, extraction, background, a matched simulated training
set, training, features, k-means, averages, naming, the report and the STAR + MRC export."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tomoflow.kernels.background import background_positions, detect_polarity, snr_from_background
from tomoflow.store import ParticleSet, Store

DATA = Path(__file__).resolve().parent / "data" / "realdata"


def test_background_positions_keep_away_from_picks_and_inside():
    rng = np.random.default_rng(0)
    picks = np.array([[20, 50, 50], [20, 20, 80]])
    pos = background_positions((40, 100, 100), picks, 30, 16, 12.0, rng)
    assert len(pos) == 30
    assert (pos - 8 >= 0).all() and (pos + 8 <= [40, 100, 100]).all()
    d = np.linalg.norm(pos[:, None] - picks[None], axis=2)
    assert d.min() >= 12.0
    dd = np.linalg.norm(pos[:, None] - pos[None], axis=2) + np.eye(len(pos)) * 99
    assert dd.min() >= 12.0


def test_snr_from_background_and_polarity():
    rng = np.random.default_rng(1)
    signal = np.zeros((20, 16, 16, 16))
    signal[:, 6:10, 6:10, 6:10] = 1.0
    sigma = np.sqrt(signal[0].var() / 0.5)  # SNR 0.5 in a box
    particles = signal + rng.normal(0, sigma, signal.shape)
    background = rng.normal(0, sigma, signal.shape)
    assert snr_from_background(particles, background) == pytest.approx(0.5, rel=0.15)
    vol = rng.normal(0, 1, (32, 32, 32))
    vol[10:14, 10:14, 10:14] += 8  # a dense object, bright
    assert detect_polarity(vol) == "bright" and detect_polarity(-vol) == "dark"


def test_the_own_data_pipeline_runs_on_real_tomograms(tmp_path, capsys):
    from tomoflow.pipeline import parse_pipeline, run_pipeline

    (tmp_path / "tomograms").mkdir()
    for f in DATA.glob("*.mrc"):
        shutil.copy(f, tmp_path / "tomograms" / f.name)
    (tmp_path / "meta.yaml").write_text("mt13pf_10: {tilt_min: -60, tilt_max: 60, defocus: -4.0, voltage: 300}\n")
    doc = {"store": "own.zarr", "stages": [
        {"import_tomograms": {"files": ["tomograms/*.mrc"], "metadata": "meta.yaml", "chunk": 32}},
        "estimate_wedge", {"filter": {"filter": "gaussian", "sigma": 1.0}},
        {"pick": {"polarity": "auto", "sigma": 60, "threshold": 1.0, "min_distance": 120, "level": 0}},
        {"extract": {"box": 16, "flip_bright": True, "chunk": 32}},
        {"cut_background": {"per_tomogram": 12, "box": 16}},
        {"simulate_training": {"structures": ["4v8r", "6zu5"], "per_class": 12}},
        {"train": {"set": "training", "epochs": 1, "batch_size": 8}},
        {"features": {"set": "particles"}},
        {"cluster": {"set": "particles", "k": 2}},
        {"average": {"set": "particles", "classes": 1, "iterations": 1, "min_members": 2}},
        {"match_structures": {"structures": ["4v8r", "6zu5"]}},
        {"report": {"set": "particles", "training": "training", "tsne_points": 200}},
        {"export_clusters": {"set": "particles", "out": "results"}}]}
    rec = run_pipeline(parse_pipeline(doc, "own.yaml"), out=tmp_path, local=0, progress=False,
                       performance_report=False)
    summary = {s["type"]: s["summary"] for s in rec["stages"]}
    store = Store.open(tmp_path / "own.zarr")

    # import: both MRC modes, bright contrast detected, metadata applied where given
    assert summary["import_tomograms"]["contrast"] == {"mt13pf_10": "bright", "mt14pf_10": "bright"}
    a = store.attrs("tomograms", "mt13pf_10")
    assert a["tilt_range"] == [-60.0, 60.0] and a["microscope"]["defocus_um"] == -4.0
    assert "mt14pf_10" in summary["estimate_wedge"]["estimated"]  # no tilt range given: estimated
    assert sorted(summary["filter"]["filtered"]) == ["mt13pf_10_filtered", "mt14pf_10_filtered"]

    # picks lie on the density (bright filament), not in the ice
    picks = ParticleSet(store, "picks").table_frame()
    assert len(picks) >= 4 and set(picks.tomogram) <= {"mt13pf_10", "mt14pf_10"}  # filtered copies not picked
    for name in ("mt13pf_10", "mt14pf_10"):
        vol = np.asarray(store.group("tomograms", name)["0"][...], np.float64)
        sel = picks[picks.tomogram == name]
        zyx = np.rint(sel[["z", "y", "x"]].to_numpy() / 10.52).astype(int)
        at = vol[tuple(np.clip(zyx, 0, np.array(vol.shape) - 1).T)]
        assert np.median(at) > np.percentile(vol, 75), name

    # the training set matches the data: box, voxel size, SNR from the data; background from the data itself
    tr = ParticleSet(store, "training")
    assert tr.class_names == ["4v8r", "6zu5", "background"] and tr.box_size == 16
    assert tr.voxel_size == pytest.approx(10.52, abs=0.01)
    assert summary["simulate_training"]["snr"] > 0
    # extracted particles flipped to the dark convention of the simulator
    assert ParticleSet(store, "particles").info["extraction"]["flip_bright"] is True

    # averages named, report readable, results written
    matches = summary["match_structures"]["matches"]
    assert set(matches.values()) <= {"4v8r", "6zu5", "unknown"} and matches
    page = (tmp_path / "report.html").read_text()
    assert "Picks" in page and "coloured by cluster" in page and "closest known" in page
    assert not re.search(r"majority class", page)  # no ground-truth sections on data without truth
    results = sorted((tmp_path / "results").iterdir())
    stars = [p for p in results if p.suffix == ".star"]
    mrcs = [p for p in results if p.suffix == ".mrc"]
    assert stars and len(stars) == len(mrcs)
    with mrcfile.open(mrcs[0]) as m:
        assert m.data.shape == (16, 16, 16) and m.voxel_size.x == pytest.approx(10.52, abs=0.01)
    assert "rlnCenteredCoordinateXAngst" in stars[0].read_text() or "rlnCoordinateX" in stars[0].read_text()
    # the same from the command line
    from conftest import run_cli

    code, out, _ = run_cli(capsys, "export-clusters", store.path, "particles", "-o", tmp_path / "cli")
    assert code == 0 and sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in results)


def test_an_average_is_named_only_when_the_map_and_the_cnn_agree(tmp_path):
    from tomoflow.ops.own_data import match_structures
    from tomoflow.simulate.templates import structure_template
    from tomoflow.store import create_particle_set

    store = Store.create(tmp_path / "s.zarr")
    ps = create_particle_set(store, "p", {"x": np.zeros(6), "cluster": [0, 0, 0, 1, 1, 1]})
    ps.create_array("features_class", (), "int32", fill_value=-1, attrs={"class_names": ["4v8r", "6zu5"]})
    ps.array("features_class")[:] = [0, 0, 1, 1, 1, 0]  # cluster 0: mostly 4v8r; cluster 1: mostly 6zu5
    m = structure_template("4v8r", 24.0, 24, resolution=48.0)
    store.write_map("avg", np.stack([m, m]), 24.0, attrs={"set": "p", "results": [
        {"cluster": 0, "class": 0}, {"cluster": 1, "class": 0}]})
    res = {r["cluster"]: r for r in match_structures(store, "avg", ["4v8r", "6zu5"])}
    assert res[0]["best"] == "4v8r" and res[0]["match"] == "4v8r" and res[0]["predicted_share"] == pytest.approx(2 / 3)
    assert res[1]["best"] == "4v8r" and res[1]["predicted"] == "6zu5" and res[1]["match"] == "unknown"
    # without the CNN's predictions the map alone decides
    assert match_structures(store, "avg", ["4v8r", "6zu5"], predictions=None)[1]["match"] == "4v8r"


def test_a_density_map_can_be_a_known_structure(tmp_path):
    """An MRC map (a real EMDB average, 20^3 at 11.4 Å) as a training structure: resampled to the data's voxel
    size, centred, low-passed; simulated like an atomic model; and its template compares like one."""
    from scipy import ndimage

    from tomoflow.kernels.fsc import structural_discrepancy
    from tomoflow.ops.simulate import simulate_dataset
    from tomoflow.params import DatasetSpec
    from tomoflow.simulate.structures import structure_density

    emd = str(Path(__file__).resolve().parent / "data" / "maps" / "EMD-3197.map")
    at_own = structure_density(emd, 20, 11.4, 11.4)
    with mrcfile.open(emd) as m:
        raw = np.asarray(m.data, np.float64)
    # at its own voxel size: centred, and the same structure (measured 4.1 nm; Nyquist 2.3 nm, low-passed to 1.1 nm)
    assert np.allclose(ndimage.center_of_mass(at_own), [10, 10, 10], atol=0.6)
    assert structural_discrepancy(np.clip(raw - np.median(raw), 0, None).astype(np.float32), at_own,
                                  11.4)["discrepancy_nm"] < 5.0
    # resampled to twice the voxel size it is the same object at half the voxel extent (a version that ignored the
    # voxel sizes would give a map twice too large): measured correlation 0.977
    coarse = structure_density(emd, 16, 22.8, 45.6)
    big = structure_density(emd, 32, 11.4, 45.6)
    assert np.corrcoef(big.ravel(), ndimage.zoom(coarse, 2, order=1).ravel())[0, 1] > 0.9
    store = Store.create(tmp_path / "s.zarr")
    spec = DatasetSpec(classes=(emd, "4v8r"), per_class=3, snrs=(1000.0,), box=16, voxel_size=22.8, resolution=45.6,
                       include_empty=False, seed=3)
    simulate_dataset(store, "d", spec, progress=False)
    v = ParticleSet(store, "d").read_volumes(slice(0, 6))
    assert np.isfinite(v).all() and all(x.std() > 0 for x in v)
