"""RELION STAR particle files: STAR -> store -> STAR, store -> STAR -> store, coordinate conventions."""

import numpy as np
import pandas as pd
import pytest
import starfile

from tomoflow.kernels.geometry import box_center, tomogram_center_angstrom
from tomoflow.store import ParticleSet, Store, create_particle_set
from tomoflow.store.exchange import export_star, import_star
from conftest import run_cli

RELION5 = """
# version 50001

data_general

_rlnTomoSubTomosAre2DStacks                       1


# version 50001

data_optics

loop_
_rlnVoltage #1
_rlnSphericalAberration #2
_rlnAmplitudeContrast #3
_rlnTomoTiltSeriesPixelSize #4
_rlnOpticsGroup #5
_rlnOpticsGroupName #6
_rlnImagePixelSize #7
_rlnImageSize #8
  300.000000     2.700000     0.100000     1.350000            1    optics1     5.400000           64


# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCenteredCoordinateXAngst #2
_rlnCenteredCoordinateYAngst #3
_rlnCenteredCoordinateZAngst #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
_rlnOpticsGroup #8
_rlnTomoParticleName #9
_rlnImageName #10
_rlnOriginXAngst #11
_rlnOriginYAngst #12
_rlnOriginZAngst #13
_rlnClassNumber #14
_rlnRandomSubset #15
TS_01 -176.940000 765.480050 11.160000 -126.278950 65.873044 99.174441 1 TS_01/1 Extract/job1/TS_01/1_data.mrc -2.419040 2.498456 -6.784040 1 1
TS_01 51.550009 9.700021 11.160000 -129.161820 68.397859 99.239662 1 TS_01/2 Extract/job1/TS_01/2_data.mrc 0.315956 -1.236540 3.128456 2 2
TS_02 283.550016 -728.500014 -20.000000 141.335701 132.401988 105.229182 1 TS_02/1 Extract/job1/TS_02/1_data.mrc 2.050956 -1.551540 1.735956 1 1
"""


@pytest.fixture
def star_file(tmp_path):
    p = tmp_path / "run_data.star"
    p.write_text(RELION5)
    return p


