"""Saliency detection (seed 002, section 3.2.3): Robust PCA, SLIC super-voxels, template-free picking, blocking,
denoising, command line and bad input."""

import numpy as np
import pytest

from tomoflow.kernels import saliency as K
from tomoflow.kernels.evaluate import evaluate_picks, match
from tomoflow.kernels.peaks import block_peak_rows, select_peaks
from tomoflow.ops.saliency import denoise_saliency, pick_saliency
from tomoflow.params import SaliencyDenoiseParams, SaliencyParams, SaliencyPickParams
from tomoflow.store import ParticleSet, Store, create_particle_set, import_mrc, open_level
from conftest import run_cli, snapshot, write_mrc

VS = 10.0
KW = dict(spacing=4, compactness=1.0, iterations=5, smooth=1.0, scales=(1.0, 2.0), sparsity=1.0)


def balls(shape, centres, radius=4.0, amplitude=1.0):
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    v = np.zeros(shape, np.float32)
    for z, y, x in centres:
        v += amplitude * (((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) <= radius**2)
    return v


def planted(n=14, shape=(64, 64, 64), seed=3, margin=7, gap=14.0):
    """Centres at least ``gap`` apart, some on the 32-voxel block borders."""
    rng = np.random.default_rng(seed)
    out = [np.array([32.0, 20, 20]), np.array([20.0, 32, 45]), np.array([45.0, 45, 32])]
    while len(out) < n:
        c = rng.uniform(margin, np.array(shape) - margin)
        if all(np.linalg.norm(c - o) >= gap for o in out):
            out.append(c)
    return np.array(out)


def noisy(clean, noise, seed=1):
    return clean + noise * np.random.default_rng(seed).normal(size=clean.shape).astype(np.float32)


def _store(tmp_path, vol, chunk, name="t"):
    s = Store.create(tmp_path / f"s{chunk}.zarr")
    import_mrc(s, write_mrc(tmp_path / f"{name}{chunk}.mrc", vol, voxel_size=VS), name=name, chunk=chunk)
    return s


def _truth(s, centres, name="truth"):
    create_particle_set(s, name, {"tomogram": ["t"] * len(centres), "x": centres[:, 2] * VS,
                                  "y": centres[:, 1] * VS, "z": centres[:, 0] * VS,
                                  "true_class": [0] * len(centres)}, class_names=["ball"])


# ---- Robust PCA ----------------------------------------------------------------------------------------------------
def test_rpca_recovers_low_rank_plus_sparse():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(150, 3)) @ rng.normal(size=(3, 60))
    sparse = np.zeros_like(low)
    at = rng.random(low.shape) < 0.05
    sparse[at] = rng.choice([-8.0, 8.0], at.sum())
    L, S, it = K.rpca(low + sparse)
    assert np.linalg.norm(L - low) / np.linalg.norm(low) < 1e-4, it
    assert np.linalg.norm(S - sparse) / np.linalg.norm(sparse) < 1e-4
    assert np.linalg.matrix_rank(L, tol=1e-6 * np.linalg.norm(L, 2)) == 3
    assert np.array_equal(np.abs(S) > 1e-3, at)


