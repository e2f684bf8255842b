"""Tests for jaxpose.synth.animal: the ray-cast mouse, its ground truth, videos and DLC projects.

Images are tiny (160x128 or so) so the file runs in seconds; the look itself was checked by eye
on montages (see the module docstring for the speed figures).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from jaxpose.geometry.camera import make_camera, stack_cameras
from jaxpose.io.calibration import load_calibration
from jaxpose.io.dlc import read_dlc
from jaxpose.io.pose3d import read_pose3d_csv
from jaxpose.synth import look_at_rotation, make_study, mouse_skeleton, project_points
from jaxpose.synth.animal import (
    AnimalStyle,
    animal_coverage,
    arena_view,
    keypoint_visibility,
    mouse_body,
    render_animal,
    render_montage,
    render_study_videos,
    write_labelled_frames,
)
from jaxpose.synth.render import scale_camera

SKELETON = mouse_skeleton()
NAMES = SKELETON.names
SCALE = 0.125  # 1280x1024 rig cameras -> 160x128


def _camera(eye, target, *, size=(160, 128), focal=150.0, distortion=None, principal=None):
    """A camera at `eye` looking at `target` (world mm)."""
    rotation = look_at_rotation(eye, target)
    rot = Rotation.from_rotvec(rotation).as_matrix()
    w, h = size
    return make_camera(
        rotation=rotation,
        translation=-rot @ np.asarray(eye, np.float64),
        focal=(focal, focal),
        principal_point=principal if principal is not None else (w / 2 - 0.5, h / 2 - 0.5),
        distortion=distortion,
        image_size=size,
    )


def _turned(pose: np.ndarray, degrees: float, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A pose turned about the vertical through the origin, then moved."""
    rot = Rotation.from_euler("z", degrees, degrees=True).as_matrix()
    return pose @ rot.T + np.asarray(shift)


@pytest.fixture(scope="module")
def study():
    return make_study(num_cameras=3, num_frames=12, num_board_frames=0, seed=5)