def relion_euler_matrix(rot, tilt, psi):
    """RELION's Euler_angles2matrix (src/euler.cpp), written out: independent of tomoflow's scipy-based version."""
    a, b, g = np.radians([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
                     [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
                     [sc, ss, cb]])


def pose_matrices(df, cols=("rot", "tilt", "psi")):
    return np.array([relion_euler_matrix(*r) for r in df[list(cols)].to_numpy()])


def test_star_store_star_roundtrip(tmp_path, star_file):
    store = Store.create(tmp_path / "s.zarr")
    ps = import_star(store, star_file, "refined", tomogram_size=(1000, 1000, 300), voxel_size=5.4)
    assert ps.n == 3 and ps.box_size is None
    df = ps.table_frame()
    # centred Å + tomogram centre (size/2 voxels) - origin shift -> Å from voxel (0,0,0)
    assert df.x[0] == pytest.approx(-176.94 + 500 * 5.4 - (-2.41904))
    assert df.z[2] == pytest.approx(-20.0 + 150 * 5.4 - 1.735956)
    # rlnClassNumber: class labels named by their RELION numbers; tomoflow's clusters stay unassigned
    assert ps.class_names == ["1", "2"] and df.true_class.tolist() == [0, 1, 0] and (df.cluster == -1).all()
    assert df.psi[1] == pytest.approx(99.239662)
    export_star(store, "refined", tmp_path / "back.star")
    a = starfile.read(star_file, always_dict=True)
    b = starfile.read(tmp_path / "back.star", always_dict=True)
    assert list(b) == ["general", "optics", "particles"]
    assert b["general"] == a["general"]
    pd.testing.assert_frame_equal(a["optics"], b["optics"], check_dtype=False)
    assert list(b["particles"].columns) == list(a["particles"].columns)  # same labels, same order
    pd.testing.assert_frame_equal(a["particles"], b["particles"], check_dtype=False, atol=2e-6, rtol=0)


def test_store_star_store_roundtrip(tmp_path, rng):
    store = Store.create(tmp_path / "s.zarr")
    n = 40
    table = {"tomogram": np.where(np.arange(n) < 25, "tA", "tB"), "x": rng.uniform(0, 4000, n),
             "y": rng.uniform(0, 4000, n), "z": rng.uniform(0, 1500, n), "rot": rng.uniform(-180, 180, n),
             "tilt": rng.uniform(0, 180, n), "psi": rng.uniform(-180, 180, n), "cluster": rng.integers(0, 5, n)}
    geo = {"tA": {"shape": [200, 512, 512], "voxel_size": 8.0}, "tB": {"shape": [180, 400, 500], "voxel_size": 8.0}}
    create_particle_set(store, "a", table, tomograms=geo)
    export_star(store, "a", tmp_path / "a.star")
    bs = import_star(store, tmp_path / "a.star", "b")
    b = bs.table_frame()
    a = ParticleSet(store, "a").table_frame()
    for c in ("x", "y", "z"):
        np.testing.assert_allclose(a[c], b[c], atol=1e-5)
    np.testing.assert_allclose(pose_matrices(a), pose_matrices(b), atol=1e-6)
    assert a.tomogram.tolist() == b.tomogram.tolist()
    # tomoflow's clusters leave as rlnClassNumber = cluster + 1 and come back as labels named by those numbers
    assert [bs.class_names[k] for k in b.true_class] == [str(c + 1) for c in a.cluster]
    # the exported file is RELION 5: centred coordinates with an optics block
    s = starfile.read(tmp_path / "a.star", always_dict=True)
    p = s["particles"]
    c = tomogram_center_angstrom([200, 512, 512], 8.0)
    assert p.rlnCenteredCoordinateXAngst[0] == pytest.approx(table["x"][0] - c[0], abs=1e-5)
    assert s["optics"].rlnTomoTiltSeriesPixelSize[0] == 8.0
    assert p.rlnTomoParticleName.tolist()[:2] == ["tA/1", "tA/2"] and p.rlnTomoParticleName.tolist()[25] == "tB/1"
    # what the file had to assume is said in it
    text = (tmp_path / "a.star").read_text()
    assert "# tomogram tA: tilt-series pixel size unknown" in text and "RELION's defaults written" in text


def test_centre_convention_matches_box_centre():
    """A particle at the centre voxel of a tomogram (index n//2 for even n) has centred coordinate 0."""
    shape, vs = (40, 80, 100), 10.0
    idx = np.array([box_center(100), box_center(80), box_center(40)])
    np.testing.assert_allclose(idx * vs - tomogram_center_angstrom(shape, vs), 0.0)


def test_pixel_coordinate_option_cli(tmp_path, capsys, rng):
    store = Store.create(tmp_path / "s.zarr")
    x = rng.uniform(0, 1000, 7)
    create_particle_set(store, "a", {"tomogram": ["t"] * 7, "x": x, "y": x + 1, "z": x + 2})
    code = run_cli(capsys, "export-star", store.path, "a", "-o", tmp_path / "px.star", "--pixel-coords",
                   "--pixel-size", "4")[0]
    assert code == 0
    p = starfile.read(tmp_path / "px.star", always_dict=True)["particles"]
    assert "rlnCoordinateX" in p.columns and "rlnCenteredCoordinateXAngst" not in p.columns
    np.testing.assert_allclose(p.rlnCoordinateX, x / 4, atol=1e-6)
    code, out, _ = run_cli(capsys, "import-star", store.path, tmp_path / "px.star", "--set", "b", "--pixel-size", "4")
    assert code == 0 and "imported 7 particles" in out
    np.testing.assert_allclose(ParticleSet(store, "b").table_frame().x, x, atol=1e-5)


def test_tomoflow_columns_survive(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    create_particle_set(store, "a", {"tomogram": ["t"] * 3, "x": [1.0, 2, 3], "y": [1.0, 2, 3], "z": [1.0, 2, 3],
                                     "true_class": [2, 0, 1], "split": [1, 3, 1], "tilt_min": [-60] * 3,
                                     "tilt_max": [60] * 3}, tomograms={"t": {"shape": [10, 10, 10], "voxel_size": 1}})
    export_star(store, "a", tmp_path / "a.star", tomoflow_columns=True)
    b = import_star(store, tmp_path / "a.star", "b").table_frame()
    assert b.true_class.tolist() == [2, 0, 1] and b.split.tolist() == [1, 3, 1] and b.tilt_max.tolist() == [60] * 3
