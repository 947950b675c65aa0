"""Tomogram filters over chunks: equal to scipy on the whole array; resumable; diffusion keeps edges."""

import numpy as np
import pytest
from scipy import ndimage

import tomoflow.kernels.filters as F
from tomoflow.ops.filter import filter_tomogram
from tomoflow.store import Store, import_mrc, open_level
from conftest import write_mrc


@pytest.fixture
def store(tmp_path, rng):
    s = Store.create(tmp_path / "s.zarr")
    vol = rng.normal(size=(37, 45, 70)).astype(np.float32)  # odd sizes: partial blocks on every axis
    import_mrc(s, write_mrc(tmp_path / "t.mrc", vol), chunk=16)
    return s, vol


@pytest.mark.parametrize("name, params, reference", [
    ("gaussian", {"sigma": 1.7}, lambda v: ndimage.gaussian_filter(v, 1.7)),
    ("dog", {"sigma": 2.0, "k": 1.1}, lambda v: ndimage.gaussian_filter(v, 2.0) - ndimage.gaussian_filter(v, 2.2)),
    ("diffusion", {"iterations": 6, "kappa": 0.7, "gamma": 0.12},
     lambda v: F.perona_malik(v, 6, 0.7, 0.12)),
])
def test_chunked_filter_equals_whole_array(store, name, params, reference):
    s, vol = store
    run = filter_tomogram(s, "t", "out", name, params)
    assert run.computed == 3 * 3 * 5  # 16^3 blocks over 37 x 45 x 70
    np.testing.assert_allclose(open_level(s, "out")[...], reference(vol), rtol=0, atol=1e-6)
    assert s.attrs("tomograms", "out")["levels"] == 3


def test_interrupted_filter_resumes(store, monkeypatch):
    s, vol = store
    real = F.filter_block
    calls = {"n": 0}

    def flaky(source, region, name, **params):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("worker lost")
        return real(source, region, name, **params)

    monkeypatch.setattr(F, "filter_block", flaky)
    with pytest.raises(RuntimeError):
        filter_tomogram(s, "t", "g", "gaussian", {"sigma": 1.0})
    assert "g" not in s.names("tomograms")  # nothing half-made is visible
    run = filter_tomogram(s, "t", "g", "gaussian", {"sigma": 1.0})
    assert (run.skipped, run.computed) == (6, 39)
    np.testing.assert_allclose(open_level(s, "g")[...], ndimage.gaussian_filter(vol, 1.0), atol=1e-6)
    assert not any((s.path / ".staging").iterdir())


def test_perona_malik_smooths_noise_and_keeps_edges(rng):
    step = np.zeros((24, 24, 48), np.float32)
    step[..., 24:] = 10.0
    noisy = step + rng.normal(size=step.shape).astype(np.float32)
    out = F.perona_malik(noisy, iterations=15, kappa=3.0, gamma=0.15)
    flat = (slice(None), slice(None), slice(4, 18))
    assert out[flat].std() < 0.4 * noisy[flat].std()  # noise in flat regions is smoothed away
    contrast = out[..., 26:].mean() - out[..., :22].mean()
    assert contrast > 9.5  # the edge keeps its height ...
    g = ndimage.gaussian_filter(noisy, 2.0)
    assert np.abs(np.diff(out.mean((0, 1)))).max() > 2 * np.abs(np.diff(g.mean((0, 1)))).max()  # ... and stays sharp


def test_unknown_filter_is_refused_before_writing(store):
    s, _ = store
    with pytest.raises(KeyError, match="unknown filter"):
        filter_tomogram(s, "t", "x", "median", {})
    assert s.names("tomograms") == ["t"]
