"""Triangulation throughput and accuracy: jaxpose against a NumPy SVD loop and OpenCV.

Synthetic ring rigs of 2, 4 and 8 cameras (about 600 mm from the origin, f about 1000 px,
1280x1024, mild radial distortion) look at N points uniform in a 200 mm cube. The 2D points are
the exact projections (cv2.projectPoints, float64) plus 1 px Gaussian noise; a second set also
replaces 10 % of the views by a uniform random pixel (gross outliers).

Methods, all timed on the same arrays in one process:

    jaxpose dlt / robust / refine / robust_refine
        `jaxpose.triangulation.triangulate` in float32 (JAX's default), jitted, warmed up,
        called on chunks of at most --chunk points (bounded memory). The compile time is the
        first call minus a warm call, reported on its own.
    numpy_svd_loop
        cv2.undistortPoints once per camera (vectorised), then per point a 2C x 4 DLT system
        and np.linalg.svd, float64. Timed on min(N, --numpy-max) points: its rate is measured on
        that subset and its MPJPE is over that subset.
    opencv_pairs_median
        cv2.undistortPoints per camera, cv2.triangulatePoints for every camera pair, then the
        per-coordinate median over pairs (2 cameras: the single pair), float64.

Rates are points per second (median over --repeats timed runs after a warm-up). MPJPE is the mean
Euclidean distance to the true points in mm; "outl." is the same with the 10 % outlier views.
Results go to a JSON file (--out).

Usage:
    python benchmarks/triangulation.py                     # full run (see benchmarks/README.md)
    python benchmarks/triangulation.py --quick             # smoke run, N <= 1e4
    python benchmarks/triangulation.py --sizes 1e5 --cameras 4 --repeats 5
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
import functools
import itertools
import os
import time
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.geometry import Camera, make_camera, stack_cameras
from jaxpose.triangulation import triangulate
from jaxpose.triangulation.core import normalized_coordinates

JAX_METHODS = ("dlt", "robust", "refine", "robust_refine")
BASELINE = "numpy_svd_loop"
OPENCV = "opencv_pairs_median"
IMAGE_SIZE = (1280, 1024)
NOISE_PX = 1.0
OUTLIER_FRACTION = 0.1
CUBE_MM = 200.0


# --- synthetic data -----------------------------------------------------------------------------


def ring_rig(num_cameras: int, *, seed: int = 0, radius: float = 600.0) -> Camera:
    """Cameras spread on a ring around the origin, at varied heights, all looking at it."""
    rng = np.random.default_rng(seed)
    cameras = []
    for i in range(num_cameras):
        azimuth = 2 * np.pi * i / num_cameras + rng.uniform(-0.15, 0.15)
        eye = np.array(
            [radius * np.cos(azimuth), radius * np.sin(azimuth), rng.uniform(150.0, 350.0)]
        )
        forward = -eye / np.linalg.norm(eye)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rot = np.stack([right, down, forward])  # rows: camera axes in world, world -> camera
        cameras.append(
            make_camera(
                rotation=cv2.Rodrigues(rot)[0].ravel(),
                translation=-rot @ eye,
                focal=rng.uniform(950.0, 1050.0),
                principal_point=(640.0 + rng.uniform(-8, 8), 512.0 + rng.uniform(-8, 8)),
                distortion=(rng.uniform(-0.15, -0.05), rng.uniform(0.0, 0.03), 0.0, 0.0, 0.0),
                image_size=IMAGE_SIZE,
            )
        )
    return stack_cameras(cameras)


def opencv_camera(rig: Camera, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rvec, tvec, K, dist) of one camera as float64 NumPy, for the OpenCV calls."""
    cam = rig[index]
    return (
        np.asarray(cam.rotation, np.float64),
        np.asarray(cam.translation, np.float64),
        np.asarray(cam.intrinsic_matrix(), np.float64),
        np.asarray(cam.distortion, np.float64),
    )


