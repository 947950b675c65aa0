"""Physics of the simulator: missing wedge, CTF zeros, SNR, uniform rotations, mass, conventions."""

import numpy as np
import pytest
from scipy import fft, stats

from tomoflow.kernels.geometry import box_center, relion_angles, relion_matrix, rotate_volume
from tomoflow.kernels.rotations import random_rotations
from tomoflow.simulate.density import density_map, load_model
from tomoflow.params import Microscope
from tomoflow.simulate.optics import ctf, ctf_zeros
from tomoflow.simulate.structures import embedded_model
from tomoflow.simulate.tiltseries import TiltScheme, TiltSeriesSimulator
from conftest import data_file

D, VS = 32, 9.2


@pytest.fixture(scope="module")
def chaperonin():
    return density_map(embedded_model("4v8r"), D, VS)


def _power(v):
    return np.abs(fft.fftshift(fft.fftn(v))) ** 2


def _wedge_masks(n, tilt_max, margin=1.5):
    k = np.arange(n) - box_center(n)
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    r = np.sqrt(kx**2 + ky**2 + kz**2)
    band = (r > 2) & (r < n // 2 - 2)
    t = np.tan(np.deg2rad(tilt_max))
    inside = band & (np.abs(kz) > t * np.abs(kx) + margin)  # never sampled by a +-tilt_max series
    outside = band & (np.abs(kz) < t * np.abs(kx) - margin)
    return inside, outside


@pytest.mark.parametrize("method", ["fourier", "wbp"])
def test_missing_wedge_is_empty_and_the_rest_is_kept(chaperonin, method):
    sim = TiltSeriesSimulator(D, VS, TiltScheme(-60, 60, 2), None, method=method)  # geometry only, no CTF
    a = relion_matrix(30, 70, -20)
    rec = sim.simulate(sim.map_transform(chaperonin), a, (0, 0, 0), np.inf, np.random.default_rng(0))[0]
    truth = rotate_volume(chaperonin, a, order=3)
    p_rec, p_true = _power(rec), _power(truth)
    inside, outside = _wedge_masks(D, 60)
    assert p_rec[inside].sum() / p_true[inside].sum() < 0.02  # almost no power inside the wedge
    kept = p_rec[outside].sum() / p_true[outside].sum()
    assert 0.8 < kept < 1.2, kept  # the power outside it is kept
    # and it is the right signal there, not just the right amount
    f_rec, f_true = fft.fftshift(fft.fftn(rec))[outside], fft.fftshift(fft.fftn(truth))[outside]
    assert np.real(np.vdot(f_rec, f_true)) / np.sqrt(np.vdot(f_rec, f_rec).real * np.vdot(f_true, f_true).real) > 0.95


def test_wedge_follows_the_tilt_range(chaperonin):
    sim = TiltSeriesSimulator(D, VS, TiltScheme(-40, 40, 2), None)
    rec = sim.simulate(sim.map_transform(chaperonin), np.eye(3), (0, 0, 0), np.inf, np.random.default_rng(0))[0]
    p = _power(rec)
    in40, _ = _wedge_masks(D, 40)
    _, out40 = _wedge_masks(D, 40)
    assert p[in40].mean() < 0.01 * p[out40].mean()


def test_ctf_zeros_at_the_analytic_frequencies():
    """White noise through the projection -> CTF x MTF -> reconstruction path: the power spectrum of the
    central (kz = 0) plane vanishes at the analytic CTF zeros."""
    n = 64
    mic = Microscope()
    sim = TiltSeriesSimulator(n, VS, TiltScheme(0, 0, 1), mic)
    rng = np.random.default_rng(0)
    power = np.zeros((n, n))
    for _ in range(8):
        rec = sim.reconstruct(rng.standard_normal((1, n, n)))
        power += np.abs(fft.fftshift(fft.fftn(rec))[box_center(n)]) ** 2
    k = np.arange(n) - box_center(n)
    r = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    radial = np.array([power[(r >= i - 0.5) & (r < i + 0.5)].mean() for i in range(n // 2)])
    zeros = ctf_zeros(mic, 0.95 / (2 * VS)) * n * VS  # in frequency bins
    assert len(zeros) >= 2
    for z in zeros:
        lo = int(np.floor(z)) - 1
        window = radial[lo:lo + 4]
        b = lo + int(np.argmin(window))
        assert abs(b - z) <= 1.0, (b, z)  # the minimum is at the analytic zero
        assert radial[b] < 0.1 * radial[max(lo - 4, 1):b].max()  # and it is deep
    assert np.all(np.abs(ctf(ctf_zeros(mic, 0.1), mic)) < 1e-9)


@pytest.mark.parametrize("snr", [0.5, 0.1])
def test_snr_from_pairs_matches_target(chaperonin, snr):
    """Frank & Al-Ali: two simulations of one particle with independent noise correlate with c,
    SNR = c / (1 - c)."""
    sim = TiltSeriesSimulator(D, VS, TiltScheme(-60, 60, 2), Microscope())
    ft = sim.map_transform(chaperonin)
    cs = []
    for i in range(10):
        a = relion_matrix(*np.random.default_rng(i).uniform(0, 180, 3))
        x = sim.simulate(ft, a, (1, -2, 0.5), snr, np.random.default_rng(1000 + i))[0]
        y = sim.simulate(ft, a, (1, -2, 0.5), snr, np.random.default_rng(2000 + i))[0]
        cs.append(np.corrcoef(x.ravel(), y.ravel())[0, 1])
    c = np.mean(cs)
    assert c / (1 - c) == pytest.approx(snr, rel=0.25)


def test_random_rotations_are_uniform_over_so3():
    m = random_rotations(20000, np.random.default_rng(0))
    assert np.allclose(m @ np.swapaxes(m, 1, 2), np.eye(3), atol=1e-9) and np.allclose(np.linalg.det(m), 1)
    # rotation angle w has density (1 - cos w) / pi on [0, pi]: CDF (w - sin w) / pi
    w = np.arccos(np.clip((np.trace(m, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert stats.kstest(w, lambda x: (x - np.sin(x)) / np.pi).pvalue > 0.01
    # the image of the z axis is uniform on the sphere: its z component is uniform on [-1, 1]
    assert stats.kstest(m[:, 2, 2], stats.uniform(-1, 2).cdf).pvalue > 0.01
    assert np.abs(m[:, :, 2].mean(0)).max() < 0.02


def test_relion_angles_round_trip_and_rotation_sense():
    rng = np.random.default_rng(3)
    m = random_rotations(100, rng)
    assert np.allclose(relion_matrix(*relion_angles(m).T), m, atol=1e-9)
    v = np.zeros((9, 9, 9))
    v[4, 4, 6] = 1.0  # x = centre + 2
    moved = rotate_volume(v, relion_matrix(90, 0, 0))  # A = Rz(rot) passive: (2, 0, 0) -> (0, -2, 0)
    assert tuple(np.argwhere(moved > 0.5)[0]) == (4, 2, 4)


def test_fourier_projection_agrees_with_real_space_rotation(chaperonin):
    """A full (+-90 degrees, fine step) noise-free series without CTF recovers the rotated, shifted map."""
    sim = TiltSeriesSimulator(D, VS, TiltScheme(-90, 89, 1), None)
    a, shift = relion_matrix(-40, 110, 75), (1.5, -1.0, 2.0)
    rec = sim.simulate(sim.map_transform(chaperonin), a, shift, np.inf, np.random.default_rng(0))[0]
    truth = rotate_volume(chaperonin, a, shift, order=3)
    assert np.corrcoef(rec.ravel(), truth.ravel())[0, 1] > 0.99


def test_map_mass_is_proportional_to_atoms():
    per_atom = []
    for name in ("1ubi.pdb.gz", "2nwl.pdb.gz", "4v8r.pdb.gz"):
        model = load_model(data_file("structures", name))
        m = density_map(model, 40, VS)
        assert m.sum() == pytest.approx(model.weights.sum(), rel=1e-4)  # all mass inside the box
        per_atom.append(m.sum() / model.n_atoms)
        centroid = (np.indices(m.shape) * m).reshape(3, -1).sum(1) / m.sum()
        assert centroid == pytest.approx((20, 20, 20), abs=0.05)  # the centre of mass sits on voxel n // 2
    assert max(per_atom) / min(per_atom) < 1.1  # ~ mean atomic number of protein


def test_assembly_expansion_and_embedded_beads():
    path = data_file("structures", "5cvz.pdb.gz")
    full = load_model(path)
    from tomoflow.io.atomic import read_atomic_model

    assert full.n_atoms == 60 * read_atomic_model(path).n_atoms  # the 60 operators of 5CVZ
    dense = density_map(full, 32, VS)
    beads = density_map(embedded_model("5cvz"), 32, VS)
    assert np.corrcoef(dense.ravel(), beads.ravel())[0, 1] > 0.99
    assert beads.sum() == pytest.approx(dense.sum(), rel=1e-3)


def test_wedge_turns_with_the_tilt_axis(chaperonin):
    """Tilting about x (tilt axis 90 degrees from y) puts the missing wedge around the y-z plane instead."""
    sim = TiltSeriesSimulator(D, VS, TiltScheme(-60, 60, 2, tilt_axis=90.0), None)
    p = _power(sim.simulate(sim.map_transform(chaperonin), np.eye(3), (0, 0, 0), np.inf, np.random.default_rng(0))[0])
    inside_y, outside_y = (np.swapaxes(m, 1, 2) for m in _wedge_masks(D, 60))  # the masks with kx and ky swapped
    inside_x, _ = _wedge_masks(D, 60)
    assert p[inside_y].mean() < 0.01 * p[outside_y].mean()
    assert p[inside_x & ~inside_y].mean() > 0.1 * p[outside_y].mean()  # the old wedge is filled now
