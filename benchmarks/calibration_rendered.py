"""Acceptance run: calibrate rendered synthetic rigs end to end (render -> detect -> calibrate)
and compare with the ground-truth cameras.

    python benchmarks/calibration_rendered.py                   # 3, 6, 12 cameras, full size
    python benchmarks/calibration_rendered.py --cameras 3 --frames 60 --scale 0.5   # quick

Prints focal error (%), principal point error (px), rotation error (deg) and camera-centre
error (mm) after aligning the estimated rig to the truth by the rigid transform that best maps
camera centres (the world frame of a calibration is a free choice), and checks that two runs
with the same inputs agree to 1e-6.
"""

from __future__ import annotations

from _bench import save_result  # first: threads, compile cache, sys.path

# isort: split

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxpose.calibration.board import Board
from jaxpose.calibration.calibrate import calibrate
from jaxpose.calibration.detect import detect_cameras, stack_detections
from jaxpose.calibration.evaluate import calibration_errors
from jaxpose.geometry.camera import stack_cameras
from jaxpose.io.calibration import Calibration
from jaxpose.synth import make_rig
from jaxpose.synth.board import calibration_session
from jaxpose.synth.render import scale_camera, write_board_images

BOARD = Board(
    kind="charuco", squares=(10, 7), square_mm=30.0, marker_mm=22.0, dictionary="DICT_4X4_250"
)


def run(
    num_cameras: int, frames: int, scale: float, seed: int, workdir: Path, sweep: float = 0.4
) -> dict:
    cal = make_rig(num_cameras, seed=seed)
    poses = calibration_session(BOARD, cal, frames, seed=seed + 1, sweep_fraction=sweep)
    t0 = time.perf_counter()
    write_board_images(
        workdir / "images", cal, BOARD, poses, seed=seed + 2, image_scale=scale, progress=True
    )
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    dets = detect_cameras(
        BOARD,
        workdir / "images",
        cache_dir=workdir / "cache",
        camera_names=list(cal.names),
        progress=True,
    )
    _, corners = stack_detections(dets, list(cal.names))
    sizes = np.array([dets[n].image_size for n in cal.names], float)
    t_detect = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = calibrate(BOARD, corners, sizes, cal.names)
    t_cal = time.perf_counter() - t0
    again = calibrate(BOARD, corners, sizes, cal.names)
    truth = Calibration(
        stack_cameras([scale_camera(cal.rig[i], scale) for i in range(num_cameras)]), cal.names
    )
    out = calibration_errors(res.calibration, truth)
    out.update(
        cameras=num_cameras,
        frames=frames,
        image_scale=scale,
        mean_reprojection_px=float(np.mean(res.report.mean_error_px)),
        repeat_max_abs_diff=float(np.abs(again.adjustment.cameras - res.adjustment.cameras).max()),
        seconds_render=t_render,
        seconds_detect=t_detect,
        seconds_calibrate=t_cal,
        warnings=list(res.report.warnings),
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cameras", type=int, nargs="+", default=[3, 6, 12])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--scale", type=float, default=1.0, help="image scale (1 = 1280x1024)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--sweep",
        type=float,
        default=0.4,
        help="share of frames with the board close to one camera (intrinsics)",
    )
    ap.add_argument("--out", default="benchmarks/results/calibration_rendered.json")
    args = ap.parse_args()
    rows = []
    for n in args.cameras:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run(n, args.frames, args.scale, args.seed, Path(tmp), args.sweep))
        print(json.dumps(rows[-1], indent=1))
    print(
        f"\n{'cams':>4} {'focal %':>8} {'pp px':>6} {'rot deg':>8} {'centre mm':>9} "
        f"{'reproj px':>9} {'repeat diff':>11} {'render s':>8} {'detect s':>8} {'calib s':>7}"
    )
    for r in rows:
        print(
            f"{r['cameras']:>4} {r['focal_pct']:>8.3f} {r['principal_px']:>6.2f} "
            f"{r['rotation_deg']:>8.4f} {r['centre_mm']:>9.3f} {r['mean_reprojection_px']:>9.3f} "
            f"{r['repeat_max_abs_diff']:>11.1e} {r['seconds_render']:>8.1f} "
            f"{r['seconds_detect']:>8.1f} {r['seconds_calibrate']:>7.1f}"
        )
    print(
        "targets: focal < 0.2 %, principal point < 1 px, rotation < 0.05 deg, centre < 0.5 mm, "
        "repeat < 1e-6"
    )
    save_result(args.out, rows)


if __name__ == "__main__":
    main()
