"""Rotation in the wedge: any orientation, the missing wedge where the data has it, centre D // 2."""

import numpy as np
from scipy.spatial.transform import Rotation

from tomoflow.kernels.wedge import particle_wedge
from tomoflow.kernels.wedge import wedge_of
from tomoflow.ml.augment import rotate_in_wedge


def _masked_noise(n, wedge, rng):
    f = np.fft.fftshift(np.fft.fftn(rng.normal(size=(n,) * 3))) * particle_wedge(n, *wedge)
    return np.real(np.fft.ifftn(np.fft.ifftshift(f))).astype(np.float32)


def test_rotated_subtomograms_keep_nothing_in_the_missing_wedge():
    n, wedge, rng = 16, (-50.0, 50.0, 0.0), np.random.default_rng(0)
    v = _masked_noise(n, wedge, rng)
    observed = particle_wedge(n, *wedge)
    for _ in range(3):
        t = rotate_in_wedge(v, wedge, rng)
        power = np.abs(np.fft.fftshift(np.fft.fftn(t - t.mean()))) ** 2
        assert power[~observed].sum() < 1e-10 * power.sum()
        assert not np.allclose(t, v, atol=0.1 * v.std())
    # the identity keeps a subtomogram that already has this wedge
    np.testing.assert_allclose(rotate_in_wedge(v, wedge, rng, np.eye(3)), v, atol=1e-5)
    # a tilt axis turned in the x-y plane turns the wedge with it
    turned = (-50.0, 50.0, 90.0)
    t = rotate_in_wedge(v, turned, rng)
    power = np.abs(np.fft.fftshift(np.fft.fftn(t - t.mean()))) ** 2
    assert power[~particle_wedge(n, *turned)].sum() < 1e-10 * power.sum()


def test_rotation_is_about_the_box_centre_and_active():
    n = 24
    z, y, x = np.mgrid[:n, :n, :n] - n // 2
    blob = np.exp(-((x - 5.0) ** 2 + y**2 + z**2) / 4.0).astype(np.float32)  # 5 voxels along +x from D // 2
    quarter = Rotation.from_euler("z", 90, degrees=True).as_matrix()  # on (x, y, z): +x -> +y
    out = rotate_in_wedge(blob, (-90.0, 90.0, 0.0), np.random.default_rng(0), quarter)
    w = np.clip(out - out.mean(), 0, None)
    centroid = [float((w * c).sum() / w.sum()) for c in (x, y, z)]
    np.testing.assert_allclose(centroid, [0.0, 5.0, 0.0], atol=0.3)


def test_wedge_of_reads_the_table_columns():
    rows = {"tilt_min": np.array([-60.0, np.nan]), "tilt_max": np.array([60.0, np.nan]), "tilt_axis": np.zeros(2)}
    w = wedge_of(rows)
    assert w.shape == (2, 3) and w[0].tolist() == [-60.0, 60.0, 0.0] and np.isnan(w[1, 0])
