"""STAR files written by other tools (tests/data/star: RELION 5 jobs from cylindra's test data, RELION 3/4 files
from the CZ cryoET data portal's ingestion tests) and the files tomoflow writes for RELION 5 and Warp/M."""

import numpy as np
import pytest
import starfile

from tomoflow.store import ParticleSet, Store, create_particle_set
from tomoflow.store.exchange import export_star, import_star
from tomoflow.store.tomograms import import_mrc
from conftest import data_file, run_cli, snapshot, write_mrc
from test_star import pose_matrices, relion_euler_matrix

CLASS3D = data_file("star", "cylindra_Class3D_job_class3d_run_it025_data.star")
REFINE3D = data_file("star", "cylindra_Refine3D_job_refine_run_it050_data.star")
TOMOGRAMS = data_file("star", "cylindra_Tomograms_job_tomo_tomograms.star")
PORTAL3 = data_file("star", "portal_relion_3_star.star")
PORTAL4 = data_file("star", "portal_relion_4_star.star")


def relion_centre(name):
    """The tomogram centre RELION uses (tomogram_set.cpp: bin-1 size / 2, in tilt-series pixels), in Å."""
    g = starfile.read(TOMOGRAMS, always_dict=True)["global"].set_index("rlnTomoName").loc[name]
    return np.array([g.rlnTomoSizeX, g.rlnTomoSizeY, g.rlnTomoSizeZ]) / 2.0 * g.rlnTomoTiltSeriesPixelSize


