"""`jaxpose calibrate`: board images/videos per camera -> calibration.toml and report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf


def run_calibrate(cfg: DictConfig) -> dict:
    from hydra.utils import instantiate

    from jaxpose.calibration.board import Board
    from jaxpose.calibration.calibrate import calibrate
    from jaxpose.calibration.detect import detect_cameras, stack_detections
    from jaxpose.calibration.report import write_report
    from jaxpose.io.calibration import load_calibration, save_calibration

    board = instantiate(cfg.board)
    if not isinstance(board, Board):
        board = Board.from_config(OmegaConf.to_container(cfg.board))
    out = Path(cfg.out)
    cameras = None if cfg.cameras is None else list(cfg.cameras)
    t0 = time.perf_counter()
    detections = detect_cameras(
        board,
        cfg.inputs,
        cache_dir=out / "detections",
        camera_names=cameras,
        every=int(cfg.every),
        max_frames=cfg.max_frames,
        min_corners=cfg.min_corners,
        progress=bool(cfg.progress),
    )
    names = list(detections)
    _, corners = stack_detections(detections, names)
    sizes = np.array([detections[n].image_size for n in names], np.float64)
    t_detect = time.perf_counter() - t0
    known = None
    if cfg.known_intrinsics is not None:
        ref = load_calibration(cfg.known_intrinsics)
        known = {}
        for n in names:
            if n in ref.names:
                cam = ref.camera(n)
                (fx, fy), (cx, cy) = np.asarray(cam.focal), np.asarray(cam.principal_point)
                k = np.array([[fx, float(cam.skew), cx], [0, fy, cy], [0, 0, 1.0]])
                known[n] = (k, np.asarray(cam.distortion))
    options = instantiate(cfg.bundle_adjust, _convert_="all")
    world = cfg.world if str(cfg.world) == "camera" else int(cfg.world)

    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=options.max_iterations, desc="bundle adjustment", unit="it")

    def callback(iteration, cost, damping):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(cost=f"{cost:.4g}")

    t1 = time.perf_counter()
    try:
        result = calibrate(
            board,
            corners,
            sizes,
            names,
            options=options,
            known_intrinsics=known,
            world=world,
            seed=int(cfg.seed),
            reject_outliers=bool(cfg.outliers.reject),
            outlier_factor=float(cfg.outliers.factor),
            outlier_min_px=float(cfg.outliers.min_px),
            callback=callback,
        )
    finally:
        if bar is not None:
            bar.close()
    t_calib = time.perf_counter() - t1
    toml = save_calibration(result.calibration, out / "calibration.toml")
    paths = write_report(result, out, sizes)
    return {
        "result": result,
        "toml": toml,
        "report": paths["markdown"],
        "seconds": {"detect": t_detect, "calibrate": t_calib},
    }


def main(cfg: DictConfig) -> int:
    from jaxpose.calibration.detect import DetectionError
    from jaxpose.calibration.init import CalibrationInputError
    from jaxpose.io.calibration import CalibrationError

    missing = [k for k in ("inputs", "out") if OmegaConf.is_missing(cfg, k)]
    if missing:
        print(
            f"jaxpose calibrate: missing {', '.join(missing)}.\nUsage: jaxpose calibrate "
            "inputs=<folder> out=<folder> board=<name>   (see --help)",
            file=sys.stderr,
        )
        return 2
    try:
        done = run_calibrate(cfg)
    except (DetectionError, CalibrationInputError, CalibrationError, FileNotFoundError) as e:
        print(f"jaxpose calibrate: {e}", file=sys.stderr)
        return 1
    result = done["result"]
    print(result.report.table(result.adjustment.standard_errors))
    for w in result.report.warnings:
        print(f"WARNING: {w}")
    sec = done["seconds"]
    print(
        f"detection {sec['detect']:.1f} s, calibration {sec['calibrate']:.1f} s; "
        f"wrote {done['toml']} and {done['report']}"
    )
    return 0
