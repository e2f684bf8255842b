"""Pictures: the overlay draws the reprojected skeleton where the points project; plots are PNGs."""

from __future__ import annotations

import cv2
import jax
import numpy as np

from jaxpose.synth import make_study
from jaxpose.viz import (
    draw_skeleton,
    plot_error_table,
    plot_skeleton_3d,
    plot_trajectories,
    write_overlay_video,
)


def test_draw_skeleton_marks_the_points_and_skips_nan():
    image = np.zeros((60, 80, 3), np.uint8)
    points = np.array([[10.0, 10.0], [50.0, 40.0], [np.nan, 5.0]])
    out = draw_skeleton(image, points, [(0, 1), (1, 2)])
    assert out[10, 10].sum() > 0 and out[40, 50].sum() > 0
    assert out[25, 30].sum() > 0  # on the bone from (10, 10) to (50, 40)
    assert image.sum() == 0  # the input is not drawn on
    assert draw_skeleton(image[..., 0], points, []).shape == (60, 80, 3)


def test_overlay_video_has_the_skeleton_on_the_projected_points(tmp_path):
    study = make_study(num_cameras=2, num_frames=5, num_board_frames=0, seed=1)
    camera = jax.tree_util.tree_map(lambda a: a[0], study.calibration.rig)
    w, h = (int(v) for v in np.asarray(camera.image_size))
    frames = [np.zeros((h, w, 3), np.uint8) for _ in range(5)]
    path = write_overlay_video(
        tmp_path / "cam0.mp4",
        frames,
        camera,
        study.points_3d,
        study.skeleton.edges,
        fps=30,
        label="cam0",
    )
    capture = cv2.VideoCapture(str(path))
    read = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        read.append(frame)
    assert len(read) == 5 and read[0].shape == (h, w, 3)
    uv = study.points_2d_true[2, 0]
    seen = (
        np.isfinite(uv).all(-1)
        & (uv[:, 0] > 3)
        & (uv[:, 0] < w - 3)
        & (uv[:, 1] > 3)
        & (uv[:, 1] < h - 3)
    )
    x, y = np.round(uv[seen][0]).astype(int)
    assert read[2][y - 1 : y + 2, x - 1 : x + 2].max() > 60


def test_plots_write_pngs(tmp_path):
    study = make_study(num_cameras=2, num_frames=8, num_board_frames=0, seed=2)
    p = plot_skeleton_3d(
        tmp_path / "s.png", study.points_3d, study.skeleton.edges, truth=study.points_3d
    )
    errors = np.array([[1.0, np.nan], [2.5, 0.3]])
    q = plot_error_table(
        tmp_path / "e.png", errors, ["cam0", "cam1"], ["a", "b"], title="reprojection"
    )
    r = plot_trajectories(
        tmp_path / "t.png", {"z": study.points_3d[:, 0, 2]}, fps=30, ylabel="mm", title="snout"
    )
    for f in (p, q, r):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert cv2.imread(str(f)).shape[0] > 100
