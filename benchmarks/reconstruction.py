"""Whole-recording 3D reconstruction: spatiotemporal refinement against per-frame triangulation and
an Anipose-style SciPy optimisation.

Part "refinement" (--refinement-only runs just this part; more parts come later):

    Data: a seeded synthetic study (`jaxpose.synth.make_study`): 6 cameras, 20 mouse keypoints,
    --frames frames at 30 fps, 2 px Gaussian noise, 10 % gross outlier views (uniform in the
    image), 10 % of the views occluded, detector-like confidences.

    Methods, timed on the same arrays in one process:

    triangulate_robust_refine
        `jaxpose.triangulation.triangulate_frames(method="robust_refine")`, float32: the per-frame
        starting point of the refinement.
    jaxpose_spatiotemporal
        `refine_spatiotemporal` from those points (the time excludes that triangulation), float32,
        default `SpatiotemporalConfig` (Huber reprojection, acceleration and bone-length terms).
    scipy_least_squares
        The same cost (same residuals and weights, float64) minimised the way Anipose's
        `triangulate_optim` does it: `scipy.optimize.least_squares(method="trf")` over all points
        of the first --scipy-frames frames at once, with a sparse Jacobian pattern and
        finite-difference Jacobians, ftol 1e-4 (Anipose's settings), the same robust loss
        (Cauchy, f_scale 5 px) applied per residual component. Its time per 1000 frames is extrapolated linearly (the note says so).

    Times are the median of --repeats runs after a warm-up call (compilation reported apart).
    MPJPE is the mean distance to the true 3D points over the points each method returns.

Part "dannce" (real 6-camera rig): the DANNCE demo calibration and the DANNCE network's 1000-frame
3D track of markerless_mouse_1 (temporally contiguous, 100 Hz; `tests/touchstones/...` in the
data set, see its SOURCE.md) projected into the 6 cameras, with 2 px noise and 10 % outliers,
then the same with 40 % of the views removed. That track is a network output: it jitters from
frame to frame (mean |second difference| 0.64 mm, more than the 0.3 mm error of triangulating
it from 6 views), so a smoothness prior cannot beat triangulation on it when every view is there.
The hand-labelled frames are NOT temporally contiguous (81 frames sampled across the session), so
they are refined with the limb term only (temporal weight 0). Needs ../shared/data; skipped with a
note when absent.

Part "sweep" (--sweep-only runs just this part): calibration and reconstruction error over camera
count (--sweep-cameras, 2 3 4 6) x 2D keypoint noise (--sweep-noise, 0.5 1 2 4 px), with the
study settings of experiments/reconstruction_sweep.yaml (composed on `demo`: 5 % outliers, 5 %
occluded, a 10 x 7 ChArUco board). Per cell: calibrate from the study's board corners
(`calibrate`, no rendering; the corners carry the experiment's board_noise_px, no outliers), move the estimate onto the true world
frame by the rigid fit of the camera poses (centres and axes: unique for 2 cameras too, unlike
centres alone), report the worst-camera focal %, rotation and centre errors, triangulate the
noisy 2D with that ESTIMATED calibration (dlt, robust_refine), refine the robust_refine points
spatiotemporally, and score MPJPE, PA-MPJPE, PCK-3D at 2/5/10 mm, the worst keypoint and the
median reprojection error. The training-loss axis (2D only vs joint 2D+3D) is not re-run: the rows
of benchmarks/results/multiview*.json (benchmarks/multiview.py, one file per camera count) are
appended to the table when those files exist. Writes results/reconstruction_sweep.md (one table) and reconstruction_sweep.png
(MPJPE vs noise) next to --out.

Part "sleap" (--parts sleap): the human labels of the real 8-camera SLEAP rig
(sleap-mouse-8cam: 3 frames x 2 mice, up to 8 views each) triangulated with its own Anipose
calibration (dlt, robust_refine); the reprojection error per camera and per keypoint, as a table
(results/sleap_mouse_8cam.md) and a heat map (results/sleap_mouse_8cam.png). There is no 3D truth:
the reprojection error measures how well labels and calibration agree.

Usage:
    python benchmarks/reconstruction.py                     # everything; writes results/reconstruction.json
    python benchmarks/reconstruction.py --refinement-only   # the refinement timing part only
    python benchmarks/reconstruction.py --sweep-only        # the sweep only (other parts kept)
    python benchmarks/reconstruction.py --parts dannce sleap  # any parts (the others kept)
    python benchmarks/reconstruction.py --quick             # smoke run (small sizes)
"""

from __future__ import annotations

from _bench import (  # first: threads, compile cache, sys.path
    REPO,
    run_meta,
    save_result,
    warn_if_busy,
)

# isort: split

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import scipy
import scipy.sparse
from scipy.optimize import least_squares

from jaxpose.geometry import Camera, project_rig
from jaxpose.io.atomic import atomic_write_text
from jaxpose.synth import make_study
from jaxpose.triangulation import triangulate_frames
from jaxpose.triangulation.spatiotemporal import (
    SpatiotemporalConfig,
    estimate_bone_lengths,
    fill_gaps,
    refine_spatiotemporal,
)

NOISE_PX = 2.0
OUTLIER_FRACTION = 0.10
OCCLUSION_FRACTION = 0.10
SHARED_DATA = Path(os.environ.get("JAXPOSE_SHARED", REPO.parent / "shared")) / "data"
DANNCE = SHARED_DATA / "dannce-markerless-mouse"
SLEAP = SHARED_DATA / "sleap-mouse-8cam"