def test_rendering_is_deterministic_and_seeded(study):
    cam = scale_camera(study.calibration.rig[0], SCALE)
    pose = study.points_3d[3]
    a = render_animal(cam, pose, frame_index=3, style=AnimalStyle(seed=1))
    b = render_animal(cam, pose, frame_index=3, style=AnimalStyle(seed=1))
    assert a.shape == (128, 160, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    other_seed = render_animal(cam, pose, frame_index=3, style=AnimalStyle(seed=2))
    assert np.abs(other_seed.astype(int) - a).mean() > 1.0
    # The light moves with the frame index, the pose staying put.
    later = render_animal(cam, pose, frame_index=200, style=AnimalStyle(seed=1))
    assert np.abs(later.astype(int) - a).mean() > 1.0


def test_mouse_covers_its_projected_body_and_nothing_far_from_it(study):
    """The silhouette sits on the projected skeleton in every camera, through real distortion."""
    body = mouse_body()
    for i in range(study.num_cameras):
        cam = scale_camera(study.calibration.rig[i], SCALE)
        pose = study.points_3d[0]
        coverage = animal_coverage(cam, pose)
        placed = body.place(pose)
        torso = [body.names.index(n) for n in ("torso_front", "torso_mid", "torso_hind", "head")]
        uv, _ = project_points(_rig(cam), placed.centres[torso])
        for u, v in uv[0]:
            assert coverage[int(round(v)), int(round(u))] > 0.5, (i, u, v)
        # Nothing of the mouse lies far outside the box of its projected keypoints.
        kuv, _, inside = keypoint_visibility(cam, pose)
        lo, hi = kuv[inside].min(0) - 8, kuv[inside].max(0) + 8
        rows, cols = np.nonzero(coverage > 0)
        assert cols.min() >= lo[0] and cols.max() <= hi[0]
        assert rows.min() >= lo[1] and rows.max() <= hi[1]
        # The image differs from the empty arena exactly there.
        image = render_animal(cam, pose, style=AnimalStyle(noise_std=0.0))
        empty = render_animal(cam, pose + [2.0e4, 2.0e4, 0.0], style=AnimalStyle(noise_std=0.0))
        changed = np.abs(image.astype(int) - empty).max(-1) > 8
        assert changed[coverage > 0.9].mean() > 0.9


def _rig(cam):
    # scale_camera(cam, 1.0) makes every field a float64 array, so the rig stays exact NumPy.
    return stack_cameras([scale_camera(cam, 1.0)])


def test_lens_distortion_is_exact_near_the_image_corner():
    """Under strong barrel distortion the body is drawn where `project` puts it, tens of
    pixels from where a pinhole camera would."""
    body = mouse_body()
    pose = SKELETON.rest_pose
    target = np.array([0.0, 0.0, 20.0])
    cam0 = _camera((0.0, -350.0, 300.0), target, size=(200, 160), focal=160.0)
    # Aim elsewhere so the mouse lands near the image corner.
    rot = Rotation.from_rotvec(cam0.rotation).as_matrix()
    distance = np.linalg.norm(target - [0.0, -350.0, 300.0])
    aim = target - rot.T @ np.array([0.5 * distance, 0.38 * distance, 0.0])
    distorted = _camera(
        (0.0, -350.0, 300.0), aim, size=(200, 160), focal=160.0, distortion=[-0.3, 0.08, 0, 0, 0]
    )
    pinhole = _camera((0.0, -350.0, 300.0), aim, size=(200, 160), focal=160.0)
    coverage = animal_coverage(distorted, pose)
    centres = body.place(pose).centres[[body.names.index("torso_mid"), body.names.index("head")]]
    uv_d, _ = project_points(_rig(distorted), centres)
    uv_p, _ = project_points(_rig(pinhole), centres)
    assert np.linalg.norm(uv_d - uv_p, axis=-1).min() > 6.0  # the lens matters here
    for u, v in uv_d[0]:
        assert coverage[int(round(v)), int(round(u))] > 0.5


def test_far_side_keypoints_are_hidden_by_the_body():
    """Seen from the mouse's left, its right ear, shoulder, hip and paws are behind the body."""
    cam = _camera((0.0, 300.0, 25.0), (-5.0, 0.0, 20.0), focal=120.0)
    uv, visible, in_image = keypoint_visibility(
        cam, SKELETON.rest_pose, style=AnimalStyle(wall_height_mm=0.0)
    )
    assert in_image.all()
    vis = dict(zip(NAMES, visible, strict=True))
    for side in ("ear", "shoulder", "hip", "forepaw", "hindpaw"):
        assert vis[f"{side}_l"], side
        assert not vis[f"{side}_r"], side
    assert vis["snout"] and vis["tail_tip"]
    # The same pose seen from the right: the sides swap.
    cam_r = _camera((0.0, -300.0, 25.0), (-5.0, 0.0, 20.0), focal=120.0)
    _, visible_r, _ = keypoint_visibility(
        cam_r, SKELETON.rest_pose, style=AnimalStyle(wall_height_mm=0.0)
    )
    vis_r = dict(zip(NAMES, visible_r, strict=True))
    assert vis_r["hip_r"] and not vis_r["hip_l"]
    # The rendered image agrees: the left ear's pixel shows an ear, not fur or floor.
    image = render_animal(
        cam,
        SKELETON.rest_pose,
        style=AnimalStyle(wall_height_mm=0.0, noise_std=0.0, ear_rgb=(0, 0, 255)),
    )
    u, v = np.round(uv[NAMES.index("ear_l")]).astype(int)
    assert image[v, u, 2] > image[v, u, 0] + 40


def test_arena_wall_hides_paws_but_not_the_back():
    pose = _turned(SKELETON.rest_pose, 90.0)  # the mouse's left side faces -x
    cam = _camera((-600.0, 0.0, 90.0), (0.0, 0.0, 20.0), focal=300.0)
    _, with_wall, inside = keypoint_visibility(cam, pose, style=AnimalStyle(wall_height_mm=40.0))
    _, no_wall, _ = keypoint_visibility(cam, pose, style=AnimalStyle(wall_height_mm=0.0))
    assert inside.all()
    idx = NAMES.index
    assert no_wall[idx("forepaw_l")] and not with_wall[idx("forepaw_l")]
    assert no_wall[idx("hindpaw_l")] and not with_wall[idx("hindpaw_l")]
    assert with_wall[idx("ear_l")] and with_wall[idx("spine_2")]


def test_keypoints_outside_the_image_are_not_visible():
    cam = _camera((0.0, 300.0, 25.0), (-5.0, 0.0, 20.0), focal=120.0)
    pose = SKELETON.rest_pose + [400.0, 0.0, 0.0]  # well off to the side
    uv, visible, in_image = keypoint_visibility(cam, pose)
    assert not in_image.any() and not visible.any()
    assert np.all(np.isfinite(uv))  # still the exact projection


def test_motion_blur_averages_the_exposure():
    cam = _camera((0.0, 300.0, 150.0), (0.0, 0.0, 20.0), focal=150.0)
    pose = SKELETON.rest_pose
    style = AnimalStyle(noise_std=0.0)
    sharp = render_animal(cam, pose, style=style).astype(int)
    still = render_animal(cam, np.stack([pose, pose, pose]), style=style).astype(int)
    assert np.abs(still - sharp).max() <= 1
    moving = np.stack([pose + [dx, 0.0, 0.0] for dx in np.linspace(-15.0, 15.0, 5)])
    blurred = animal_coverage(cam, moving, style=style)
    sharp_cov = animal_coverage(cam, pose, style=style)
    partial = lambda c: int(((c > 0.1) & (c < 0.9)).sum())  # noqa: E731
    assert partial(blurred) > 3 * partial(sharp_cov)  # smeared edges
    assert blurred.sum() == pytest.approx(sharp_cov.sum(), rel=0.1)  # same mouse, spread out


def test_bad_inputs_raise_clear_errors(study):
    cam = scale_camera(study.calibration.rig[0], SCALE)
    with pytest.raises(ValueError, match="pose_3d must have shape"):
        render_animal(cam, np.zeros((19, 3)))
    with pytest.raises(ValueError, match="NaN"):
        render_animal(cam, np.full((20, 3), np.nan))
    with pytest.raises(ValueError, match="supersample"):
        AnimalStyle(supersample=5)
    with pytest.raises(ValueError, match="background"):
        render_animal(cam, study.points_3d[0], background=(1.0, 2.0))
    other = scale_camera(study.calibration.rig[0], 2 * SCALE)
    with pytest.raises(ValueError, match="built for a"):
        render_animal(cam, study.points_3d[0], background=arena_view(other))
    with pytest.raises(ValueError, match="neither a name"):
        render_study_videos(study, "unused", cameras=["nope"], progress=False)
    with pytest.raises(ValueError, match="outside the study"):
        write_labelled_frames(study, "unused", frames=[99], progress=False)


def test_videos_and_ground_truth_files_read_back(study, tmp_path):
    out = render_study_videos(
        study, tmp_path, cameras=["cam0", 2], scale=SCALE, num_frames=6, progress=False
    )
    assert out.camera_names == ("cam0", "cam2")
    for name, path in out.videos.items():
        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
        assert len(frames) == 6, name
        assert frames[0].shape == (128, 160, 3)
        # The video holds the rendered images (up to compression).
        rendered = render_animal(
            scale_camera(study.calibration.camera(name), SCALE),
            study.points_3d[4],
            frame_index=4,
            style=AnimalStyle(seed=study.seed, arena_radius_mm=200.0),
        )
        decoded = cv2.cvtColor(frames[4], cv2.COLOR_BGR2RGB).astype(int)
        assert np.abs(decoded - rendered).mean() < 6.0

    calibration = load_calibration(out.calibration)
    assert calibration.names == ("cam0", "cam2")
    np.testing.assert_allclose(calibration.rig.image_size, [[160, 128], [160, 128]])
    for c, name in enumerate(out.camera_names):
        for path in (out.keypoints_h5[name], out.keypoints_csv[name]):
            kp = read_dlc(path)
            assert kp.bodyparts == NAMES and kp.num_frames == 6
            inside = out.in_image[:, c]
            np.testing.assert_allclose(kp.xy[inside], out.points_2d[:, c][inside])
            assert np.isnan(kp.xy[~inside]).all()
            np.testing.assert_array_equal(kp.likelihood[inside], out.visible[:, c][inside])
            assert np.isnan(kp.likelihood[~inside]).all()
        # Ground truth agrees with the exact projection.
        cam = scale_camera(study.calibration.camera(name), SCALE)
        uv, _ = project_points(_rig(cam), study.points_3d[:6])
        np.testing.assert_allclose(out.points_2d[:, c], uv[0], atol=1e-9)
    assert 0.2 < out.visible.mean() < 1.0  # some keypoints are hidden, most are not
    pose = read_pose3d_csv(out.pose_3d)
    np.testing.assert_allclose(pose.points, study.points_3d[:6])
    np.testing.assert_array_equal(pose.ncams, out.visible.sum(1))


def test_labelled_project_layout_loads(study, tmp_path):
    frames = [0, 5, 11]
    config_path = write_labelled_frames(
        study, tmp_path / "project", frames=frames, cameras=[1], scale=SCALE, progress=False
    )
    config = yaml.safe_load(config_path.read_text())
    assert config["bodyparts"] == list(NAMES)
    assert all(a in NAMES and b in NAMES for a, b in config["skeleton"])
    assert len(config["skeleton"]) == len(SKELETON.edges)
    root = config_path.parent
    folder = root / "labeled-data" / "cam1"
    for suffix in (".h5", ".csv"):
        kp = read_dlc(folder / f"CollectedData_synthetic{suffix}")
        assert kp.index == tuple(f"labeled-data/cam1/img{f:04d}.png" for f in frames)
        assert kp.likelihood is None
        for j, entry in enumerate(kp.index):
            image = cv2.imread(str(root / entry))
            assert image is not None and image.shape == (128, 160, 3)
            cam = scale_camera(study.calibration.rig[1], SCALE)
            uv, visible, _ = keypoint_visibility(cam, study.points_3d[frames[j]])
            np.testing.assert_allclose(kp.xy[j][visible], uv[visible])
            assert np.isnan(kp.xy[j][~visible]).all()
    # The labelled image is the video frame (same style, frame index and camera).
    rendered = render_animal(
        scale_camera(study.calibration.rig[1], SCALE),
        study.points_3d[5],
        frame_index=5,
        style=AnimalStyle(seed=study.seed, arena_radius_mm=200.0),
    )
    png = cv2.cvtColor(cv2.imread(str(folder / "img0005.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(png, rendered)


def test_montage_tiles_every_camera(study):
    tiles = render_montage(study, 2, scale=SCALE, draw_keypoints=True)
    assert tiles.shape == (2 * 128, 2 * 160, 3)  # 3 cameras on a 2x2 grid
    assert tiles[128:, 160:].max() == 0  # the spare tile stays black


def test_scaled_skeleton_scales_the_body():
    small = dataclasses.replace(SKELETON, rest_pose=0.5 * SKELETON.rest_pose)
    big, half = mouse_body(), mouse_body(small)
    np.testing.assert_allclose(
        half.place(small.rest_pose).radii, 0.5 * big.place(SKELETON.rest_pose).radii
    )
    np.testing.assert_allclose(
        half.place(small.rest_pose).centres, 0.5 * big.place(SKELETON.rest_pose).centres
    )