# ---- SLIC super-voxels -------------------------------------------------------------------------------------------
def test_slic_supervoxels_cover_the_block_are_compact_and_follow_edges():
    shape, step = (36, 40, 44), 5
    clean = balls(shape, [(18, 20, 22)], radius=9.5, amplitude=4.0)
    vol = noisy(clean, 0.3)
    labels = K.slic(vol, step, 1.0, 5)
    assert labels.shape == shape and labels.min() >= 0
    ids, counts = np.unique(labels, return_counts=True)
    cells = np.prod([-(-n // step) for n in shape])
    assert 0.8 * cells <= len(ids) <= cells and counts.max() <= 4 * step**3
    # compact: every voxel within two grid steps of its super-voxel's centroid
    zyx = np.indices(shape).reshape(3, -1).T
    lab = labels.ravel()
    cen = np.stack([np.bincount(lab, zyx[:, a], minlength=lab.max() + 1) for a in range(3)], 1) / np.maximum(
        np.bincount(lab), 1)[:, None]
    assert np.linalg.norm(zyx - cen[lab], axis=1).max() <= 2 * step
    # the intensity term moves borders onto the ball's edge: purer than the plain grid (compactness -> inf)
    def impurity(lb):
        inside = clean.ravel() > 0
        frac = np.bincount(lb.ravel(), inside, minlength=lb.max() + 1) / np.maximum(np.bincount(lb.ravel()), 1)
        return np.sum(np.minimum(frac, 1 - frac) * np.bincount(lb.ravel(), minlength=lb.max() + 1))
    grid = K.slic(vol, step, 1e6, 5)
    assert impurity(labels) < 0.6 * impurity(grid)


def test_slic_seed_grid_is_anchored_to_the_tomogram():
    """A block cut out of a volume gets the super-voxels of the whole, away from its edges (same seeds)."""
    vol = noisy(balls((48, 48, 48), planted(6, (48, 48, 48), gap=12, margin=6)), 0.3, seed=4)
    whole = K.slic(vol, 4, 1.0, 3)
    part = K.slic(vol[13:, 9:, 5:], 4, 1.0, 3, origin=(13, 9, 5))
    inner = (slice(30 - 13, 40 - 13), slice(20 - 9, 40 - 9), slice(20 - 5, 40 - 5))
    a = whole[13:, 9:, 5:][inner]

    def split(b):  # pieces per super-voxel of the whole: 1 for the same partition
        return np.unique(np.stack([a.ravel(), b.ravel()]), axis=1).shape[1] / len(np.unique(a))

    # nearly the same partition (the block's own intensity spread moves a few borders); a grid anchored at the
    # block's corner instead cuts every super-voxel of the whole in several
    assert split(part[inner]) < 2.0
    assert split(K.slic(vol[13:, 9:, 5:], 4, 1.0, 3)[inner]) > 3.0


def test_block_saliency_anchors_its_super_voxels_to_the_tomogram(monkeypatch):
    """block_saliency hands SLIC the global index of its extended block, so every block of a tomogram grows its
    super-voxels from the one tomogram-wide seed grid (the partitions of blocks agree where they overlap)."""
    vol = noisy(balls((48, 48, 48), planted(6, (48, 48, 48), gap=12, margin=6)), 0.3, seed=4)
    seen = []
    real = K.slic

    def spy(v, spacing, compactness, iterations, origin=(0, 0, 0)):
        labels = real(v, spacing, compactness, iterations, origin)
        seen.append((tuple(origin), labels))
        return labels

    monkeypatch.setattr(K, "slic", spy)
    region = (slice(24, 48), slice(24, 48), slice(24, 48))
    _, ext = K.block_saliency(vol, region, **KW)
    assert seen[-1][0] == tuple(e.start for e in ext) and ext[0].start > 0
    # the block's partition is the whole's (in the block's middle) because the seeds are the same
    whole = real(K.filters.gaussian(vol, KW["smooth"]), KW["spacing"], KW["compactness"], KW["iterations"])
    inner = tuple(slice(r.start - e.start + 4, r.stop - e.start - 4) for r, e in zip(region, ext))
    a = whole[ext][inner]
    b = seen[-1][1][inner]
    pieces = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1).shape[1] / len(np.unique(a))
    assert pieces < 2.0, pieces


# ---- picking ------------------------------------------------------------------------------------------------------
def _kernel_picks(vol, block, window=3, threshold=3.0):
    from tomoflow.ops.common import tomogram_blocks

    parts = [K.block_peaks(vol, r, window, **KW) for r in tomogram_blocks(vol.shape, block)]
    return select_peaks(parts, threshold, 8.0)[0]


def test_saliency_peaks_find_planted_particles_and_blocking_changes_little():
    centres = planted()
    vol = noisy(balls((64, 64, 64), centres), 0.5)
    whole = _kernel_picks(vol, 64)
    blocked = _kernel_picks(vol, 32)
    for picks in (whole, blocked):
        pi, ti = match(picks[:, :3], centres, 3.0)
        assert len(ti) == len(centres) and len(picks) <= len(centres) + 1, (len(picks), len(ti))
    pi, _ = match(blocked[:, :3], whole[:, :3], 1.5)
    assert len(pi) >= 0.9 * max(len(whole), len(blocked))


def test_blocked_saliency_map_is_close_to_the_unblocked_one():
    centres = planted()
    vol = noisy(balls((64, 64, 64), centres), 0.5)
    full = tuple(slice(0, 64) for _ in range(3))
    ref, _ = K.block_saliency(vol, full, **KW)
    core = (slice(32, 64), slice(0, 32), slice(32, 64))
    sal, ext = K.block_saliency(vol, core, **KW)
    got = sal[K.core_of(ext, core)]
    assert np.corrcoef(got.ravel(), ref[core].ravel())[0, 1] > 0.9
    # without a halo the block's border super-voxels are cut short and the map departs from the whole's
    cut = K.saliency_map(vol[core], **KW, origin=(32, 0, 32))
    assert np.corrcoef(cut.ravel(), ref[core].ravel())[0, 1] < np.corrcoef(got.ravel(), ref[core].ravel())[0, 1]


def test_pick_saliency_on_a_crowded_simulated_tomogram(tmp_path, capsys):
    """Real data: crowded simulated tomogram at SNR 0.1, +-60 degrees; scored by ``evaluate picks``."""
    from tomoflow.ops.simulate import simulate_tomogram
    from tomoflow.params import CrowdedSpec

    s = Store.create(tmp_path / "c.zarr")
    spec = CrowdedSpec(classes=("4v8r", "5cvz"), shape=(64, 160, 160), n_particles=14, snr=0.1, box=32, seed=2)
    simulate_tomogram(s, "c", spec)
    code, out, _ = run_cli(capsys, "pick", "saliency", s.path, "c", "--out", "p", "--workers", "0")
    assert code == 0 and "salient spots" in out
    truth = ParticleSet(s, "c_truth")
    res = evaluate_picks(ParticleSet(s, "p").table_frame(), truth.table_frame(), 80.0, truth.class_names)
    assert res["n_truth"] >= 10 and res["f1"] >= 0.85, res
    assert ParticleSet(s, "p").info["picking"]["method"] == "saliency"


def test_pick_saliency_over_store_blocks_matches_one_block(tmp_path):
    centres = planted()
    vol = noisy(balls((64, 64, 64), centres), 0.5)
    p = SaliencyPickParams(saliency=SaliencyParams(scales=(1.0, 2.0)), level=0, min_distance_A=80.0)
    got = []
    for chunk in (32, 64):
        s = _store(tmp_path, vol, chunk)
        _truth(s, centres)
        r = pick_saliency(s, "t", "p", p)
        assert r["blocks"] == (64 // chunk) ** 3
        res = evaluate_picks(ParticleSet(s, "p").table_frame(), ParticleSet(s, "truth").table_frame(), 30.0,
                             ["ball"])
        assert res["recall"] == 1.0 and res["precision"] >= 0.9, res
        got.append(ParticleSet(s, "p").table_frame()[["z", "y", "x"]].to_numpy())
    pi, _ = match(got[0], got[1], 15.0)
    assert len(pi) >= 0.9 * max(map(len, got))


# ---- denoising ----------------------------------------------------------------------------------------------------
def snr(clean, x):
    c = np.corrcoef(clean.ravel(), x.ravel())[0, 1]
    return c * c / (1 - c * c)


def test_denoising_raises_snr_and_keeps_structure(tmp_path):
    clean = balls((64, 64, 64), planted(), radius=4.0)
    vol = noisy(clean, 1.0)
    s = _store(tmp_path, vol, 32)
    p = SaliencyDenoiseParams(saliency=SaliencyParams(scales=(1.0, 2.0)))
    run = denoise_saliency(s, "t", "d", p)
    assert run.computed == 8
    out = np.asarray(open_level(s, "d", 0)[:])
    assert snr(clean, out) > 3 * snr(clean, vol)
    # the saliency weighting is what helps: the weights inverted (smooth the particles, keep the background
    # noise) do worse, and so does the light smoothing alone
    from tomoflow.kernels import filters

    full = tuple(slice(0, 64) for _ in range(3))
    sal, _ = K.block_saliency(vol, full, **KW)
    w = 1 - np.exp(-sal / p.weight_scale)
    inverted = (1 - w) * filters.gaussian(vol, p.fine) + w * filters.gaussian(vol, p.coarse)
    assert snr(clean, out) > 1.2 * snr(clean, inverted)
    assert snr(clean, out) > 1.2 * snr(clean, filters.gaussian(vol, p.fine))
    # a rerun with the same parameters is refused without --overwrite, and changes nothing
    before = snapshot(s.path)
    with pytest.raises(Exception, match="already exists"):
        denoise_saliency(s, "t", "d", p)
    assert snapshot(s.path) == before


# ---- command line and bad input -----------------------------------------------------------------------------------
def test_cli_denoise_and_bad_input(tmp_path, capsys):
    vol = noisy(balls((32, 32, 32), planted(4, (32, 32, 32), gap=10, margin=6)), 0.5)
    s = _store(tmp_path, vol, 32)
    code, out, _ = run_cli(capsys, "denoise", s.path, "t", "--out", "d", "--workers", "0")
    assert code == 0 and "tomogram 'd'" in out and "1 blocks computed" in out
    code, _, _ = run_cli(capsys, "pick", "saliency", s.path, "t", "--out", "p", "--level", "0", "--workers", "0")
    assert code == 0
    before = snapshot(s.path)
    for argv, what in [
        (("pick", "saliency", s.path, "nope", "--out", "q"), "no tomogram named 'nope'"),
        (("pick", "saliency", s.path, "t", "--out", "q", "--spacing", "1"), "--spacing: must be >= 2"),
        (("pick", "saliency", s.path, "t", "--out", "q", "--scales", "1", "-2"), "--scales: must be > 0"),
        (("pick", "saliency", s.path, "t", "--out", "p", "--level", "0"), "particle set 'p' already exists"),
        (("denoise", s.path, "t", "--out", "d"), "tomogram 'd' already exists"),
        (("denoise", s.path, "t", "--out", "e", "--coarse", "0"), "--coarse: must be > 0"),
        (("denoise", s.path, "t", "--out", "e", "--level", "5"), "level"),
    ]:
        code, out, err = run_cli(capsys, *argv, "--workers", "0")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("tomoflow: error: ") and what in err, (argv, err)
        assert snapshot(s.path) == before, argv


def test_params_defaults_and_nesting():
    p = SaliencyPickParams()
    assert p.saliency == SaliencyParams() and SaliencyDenoiseParams().saliency == SaliencyParams()
    from tomoflow import options

    assert options.build(SaliencyPickParams, {"spacing": 6, "sparsity": 2}).saliency.spacing == 6


def test_pipeline_stages(tmp_path):
    from tomoflow.pipeline.schema import check_stage, stage_params
    from tomoflow.pipeline.stages import STAGES, Context

    centres = np.array([(9.0, 9, 10), (22, 21, 9), (10, 22, 22), (21, 10, 23)])
    s = _store(tmp_path, noisy(balls((32, 32, 32), centres), 0.5), 32)
    ctx = Context(s, None, tmp_path, progress=False)
    got = {}
    for kind, given in (("pick_saliency", {"out": "sp", "level": 0, "min_distance": 60.0}),
                        ("denoise_saliency", {"scales": [1.0, 2.0]})):
        params, keys = stage_params(kind, check_stage(kind, given, "stage 1", "f.yaml"))
        got[kind] = STAGES[kind].run(ctx, params, keys)
    assert got["pick_saliency"]["per_tomogram"] == {"t": len(ParticleSet(s, "sp.t").table_frame())}
    pi, _ = match(ParticleSet(s, "sp").table_frame()[["z", "y", "x"]].to_numpy() / VS, centres, 3.0)
    assert len(pi) == len(centres)
    assert got["denoise_saliency"] == {"denoised": ["t_denoised"]} and s.has("tomograms", "t_denoised")