def mpjpe(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean 3D error (mm) over the finite estimates, and the fraction of points not returned."""
    err = np.linalg.norm(np.asarray(estimate, np.float64) - truth, axis=-1)
    ok = np.isfinite(err)
    return (float(err[ok].mean()) if ok.any() else float("nan")), float(1.0 - ok.mean())


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    """Median wall time of `repeats` calls (results waited on), all times, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times, result


# --- the Anipose-style baseline -----------------------------------------------------------------


def scipy_refine(
    rig: Camera,
    points_2d: np.ndarray,
    confidence: np.ndarray,
    initial: np.ndarray,
    bones: np.ndarray,
    bone_lengths: np.ndarray,
    config: SpatiotemporalConfig,
) -> tuple[np.ndarray, dict]:
    """The refinement cost minimised by scipy.optimize.least_squares, as Anipose does it.

    Residuals (float64): per view sqrt(confidence) * (projection - pixel) (2 each, cv2.projectPoints),
    temporal_weight * the temporal difference of each coordinate, limb_weight * (|Xa - Xb| - L),
    prior_weight * (X - X_init); the Jacobian by finite differences on its sparsity pattern.
    Returns the points (frame, kpt, 3) and solver statistics.
    """
    num_frames, num_cameras, num_kpt, _ = points_2d.shape
    filled, present = fill_gaps(initial)
    x0 = np.where(present[None, :, None], filled, 0.0)
    uv = np.moveaxis(points_2d, 1, 0)  # (cam, frame, kpt, 2)
    conf = np.moveaxis(confidence, 1, 0)
    usable = np.all(np.isfinite(uv), -1) & (conf > 0) & present[None, None]
    cams = [
        (
            np.asarray(rig[c].rotation, np.float64),
            np.asarray(rig[c].translation, np.float64),
            np.asarray(rig[c].intrinsic_matrix(), np.float64),
            np.asarray(rig[c].distortion, np.float64),
        )
        for c in range(num_cameras)
    ]
    obs_c, obs_t, obs_k = np.nonzero(usable)
    sqrt_w = np.sqrt(conf[usable])
    order = config.temporal_order
    bone_ok = np.isfinite(bone_lengths)
    bones = bones[bone_ok]
    lengths = bone_lengths[bone_ok]

    def residuals(flat: np.ndarray) -> np.ndarray:
        x = flat.reshape(num_frames, num_kpt, 3)
        proj = np.empty((num_cameras, num_frames, num_kpt, 2))
        for c, (rvec, tvec, k, dist) in enumerate(cams):
            p = cv2.projectPoints(x.reshape(-1, 3), rvec, tvec, k, dist)[0]
            proj[c] = p.reshape(num_frames, num_kpt, 2)
        parts = [(sqrt_w[:, None] * (proj[obs_c, obs_t, obs_k] - uv[obs_c, obs_t, obs_k])).ravel()]
        if config.temporal_weight > 0:
            parts.append(config.temporal_weight * np.diff(x[:, present], n=order, axis=0).ravel())
        if config.limb_weight > 0 and len(bones):
            d = np.linalg.norm(x[:, bones[:, 0]] - x[:, bones[:, 1]], axis=-1)
            parts.append(config.limb_weight * (d - lengths).ravel())
        if config.prior_weight > 0:
            parts.append(config.prior_weight * (x - x0)[:, present].ravel())
        return np.concatenate(parts)

    # the sparsity pattern: which unknowns (frame, kpt, coord) each residual reads
    index = np.arange(num_frames * num_kpt * 3).reshape(num_frames, num_kpt, 3)
    rows, cols, row = [], [], 0
    for t, k in zip(obs_t, obs_k, strict=True):
        for _ in range(2):
            rows += [row] * 3
            cols += list(index[t, k])
            row += 1
    if config.temporal_weight > 0:
        kept = np.flatnonzero(present)
        for t in range(num_frames - order):
            for k in kept:
                for d in range(3):
                    rows += [row] * (order + 1)
                    cols += [index[t + a, k, d] for a in range(order + 1)]
                    row += 1
    if config.limb_weight > 0 and len(bones):
        for t in range(num_frames):
            for a, b in bones:
                rows += [row] * 6
                cols += list(index[t, a]) + list(index[t, b])
                row += 1
    if config.prior_weight > 0:
        for t in range(num_frames):
            for k in np.flatnonzero(present):
                for d in range(3):
                    rows.append(row)
                    cols.append(index[t, k, d])
                    row += 1
    pattern = scipy.sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(row, num_frames * num_kpt * 3)
    )
    # a keypoint that is never present has no residual: its columns are empty and stay put
    result = least_squares(
        residuals,
        x0.ravel(),
        jac_sparsity=pattern,
        method="trf",
        loss=config.reprojection_loss,  # per residual component (Anipose's way), not per view
        f_scale=config.reprojection_scale_px,
        x_scale="jac",
        ftol=1e-4,
        max_nfev=1000,
    )
    points = result.x.reshape(num_frames, num_kpt, 3)
    points[:, ~present] = np.nan
    return points, dict(nfev=int(result.nfev), njev=int(result.njev or 0), status=result.status)


# --- part: refinement timing on a synthetic study -----------------------------------------------


