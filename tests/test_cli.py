"""The `jaxpose` command line: help, triangulate on real files, clear errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from jaxpose.cli import main
from jaxpose.io.calibration import load_calibration
from jaxpose.io.dlc import Keypoints2D, read_dlc, write_dlc
from jaxpose.io.pose3d import read_pose3d_csv, read_pose3d_h5
from jaxpose.triangulation import Triangulator
from tests.conftest import data_path

FLY = "05272019_fly4_0_R1C24_Cam-{}_rot-ccw-0.06_sec.rng=0.csv"


@pytest.fixture
def fly_predictions(tmp_path):
    """The eks-fly predictions (first 40 frames) as per-camera DLC h5 files, named by camera."""
    folder = data_path("eks-fly-3cam")
    pred = tmp_path / "pred"
    for cam in "ABC":
        kp = read_dlc(folder / FLY.format(cam))
        kp = Keypoints2D(kp.xy[:40], kp.likelihood[:40], kp.bodyparts, kp.scorer, kp.index[:40])
        write_dlc(pred / f"fly_Cam-{cam}_DLC.h5", kp)
    return folder / "calibration.toml", pred


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "triangulate" in out and "demo" in out


def test_command_help_shows_options():
    # Hydra's --help exits the process, so run it as a subprocess
    res = subprocess.run(
        [sys.executable, "-m", "jaxpose.cli", "triangulate", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "calibration=" in res.stdout and "threshold_px" in res.stdout


def test_unknown_command(capsys):
    assert main(["triangulat"]) == 2
    assert "unknown command 'triangulat'" in capsys.readouterr().err


def test_triangulate_real_fly(tmp_path, fly_predictions, capsys):
    calibration, pred = fly_predictions
    out = tmp_path / "out"
    code = main(
        [
            "triangulate",
            f"calibration={calibration}",
            f"predictions={pred}",
            f"out={out}",
            "progress=false",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Cam-A" in printed and "median reprojection error" in printed
    pose = read_pose3d_csv(out / "pose3d.csv")
    h5 = read_pose3d_h5(out / "pose3d.h5")
    assert pose.points.shape == (40, 12, 3)
    np.testing.assert_allclose(pose.points, h5.points)
    assert h5.covariance is not None and h5.covariance.shape == (40, 12, 3, 3)
    # the CLI gives what the library gives
    cal = load_calibration(calibration)
    xy = np.stack([read_dlc(pred / f"fly_Cam-{c}_DLC.h5").xy for c in "ABC"], 1)
    conf = np.stack([read_dlc(pred / f"fly_Cam-{c}_DLC.h5").confidence() for c in "ABC"], 1)
    lib = Triangulator()(cal.rig.astype(np.float32), xy.astype(np.float32), conf.astype(np.float32))
    np.testing.assert_allclose(pose.points, np.asarray(lib.points), rtol=1e-6, atol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["points_triangulated"] == 480
    assert summary["median_reprojection_px"] < 3.0


def test_triangulate_explicit_list_and_dlt(tmp_path, fly_predictions):
    calibration, pred = fly_predictions
    files = ",".join(str(pred / f"fly_Cam-{c}_DLC.h5") for c in "ABC")
    out = tmp_path / "out"
    code = main(
        [
            "triangulate",
            f"calibration={calibration}",
            f"predictions=[{files}]",
            f"out={out}",
            "triangulation=dlt",
            "progress=false",
        ]
    )
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["method"] == "dlt"


def test_camera_names_that_do_not_match(tmp_path, fly_predictions, capsys):
    calibration, pred = fly_predictions
    (pred / "fly_Cam-C_DLC.h5").rename(pred / "fly_camera3_DLC.h5")
    code = main(
        [
            "triangulate",
            f"calibration={calibration}",
            f"predictions={pred}",
            f"out={tmp_path / 'o'}",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "camera 'Cam-C'" in err and "fly_camera3_DLC.h5" in err
    assert not (tmp_path / "o" / "pose3d.csv").exists()


def test_different_frame_counts(tmp_path, fly_predictions, capsys):
    calibration, pred = fly_predictions
    kp = read_dlc(pred / "fly_Cam-B_DLC.h5")
    write_dlc(
        pred / "fly_Cam-B_DLC.h5",
        Keypoints2D(kp.xy[:30], kp.likelihood[:30], kp.bodyparts, kp.scorer, kp.index[:30]),
    )
    code = main(
        [
            "triangulate",
            f"calibration={calibration}",
            f"predictions={pred}",
            f"out={tmp_path / 'o'}",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "different frame counts" in err and "Cam-B: 30" in err and "Cam-A: 40" in err


def test_missing_bodypart_in_one_camera(tmp_path, fly_predictions, capsys):
    calibration, pred = fly_predictions
    kp = read_dlc(pred / "fly_Cam-A_DLC.h5")
    write_dlc(pred / "fly_Cam-A_DLC.h5", kp.select(list(kp.bodyparts[1:])))
    code = main(
        [
            "triangulate",
            f"calibration={calibration}",
            f"predictions={pred}",
            f"out={tmp_path / 'o'}",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "camera 'Cam-A'" in err and "L1A" in err


def test_malformed_calibration(tmp_path, fly_predictions, capsys):
    _, pred = fly_predictions
    bad = tmp_path / "calibration.toml"
    bad.write_text("[cam_0]\nname = 'Cam-A'\nmatrix = [[1, 0], [0, 1]]\n")
    code = main(
        ["triangulate", f"calibration={bad}", f"predictions={pred}", f"out={tmp_path / 'o'}"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "cam_0" in err


def test_missing_arguments(capsys):
    assert main(["triangulate", "calibration=x.toml"]) == 2
    assert "missing predictions, out" in capsys.readouterr().err


def test_corrupt_prediction_file(tmp_path, fly_predictions, capsys):
    calibration, pred = fly_predictions
    (pred / "fly_Cam-A_DLC.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    code = main(
        [
            "triangulate",
            f"calibration={calibration}",
            f"predictions={pred}",
            f"out={tmp_path / 'o'}",
        ]
    )
    assert code == 1
    assert "fly_Cam-A_DLC.h5" in capsys.readouterr().err


def test_csv_output_layout_is_anipose(tmp_path, fly_predictions):
    calibration, pred = fly_predictions
    out = tmp_path / "out"
    assert (
        main(
            [
                "triangulate",
                f"calibration={calibration}",
                f"predictions={pred}",
                f"out={out}",
                "progress=false",
            ]
        )
        == 0
    )
    df = pd.read_csv(out / "pose3d.csv")
    for suffix in ("x", "y", "z", "error", "ncams", "score"):
        assert f"L1A_{suffix}" in df.columns
    assert "fnum" in df.columns and "M_00" in df.columns and "center_0" in df.columns


def test_triangulate_with_calibration_refinement(tmp_path, fly_predictions):
    calibration, pred = fly_predictions
    out = tmp_path / "out"
    code = main(
        [
            "triangulate",
            f"calibration={calibration}",
            f"predictions={pred}",
            f"out={out}",
            "refine_calibration.enabled=true",
            "refine_calibration.options.min_confidence=0.5",
            "progress=false",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    r = summary["calibration_refinement"]
    assert r["error_after_px"] < r["error_before_px"]
    refined = load_calibration(out / "calibration_refined.toml")
    assert refined.names == load_calibration(calibration).names
