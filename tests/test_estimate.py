"""Estimating SNR (Frank & Al-Ali) and the tilt range from data the simulator made."""

import numpy as np
import pytest

from tomoflow.kernels.estimate import estimate_tilt_range, snr_from_pair, snr_from_pairs, tomogram_blocks_for_wedge
from tomoflow.kernels.wedge import wedge_mask
from tomoflow.kernels.geometry import relion_matrix
from tomoflow.simulate.density import density_map
from tomoflow.params import Microscope
from tomoflow.simulate.structures import embedded_model
from tomoflow.simulate.tiltseries import TiltScheme, TiltSeriesSimulator
from conftest import run_cli

D = 32


@pytest.fixture(scope="module")
def aligned():
    """12 aligned subtomograms (one pose) of 4V8R at each SNR, +-60 degrees."""
    sim = TiltSeriesSimulator(D, 9.2, TiltScheme(-60, 60, 2), Microscope())
    ft = sim.map_transform(density_map(embedded_model("4v8r"), D))
    a = relion_matrix(20, 60, -45)
    return {snr: np.stack([sim.simulate(ft, a, (0.5, 0, -1), snr, np.random.default_rng(100 * i + int(snr * 10)))[0]
                           for i in range(12)]) for snr in (0.5, 0.1)}


@pytest.mark.parametrize("snr", [0.5, 0.1])
def test_snr_from_pairs_recovers_the_simulated_snr(aligned, snr):
    r = snr_from_pairs(aligned[snr], n_pairs=40)
    # measured 1.003 x 0.5 and 1.012 x 0.1; fails on noise 10% too strong in the simulator (``scale * noise`` x 1.1
    # in TiltSeriesSimulator.simulate: 0.83 x the target)
    assert r["snr"] == pytest.approx(snr, rel=0.08) and r["pairs"] == 40


def test_snr_pair_with_common_wedge_mask(aligned):
    m = wedge_mask((D,) * 3, -60, 60)
    v = aligned[0.5]
    est = np.mean([snr_from_pair(v[i], v[i + 1], m) for i in range(0, 12, 2)])
    assert est == pytest.approx(0.5, rel=0.08)  # measured 0.497; noise x 1.1 in the simulator fails (0.41)


@pytest.mark.parametrize("tilt", [(-60, 60), (-40, 40), (-55, 35)])
def test_tilt_range_of_subtomograms(tilt):
    sim = TiltSeriesSimulator(40, 9.2, TiltScheme(*tilt, 2), Microscope())
    ft = sim.map_transform(density_map(embedded_model("5cvz"), 40))
    rng = np.random.default_rng(0)
    vols = [sim.simulate(ft, relion_matrix(*rng.uniform(0, 180, 3)), (0, 0, 0), 0.5, rng)[0] for _ in range(15)]
    lo, hi = estimate_tilt_range(vols)
    assert abs(lo - tilt[0]) <= 5 and abs(hi - tilt[1]) <= 5, (lo, hi)


def test_tilt_range_of_a_tomogram_via_cli(tmp_path, capsys):
    from tomoflow.ops.simulate import simulate_tomogram
    from tomoflow.params import CrowdedSpec
    from tomoflow.store import Store, open_level

    s = Store.create(tmp_path / "s.zarr")
    simulate_tomogram(s, "t", CrowdedSpec(classes=("4v8r",), shape=(64, 128, 128), n_particles=8, snr=0.1,
                                          tilt_range=50, box=32, seed=1))
    lo, hi = estimate_tilt_range(tomogram_blocks_for_wedge(open_level(s, "t"), block=64))
    assert abs(lo + 50) <= 5 and abs(hi - 50) <= 5, (lo, hi)
    code, out, _ = run_cli(capsys, "estimate", "wedge", s.path, "--tomogram", "t")
    assert code == 0 and f"{lo:+.0f} to {hi:+.0f} degrees" in out


def test_estimate_snr_cli_on_a_particle_set(tmp_path, capsys, aligned):
    from tomoflow.store import Store, create_particle_set

    s = Store.create(tmp_path / "s.zarr")
    v = np.concatenate([aligned[0.5], aligned[0.1]])
    ps = create_particle_set(s, "a", {"x": np.zeros(24), "true_class": [0] * 12 + [1] * 12}, box_size=D,
                             class_names=["hi", "lo"])
    ps.write_volumes(0, v)
    code, out, _ = run_cli(capsys, "estimate", "snr", s.path, "a", "--class", "lo", "--pairs", "30")
    assert code == 0 and "aligned subtomograms" in out
    assert float(out.split()[1]) == pytest.approx(0.1, rel=0.08)  # measured 0.103; noise x 1.1 fails (0.085)
    code, _, err = run_cli(capsys, "estimate", "snr", s.path, "a", "--class", "nope")
    assert code == 2 and "no class 'nope'" in err