def make_observations(
    rig: Camera, num_points: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True points (N, 3), noisy views (N, cam, 2) and the same with gross outliers, float64."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-CUBE_MM / 2, CUBE_MM / 2, (num_points, 3))
    views = []
    for c in range(len(rig)):
        rvec, tvec, k, dist = opencv_camera(rig, c)
        views.append(cv2.projectPoints(points, rvec, tvec, k, dist)[0][:, 0])
    uv = np.stack(views, 1) + rng.normal(0.0, NOISE_PX, (num_points, len(rig), 2))
    outlier = rng.random(uv.shape[:2]) < OUTLIER_FRACTION
    random_px = rng.uniform(0, 1, uv.shape) * np.array(IMAGE_SIZE, np.float64)
    uv_outliers = np.where(outlier[..., None], random_px, uv)
    return points, uv, uv_outliers


def mpjpe(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, int]:
    """Mean 3D error in mm over the points that came out finite, and how many did not."""
    err = np.linalg.norm(np.asarray(estimate, np.float64) - truth, axis=-1)
    ok = np.isfinite(err)
    return (float(err[ok].mean()) if ok.any() else float("nan")), int((~ok).sum())


# --- the methods --------------------------------------------------------------------------------


def jax_triangulate(rig32: Camera, uv: np.ndarray, *, method: str, chunk: int) -> np.ndarray:
    """jaxpose `triangulate` over chunks of `chunk` points (the last one padded with NaN views, so
    every call has one shape and one compilation). Returns (N, 3) float32."""
    n = uv.shape[0]
    parts = []
    for start in range(0, n, chunk):
        part = uv[start : start + chunk]
        if part.shape[0] < chunk and n > chunk:
            pad = np.full((chunk - part.shape[0], *part.shape[1:]), np.nan, part.dtype)
            part = np.concatenate([part, pad])
        # Dispatch every chunk before waiting on any: XLA runs while Python prepares the next.
        parts.append((triangulate(rig32, part, method=method).points, min(chunk, n - start)))
    return np.concatenate([np.asarray(p)[:m] for p, m in parts])


def _opencv_normalized(rig: Camera, uv: np.ndarray) -> np.ndarray:
    """Undistorted normalised coordinates (N, cam, 2) by cv2.undistortPoints, one call per camera.
    20 fixed iterations, the iteration count of jaxpose's own undistortion."""
    out = np.empty_like(uv)
    criteria = (cv2.TERM_CRITERIA_COUNT, 20, 0.0)
    for c in range(uv.shape[1]):
        _, _, k, dist = opencv_camera(rig, c)
        src = np.ascontiguousarray(uv[:, c, None, :])
        out[:, c] = cv2.undistortPoints(src, k, dist, criteria=criteria)[:, 0]
    return out


def _extrinsics(rig: Camera) -> np.ndarray:
    """(cam, 3, 4) [R | t]: projection matrices for undistorted normalised coordinates."""
    return np.stack(
        [
            np.hstack(
                [cv2.Rodrigues(opencv_camera(rig, c)[0])[0], opencv_camera(rig, c)[1][:, None]]
            )
            for c in range(len(rig))
        ]
    )


def numpy_svd_loop(rig: Camera, uv: np.ndarray) -> np.ndarray:
    """The textbook baseline: vectorised undistortion, then one 2C x 4 SVD per point, float64."""
    xy = _opencv_normalized(rig, uv)
    proj = _extrinsics(rig)
    num_cameras = uv.shape[1]
    out = np.empty((uv.shape[0], 3))
    system = np.empty((2 * num_cameras, 4))
    for i in range(uv.shape[0]):
        system[0::2] = xy[i, :, 0, None] * proj[:, 2] - proj[:, 0]
        system[1::2] = xy[i, :, 1, None] * proj[:, 2] - proj[:, 1]
        vh = np.linalg.svd(system)[2]
        out[i] = vh[-1, :3] / vh[-1, 3]
    return out


def opencv_pairs_median(rig: Camera, uv: np.ndarray, *, chunk: int) -> np.ndarray:
    """cv2.triangulatePoints on every camera pair, per-coordinate median over the pairs."""
    proj = _extrinsics(rig)
    pairs = list(itertools.combinations(range(uv.shape[1]), 2))
    out = np.empty((uv.shape[0], 3))
    for start in range(0, uv.shape[0], chunk):
        xy = _opencv_normalized(rig, uv[start : start + chunk])
        estimates = []
        for i, j in pairs:
            h = cv2.triangulatePoints(
                proj[i], proj[j], np.ascontiguousarray(xy[:, i].T), np.ascontiguousarray(xy[:, j].T)
            )
            estimates.append((h[:3] / h[3]).T)
        out[start : start + chunk] = (
            estimates[0] if len(estimates) == 1 else np.median(np.stack(estimates), 0)
        )
    return out


def undistort_only(rig32: Camera, uv: np.ndarray) -> jax.Array:
    """The undistortion step of jaxpose's triangulation on its own (for the time breakdown)."""
    return jax.vmap(lambda p: normalized_coordinates(rig32, p))(jnp.asarray(uv))


# --- timing -------------------------------------------------------------------------------------


def timed(fn, repeats: int) -> tuple[list[float], object]:
    """Run `fn` `repeats` times; wall times in seconds (results waited on) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times, result


def warm_up(fn) -> float:
    """One call, waited on; returns its wall time (for JAX: compilation plus one run)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


@dataclasses.dataclass(frozen=True)
class Data:
    """One rig's observations, in the precision each method runs in."""

    truth: np.ndarray  # (N, 3) float64
    clean: np.ndarray  # (N, cam, 2), 1 px noise
    outliers: np.ndarray  # (N, cam, 2), 1 px noise and 10 % gross outlier views


def measure(run, data: Data, n: int, args, *, warm_points: int, limit: int | None = None) -> dict:
    """Time `run` ((n, cam, 2) views -> (n, 3) points) and score it on the first `n` points.

    Two warm-up calls on `warm_points` points come first: the first is returned as
    `first_call_seconds` (for JAX, compilation plus one call); the second estimates a full run.
    A method runs on at most `limit` points (the NumPy loop), and on the first --subset points
    when one run on all `n` would take longer than --max-run-seconds; the row's note says so.
    """
    first = warm_up(functools.partial(run, data.clean[:warm_points]))
    warm = warm_up(functools.partial(run, data.clean[:warm_points]))
    estimate = warm * n / warm_points
    n_time, note = n, ""
    if limit is not None and n > limit:
        n_time, note = limit, f"rate and MPJPE on a subset of {limit} points"
    elif estimate > args.max_run_seconds and n > args.subset:
        n_time = args.subset
        note = (
            f"timed on a subset of {n_time} points: one run on all {n} would take about "
            f"{estimate:.0f} s (over --max-run-seconds {args.max_run_seconds:g})"
        )
    times, est = timed(functools.partial(run, data.clean[:n_time]), args.repeats)
    err, bad = mpjpe(est, data.truth[:n_time])
    err_out, bad_out = mpjpe(run(data.outliers[:n_time]), data.truth[:n_time])
    median = float(np.median(times))
    return dict(
        n_points=n,
        timed_points=n_time,
        seconds_median=median,
        seconds_all=[float(t) for t in times],
        points_per_second=n_time / median,
        mpjpe_mm=err,
        mpjpe_outliers_mm=err_out,
        non_finite=bad,
        non_finite_outliers=bad_out,
        first_call_seconds=first,
        warm_call_seconds=warm,
        note=note,
    )


def bench_cameras(num_cameras: int, sizes: list[int], args) -> tuple[list[dict], dict]:
    """Every method on one ring rig, for every N; rows are printed as they come."""
    rig = ring_rig(num_cameras, seed=num_cameras)
    rig32 = rig.astype(jnp.float32)
    largest = max(sizes)
    truth, clean, outliers = make_observations(rig, largest, seed=100 + num_cameras)
    data64 = Data(truth, clean, outliers)
    data32 = Data(truth, clean.astype(np.float32), outliers.astype(np.float32))
    rows = []

    def emit(method: str, result: dict, base_rate: float, **extra) -> None:
        r = dict(method=method, cameras=num_cameras, **result, **extra)
        r["speedup_vs_numpy_loop"] = r["points_per_second"] / base_rate
        rows.append(r)
        report(r)

    for n in sizes:
        chunk = min(n, args.chunk)
        baseline = functools.partial(numpy_svd_loop, rig)
        result = measure(baseline, data64, n, args, warm_points=min(n, 100), limit=args.numpy_max)
        base_rate = result["points_per_second"]
        emit(BASELINE, result, base_rate)

        opencv = functools.partial(opencv_pairs_median, rig, chunk=chunk)
        result = measure(opencv, data64, n, args, warm_points=min(chunk, 10_000))
        emit(OPENCV, result, base_rate)

        for method in args.methods:
            ours = functools.partial(jax_triangulate, rig32, method=method, chunk=chunk)
            result = measure(ours, data32, n, args, warm_points=chunk)
            compile_s = max(result["first_call_seconds"] - result["warm_call_seconds"], 0.0)
            emit(f"jaxpose_{method}", result, base_rate, compile_seconds=compile_s, chunk=chunk)

    # Where the time goes: jaxpose's undistortion step alone against the whole `dlt` method, on
    # one chunk, timed alternately so that both see the same machine load.
    chunk = min(largest, args.chunk)
    parts = dict(
        undistort=functools.partial(jax.jit(undistort_only), rig32, data32.clean[:chunk]),
        dlt=functools.partial(
            jax_triangulate, rig32, data32.clean[:chunk], method="dlt", chunk=chunk
        ),
    )
    times = {name: [] for name in parts}
    for fn in parts.values():
        warm_up(fn)
    for _ in range(max(args.repeats, 3)):
        for name, fn in parts.items():
            times[name].append(timed(fn, 1)[0][0])
    per_point = {name: float(np.median(t)) / chunk for name, t in times.items()}
    breakdown = dict(
        cameras=num_cameras,
        n_points=chunk,
        undistort_seconds_per_point=per_point["undistort"],
        dlt_seconds_per_point=per_point["dlt"],
        undistort_share_of_dlt=per_point["undistort"] / per_point["dlt"],
    )
    return rows, breakdown


# --- output -------------------------------------------------------------------------------------

HEADER = (
    f"{'method':<22} {'cams':>4} {'N':>9} {'points/s':>10} {'x numpy':>9} "
    f"{'MPJPE mm':>9} {'outl. mm':>9} {'compile s':>9}  note"
)


def _rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def report(r: dict) -> None:
    compile_s = f"{r['compile_seconds']:.1f}" if "compile_seconds" in r else "-"
    failed = ""
    if r["non_finite"] or r["non_finite_outliers"]:
        failed = (
            f"{'; ' if r['note'] else ''}non-finite points: {r['non_finite']} "
            f"(clean), {r['non_finite_outliers']} (outliers)"
        )
    print(
        f"{r['method']:<22} {r['cameras']:>4} {r['n_points']:>9} "
        f"{_rate(r['points_per_second']):>10} {r['speedup_vs_numpy_loop']:>8.1f}x "
        f"{r['mpjpe_mm']:>9.3f} {r['mpjpe_outliers_mm']:>9.2f} {compile_s:>9}  "
        f"{r['note']}{failed}",
        flush=True,
    )


def parse_size(text: str) -> int:
    value = float(text)  # accepts 1e5
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"a size must be a positive integer, got {text!r}")
    return int(value)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: N up to 1e4")
    parser.add_argument("--sizes", type=parse_size, nargs="+", help="point counts (e.g. 1e3 1e5)")
    parser.add_argument("--cameras", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is kept")
    parser.add_argument("--methods", nargs="+", default=list(JAX_METHODS), choices=JAX_METHODS)
    parser.add_argument("--chunk", type=parse_size, default=100_000, help="points per JAX call")
    parser.add_argument(
        "--numpy-max", type=parse_size, default=20_000, help="points for the NumPy loop"
    )
    parser.add_argument(
        "--max-run-seconds",
        type=float,
        default=12.0,
        help="time a method on --subset points when one run on all N would take longer",
    )
    parser.add_argument(
        "--subset", type=parse_size, default=100_000, help="points for such a shortened run"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "triangulation.json"
    )
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    elif args.quick and max(args.sizes) > 10_000:
        parser.error("--quick runs N up to 1e4")
    if min(args.cameras) < 2:
        parser.error("triangulation needs at least 2 cameras")
    sizes = sorted(set(args.sizes))

    started = time.perf_counter()
    load_start = warn_if_busy("rates will be low")
    print(
        f"jaxpose triangulation benchmark: jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"float32; OpenCV {cv2.__version__}, NumPy {np.__version__}; {os.cpu_count()} CPU cores"
    )
    print(
        f"ring rigs, points uniform in a {CUBE_MM:g} mm cube, {NOISE_PX:g} px noise; 'outl.' "
        f"replaces {OUTLIER_FRACTION:.0%} of the views by uniform random pixels"
    )
    print(
        f"points/s: median of {args.repeats} runs after warm-up; x numpy: speed-up over "
        f"{BASELINE}, whose rate (and MPJPE) is measured on min(N, {args.numpy_max}) points"
    )
    print(HEADER)
    rows, breakdowns = [], []
    for num_cameras in args.cameras:
        r, b = bench_cameras(num_cameras, sizes, args)
        rows += r
        breakdowns.append(b)
        print("-" * len(HEADER))
    for b in breakdowns:
        print(
            f"{b['cameras']} cams, {b['n_points']} points: jaxpose's undistortion step alone takes "
            f"{b['undistort_seconds_per_point'] * 1e6:.2f} us/point, the whole dlt method "
            f"{b['dlt_seconds_per_point'] * 1e6:.2f} us/point ({b['undistort_share_of_dlt']:.0%})"
        )
    total = time.perf_counter() - started
    load = os.getloadavg()
    print(f"total {total:.0f} s; load average (1, 5, 15 min) at the end: {load}")

    result = dict(
        benchmark="triangulation",
        meta=dict(
            **run_meta(argv),
            opencv=cv2.__version__,
            dtype="float32 (jaxpose); float64 (baselines)",
            repeats=args.repeats,
            chunk=args.chunk,
            numpy_loop_points=args.numpy_max,
            max_run_seconds=args.max_run_seconds,
            subset=args.subset,
            notes=(
                f"{BASELINE} rate and MPJPE are measured on min(N, {args.numpy_max}) points; "
                "other rows with timed_points < n_points were timed (and scored) on the first "
                "timed_points points because a full run would exceed max_run_seconds (see note). "
                "compile_seconds is the first call minus a warm call, with the persistent "
                "compilation cache in JAX_COMPILATION_CACHE_DIR (a cold cache is slower)."
            ),
            total_seconds=total,
            load_average_start=load_start,
            load_average_end=load,
        ),
        config=dict(
            image_size=IMAGE_SIZE,
            cube_mm=CUBE_MM,
            noise_px=NOISE_PX,
            outlier_fraction=OUTLIER_FRACTION,
            cameras=args.cameras,
            sizes=sizes,
            methods=[BASELINE, OPENCV, *(f"jaxpose_{m}" for m in args.methods)],
        ),
        results=rows,
        breakdown=breakdowns,
    )
    save_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
