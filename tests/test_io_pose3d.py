"""3D pose files: Anipose pose-3d CSV layout and HDF5, round trips and bad files."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest

from jaxpose.io.dlc import KeypointFileError
from jaxpose.io.pose3d import (
    Pose3D,
    read_pose3d,
    read_pose3d_csv,
    read_pose3d_h5,
    write_pose3d,
    write_pose3d_csv,
    write_pose3d_h5,
)

BODYPARTS = ("nose", "paw_left", "tail base")


def _pose(*, frames: int = 9, covariance: bool = False, seed: int = 0) -> Pose3D:
    rng = np.random.default_rng(seed)
    kpts = len(BODYPARTS)
    points = rng.normal(0, 1, (frames, kpts, 3)) * 10.0 ** rng.integers(-2, 4, (frames, kpts, 3))
    error = rng.uniform(0, 5, (frames, kpts))
    ncams = rng.integers(2, 7, (frames, kpts))
    score = rng.uniform(0, 1, (frames, kpts))
    # Untriangulated points as Anipose leaves them: NaN point, error and score, no cameras.
    for f, k in [(0, 1), (3, 0), (3, 2)]:
        points[f, k] = np.nan
        error[f, k] = np.nan
        score[f, k] = np.nan
        ncams[f, k] = 0
    cov = None
    if covariance:
        a = rng.normal(size=(frames, kpts, 3, 3))
        cov = a @ np.swapaxes(a, -1, -2)
        cov[0, 1] = np.nan
    return Pose3D(points, error, ncams, score, BODYPARTS, np.arange(frames) + 250, covariance=cov)


def _assert_same(a: Pose3D, b: Pose3D, *, covariance: bool = True) -> None:
    for name in ("points", "error", "ncams", "score", "frame_numbers", "alignment_matrix"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.alignment_center, b.alignment_center)
    assert b.ncams.dtype == np.int64 and b.frame_numbers.dtype == np.int64
    assert a.bodyparts == b.bodyparts
    if covariance:
        assert (a.covariance is None) == (b.covariance is None)
        if a.covariance is not None:
            np.testing.assert_array_equal(a.covariance, b.covariance)


# --------------------------------------------------------------------------------------------
# Anipose CSV


def test_csv_columns_match_anipose_exactly(tmp_path):
    pose = _pose()
    path = write_pose3d_csv(
        tmp_path / "vid.csv",
        pose.points,
        bodyparts=list(BODYPARTS),
        error=pose.error,
        ncams=pose.ncams,
        score=pose.score,
    )
    header = next(csv.reader(path.open()))
    # Written out by hand from anipose/triangulate.py: per body part x, y, z, error, ncams,
    # score; then M_00..M_22, center_0..center_2, fnum.
    expected = [
        "nose_x", "nose_y", "nose_z", "nose_error", "nose_ncams", "nose_score",
        "paw_left_x", "paw_left_y", "paw_left_z", "paw_left_error", "paw_left_ncams",
        "paw_left_score",
        "tail base_x", "tail base_y", "tail base_z", "tail base_error", "tail base_ncams",
        "tail base_score",
        "M_00", "M_01", "M_02", "M_10", "M_11", "M_12", "M_20", "M_21", "M_22",
        "center_0", "center_1", "center_2",
        "fnum",
    ]  # fmt: skip
    assert header == expected
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 9
    # No alignment: identity and zeros on every row, and frames 0, 1, ... by default.
    assert [float(rows[4][f"M_{i}{j}"]) for i in range(3) for j in range(3)] == list(
        np.eye(3).ravel()
    )
    assert [float(rows[4][f"center_{i}"]) for i in range(3)] == [0.0, 0.0, 0.0]
    assert [int(r["fnum"]) for r in rows] == list(range(9))
    # NaN as empty cells, as pandas writes them for Anipose; ncams 0 there.
    assert rows[0]["paw_left_x"] == "" and rows[0]["paw_left_error"] == ""
    assert rows[0]["paw_left_ncams"] == "0"


def test_csv_round_trip_is_exact(tmp_path):
    pose = _pose()
    path = write_pose3d(tmp_path / "pose-3d" / "vid.csv", pose)
    back = read_pose3d_csv(path)
    _assert_same(pose, back)
    _assert_same(pose, read_pose3d(path))
    assert not list(path.parent.glob(".*tmp*"))


def test_csv_round_trip_with_alignment(tmp_path):
    pose = _pose()
    c, s = np.cos(0.3), np.sin(0.3)
    M = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    center = np.array([1.25, -3.5, 0.1])
    path = write_pose3d_csv(
        tmp_path / "a.csv",
        pose.points,
        bodyparts=pose.bodyparts,
        error=pose.error,
        ncams=pose.ncams,
        score=pose.score,
        frame_numbers=pose.frame_numbers,
        alignment_matrix=M,
        alignment_center=center,
    )
    back = read_pose3d_csv(path)
    np.testing.assert_array_equal(back.alignment_matrix, M)
    np.testing.assert_array_equal(back.alignment_center, center)
    np.testing.assert_array_equal(back.frame_numbers, np.arange(9) + 250)


def test_read_csv_written_the_way_anipose_does(tmp_path):
    """Anipose keeps ncams as float with NaN below 2 cameras, and builds columns one by one."""
    rng = np.random.default_rng(5)
    n = 6
    dout = pd.DataFrame()
    expect_points = rng.normal(size=(n, 2, 3)) * 100
    expect_points[2, 1] = np.nan
    ncams = np.array([[3.0, 2.0]] * n)
    ncams[2, 1] = np.nan
    for b, bp in enumerate(["head", "hind_paw_R"]):
        for a, axis in enumerate("xyz"):
            dout[f"{bp}_{axis}"] = expect_points[:, b, a]
        dout[f"{bp}_error"] = np.where(np.isnan(ncams[:, b]), np.nan, 1.5)
        dout[f"{bp}_ncams"] = ncams[:, b]
        dout[f"{bp}_score"] = np.where(np.isnan(ncams[:, b]), np.nan, 0.75)
    for i in range(3):
        for j in range(3):
            dout[f"M_{i}{j}"] = np.eye(3)[i, j]
    for i in range(3):
        dout[f"center_{i}"] = 0.0
    dout["fnum"] = np.arange(n)
    path = tmp_path / "anipose.csv"
    dout.to_csv(path, index=False)

    pose = read_pose3d_csv(path)
    assert pose.bodyparts == ("head", "hind_paw_R")
    np.testing.assert_array_equal(pose.points, expect_points)
    np.testing.assert_array_equal(pose.ncams, np.nan_to_num(ncams).astype(int))
    assert pose.ncams[2, 1] == 0
    np.testing.assert_array_equal(pose.alignment_matrix, np.eye(3))
    # Our writer gives back the same columns, in the same order.
    ours = write_pose3d(tmp_path / "ours.csv", pose)
    assert next(csv.reader(ours.open())) == list(dout.columns)


def test_csv_with_zero_frames(tmp_path):
    empty = np.zeros((0, 3))
    path = write_pose3d_csv(
        tmp_path / "e.csv",
        np.zeros((0, 3, 3)),
        bodyparts=BODYPARTS,
        error=empty,
        ncams=empty.astype(int),
        score=empty,
    )
    back = read_pose3d_csv(path)
    assert back.points.shape == (0, 3, 3) and back.bodyparts == BODYPARTS


def test_csv_drops_covariance_with_warning(tmp_path):
    pose = _pose(covariance=True)
    with pytest.warns(UserWarning, match="covariance"):
        path = write_pose3d(tmp_path / "c.csv", pose)
    back = read_pose3d(path)
    assert back.covariance is None
    _assert_same(pose, back, covariance=False)


# --------------------------------------------------------------------------------------------
# HDF5


@pytest.mark.parametrize("covariance", [False, True])
def test_h5_round_trip_is_exact(tmp_path, covariance):
    pose = _pose(frames=40, covariance=covariance)
    path = write_pose3d_h5(tmp_path / "pose.h5", pose)
    back = read_pose3d_h5(path)
    _assert_same(pose, back)
    assert back.units == "mm"
    _assert_same(pose, read_pose3d(path))


def test_h5_layout(tmp_path):
    pose = dataclasses.replace(_pose(frames=40), units="cm")
    path = write_pose3d(tmp_path / "pose.h5", pose)
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["bodyparts"]) == list(BODYPARTS)
        assert f.attrs["units"] == "cm"
        assert f["points"].shape == (40, 3, 3)
        assert f["points"].compression == "gzip"
        assert f["ncams"].shape == (40, 3) and f["frame_numbers"].shape == (40,)
        assert "covariance" not in f
    assert read_pose3d_h5(path).units == "cm"


# --------------------------------------------------------------------------------------------
# Bad files and bad arrays


@pytest.mark.parametrize("name", ["gone.csv", "gone.h5"])
def test_missing_file(tmp_path, name):
    with pytest.raises(KeypointFileError, match=re.escape(name) + ".*not found"):
        read_pose3d(tmp_path / name)


def test_truncated_h5(tmp_path):
    good = write_pose3d_h5(tmp_path / "good.h5", _pose(frames=200))
    path = tmp_path / "cut.h5"
    path.write_bytes(good.read_bytes()[:1500])
    with pytest.raises(KeypointFileError, match=r"cut\.h5"):
        read_pose3d_h5(path)


def test_h5_missing_dataset(tmp_path):
    path = write_pose3d_h5(tmp_path / "p.h5", _pose())
    with h5py.File(path, "a") as f:
        del f["score"]
    with pytest.raises(KeypointFileError, match=r"p\.h5.*score"):
        read_pose3d_h5(path)


def test_csv_missing_score_column(tmp_path):
    path = write_pose3d(tmp_path / "p.csv", _pose())
    df = pd.read_csv(path).drop(columns=["paw_left_score"])
    df.to_csv(path, index=False)
    with pytest.raises(KeypointFileError, match=r"p\.csv.*paw_left_score"):
        read_pose3d_csv(path)


def test_csv_that_is_not_pose3d(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\n0,1.0,2.0\n")
    with pytest.raises(KeypointFileError, match=r"labels\.csv.*_x, _y, _z"):
        read_pose3d_csv(path)


def test_unknown_suffix(tmp_path):
    with pytest.raises(KeypointFileError, match=r"p\.npz.*expected \.csv or \.h5"):
        write_pose3d(tmp_path / "p.npz", _pose())


def test_pose3d_validates_shapes():
    p = np.zeros((4, 2, 3))
    fk = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"points must have shape \(frame, kpt, 3\)"):
        Pose3D(np.zeros((4, 2, 2)), fk, fk, fk, ("a", "b"))
    with pytest.raises(ValueError, match=r"error must have shape \(4, 2\)"):
        Pose3D(p, np.zeros((4, 3)), fk, fk, ("a", "b"))
    with pytest.raises(ValueError, match="1 body part names for 2"):
        Pose3D(p, fk, fk, fk, ("a",))
    with pytest.raises(ValueError, match="frame_numbers"):
        Pose3D(p, fk, fk, fk, ("a", "b"), np.arange(3))
    with pytest.raises(ValueError, match="covariance"):
        Pose3D(p, fk, fk, fk, ("a", "b"), covariance=np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="whole numbers"):
        Pose3D(p, fk, fk + 0.5, fk, ("a", "b"))
    pose = Pose3D(p, fk, np.array([[np.nan, 2.0]] * 4), fk, ["a", "b"])
    assert pose.ncams.dtype == np.int64 and pose.ncams[0, 0] == 0
    np.testing.assert_array_equal(pose.frame_numbers, np.arange(4))
    assert pose.num_frames == 4 and pose.num_keypoints == 2
