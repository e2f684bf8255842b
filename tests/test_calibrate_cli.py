"""`jaxpose calibrate` end to end: rendered synthetic board images and real board photos."""

from __future__ import annotations

import numpy as np
import pytest

from jaxpose.calibration.board import Board
from jaxpose.cli import main
from jaxpose.io.calibration import load_calibration
from jaxpose.synth import make_rig
from jaxpose.synth.board import board_trajectory
from jaxpose.synth.render import scale_camera, write_board_images
from tests.conftest import data_path

BOARD = Board(
    kind="charuco", squares=(10, 7), square_mm=30.0, marker_mm=22.0, dictionary="DICT_4X4_250"
)
BOARD_ARGS = [
    "board.kind=charuco",
    "board.squares=[10,7]",
    "board.square_mm=30.0",
    "board.marker_mm=22.0",
    "board.dictionary=DICT_4X4_250",
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A 3-camera rig rendered at half resolution (640 x 512): 50 board frames per camera."""
    root = tmp_path_factory.mktemp("rendered")
    cal = make_rig(3, seed=4)
    poses = board_trajectory(BOARD, 50, seed=5, rig=cal)
    write_board_images(root / "images", cal, BOARD, poses, seed=6, image_scale=0.5, progress=False)
    from jaxpose.geometry.camera import stack_cameras

    truth = stack_cameras([scale_camera(cal.rig[i], 0.5) for i in range(3)])
    return root, cal.names, truth


def test_calibrate_rendered_rig(rendered, tmp_path, capsys):
    root, names, truth = rendered
    out = tmp_path / "cal"
    code = main(
        ["calibrate", f"inputs={root / 'images'}", f"out={out}", "progress=false", *BOARD_ARGS]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert all(n in printed for n in names)
    cal = load_calibration(out / "calibration.toml")
    assert cal.names == tuple(names)
    f_err = np.abs(np.asarray(cal.rig.focal) / np.asarray(truth.focal) - 1).max()
    c_err = np.abs(np.asarray(cal.rig.principal_point) - np.asarray(truth.principal_point)).max()
    print(
        f"rendered 3-camera rig at 640x512, 50 frames: focal error {100 * f_err:.3f} %, "
        f"principal point error {c_err:.2f} px"
    )
    assert f_err < 0.01
    assert c_err < 4.0
    meta = cal.metadata
    assert meta["per_camera"][names[0]]["mean_error_px"] < 0.5
    assert (out / "report.md").is_file() and (out / "coverage.png").is_file()
    assert len(list((out / "detections").glob("*.npz"))) == 3


def test_camera_without_board(rendered, tmp_path, capsys):
    root, names, _ = rendered
    import shutil

    inputs = tmp_path / "inputs"
    shutil.copytree(root / "images", inputs)
    blank = np.full((512, 640), 128, np.uint8)
    import cv2

    for p in (inputs / names[1]).glob("*.png"):
        cv2.imwrite(str(p), blank)
    code = main(
        ["calibrate", f"inputs={inputs}", f"out={tmp_path / 'o'}", "progress=false", *BOARD_ARGS]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert names[1] in err
    assert not (tmp_path / "o" / "calibration.toml").exists()


def test_calibrate_real_four_camera_photos(tmp_path, capsys):
    root = data_path("sleap-anipose-minimal-session", "tests", "data", "minimal_session")
    out = tmp_path / "cal"
    code = main(
        [
            "calibrate",
            f"inputs={root}",
            "board=charuco_8x11_anipose",
            f"out={out}",
            "progress=false",
        ]
    )
    assert code == 0
    cal = load_calibration(out / "calibration.toml")
    assert set(cal.names) == {"back", "mid", "side", "top"}
    per = cal.metadata["per_camera"]
    print({n: round(per[n]["mean_error_px"], 3) for n in cal.names})
    assert all(per[n]["mean_error_px"] < 1.0 for n in cal.names)
    assert "side" in capsys.readouterr().out
