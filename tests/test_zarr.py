"""Zarr v3 recordings through TensorStore: round trip, chunked resume, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxpose.io.zarr import FrameStore, ZarrError, read_zarr, write_zarr


def _recording(num_frames=1100, kpt=5, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(num_frames, kpt, 3)).astype(np.float32)
    points[3, 1] = np.nan
    ncams = rng.integers(0, 6, (num_frames, kpt)).astype(np.int32)
    return {"points": points, "ncams": ncams}


def test_round_trip_keeps_values_nan_and_attributes(tmp_path):
    arrays = _recording()
    path = write_zarr(
        tmp_path / "pose.zarr",
        arrays,
        attributes={"bodyparts": list("abcde"), "fps": 30.0},
        chunk_frames=256,
    )
    back, attrs = read_zarr(path)
    np.testing.assert_array_equal(back["points"], arrays["points"])  # NaN compares equal here
    np.testing.assert_array_equal(back["ncams"], arrays["ncams"])
    assert attrs["bodyparts"] == list("abcde") and attrs["fps"] == 30.0 and attrs["complete"]
    meta = json.loads((path / "points" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["frame", "kpt", "coord"]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"][0] == 256
    assert any(c["name"] == "blosc" for c in meta["codecs"])
    part, _ = read_zarr(path, frames=slice(100, 110))
    np.testing.assert_array_equal(part["ncams"], arrays["ncams"][100:110])


def test_interrupted_store_resumes_from_the_last_chunk(tmp_path):
    arrays = _recording()
    layout = {n: (a.shape[1:], str(a.dtype)) for n, a in arrays.items()}
    store = FrameStore.create(tmp_path / "r.zarr", num_frames=1100, arrays=layout, chunk_frames=500)
    store.write(0, {n: a[:500] for n, a in arrays.items()})
    with pytest.raises(ZarrError, match="unfinished"):
        read_zarr(tmp_path / "r.zarr")
    partial, attrs = read_zarr(tmp_path / "r.zarr", allow_partial=True)
    assert attrs["frames_written"] == 500 and np.isnan(partial["points"][600]).all()
    # A new process reopens it and carries on from frame 500.
    again = FrameStore.create(tmp_path / "r.zarr", num_frames=1100, arrays=layout, chunk_frames=500)
    assert again.frames_written == 500
    with pytest.raises(ZarrError, match="must start at frame 500"):
        again.write(0, {n: a[:10] for n, a in arrays.items()})
    again.write(500, {n: a[500:] for n, a in arrays.items()})
    again.finish()
    back, _ = read_zarr(tmp_path / "r.zarr")
    np.testing.assert_array_equal(back["points"], arrays["points"])


def test_bad_stores_and_chunks_are_named(tmp_path):
    with pytest.raises(ZarrError, match="no zarr.json"):
        read_zarr(tmp_path / "missing.zarr")
    arrays = _recording(num_frames=20)
    layout = {n: (a.shape[1:], str(a.dtype)) for n, a in arrays.items()}
    store = FrameStore.create(tmp_path / "s.zarr", num_frames=20, arrays=layout)
    with pytest.raises(ZarrError, match="different layout"):
        FrameStore.create(tmp_path / "s.zarr", num_frames=21, arrays=layout)
    with pytest.raises(ZarrError, match="chunk shape"):
        store.write(0, {"points": np.zeros((5, 4, 3)), "ncams": np.zeros((5, 5))})
    with pytest.raises(ZarrError, match="exactly the arrays"):
        store.write(0, {"points": arrays["points"][:5]})
    with pytest.raises(ZarrError, match="only 0 of 20"):
        store.finish()
