"""`jaxpose triangulate` with the steps after triangulation: filters, kinematics, Zarr, plots,
overlay videos, and the bad-input messages of that stage."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from jaxpose.cli import main as cli_main
from jaxpose.io.pose3d import read_pose3d
from jaxpose.io.zarr import read_zarr
from jaxpose.kinematics import read_kinematics_csv
from jaxpose.pipeline.demo import write_study_inputs
from jaxpose.synth import make_study


@pytest.fixture(scope="module")
def study_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose3d")
    study = make_study(num_cameras=3, num_frames=40, noise_px=1.5, num_board_frames=0, seed=4)
    calibration, predictions = write_study_inputs(study, root)
    videos = root / "videos"
    videos.mkdir()
    for c, name in enumerate(study.calibration.names):
        w, h = (int(v) for v in np.asarray(study.calibration.rig.image_size)[c])
        writer = cv2.VideoWriter(
            str(videos / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h)
        )
        for _ in range(40):
            writer.write(np.full((h, w, 3), 40, np.uint8))
        writer.release()
    return study, calibration, predictions, videos


def _run(study, calibration, predictions, out, *extra):
    names = study.skeleton.names
    bones = ",".join(f"[{names[a]},{names[b]}]" for a, b in study.skeleton.edges)
    return cli_main(
        [
            "triangulate",
            f"calibration={calibration}",
            f"predictions={predictions}",
            f"out={out}",
            "progress=false",
            "triangulation=robust",
            f"skeleton=[{bones}]",
            *extra,
        ]
    )


def test_filters_kinematics_zarr_plots_and_overlays(study_files, tmp_path):
    study, calibration, predictions, videos = study_files
    names = study.skeleton.names
    out = tmp_path / "run"
    code = _run(
        study,
        calibration,
        predictions,
        out,
        "spatiotemporal.enabled=true",
        "spatiotemporal.options={temporal_weight: 1.0}",
        "filters=[{kind: savgol, window: 5, polyorder: 2}, {kind: fill, max_gap: 5}]",
        "kinematics.enabled=true",
        f"kinematics.angles=[[{names[0]},{names[1]},{names[2]}]]",
        "zarr=true",
        f"videos={videos}",
        "overlay_frames=10",
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["postprocess"]["steps"] == ["spatiotemporal", "filters", "kinematics"]
    raw, final = read_pose3d(out / "pose3d_raw.csv"), read_pose3d(out / "pose3d.csv")
    truth = study.points_3d
    err = lambda p: np.nanmean(np.linalg.norm(p.points - truth, axis=-1))  # noqa: E731
    assert err(final) < err(raw)  # refinement + smoothing remove part of the noise
    arrays, attrs = read_zarr(out / "pose3d.zarr")
    np.testing.assert_allclose(arrays["points"], final.points, rtol=1e-6, equal_nan=True)
    assert attrs["bodyparts"] == list(names)
    kin = read_kinematics_csv(out / "kinematics.csv")
    assert f"angle_{names[0]}_{names[1]}_{names[2]}" in kin.names
    assert f"speed_{names[0]}" in kin.names
    for f in ("plots/reprojection.png", "plots/skeleton_3d.png"):
        assert (out / f).read_bytes()[:4] == b"\x89PNG"
    capture = cv2.VideoCapture(str(out / "overlays" / f"{study.calibration.names[0]}.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    table = summary["postprocess"]["reprojection_px"]
    assert set(table) == set(study.calibration.names)


def test_bad_skeleton_and_mismatched_video_size(study_files, tmp_path, capsys):
    study, calibration, predictions, videos = study_files
    code = cli_main(
        [
            "triangulate",
            f"calibration={calibration}",
            f"predictions={predictions}",
            f"out={tmp_path / 'a'}",
            "progress=false",
            "skeleton=[[snout,wing]]",
        ]
    )
    assert code == 1
    assert "wing" in capsys.readouterr().err
    small = tmp_path / "small"
    small.mkdir()
    name = study.calibration.names[0]
    writer = cv2.VideoWriter(
        str(small / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48)
    )
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    code = _run(study, calibration, predictions, tmp_path / "b", f"videos={small}")
    assert code == 1
    err = capsys.readouterr().err
    assert name in err and "64x48" in err


def test_videos_at_different_frame_rates_fail_before_the_long_steps(study_files, tmp_path, capsys):
    study, calibration, predictions, _ = study_files
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    rates = {}
    for c, name in enumerate(study.calibration.names):
        w, h = (int(v) for v in study.calibration.rig.image_size[c])
        rates[name] = 25 if c == 1 else 30
        writer = cv2.VideoWriter(
            str(mixed / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), rates[name], (w, h)
        )
        writer.write(np.zeros((h, w, 3), np.uint8))
        writer.release()
    out = tmp_path / "out"
    code = _run(study, calibration, predictions, out, f"videos={mixed}")
    assert code == 1
    err = capsys.readouterr().err
    assert "different frame rates" in err and f"{study.calibration.names[1]} 25" in err
    assert not (out / "kinematics.csv").exists()  # stopped before the postprocessing steps