def bench_refinement(args) -> dict:
    """Time and score triangulation, spatiotemporal refinement and the SciPy baseline."""
    study = make_study(
        num_cameras=6,
        num_frames=args.frames,
        noise_px=NOISE_PX,
        outlier_fraction=OUTLIER_FRACTION,
        occlusion_fraction=OCCLUSION_FRACTION,
        num_board_frames=0,
        seed=args.seed,
    )
    rig = study.calibration.rig
    rig32 = rig.astype(jnp.float32)
    uv32 = study.points_2d.astype(np.float32)
    conf32 = study.confidence.astype(np.float32)
    bones = np.asarray(study.skeleton.edges)
    config = SpatiotemporalConfig()
    per_1000 = 1000.0 / args.frames
    rows = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(
            f"{row['method']:<28} {row['frames']:>7} {row['seconds_per_1000_frames']:>10.2f} "
            f"{row['mpjpe_mm']:>9.3f} {row['compile_seconds']:>9}  {row['note']}",
            flush=True,
        )

    def triangulate():
        return triangulate_frames(
            rig32, uv32, conf32, method="robust_refine", chunk_size=1024
        ).points

    start = time.perf_counter()
    jax.block_until_ready(triangulate())
    first = time.perf_counter() - start
    seconds, times, initial = timed(triangulate, args.repeats)
    initial = np.asarray(initial)
    emit(
        dict(
            method="triangulate_robust_refine",
            frames=args.frames,
            seconds=seconds,
            seconds_all=times,
            seconds_per_1000_frames=seconds * per_1000,
            mpjpe_mm=mpjpe(initial, study.points_3d)[0],
            missing_fraction=mpjpe(initial, study.points_3d)[1],
            compile_seconds=f"{max(first - seconds, 0.0):.1f}",
            note="per frame, no temporal or limb term",
        )
    )

    def refine():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return refine_spatiotemporal(
                rig, study.points_2d, study.confidence, initial=initial, bones=bones,
                config=config, progress=False,
            )  # fmt: skip

    start = time.perf_counter()
    refine()
    first = time.perf_counter() - start
    seconds, times, result = timed(refine, args.repeats)
    err, missing = mpjpe(result.points, study.points_3d)
    emit(
        dict(
            method="jaxpose_spatiotemporal",
            frames=args.frames,
            seconds=seconds,
            seconds_all=times,
            seconds_per_1000_frames=seconds * per_1000,
            mpjpe_mm=err,
            missing_fraction=missing,
            compile_seconds=f"{max(first - seconds, 0.0):.1f}",
            chunks=len(result.chunk_starts),
            lm_iterations=result.iterations.tolist(),
            cg_iterations=result.cg_iterations.tolist(),
            cost_before=result.cost_before,
            cost_after=result.cost_after,
            note=f"chunks of {config.chunk_size} frames, overlap {config.overlap}; "
            f"LM iterations {int(result.iterations.sum())}, CG {int(result.cg_iterations.sum())}",
        )
    )

    # the SciPy baseline on the first frames only: it is slow
    n = min(args.scipy_frames, args.frames)
    lengths = estimate_bone_lengths(initial, bones)
    start = time.perf_counter()
    points, stats = scipy_refine(
        rig, study.points_2d[:n], study.confidence[:n], initial[:n], bones, lengths, config
    )
    seconds = time.perf_counter() - start
    truth = study.points_3d[:n]
    # jaxpose on the same frames, for a like-for-like MPJPE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = refine_spatiotemporal(
            rig, study.points_2d[:n], study.confidence[:n], initial=initial[:n], bones=bones,
            bone_lengths=lengths, config=config, progress=False,
        )  # fmt: skip
    emit(
        dict(
            method="scipy_least_squares",
            frames=n,
            seconds=seconds,
            seconds_all=[seconds],
            seconds_per_1000_frames=seconds * 1000.0 / n,
            mpjpe_mm=mpjpe(points, truth)[0],
            missing_fraction=mpjpe(points, truth)[1],
            compile_seconds="-",
            jaxpose_mpjpe_same_frames_mm=mpjpe(same.points, truth)[0],
            triangulation_mpjpe_same_frames_mm=mpjpe(initial[:n], truth)[0],
            scipy_stats=stats,
            note=f"first {n} frames, one run, time x {1000 / n:.1f}; on these frames jaxpose "
            f"{mpjpe(same.points, truth)[0]:.3f} mm, triangulation {mpjpe(initial[:n], truth)[0]:.3f}"
            f" mm; {stats['nfev']} cost evaluations, {stats['njev']} finite-difference Jacobians",
        )
    )
    return dict(
        data=dict(
            cameras=6,
            keypoints=study.num_keypoints,
            frames=args.frames,
            fps=study.fps,
            noise_px=NOISE_PX,
            outlier_fraction=OUTLIER_FRACTION,
            occlusion_fraction=OCCLUSION_FRACTION,
            seed=args.seed,
        ),
        config=dataclasses.asdict(config),
        results=rows,
    )


# --- part: the real DANNCE rig ------------------------------------------------------------------


