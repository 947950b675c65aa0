"""MRC I/O: validation, block reads against mrcfile, streaming writes, real EMDB headers."""

import mrcfile
import numpy as np
import pytest

from tomoflow.errors import InputError
from tomoflow.io import mrc
from conftest import data_file, write_mrc


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.int8, np.uint16, np.float16])
def test_read_block_matches_mrcfile(tmp_path, rng, dtype):
    data = (rng.normal(size=(9, 11, 13)) * 20).astype(dtype)
    p = write_mrc(tmp_path / "a.mrc", data)
    info = mrc.inspect_mrc(p)
    assert info.shape == (9, 11, 13) and info.dtype == np.dtype(dtype)
    fd = __import__("os").open(p, __import__("os").O_RDONLY)
    try:
        whole = mrc.read_block(info, fd, slice(None), slice(None), slice(None))
        part = mrc.read_block(info, fd, slice(2, 7), slice(3, 11), slice(4, 9))  # rows not whole in x
    finally:
        __import__("os").close(fd)
    with mrcfile.open(p) as m:
        ref = np.asarray(m.data)
    assert np.array_equal(whole, ref)
    assert np.array_equal(part, ref[2:7, 3:11, 4:9])


def test_block_writer_roundtrip_and_header_stats(tmp_path, volume):
    out = tmp_path / "w.mrc"
    with mrc.MrcBlockWriter(out, volume.shape, np.float32, 4.5, origin=(1.0, 2.0, 3.0)) as w:
        for z0 in range(0, 40, 16):
            for x0 in range(0, 60, 25):  # partial rows exercise the row-wise path
                w.write(slice(z0, z0 + 16), slice(None), slice(x0, x0 + 25), volume[z0:z0 + 16, :, x0:x0 + 25])
    with mrcfile.open(out) as m:
        assert np.array_equal(m.data, volume)
        assert m.voxel_size.x == pytest.approx(4.5)
        assert (m.header.origin.x, m.header.origin.y, m.header.origin.z) == (1.0, 2.0, 3.0)
        assert m.header.dmin == pytest.approx(volume.min())
        assert m.header.dmax == pytest.approx(volume.max())
        assert m.header.dmean == pytest.approx(volume.mean(), abs=1e-5)
        assert m.header.rms == pytest.approx(volume.std(), rel=1e-4)
    # mrcfile's own validator accepts the file
    assert mrcfile.validate(str(out), print_file=open("/dev/null", "w"))


def test_read_write_map(tmp_path, volume):
    mrc.write_mrc(tmp_path / "m.mrc", volume.astype(np.float64), 7.0)
    back, vs = mrc.read_mrc(tmp_path / "m.mrc")
    assert back.dtype == np.float32 and np.array_equal(back, volume) and vs == pytest.approx(7.0)


def test_real_emdb_subtomogram_average_header():
    """EMD-3197 is a cryo-ET subtomogram average: 20^3 voxels of 11.4 Å."""
    p = data_file("maps", "EMD-3197.map")
    info = mrc.inspect_mrc(p)
    assert info.shape == (20, 20, 20)
    assert info.voxel_size[0] == pytest.approx(11.4, abs=0.05)
    data, vs = mrc.read_mrc(p)
    with mrcfile.open(p) as m:
        assert np.array_equal(data, m.data)


@pytest.mark.parametrize("case, problem", [
    ("missing", "no such file"),
    ("text", "not an MRC file"),
    ("tiny", "shorter than the 1024-byte"),
    ("truncated", "truncated"),
    ("flat", "2D data"),
    ("mode", "unsupported MRC mode"),
])
def test_inspect_rejects_bad_files(tmp_path, rng, case, problem):
    p = tmp_path / f"{case}.mrc"
    if case == "text":
        p.write_text("hello\n" * 400)
    elif case == "tiny":
        p.write_bytes(b"MAP " * 10)
    elif case == "truncated":
        write_mrc(p, rng.normal(size=(10, 10, 10)).astype(np.float32))
        p.write_bytes(p.read_bytes()[:-100])
    elif case == "flat":
        write_mrc(p, rng.normal(size=(1, 10, 10)).astype(np.float32))
    elif case == "mode":
        write_mrc(p, (rng.normal(size=(4, 4, 4)) + 1j).astype(np.complex64))
    with pytest.raises(InputError) as err:
        mrc.inspect_mrc(p)
    assert problem in str(err.value) and str(p) in str(err.value)
