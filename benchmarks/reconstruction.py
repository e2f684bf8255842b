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

Usage:
    python benchmarks/reconstruction.py                     # everything; writes results/reconstruction.json
    python benchmarks/reconstruction.py --refinement-only   # the refinement timing part only
    python benchmarks/reconstruction.py --quick             # smoke run (small sizes)
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Before NumPy/JAX load: OpenBLAS threads fight XLA's pool on a 2-core machine, and a persistent
# compilation cache makes re-runs cheap (see shared/CPU-PERF.md).
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import cv2  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

if str(REPO) not in sys.path:  # `python benchmarks/reconstruction.py` from a plain checkout
    sys.path.insert(0, str(REPO))

from jaxpose.geometry import Camera, project_rig  # noqa: E402
from jaxpose.io.atomic import atomic_write_text  # noqa: E402
from jaxpose.synth import make_study  # noqa: E402
from jaxpose.triangulation import triangulate_frames  # noqa: E402
from jaxpose.triangulation.spatiotemporal import (  # noqa: E402
    SpatiotemporalConfig,
    estimate_bone_lengths,
    fill_gaps,
    refine_spatiotemporal,
)

NOISE_PX = 2.0
OUTLIER_FRACTION = 0.10
OCCLUSION_FRACTION = 0.10
DANNCE = REPO.parent / "shared" / "data" / "dannce-markerless-mouse"


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


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refinement-only", action="store_true", help="only the timing part")
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
    if args.frames < 4 or args.scipy_frames < 4:
        parser.error("--frames and --scipy-frames must be at least 4")

    started = time.perf_counter()
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        print(
            f"warning: load average {load_start[0]:.1f} at the start: other processes share "
            f"these {os.cpu_count()} cores, so times will be high and noisy"
        )
    print(
        f"jaxpose reconstruction benchmark: jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, float32; SciPy {scipy.__version__}, NumPy "
        f"{np.__version__}; {os.cpu_count()} CPU cores"
    )
    print(
        f"synthetic study: 6 cameras, 20 keypoints, {args.frames} frames, {NOISE_PX:g} px noise, "
        f"{OUTLIER_FRACTION:.0%} outlier views, {OCCLUSION_FRACTION:.0%} occluded"
    )
    header = (
        f"{'method':<28} {'frames':>7} {'s/1000 fr':>10} {'MPJPE mm':>9} {'compile s':>9}  note"
    )
    print(header)
    parts = dict(refinement=bench_refinement(args))
    if not args.refinement_only:
        print("-" * len(header))
        parts["dannce"] = bench_dannce(args)
    total = time.perf_counter() - started
    load = os.getloadavg()
    print(f"total {total:.0f} s; load average (1, 5, 15 min) at the end: {load}")
    result = dict(
        benchmark="reconstruction",
        meta=dict(
            date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            command=" ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
            jax=jax.__version__,
            backend=jax.devices()[0].platform,
            numpy=np.__version__,
            scipy=scipy.__version__,
            python=platform.python_version(),
            machine=platform.platform(),
            cpu_count=os.cpu_count(),
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1, default=float))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