def dannce_inputs(
    points: np.ndarray, rig: Camera, *, seed: int, drop: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Exact projections (frame, cam, kpt, 2) of points (frame, kpt, 3) + 2 px noise, with 10 % of
    the views replaced by uniform pixels in a 1200 x 1000 image and a fraction `drop` of the views
    removed (NaN); confidence 1 for every view that is there."""
    with jax.enable_x64(True):
        uv = np.asarray(project_rig(rig, jnp.asarray(points)))  # (cam, frame, kpt, 2)
    uv = np.moveaxis(uv, 0, 1)
    rng = np.random.default_rng(seed)
    noisy = uv + rng.normal(0.0, NOISE_PX, uv.shape)
    outlier = rng.random(uv.shape[:-1]) < OUTLIER_FRACTION
    noisy = np.where(outlier[..., None], rng.uniform([0, 0], [1200, 1000], uv.shape), noisy)
    noisy[rng.random(uv.shape[:-1]) < drop] = np.nan
    return noisy, np.all(np.isfinite(noisy), -1).astype(np.float64)


def bench_dannce(args) -> dict | None:
    """MPJPE with and without refinement on the real DANNCE rig (see the module docstring)."""
    import scipy.io

    from jaxpose.io import load_dannce_calibration

    labels = DANNCE / "demo" / "markerless_mouse_1" / "label3d_dannce.mat"
    track = DANNCE / "tests" / "touchstones" / "save_data_AVG_torch_nearest.mat"
    skeleton = DANNCE / "configs" / "mouse22_skeleton.mat"
    if not (labels.exists() and track.exists() and skeleton.exists()):
        print(f"dannce part skipped: data not found under {DANNCE}")
        return None
    rig = load_dannce_calibration(labels).rig
    bones = np.asarray(scipy.io.loadmat(skeleton)["joints_idx"], np.int64) - 1  # 1-based
    pred = np.asarray(scipy.io.loadmat(track)["pred"], np.float64).transpose(0, 2, 1)
    mat = scipy.io.loadmat(labels)
    labelled = mat["labelData"][0, 0]["data_3d"][0, 0].reshape(-1, 22, 3)
    frames = np.asarray(mat["labelData"][0, 0]["data_frame"][0, 0]).ravel()
    if args.quick:
        pred = pred[:200]
    rows = []
    track_config = SpatiotemporalConfig(temporal_weight=args.dannce_temporal_weight)
    cases = [
        (
            "dannce_track",
            pred,
            0.0,
            track_config,
            "DANNCE network track (100 Hz, contiguous) as truth, all views",
        ),
        (
            "dannce_track_40pc_dropped",
            pred,
            0.4,
            track_config,
            "the same with 40 % of the views removed",
        ),
        (
            "dannce_labels_limb_only",
            labelled,
            0.0,
            SpatiotemporalConfig(temporal_weight=0.0),
            f"{len(labelled)} hand-labelled frames (not contiguous: frames "
            f"{frames.min()}..{frames.max()}), temporal weight 0",
        ),
    ]
    rig32 = rig.astype(jnp.float32)
    for name, truth, drop, config, what in cases:
        uv, conf = dannce_inputs(truth, rig, seed=args.seed, drop=drop)
        initial = np.asarray(
            triangulate_frames(
                rig32, uv.astype(np.float32), conf.astype(np.float32), method="robust_refine"
            ).points
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = refine_spatiotemporal(
                rig, uv, conf, initial=initial, bones=bones, config=config, progress=False
            )
        seconds = time.perf_counter() - start
        row = dict(
            case=name,
            what=what,
            frames=len(truth),
            dropped_views=drop,
            mpjpe_triangulation_mm=mpjpe(initial, truth)[0],
            missing_triangulation=mpjpe(initial, truth)[1],
            mpjpe_refined_mm=mpjpe(result.points, truth)[0],
            missing_refined=mpjpe(result.points, truth)[1],
            temporal_weight=config.temporal_weight,
            limb_weight=config.limb_weight,
            seconds_with_compilation=seconds,
        )
        rows.append(row)
        print(
            f"{name:<28} {row['frames']:>6} frames: MPJPE robust_refine "
            f"{row['mpjpe_triangulation_mm']:.3f} mm ({row['missing_triangulation']:.1%} missing)"
            f" -> spatiotemporal {row['mpjpe_refined_mm']:.3f} mm "
            f"({row['missing_refined']:.1%} missing)  [{what}]",
            flush=True,
        )
    return dict(noise_px=NOISE_PX, outlier_fraction=OUTLIER_FRACTION, results=rows)


# --- part: calibration + reconstruction sweep over cameras x noise ------------------------------

PARTS = ("refinement", "dannce", "sweep", "sleap")
SWEEP_CONFIG = REPO / "experiments" / "reconstruction_sweep.yaml"
MULTIVIEW = REPO / "benchmarks" / "results" / "multiview.json"
SWEEP_METHODS = ("dlt", "robust_refine", "spatiotemporal")
SWEEP_COLUMNS = (
    "source",
    "cameras",
    "noise px",
    "method",
    "focal %",
    "rotation deg",
    "centre mm",
    "MPJPE mm",
    "PA-MPJPE mm",
    "PCK 2mm",
    "PCK 5mm",
    "PCK 10mm",
    "worst keypoint mm",
    "median reproj px",
)


def sweep_config():
    """The `demo` config composed with experiments/reconstruction_sweep.yaml (as the experiment
    test composes it), so the sweep and `jaxpose demo` read the same study settings."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from jaxpose.cli import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        base = compose(config_name="demo")
    override = {k: v for k, v in OmegaConf.load(SWEEP_CONFIG).items() if k != "defaults"}
    return OmegaConf.merge(base, override)


def align_poses(estimate, truth):
    """The estimate moved by the rigid transform that best maps its camera poses onto the true
    ones: each camera contributes its centre and three points 100 mm along its axes.

    `jaxpose.calibration.evaluate.align_to` uses the centres only, which leaves a rotation about
    the baseline free when there are two cameras; with the axes the fit is unique for any rig.

    Returns:
        (the aligned Calibration, dict of worst-camera errors: focal_pct, rotation_deg,
        centre_mm).
    """
    from jaxpose.calibration.bundle_adjust import (
        camera_centres,
        cameras_to_vectors,
        transform_world,
        vectors_to_rig,
    )
    from jaxpose.calibration.evaluate import rigid_align
    from jaxpose.io.calibration import Calibration

    truth = truth.subset(estimate.names)
    est, tru = cameras_to_vectors(estimate.rig), cameras_to_vectors(truth.rig)

    def landmarks(vectors: np.ndarray) -> np.ndarray:
        centres, rotations = camera_centres(vectors)  # rows of R: camera axes in the world
        return np.concatenate([centres, (centres[:, None] + 100.0 * rotations).reshape(-1, 3)])

    r, t = rigid_align(landmarks(est), landmarks(tru))
    moved = transform_world(est, r, t)
    ce, re = camera_centres(moved)
    ct, rt = camera_centres(tru)
    angles = [
        np.degrees(np.linalg.norm(cv2.Rodrigues(a @ b.T)[0])) for a, b in zip(re, rt, strict=True)
    ]
    errors = dict(
        focal_pct=float(100 * np.abs(moved[:, 6:8] / tru[:, 6:8] - 1).max()),
        rotation_deg=float(max(angles)),
        centre_mm=float(np.linalg.norm(ce - ct, axis=1).max()),
    )
    rig = vectors_to_rig(moved, np.asarray(estimate.rig.image_size))
    return Calibration(rig, estimate.names, dict(estimate.metadata)), errors


def median_reprojection_px(rig: Camera, points_3d: np.ndarray, points_2d: np.ndarray) -> float:
    """Median distance (px) over every observed view between the observation (outliers
    included) and the projection of the reconstruction (frame, kpt, 3)."""
    points_3d = np.asarray(points_3d, np.float64)
    with jax.enable_x64(True):
        uv = np.array(project_rig(rig, jnp.asarray(np.nan_to_num(points_3d))), np.float64)
    uv[:, ~np.isfinite(points_3d).all(-1)] = np.nan
    d = np.linalg.norm(np.moveaxis(uv, 0, 1) - points_2d, axis=-1)  # (frame, cam, kpt)
    return float(np.nanmedian(d)) if np.isfinite(d).any() else float("nan")


def sweep_cell(cfg, *, cameras: int, noise_px: float, frames: int, board_frames: int) -> list:
    """Calibrate, triangulate (dlt, robust_refine) and refine one (cameras, noise) cell.

    Returns:
        One row per method with the calibration errors, reconstruction_metrics and the median
        reprojection error; a single row with an `error` when the calibration fails.
    """
    from hydra.utils import instantiate

    from jaxpose.calibration.calibrate import calibrate
    from jaxpose.metrics3d import reconstruction_metrics

    study = instantiate(
        cfg.synth,
        num_cameras=cameras,
        noise_px=noise_px,
        num_frames=frames,
        num_board_frames=board_frames,
    )
    names = list(study.calibration.names)
    cell = dict(cameras=cameras, noise_px=noise_px, frames=frames, board_frames=board_frames)
    start = time.perf_counter()
    try:
        result = calibrate(
            study.board,
            study.board_uv,
            np.asarray(study.calibration.rig.image_size, np.float64),
            names,
            options=instantiate(cfg.calibration.bundle_adjust),
            seed=study.seed,
        )
    except ValueError as err:  # CalibrationInputError: e.g. cameras that never share the board
        return [dict(cell, method="calibration", error=str(err))]
    aligned, cal_errors = align_poses(result.calibration, study.calibration)
    cell.update(calibration=cal_errors, calibration_seconds=time.perf_counter() - start)

    rig = aligned.rig
    rig32 = rig.astype(jnp.float32)
    uv32 = study.points_2d.astype(np.float32)
    conf32 = study.confidence.astype(np.float32)
    estimates = {}
    for method in ("dlt", "robust_refine"):
        estimates[method] = np.asarray(
            triangulate_frames(rig32, uv32, conf32, method=method, chunk_size=1024).points
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimates["spatiotemporal"] = refine_spatiotemporal(
            rig, study.points_2d, study.confidence, initial=estimates["robust_refine"],
            bones=np.asarray(study.skeleton.edges), progress=False,
        ).points  # fmt: skip
    rows = []
    for method, points in estimates.items():
        metrics = reconstruction_metrics(
            np.asarray(points, np.float64),
            study.points_3d,
            bodyparts=study.skeleton.names,
            pck_thresholds_mm=tuple(cfg.pck_thresholds_mm),
        )
        per_kpt = {k: v for k, v in metrics["per_keypoint_mm"].items() if v is not None}
        worst = max(per_kpt, key=per_kpt.get) if per_kpt else None
        rows.append(
            dict(
                cell,
                method=method,
                metrics=metrics,
                worst_keypoint=worst,
                worst_keypoint_mm=per_kpt.get(worst, float("nan")),
                median_reprojection_px=median_reprojection_px(rig, points, study.points_2d),
            )
        )
    return rows


def multiview_rows() -> tuple[list[dict], str]:
    """The training-loss axis: the rows of benchmarks/multiview.py's result files
    (results/multiview.json, results/multiview_<N>cam.json), where they exist."""
    files = sorted(MULTIVIEW.parent.glob("multiview*.json"))
    if not files:
        return [], (
            f"training-loss axis (2D only vs joint 2D+3D): {MULTIVIEW.relative_to(REPO)} not "
            "found; run `python benchmarks/multiview.py` to add its rows"
        )
    rows, commands = [], []
    for path in files:
        data = json.loads(path.read_text())
        commands.append(f"`{data.get('command', 'python benchmarks/multiview.py')}`")
        for name, run in data.get("runs", {}).items():
            rows.append(
                dict(
                    source="multiview.py",
                    cameras=len(data.get("study", {}).get("cameras", [])) or None,
                    method=name,
                    calibration=run.get("camera_errors_after"),
                    mpjpe_mm=run.get("mpjpe_mm"),
                    pa_mpjpe_mm=run.get("pa_mpjpe_mm"),
                )
            )
    rows.sort(key=lambda r: (r["cameras"] or 0, r["method"]))
    return rows, (
        f"rows from multiview.py come from {', '.join(commands)}: a 2D network trained on "
        "rendered video at equal labelled frames and steps (a: 2D loss only, b: joint 2D+3D, "
        "c: joint with trainable cameras from a perturbed calibration, d: joint with the "
        "temporal and limb terms), robust triangulation "
        "with the true calibration (c: its camera errors after training); not the sweep's "
        "synthetic 2D"
    )


def _cell(value, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt) if isinstance(value, (int, float)) else str(value)


def sweep_table(rows: list[dict], extra: list[dict]) -> str:
    """One markdown table: the sweep's rows, then the multiview.py rows."""
    lines = ["| " + " | ".join(SWEEP_COLUMNS) + " |", "|" + "---|" * len(SWEEP_COLUMNS)]
    for r in rows:
        cal = r.get("calibration") or {}
        if "error" in r:
            cells = ["sweep", r["cameras"], _cell(r["noise_px"], "g"), "calibration failed"]
            cells += ["-"] * (len(SWEEP_COLUMNS) - len(cells))
        else:
            m = r["metrics"]
            cells = [
                "sweep",
                r["cameras"],
                _cell(r["noise_px"], "g"),
                r["method"],
                _cell(cal.get("focal_pct")),
                _cell(cal.get("rotation_deg")),
                _cell(cal.get("centre_mm")),
                _cell(m["mpjpe_mm"]),
                _cell(m["pa_mpjpe_mm"]),
                *(_cell(m["pck"].get(k), ".3f") for k in ("2mm", "5mm", "10mm")),
                f"{_cell(r['worst_keypoint_mm'])} ({r['worst_keypoint']})",
                _cell(r["median_reprojection_px"]),
            ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    for r in extra:
        cal = r.get("calibration") or {}
        cells = [
            r["source"],
            _cell(r["cameras"], "d"),
            "network",
            r["method"],
            _cell(cal.get("focal_pct")),
            _cell(cal.get("rotation_deg")),
            _cell(cal.get("centre_mm")),
            _cell(r["mpjpe_mm"]),
            _cell(r["pa_mpjpe_mm"]),
        ]
        cells += ["-"] * (len(SWEEP_COLUMNS) - len(cells))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_plot(rows: list[dict], path: Path, training: list[dict] = ()) -> Path:
    """Left: MPJPE against noise, one line per camera count (colour) and method (line style).
    Right (when ``training`` has rows from multiview.py): the training-loss axis, MPJPE of a
    trained network's predictions against camera count, one line per run."""
    from jaxpose.viz import _pyplot, _save

    plt = _pyplot()
    training = [r for r in training if r.get("cameras") and r.get("mpjpe_mm") is not None]
    fig, axes = plt.subplots(
        1, 2 if training else 1, figsize=(13, 5) if training else (7.5, 5), squeeze=False
    )
    ax = axes[0, 0]
    styles = dict(dlt=":", robust_refine="--", spatiotemporal="-")
    cameras = sorted({r["cameras"] for r in rows})
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(cameras), 1)))
    for colour, c in zip(colours, cameras, strict=True):
        for method, style in styles.items():
            pts = sorted(
                (r["noise_px"], r["metrics"]["mpjpe_mm"])
                for r in rows
                if r["cameras"] == c and r.get("method") == method and "metrics" in r
            )
            if pts:
                x, y = zip(*pts, strict=True)
                ax.plot(x, y, style, marker="o", color=colour, label=f"{c} cams, {method}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("2D noise (px std), 5 % outliers")
    ax.set_ylabel("MPJPE (mm), estimated calibration")
    ax.set_title("Reconstruction error vs 2D noise")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if training:
        ax = axes[0, 1]
        for method in sorted({r["method"] for r in training}):
            pts = sorted((r["cameras"], r["mpjpe_mm"]) for r in training if r["method"] == method)
            x, y = zip(*pts, strict=True)
            ax.plot(x, y, marker="o", linestyle="-" if len(x) > 1 else "none", label=method)
        ax.set_xticks(sorted({r["cameras"] for r in training}))
        ax.set_xlabel("cameras")
        ax.set_ylabel("MPJPE (mm) of a trained network, true calibration")
        ax.set_title("Training loss: 2D only vs joint 2D+3D (equal labels and steps)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, path)


def bench_sweep(args) -> dict:
    """Calibration + reconstruction errors over cameras x noise (see the module docstring)."""
    from tqdm import tqdm

    cfg = sweep_config()
    cells = [(c, n) for c in args.sweep_cameras for n in args.sweep_noise]
    rows = []
    for cameras, noise in tqdm(cells, desc="sweep cells", disable=not sys.stderr.isatty()):
        board_frames = cfg.synth.num_board_frames * (2 if cameras == 2 else 1)
        if args.quick:
            board_frames = board_frames * 2 // 3
        new = sweep_cell(
            cfg, cameras=cameras, noise_px=noise, frames=args.sweep_frames,
            board_frames=board_frames,
        )  # fmt: skip
        for r in new:
            what = r.get("error") or (
                f"MPJPE {r['metrics']['mpjpe_mm']:.3f} mm, PCK@5mm "
                f"{r['metrics']['pck']['5mm']:.3f}, centre err {r['calibration']['centre_mm']:.2f}"
                " mm"
            )
            print(f"{cameras} cams {noise:g} px {r['method']:<15} {what}", flush=True)
        rows += new
    extra, note = multiview_rows()
    table = sweep_table(rows, extra)
    md = args.out.with_name("reconstruction_sweep.md")
    png = args.out.with_name("reconstruction_sweep.png")
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    atomic_write_text(
        md,
        "# Reconstruction sweep: cameras x 2D noise, estimated calibration\n\n"
        f"Command: `python benchmarks/{command}` (experiment "
        f"`{SWEEP_CONFIG.relative_to(REPO)}`). {args.sweep_frames} frames, "
        f"{cfg.synth.outlier_fraction:.0%} outliers, {cfg.synth.occlusion_fraction:.0%} occluded; "
        f"calibrated from the study's board corners ({cfg.synth.board_noise_px:g} px noise), errors are worst-camera after a "
        "rigid alignment of the camera poses; triangulated with the ALIGNED estimated "
        "calibration; spatiotemporal starts from robust_refine. PCK is the fraction of all "
        "known keypoints within the threshold.\n\n"
        f"{table}\n{note}.\n",
    )
    print(table)
    print(note)
    sweep_plot(rows, png, extra)
    print(f"wrote {md} and {png}")
    return dict(
        config=dict(
            experiment=str(SWEEP_CONFIG.relative_to(REPO)),
            cameras=list(args.sweep_cameras),
            noise_px=list(args.sweep_noise),
            frames=args.sweep_frames,
            outlier_fraction=cfg.synth.outlier_fraction,
            occlusion_fraction=cfg.synth.occlusion_fraction,
            seed=cfg.synth.seed,
            pck_thresholds_mm=list(cfg.pck_thresholds_mm),
        ),
        columns=list(SWEEP_COLUMNS),
        results=rows,
        training_loss=dict(rows=extra, note=note),
        table=str(md),
        plot=str(png),
    )


# --- part: real 8-camera rig, human labels, reprojection per camera --------------------------


def load_sleap_labels(folder: Path) -> tuple[np.ndarray, list[str], list[str], list[tuple]]:
    """The user-labelled instances of sleap-mouse-8cam's flat label CSV as an array.

    Returns:
        points_2d (instance, cam, kpt, 2) NaN where not labelled or not visible, the camera
        names (calibration order), the node names, and the (frame, track) of each instance.
    """
    import pandas as pd

    from jaxpose.io import load_calibration

    names = list(load_calibration(folder / "calibration.toml").names)
    df = pd.read_csv(folder / "labels" / "labels_2d_long.csv")
    df = df[df.instance_type == "user"]
    unknown = sorted(set(df.camera) - set(names))
    if unknown:
        raise ValueError(f"{folder}: label cameras {unknown} are not in calibration.toml {names}")
    nodes = sorted(df.node.unique())
    keys = sorted({(int(f), str(t)) for f, t in zip(df.frame_idx, df.track, strict=True)})
    uv = np.full((len(keys), len(names), len(nodes), 2), np.nan)
    for row in df.itertuples():
        if row.visible and np.isfinite(row.x) and np.isfinite(row.y):
            i = keys.index((int(row.frame_idx), str(row.track)))
            uv[i, names.index(row.camera), nodes.index(row.node)] = (row.x, row.y)
    return uv, names, nodes, keys


def bench_sleap(args) -> dict | None:
    """Reprojection error per camera of the triangulated human labels (module docstring)."""
    from jaxpose.io import load_calibration
    from jaxpose.metrics3d import reprojection_table
    from jaxpose.triangulation import triangulate
    from jaxpose.viz import plot_error_table

    if not (SLEAP / "labels" / "labels_2d_long.csv").is_file():
        print(f"sleap part skipped: data not found under {SLEAP}")
        return None
    cal = load_calibration(SLEAP / "calibration.toml")
    uv, names, nodes, keys = load_sleap_labels(SLEAP)
    views = np.isfinite(uv).all(-1)
    print(
        f"sleap-mouse-8cam: {len(keys)} labelled instances (frame, mouse), {len(nodes)} keypoints, "
        f"{len(names)} cameras, {int(views.sum())} labelled views"
    )
    results, tables = {}, {}
    for method, options in (("dlt", {}), ("robust_refine", dict(threshold_px=20.0))):
        with jax.enable_x64(True):
            res = triangulate(cal.rig, uv.transpose(0, 2, 1, 3), method=method, **options)
            points = np.asarray(res.points, np.float64)  # (instance, kpt, 3)
            table = reprojection_table(cal.rig, points, uv)  # (cam, kpt)
        err = np.asarray(res.error, np.float64)
        per_cam = {}
        for c, name in enumerate(names):
            with jax.enable_x64(True):
                uv_hat = np.asarray(project_rig(cal.rig, np.nan_to_num(points)), np.float64)[c]
            d = np.linalg.norm(uv_hat - uv[:, c], axis=-1)
            d[~np.isfinite(points).all(-1)] = np.nan
            d = d[np.isfinite(d)]
            per_cam[name] = dict(
                views=int(d.size),
                mean_px=float(d.mean()) if d.size else None,
                median_px=float(np.median(d)) if d.size else None,
                max_px=float(d.max()) if d.size else None,
            )
        used = np.asarray(res.used, bool)  # (instance, kpt, cam)
        results[method] = dict(
            points_triangulated=int(np.isfinite(points).all(-1).sum()),
            points_labelled_in_2_plus_views=int((views.sum(1) >= 2).sum()),
            median_point_error_px=float(np.nanmedian(err)),
            mean_point_error_px=float(np.nanmean(err)),
            views_rejected=int((views.transpose(0, 2, 1) & ~used).sum()),
            per_camera=per_cam,
            per_keypoint_mean_px={
                n: (float(np.nanmean(table[:, k])) if np.isfinite(table[:, k]).any() else None)
                for k, n in enumerate(nodes)
            },
        )
        tables[method] = table
        cams = ", ".join(f"{n} {v['mean_px']:.2f}" for n, v in per_cam.items() if v["mean_px"])
        print(
            f"{method:<15} median point error {results[method]['median_point_error_px']:.2f} px, "
            f"{results[method]['views_rejected']} views rejected; mean per camera: {cams}"
        )
    md = args.out.with_name("sleap_mouse_8cam.md")
    png = args.out.with_name("sleap_mouse_8cam.png")
    lines = [
        "# sleap-mouse-8cam: human labels triangulated with the rig's calibration\n",
        f"{len(keys)} labelled instances (3 frames x 2 mice), {len(nodes)} keypoints, "
        f"{len(names)} cameras, {int(views.sum())} labelled views. Reprojection error (px) of "
        "each labelled view against the projection of its triangulated point; robust_refine "
        "drops views over 20 px and refines on the rest (its rejected views still count "
        "here). No 3D truth exists for this set.\n",
        "| camera | views | dlt mean | dlt median | robust_refine mean | robust_refine median |"
        " robust_refine max |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        a, b = results["dlt"]["per_camera"][name], results["robust_refine"]["per_camera"][name]
        lines.append(
            f"| {name} | {a['views']} | {_cell(a['mean_px'])} | {_cell(a['median_px'])} | "
            f"{_cell(b['mean_px'])} | {_cell(b['median_px'])} | {_cell(b['max_px'])} |"
        )
    lines += [
        "",
        "| method | median point error px | mean point error px | views rejected |",
        "|---|---|---|---|",
    ]
    for method, r in results.items():
        lines.append(
            f"| {method} | {r['median_point_error_px']:.2f} | {r['mean_point_error_px']:.2f} | "
            f"{r['views_rejected']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md, "\n".join(lines) + "\n")
    plot_error_table(
        png,
        tables["robust_refine"],
        names,
        nodes,
        title="sleap-mouse-8cam: mean reprojection error (px) per camera and keypoint",
    )
    print(f"wrote {md} and {png}")
    return dict(
        instances=[list(k) for k in keys],
        cameras=names,
        keypoints=nodes,
        methods=results,
        table=str(md),
        plot=str(png),
    )


def previous_parts(path: Path, *, skip) -> dict[str, tuple[str, object]]:
    """{part: (date of that run, its result)} of the parts in an earlier result file at `path`
    that this run did not redo; empty when there is no readable earlier file."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if old.get("benchmark") != "reconstruction":
        return {}
    dates = old.get("meta", {}).get("parts_kept_from_previous_run", {})
    date = old.get("meta", {}).get("date", "unknown")
    return {k: (dates.get(k, date), old[k]) for k in PARTS if k in old and k not in skip}


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refinement-only", action="store_true", help="only the timing part")
    parser.add_argument("--sweep-only", action="store_true", help="only the cameras x noise sweep")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default all)"
    )
    parser.add_argument(
        "--sweep-cameras", type=int, nargs="+", default=[2, 3, 4, 6], help="sweep camera counts"
    )
    parser.add_argument(
        "--sweep-noise", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0], help="sweep px"
    )
    parser.add_argument("--sweep-frames", type=int, default=300, help="frames per sweep cell")
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes")
    parser.add_argument("--frames", type=int, default=1000, help="frames of the synthetic study")
    parser.add_argument(
        "--scipy-frames", type=int, default=300, help="frames the SciPy baseline runs on"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dannce-temporal-weight",
        type=float,
        default=SpatiotemporalConfig().temporal_weight,
        help="temporal weight for the 100 Hz DANNCE track",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "reconstruction.json"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.scipy_frames, args.repeats = min(args.frames, 120), 40, 1
        args.sweep_cameras = args.sweep_cameras[:2]
        args.sweep_noise = args.sweep_noise[1::2][:2] or args.sweep_noise[:1]
        args.sweep_frames = min(args.sweep_frames, 60)
    if args.frames < 4 or args.scipy_frames < 4 or args.sweep_frames < 4:
        parser.error("--frames, --scipy-frames and --sweep-frames must be at least 4")
    if args.refinement_only and args.sweep_only:
        parser.error("--refinement-only and --sweep-only exclude each other")
    if args.refinement_only:
        args.parts = ["refinement"]
    if args.sweep_only:
        args.parts = ["sweep"]
    if min(args.sweep_cameras) < 2 or min(args.sweep_noise) < 0:
        parser.error("--sweep-cameras must be >= 2 and --sweep-noise >= 0")

    started = time.perf_counter()
    load_start = warn_if_busy("times will be high")
    print(
        f"jaxpose reconstruction benchmark: jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, float32; SciPy {scipy.__version__}, NumPy "
        f"{np.__version__}; {os.cpu_count()} CPU cores"
    )
    header = (
        f"{'method':<28} {'frames':>7} {'s/1000 fr':>10} {'MPJPE mm':>9} {'compile s':>9}  note"
    )
    parts = {}
    if "refinement" in args.parts:
        print(
            f"synthetic study: 6 cameras, 20 keypoints, {args.frames} frames, {NOISE_PX:g} px "
            f"noise, {OUTLIER_FRACTION:.0%} outlier views, {OCCLUSION_FRACTION:.0%} occluded"
        )
        print(header)
        parts["refinement"] = bench_refinement(args)
    for name, bench in (("dannce", bench_dannce), ("sweep", bench_sweep), ("sleap", bench_sleap)):
        if name in args.parts:
            print("-" * len(header))
            parts[name] = bench(args)
    total = time.perf_counter() - started
    load = os.getloadavg()
    print(f"total {total:.0f} s; load average (1, 5, 15 min) at the end: {load}")
    result = dict(
        benchmark="reconstruction",
        meta=dict(
            **run_meta(argv),
            scipy=scipy.__version__,
            dtype="float32 (jaxpose); float64 (SciPy baseline)",
            repeats=args.repeats,
            notes=(
                "seconds_per_1000_frames of scipy_least_squares is extrapolated linearly from "
                "one run on its first frames; compile_seconds is the first call minus the "
                "median, with the persistent compilation cache in JAX_COMPILATION_CACHE_DIR."
            ),
            total_seconds=total,
            load_average_start=load_start,
            load_average_end=load,
        ),
        **parts,
    )
    # A partial run (--sweep-only, --refinement-only) keeps the other parts of an earlier run.
    kept = previous_parts(args.out, skip=parts.keys())
    if kept:
        result["meta"]["parts_kept_from_previous_run"] = {k: v[0] for k, v in kept.items()}
        result.update({k: v[1] for k, v in kept.items()})
    save_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
