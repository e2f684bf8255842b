"""Kinematics: known geometry, exact derivatives of lines and parabolas, NaN handling, the
configured table and its CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from jaxpose.io.pose3d import Pose3D
from jaxpose.kinematics import (
    AngleSpec,
    acceleration,
    acceleration_magnitude,
    distances,
    joint_angles,
    kinematics_from_config,
    length_statistics,
    read_kinematics_csv,
    speed,
    velocity,
    write_kinematics_csv,
)

RNG = np.random.default_rng(1)


def arm(elbow_degrees: np.ndarray) -> np.ndarray:
    """(frame, 3, 3) shoulder, elbow, wrist in the x-y plane with the given elbow angles."""
    a = np.radians(elbow_degrees)
    shoulder = np.stack([np.full_like(a, -2.0), np.zeros_like(a), np.zeros_like(a)], -1)
    elbow = np.zeros_like(shoulder)
    wrist = 3.0 * np.stack([-np.cos(a), np.sin(a), np.zeros_like(a)], -1)
    return np.stack([shoulder, elbow, wrist], 1)


# ---------------------------------------------------------------------------------------------
# Angles


def test_known_angles():
    degrees = np.array([0.0, 30.0, 90.0, 135.0, 179.0, 180.0])
    np.testing.assert_allclose(joint_angles(arm(degrees), [[0, 1, 2]])[:, 0], degrees, atol=1e-9)


def test_angles_are_invariant_to_rigid_motion():
    x = RNG.normal(size=(20, 4, 3))
    rot = Rotation.random(random_state=3).as_matrix()
    moved = x @ rot.T + np.array([100.0, -50.0, 7.0])
    triplets = [[0, 1, 2], [3, 2, 1], [1, 0, 3]]
    np.testing.assert_allclose(joint_angles(moved, triplets), joint_angles(x, triplets), atol=1e-8)


def test_signed_angles_in_a_plane():
    degrees = np.array([30.0, 90.0, 150.0])
    x = arm(degrees)
    x[:, 2, 2] = [5.0, -3.0, 1.0]  # out of plane: ignored after projection onto x-y
    # From elbow->shoulder (-x) to elbow->wrist: clockwise in x-y, so negative about +z.
    xy = joint_angles(x, [[0, 1, 2]], plane="xy")[:, 0]
    np.testing.assert_allclose(xy, -degrees, atol=1e-9)
    np.testing.assert_allclose(joint_angles(x, [[2, 1, 0]], plane="xy")[:, 0], degrees, atol=1e-9)
    np.testing.assert_allclose(joint_angles(x, [[0, 1, 2]], plane="yx")[:, 0], degrees, atol=1e-9)
    np.testing.assert_allclose(
        joint_angles(x, [[0, 1, 2]], plane=(0, 0, -2.0))[:, 0], degrees, atol=1e-9
    )
    # 2D points: the same counterclockwise convention.
    np.testing.assert_allclose(
        joint_angles(x[..., :2], [[0, 1, 2]], plane="xy")[:, 0], -degrees, atol=1e-9
    )
    np.testing.assert_allclose(joint_angles(x[..., :2], [[0, 1, 2]])[:, 0], degrees, atol=1e-9)


def test_angles_missing_and_degenerate_are_nan():
    x = arm(np.array([90.0, 90.0, 90.0, 45.0]))
    x[0, 0] = np.nan  # a missing point
    x[1, 2] = x[1, 1]  # zero-length segment
    x[2, 2] = [0.0, 0.0, 4.0]  # along the normal: no direction in the x-y plane
    unsigned = joint_angles(x, [[0, 1, 2]])[:, 0]
    signed = joint_angles(x, [[0, 1, 2]], plane="xy")[:, 0]
    assert np.isnan(unsigned[:2]).all() and unsigned[2] == pytest.approx(90.0)
    assert np.isnan(signed[:3]).all() and signed[3] == pytest.approx(-45.0)


def test_angle_bad_inputs():
    with pytest.raises(ValueError, match="unknown plane 'xx'"):
        joint_angles(arm(np.array([90.0])), [[0, 1, 2]], plane="xx")
    with pytest.raises(ValueError, match=r"triplets index out of range"):
        joint_angles(arm(np.array([90.0])), [[0, 1, 3]])
    with pytest.raises(ValueError, match="2D points have only the plane 'xy'"):
        joint_angles(arm(np.array([90.0]))[..., :2], [[0, 1, 2]], plane="zx")


# ---------------------------------------------------------------------------------------------
# Derivatives


def test_constant_velocity_gives_constant_speed_and_zero_acceleration():
    fps = 50.0
    t = np.arange(30) / fps
    x = (np.array([1.0, 2.0, 3.0]) + np.outer(t, [30.0, -40.0, 120.0]))[:, None]  # 130 mm/s
    np.testing.assert_allclose(speed(x, fps=fps)[:, 0], 130.0, rtol=1e-12)
    np.testing.assert_allclose(acceleration(x, fps=fps)[1:-1], 0.0, atol=1e-8)
    assert np.isnan(acceleration(x, fps=fps)[[0, -1]]).all()


def test_uniform_acceleration_is_exact():
    fps = 100.0
    t = np.arange(20) / fps
    g = np.array([0.0, 0.0, -9810.0])  # mm/s^2
    x = (np.array([0.0, 500.0, 0.0]) * t[:, None] + 0.5 * g * t[:, None] ** 2)[:, None]
    np.testing.assert_allclose(acceleration(x, fps=fps)[1:-1, 0], np.tile(g, (18, 1)), atol=1e-6)
    np.testing.assert_allclose(acceleration_magnitude(x, fps=fps)[1:-1, 0], 9810.0, rtol=1e-9)
    v = velocity(x, fps=fps)[1:-1, 0]  # central differences are exact for parabolas
    np.testing.assert_allclose(v, np.array([0.0, 500.0, 0.0]) + g * t[1:-1, None], atol=1e-8)


def test_velocity_matches_numpy_gradient_with_dropped_frames():
    frames = np.array([0, 1, 2, 4, 5, 8, 9, 10, 13])
    x = RNG.normal(size=(len(frames), 3, 3))
    fps = 30.0
    ours = velocity(x, fps=fps, frame_numbers=frames)
    theirs = np.gradient(x, frames / fps, axis=0)  # second order inside, one-sided at the ends
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    # ... and uneven spacing keeps parabolas exact.
    t = frames / fps
    parabola = (3.0 * t**2 - t)[:, None, None]
    np.testing.assert_allclose(
        acceleration(parabola, fps=fps, frame_numbers=frames)[1:-1], 6.0, rtol=1e-8
    )


def test_derivatives_next_to_missing_frames():
    fps = 10.0
    x = np.arange(8, dtype=np.float64)[:, None, None] * np.array([1.0, 0.0])  # 10 units/s
    x[3] = np.nan
    x[6] = np.nan  # frame 7 is then alone at the end
    v = velocity(x, fps=fps)[:, 0, 0]
    np.testing.assert_allclose(v[[0, 1, 2, 4, 5]], 10.0)  # one-sided next to the gaps
    assert np.isnan(v[[3, 6, 7]]).all()
    a = acceleration(x, fps=fps)[:, 0, 0]
    assert np.isnan(a[[0, 2, 3, 4, 5, 6, 7]]).all() and a[1] == pytest.approx(0.0)


def test_bad_frame_numbers_are_refused():
    with pytest.raises(ValueError, match="row 2 has frame 1 after 1"):
        velocity(np.zeros((3, 1, 3)), fps=30.0, frame_numbers=[0, 1, 1])
    with pytest.raises(ValueError, match="fps must be a positive"):
        speed(np.zeros((3, 1, 3)), fps=0.0)


# ---------------------------------------------------------------------------------------------
# Distances and lengths


def test_distances_and_length_statistics():
    x = np.zeros((4, 3, 3))
    x[:, 1] = [3.0, 4.0, 0.0]
    x[:, 2] = [0.0, 0.0, 12.0]
    x[2, 1] = np.nan
    d = distances(x, [[0, 1], [1, 2]])
    np.testing.assert_allclose(d[[0, 1, 3]], [[5.0, 13.0]] * 3)
    assert np.isnan(d[2]).all()
    other = x + [1.0, 0.0, 0.0]  # e.g. a second animal, shifted by 1 in x
    np.testing.assert_allclose(distances(x, [[0, 0]], other=other)[:, 0], 1.0)
    stats = length_statistics({"a": [1.0, 2.0, np.nan, 3.0], "none": [np.nan]})
    assert stats.loc["a", "count"] == 3 and stats.loc["a", "mean"] == pytest.approx(2.0)
    assert stats.loc["a", "std"] == pytest.approx(1.0) and stats.loc["a", "cv"] == pytest.approx(
        0.5
    )
    assert stats.loc["a", "mad"] == pytest.approx(1.0) and stats.loc["none", "count"] == 0
    assert np.isnan(stats.loc["none", "mean"])


# ---------------------------------------------------------------------------------------------
# Configured table and CSV


def walking_pose(num_frames: int = 12) -> Pose3D:
    fps = 20.0
    t = np.arange(num_frames) / fps
    pts = np.zeros((num_frames, 4, 3))
    pts[:, 0] = [0.0, 0.0, 10.0]  # hip
    pts[:, 1] = [0.0, 0.0, 0.0]  # knee
    pts[:, 2] = [10.0, 0.0, 0.0]  # ankle: a right angle at the knee
    pts[:, 3] = np.outer(t, [60.0, 80.0, 0.0])  # snout at 100 mm/s
    pts[5, 2] = np.nan
    return Pose3D(
        points=pts,
        error=np.zeros((num_frames, 4)),
        ncams=np.full((num_frames, 4), 3),
        score=np.ones((num_frames, 4)),
        bodyparts=("hip", "knee", "ankle", "snout"),
        frame_numbers=np.arange(num_frames) + 100,
    )


def test_kinematics_from_config_columns_and_csv_round_trip(tmp_path):
    pose = walking_pose()
    kin = kinematics_from_config(
        pose,
        fps=20.0,
        angles=[["hip", "knee", "ankle"], {"points": ["hip", "knee", "ankle"], "plane": "zx"}],
        distances=[["knee", "ankle"], {"pair": ["hip", "snout"], "name": "reach"}],
        speeds=["snout"],
        accelerations=["snout"],
    )
    assert kin.names == [
        "angle_hip_knee_ankle",
        "signed_angle_hip_knee_ankle_zx",
        "dist_knee_ankle",
        "reach",
        "speed_snout",
        "accel_snout",
    ]
    np.testing.assert_allclose(np.delete(kin["angle_hip_knee_ankle"], 5), 90.0)
    # From knee->hip (+z) to knee->ankle (+x): z towards x, positive in plane "zx".
    np.testing.assert_allclose(np.delete(kin["signed_angle_hip_knee_ankle_zx"], 5), 90.0)
    assert np.isnan(kin["angle_hip_knee_ankle"][5]) and np.isnan(kin["dist_knee_ankle"][5])
    np.testing.assert_allclose(kin["speed_snout"], 100.0)
    np.testing.assert_allclose(kin["accel_snout"][1:-1], 0.0, atol=1e-9)
    np.testing.assert_allclose(kin.time, (np.arange(12) + 100) / 20.0)
    assert kin.units["speed_snout"] == "mm/s" and kin.units["reach"] == "mm"
    assert list(kin.distance_statistics().index) == ["dist_knee_ankle", "reach"]

    path = write_kinematics_csv(tmp_path / "out" / "kinematics.csv", kin)
    assert kin.write_csv(tmp_path / "again.csv").read_text() == path.read_text()
    df = pd.read_csv(path)
    assert list(df.columns[:2]) == ["frame", "time_s"] and df["frame"].iloc[0] == 100
    back = read_kinematics_csv(path)
    assert back.names == kin.names
    for name in kin.names:
        np.testing.assert_array_equal(back[name], kin[name])
    np.testing.assert_array_equal(back.frame_numbers, kin.frame_numbers)
    assert back.units["accel_snout"] == "mm/s^2" and "reach" not in back.units
    assert not list(tmp_path.joinpath("out").glob(".*tmp*"))  # no temporary file left behind


def test_smoothing_runs_before_kinematics():
    pose = walking_pose(20)
    points = pose.points.copy()
    points[10, 3] += [0.0, 0.0, 50.0]  # one-frame glitch
    raw = kinematics_from_config(points, pose.bodyparts, fps=20.0, speeds=["snout"])
    smooth = kinematics_from_config(
        points,
        pose.bodyparts,
        fps=20.0,
        speeds=["snout"],
        smoothing=[{"kind": "median", "window": 5}],
    )
    assert raw["speed_snout"][9] > 400.0
    np.testing.assert_allclose(smooth["speed_snout"], 100.0, atol=1e-9)


def test_config_errors_name_the_body_part(tmp_path):
    pose = walking_pose()
    with pytest.raises(ValueError, match=r"angle \['hip', 'knee', 'ankel'\]: unknown body part "):
        kinematics_from_config(pose, fps=20.0, angles=[["hip", "knee", "ankel"]])
    with pytest.raises(ValueError, match=r"distance \['nose', 'hip'\]: unknown body part 'nose'"):
        kinematics_from_config(pose, fps=20.0, distances=[["nose", "hip"]])
    with pytest.raises(ValueError, match="speeds: unknown body part 'tail'"):
        kinematics_from_config(pose, fps=20.0, speeds=["tail"])
    with pytest.raises(ValueError, match="needs 3 body part names"):
        kinematics_from_config(pose, fps=20.0, angles=[["hip", "knee"]])
    with pytest.raises(ValueError, match="configured twice"):
        kinematics_from_config(pose, fps=20.0, distances=[["hip", "knee"], ["hip", "knee"]])
    with pytest.raises(ValueError, match="unknown plane 'sagittal'"):
        AngleSpec(points=("hip", "knee", "ankle"), plane="sagittal")
    with pytest.raises(ValueError, match="needs bodyparts"):
        kinematics_from_config(pose.points, fps=20.0)
    other = tmp_path / "other.csv"
    pd.DataFrame({"a": [1.0]}).to_csv(other, index=False)
    with pytest.raises(ValueError, match="not a kinematics CSV"):
        read_kinematics_csv(other)