def test_relion5_subtomogram_pose_and_origin(tmp_path):
    """RELION 5's own conventions (particle_set.cpp): A = A_subtomogram A_particle, and the particle centre is
    the centred coordinate + the tomogram centre (bin-1 size / 2 in tilt-series pixels, from tomograms.star)
    - A_subtomogram @ origin."""
    store = Store.create(tmp_path / "s.zarr")
    ps = import_star(store, CLASS3D, "c3d", tomograms_star=TOMOGRAMS)
    df = ps.table_frame()
    raw = starfile.read(CLASS3D, always_dict=True)["particles"]
    assert ps.n == len(raw) == 10
    sub = pose_matrices(raw, ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi"))
    part = pose_matrices(raw, ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"))
    np.testing.assert_allclose(pose_matrices(df), sub @ part, atol=1e-9)
    centre = np.array([relion_centre(t) for t in raw.rlnTomoName])
    origin = raw[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy()
    cen = raw[["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]]
    expect = cen.to_numpy() + centre - np.einsum("nij,nj->ni", sub, origin)
    np.testing.assert_allclose(df[["x", "y", "z"]].to_numpy(), expect, atol=1e-6)
    # the subtomogram angles matter here: with them ignored the poses would be tens of degrees off
    assert np.degrees(np.arccos(np.clip((np.trace(np.swapaxes(part, 1, 2) @ sub @ part, axis1=1, axis2=2) - 1) / 2,
                                        -1, 1))).min() > 10
    # classes: named by their RELION numbers
    assert ps.class_names == [str(k) for k in sorted(set(raw.rlnClassNumber))] and len(ps.class_names) > 1
    assert [ps.class_names[k] for k in df.true_class] == [str(v) for v in raw.rlnClassNumber]
    # the tomograms.star geometry is kept with the set (tilt-series pixel size, binning, optics)
    geo = ps.info["tomograms"]["TS_01"]
    assert geo["tilt_series_pixel_size"] == 10.52 and geo["binning"] == 1.0 and geo["shape"] == [44, 136, 84]


def test_relion5_file_round_trip_keeps_everything(tmp_path):
    """STAR -> store -> STAR gives RELION the same particles: the same labels in the same order, the subtomogram
    angles, origins and centred coordinates as they were, particle angles with the same rotation matrices."""
    store = Store.create(tmp_path / "s.zarr")
    import_star(store, CLASS3D, "c3d", tomograms_star=TOMOGRAMS)
    export_star(store, "c3d", tmp_path / "back.star")
    a = starfile.read(CLASS3D, always_dict=True)
    b = starfile.read(tmp_path / "back.star", always_dict=True)
    assert list(b) == ["general", "optics", "particles"] and b["general"] == a["general"]
    pa, pb = a["particles"], b["particles"]
    assert list(pb.columns) == list(pa.columns)
    angles = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    for c in pa.columns:
        if c not in angles:
            if pa[c].dtype.kind in "fi":
                np.testing.assert_allclose(pb[c], pa[c], atol=2e-6, err_msg=c)
            else:
                assert pb[c].tolist() == pa[c].tolist(), c
    np.testing.assert_allclose(pose_matrices(pb, angles), pose_matrices(pa, angles), atol=1e-6)
    # and back into the store: the same poses and positions
    again = import_star(store, tmp_path / "back.star", "again", tomograms_star=TOMOGRAMS).table_frame()
    first = ParticleSet(store, "c3d").table_frame()
    np.testing.assert_allclose(pose_matrices(again), pose_matrices(first), atol=1e-6)
    np.testing.assert_allclose(again[["x", "y", "z"]], first[["x", "y", "z"]], atol=1e-6)


def test_relion5_refine_two_optics_groups(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    df = import_star(store, REFINE3D, "ref", tomograms_star=TOMOGRAMS).table_frame()
    raw = starfile.read(REFINE3D, always_dict=True)["particles"]
    origin = raw[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy()
    cen = raw[["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]]
    centre = np.array([relion_centre(t) for t in raw.rlnTomoName])
    expect = cen.to_numpy() + centre - origin  # no subtomogram angles: A_sub = I
    np.testing.assert_allclose(df[["x", "y", "z"]].to_numpy(), expect, atol=1e-6)
    np.testing.assert_allclose(pose_matrices(df), pose_matrices(raw, ("rlnAngleRot", "rlnAngleTilt",
                                                                       "rlnAnglePsi")), atol=1e-9)
    export_star(store, "ref", tmp_path / "back.star")
    b = starfile.read(tmp_path / "back.star", always_dict=True)
    assert b["optics"].rlnOpticsGroupName.tolist() == ["TS_01", "TS_02"]
    assert b["particles"].rlnOpticsGroup.tolist() == raw.rlnOpticsGroup.tolist()


def test_warp_file_from_the_data_portal(tmp_path):
    """RELION 3 / Warp: rlnMicrographName names the .tomostar, pixel coordinates from the centre of voxel 0,
    pixel size = detector pixel (µm) * 1e4 / magnification, origins in pixels subtracted."""
    store = Store.create(tmp_path / "s.zarr")
    df = import_star(store, PORTAL3, "w").table_frame()
    raw = starfile.read(PORTAL3)
    assert df.tomogram.tolist() == [n.replace(".tomostar", "") for n in raw.rlnMicrographName]
    px = 1.7005 * 1e4 / 10000.0
    expect = (raw[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
              - raw[["rlnOriginX", "rlnOriginY", "rlnOriginZ"]].to_numpy()) * px
    np.testing.assert_allclose(df[["x", "y", "z"]].to_numpy(), expect, atol=1e-9)


def test_relion4_file_from_the_data_portal(tmp_path, capsys):
    store = tmp_path / "s.zarr"
    code, _, err = run_cli(capsys, "import-star", store, PORTAL4, "--set", "r4")
    assert code == 2 and err.count("\n") == 1 and "need a pixel size (--pixel-size)" in err  # no pixel size there
    assert run_cli(capsys, "import-star", store, PORTAL4, "--set", "r4", "--pixel-size", "2")[0] == 0
    df = ParticleSet(Store.open(store), "r4").table_frame()
    raw = starfile.read(PORTAL4, always_dict=True)["particles"]
    expect = (raw[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy() * 2.0
              - raw[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy())
    np.testing.assert_allclose(df[["x", "y", "z"]].to_numpy(), expect, atol=1e-9)
    assert df.tomogram.tolist() == raw.rlnTomoName.tolist()


@pytest.fixture
def binned_store(tmp_path):
    """A 4x-binned tomogram (64 x 48 x 20 voxels at 8 Å) from a tilt series at 2 Å, with its microscope."""
    store = Store.create(tmp_path / "s.zarr")
    write_mrc(tmp_path / "t.mrc", np.zeros((20, 48, 64), np.float32), voxel_size=8.0)
    import_mrc(store, tmp_path / "t.mrc", name="TS_9", tilt_range=(-60, 60),
               extra_attrs={"tilt_series_pixel_size": 2.0, "binning": 4.0,
                            "microscope": {"voltage_kv": 200.0, "cs_mm": 2.0, "amplitude_contrast": 0.07}})
    return store


def test_export_for_relion5_uses_the_tilt_series_pixel_size(tmp_path, binned_store, rng):
    """RELION turns centred Å into unbinned tilt-series pixels with rlnTomoTiltSeriesPixelSize and the bin-1
    size of tomograms.star: done here as RELION does it, the exported particles land where they are."""
    n = 12
    xyz = rng.uniform([0, 0, 0], [64 * 8, 48 * 8, 20 * 8], (n, 3))
    create_particle_set(binned_store, "p", {"tomogram": ["TS_9"] * n, "x": xyz[:, 0], "y": xyz[:, 1],
                                            "z": xyz[:, 2], "rot": rng.uniform(-180, 180, n)})
    export_star(binned_store, "p", tmp_path / "p.star", tomograms_star=tmp_path / "tomograms.star")
    s = starfile.read(tmp_path / "p.star", always_dict=True)
    t = starfile.read(tmp_path / "tomograms.star", always_dict=True)["global"]
    assert list(s) == ["general", "optics", "particles"]
    o = s["optics"].iloc[0]
    assert (o.rlnTomoTiltSeriesPixelSize, o.rlnVoltage, o.rlnSphericalAberration, o.rlnAmplitudeContrast) == \
        (2.0, 200.0, 2.0, 0.07)
    assert (t.rlnTomoSizeX[0], t.rlnTomoSizeY[0], t.rlnTomoSizeZ[0], t.rlnTomoTomogramBinning[0]) == (256, 192, 80, 4)
    p = s["particles"]
    cen = p[["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]]
    size = t[["rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]].to_numpy()[0]
    relion_px = cen.to_numpy() / o.rlnTomoTiltSeriesPixelSize + size / 2.0  # getParticleCoordDecenteredPixel
    np.testing.assert_allclose(relion_px * 2.0, xyz, atol=1e-6)
    assert not (tmp_path / "p.star").read_text().startswith("# tomogram")  # nothing assumed
    # RELION 4 style: pixels of the tilt series
    export_star(binned_store, "p", tmp_path / "p4.star", fmt="relion4")
    p4 = starfile.read(tmp_path / "p4.star", always_dict=True)["particles"]
    np.testing.assert_allclose(p4[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(), xyz / 2.0,
                               atol=1e-6)
    back = import_star(binned_store, tmp_path / "p4.star", "p4").table_frame()
    np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), xyz, atol=1e-6)


def test_export_for_warp(tmp_path, binned_store, rng, capsys):
    n = 5
    xyz = rng.uniform(0, 150, (n, 3))
    ang = rng.uniform(-180, 180, (n, 3))
    create_particle_set(binned_store, "p", {"tomogram": ["TS_9"] * n, "x": xyz[:, 0], "y": xyz[:, 1],
                                            "z": xyz[:, 2], "rot": ang[:, 0], "tilt": ang[:, 1] / 2 + 90,
                                            "psi": ang[:, 2]})
    code, out, _ = run_cli(capsys, "export-star", binned_store.path, "p", "-o", tmp_path / "w.star",
                           "--format", "warp")
    assert code == 0 and "(warp)" in out
    blocks = starfile.read(tmp_path / "w.star", always_dict=True)
    assert list(blocks) == [""] or len(blocks) == 1  # one plain data_ block
    w = next(iter(blocks.values()))
    assert w.rlnMicrographName.tolist() == ["TS_9.tomostar"] * n
    np.testing.assert_allclose(w[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(), xyz / 8.0,
                               atol=1e-6)  # pixels of the tomogram, from the centre of voxel 0
    back = import_star(binned_store, tmp_path / "w.star", "back").table_frame()
    assert back.tomogram.tolist() == ["TS_9"] * n
    np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), xyz, atol=1e-5)  # 6 decimals of a pixel
    np.testing.assert_allclose(pose_matrices(back), pose_matrices(ParticleSet(binned_store, "p").table_frame()),
                               atol=1e-6)


def test_simulated_tomogram_exports_its_own_microscope(tmp_path):
    """Data simulated at 300 kV, Cs 2.0, amplitude contrast 0.07 must not be exported as Cs 2.7 / 0.1."""
    from tomoflow.store.exchange import _tomogram_optics

    optics, assumed = _tomogram_optics({"voxel_size": 9.2, "tilt_series_pixel_size": 9.2, "binning": 1.0,
                                        "microscope": {"voltage_kv": 300.0, "cs_mm": 2.0, "defocus_um": -5.0,
                                                       "amplitude_contrast": 0.07, "mtf": True}}, None)
    assert optics == {"pixel_size": 9.2, "binning": 1.0, "voltage": 300.0, "cs": 2.0, "amplitude_contrast": 0.07}
    assert assumed == []


def test_bad_tomograms_star(tmp_path, capsys, binned_store):
    before = snapshot(binned_store.path)
    bad = tmp_path / "bad.star"
    bad.write_text("data_global\n\nloop_\n_rlnTomoName #1\n_rlnTomoSizeX #2\nTS_9 100\n")
    code, _, err = run_cli(capsys, "import-star", binned_store.path, CLASS3D, "--set", "x", "--tomograms", bad)
    assert code == 2 and err.count("\n") == 1 and "not a RELION 5 tomogram set" in err
    # a tomograms.star that disagrees with the store's tomogram of the same name
    other = tmp_path / "other.star"
    other.write_text("data_global\n\nloop_\n_rlnTomoName\n_rlnTomoSizeX\n_rlnTomoSizeY\n_rlnTomoSizeZ\n"
                     "_rlnTomoTiltSeriesPixelSize\nTS_9 1000 800 200 1.0\n")
    code, _, err = run_cli(capsys, "import-star", binned_store.path, CLASS3D, "--set", "x", "--tomograms", other)
    assert code == 2 and "in the store" in err
    bad_class = tmp_path / "c.star"
    bad_class.write_text("data_particles\n\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n"
                         "_rlnClassNumber\nTS_9 1 2 3 0\n")
    code, _, err = run_cli(capsys, "import-star", binned_store.path, bad_class, "--set", "x")
    assert code == 2 and "rlnClassNumber must hold whole numbers >= 1" in err
    code, _, err = run_cli(capsys, "import-star", binned_store.path, PORTAL4, "--set", "x", "--pixel-size", "-1")
    assert code == 2 and err.startswith("tomoflow: error: --pixel-size: must be a positive number")
    create_particle_set(Store.open(tmp_path / "other.zarr") if (tmp_path / "other.zarr").exists()
                        else Store.create(tmp_path / "other.zarr"), "p", {"tomogram": ["t"], "x": [1.0], "y": [1.0],
                                                                         "z": [1.0]})
    code, _, err = run_cli(capsys, "export-star", tmp_path / "other.zarr", "p", "-o", tmp_path / "o.star",
                           "--pixel-size", "nan")
    assert code == 2 and "--pixel-size" in err and not (tmp_path / "o.star").exists()
    assert snapshot(binned_store.path) == before


def test_import_tomogram_records_the_tilt_series_frame(tmp_path, capsys):
    """--tilt-series-pixel-size at import is what a later RELION export writes (binning = voxel size / it)."""
    write_mrc(tmp_path / "t.mrc", np.zeros((20, 48, 64), np.float32), voxel_size=8.0)
    store = tmp_path / "s.zarr"
    assert run_cli(capsys, "import-tomogram", store, tmp_path / "t.mrc", "--name", "TS_5",
                   "--tilt-series-pixel-size", "2", "--tilt-range", "-60", "60")[0] == 0
    s = Store.open(store)
    create_particle_set(s, "p", {"tomogram": ["TS_5"], "x": [100.0], "y": [50.0], "z": [40.0]})
    code, out, _ = run_cli(capsys, "export-star", store, "p", "-o", tmp_path / "p.star", "--tomograms-star",
                           tmp_path / "tomograms.star")
    assert code == 0 and "tomograms.star" in out
    o = starfile.read(tmp_path / "p.star", always_dict=True)["optics"]
    t = starfile.read(tmp_path / "tomograms.star", always_dict=True)["global"]
    assert o.rlnTomoTiltSeriesPixelSize[0] == 2.0 and t.rlnTomoTomogramBinning[0] == 4.0
    assert (t.rlnTomoSizeX[0], t.rlnTomoSizeY[0], t.rlnTomoSizeZ[0]) == (256, 192, 80)
    # and the set imported back with that tomograms.star lands where it was
    back = import_star(s, tmp_path / "p.star", "back", tomograms_star=tmp_path / "tomograms.star").table_frame()
    np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy()[0], [100.0, 50.0, 40.0], atol=1e-5)
