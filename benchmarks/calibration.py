"""Multi-camera calibration: jaxpose `calibrate` against the OpenCV route, on the same detections.

Synthetic ring rigs (`jaxpose.synth.make_rig`) of 2, 6 and 12 cameras watch a 10 x 7 ChArUco
board (30 mm squares) waved through the arena for ~300 frames (`board_trajectory`, optionally
with close-ups in front of each camera: --sweep); every visible corner gets 0.3 px Gaussian noise
per coordinate (`board_observations`). Partial views are kept, as a ChArUco detector reports them,
except that camera views with >= 6 corners all in one board row or column (the board's edge in
view) are dropped before any method sees them (--keep-collinear keeps them): `cv2.calibrateCamera`
fails on such a view, and `jaxpose.calibration.init.init_intrinsics` can be thrown off by one
(with 6 cameras and seed 0, one 6-corner column sent a camera's focal lengths to 108 / 13306 px
and `calibrate` stopped with "shares fewer than 2 board frames"). A failed method is recorded
in the JSON with an `error` and NaN figures instead of stopping the run.

Methods, timed in one process on the same (frame, cam, corner, 2) detections:

    jaxpose
        `jaxpose.calibration.calibrate` with default options (OpenCV per-camera initialisation,
        spanning-tree extrinsics, float64 bundle adjustment of all cameras and board poses with a
        Huber loss, outlier pass, standard errors). The first call is timed on its own (JIT
        compilation, or loading it from the persistent cache, plus one run); then the median of
        --repeats calls. `init s` is the median of the same calls to
        `jaxpose.calibration.init.initialise` alone; `BA s` is the whole minus that (bundle
        adjustment, its outlier pass, standard errors and the report).
    opencv_chain / opencv_tree
        What DeepLabCut/Anipose-style users do with OpenCV alone: `cv2.calibrateCamera` per
        camera on every usable view (>= 6 corners, not all in one board row or column, which
        breaks OpenCV's homography initialisation; --max-views caps the count, evenly spread;
        k3 fixed at 0 like jaxpose's default model), then `cv2.stereoCalibrate` with
        CALIB_FIX_INTRINSIC for each edge of a tree of camera pairs, using per frame only the
        corners both cameras saw (frames where those make a usable view), and composing the relative poses from camera 0
        outward. `chain` links camera i-1 to i (ring order); `tree` attaches, one at a time,
        the unplaced camera that shares the most frames with an already placed one (a maximum
        spanning tree, Prim's). No joint refinement follows.

Scores, the same for every method:

    board reprojection (mean px, RMS px, cross px)
        For each frame, the board pose by `cv2.solvePnP` in the camera that saw the most corners
        in a usable view (using that camera's estimated intrinsics), moved to the world by its estimated
        extrinsics, then projected into every camera and compared with all detected corners.
        `cross px` leaves out the camera used for the PnP: it measures how well the cameras
        agree with each other. The true rig scored the same way gives the noise floor.
    BA px
        jaxpose's own bundle-adjustment residual (mean over the corners it kept), for reference.
    errors against the truth, in camera 0's frame (both estimates put the world there)
        worst camera's focal error (% of fx, fy), principal point error (px), camera-centre
        error (mm) and rotation error (deg).

Results go to a JSON file (--out). Usage:

    python benchmarks/calibration.py                  # 2, 6, 12 cameras, 300 frames (~3 min)
    python benchmarks/calibration.py --quick          # 2 and 3 cameras, 60 frames (< 1 min)
    python benchmarks/calibration.py --cameras 4 8 --frames 500 --noise 0.5 --seed 3
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
import os
import time
from pathlib import Path

import cv2
import jax
import numpy as np

from jaxpose.calibration.bundle_adjust import (
    SLOT,
    BundleAdjustOptions,
    cameras_to_vectors,
    vectors_to_rig,
)
from jaxpose.calibration.calibrate import calibrate
from jaxpose.calibration.init import initialise
from jaxpose.synth import Board, board_observations, make_rig, project_points
from jaxpose.synth.board import calibration_session

BOARD = Board(
    kind="charuco", squares=(10, 7), square_mm=30.0, marker_mm=22.0, dictionary="DICT_4X4_250"
)
MIN_CORNERS = 6  # fewest corners for a usable view (jaxpose's default too)
METHODS = ("jaxpose", "opencv_chain", "opencv_tree")


# --- data ---------------------------------------------------------------------------------------


def make_data(num_cameras: int, frames: int, noise: float, seed: int, sweep: float):
    """Truth rig (cam, 16), detections (frame, cam, corner, 2) NaN-missing, image sizes, names."""
    cal = make_rig(num_cameras, seed=seed)
    poses = calibration_session(BOARD, cal, frames, seed=seed + 1, sweep_fraction=sweep)
    uv, _ = board_observations(BOARD, poses, cal, noise_px=noise, seed=seed + 2)
    sizes = np.asarray(cal.rig.image_size, np.float64)
    return cameras_to_vectors(cal.rig), np.asarray(uv, np.float64), sizes, tuple(cal.names)


def usable(ok: np.ndarray) -> np.ndarray:
    """(...,) whether a view with corners `ok` (..., corner) has >= MIN_CORNERS and is not
    (nearly) collinear: two board rows, or two columns, hold >= 2 of its corners each, so four
    of them are in general position. A partial ChArUco view can be a single row or column of
    corners, on which `cv2.calibrateCamera` fails (its homography initialisation) and
    `cv2.solvePnP` returns garbage; OpenCV users must drop such views."""
    per_row = BOARD.squares[0] - 1  # corner id = row * (cols - 1) + col
    grid = ok.reshape(*ok.shape[:-1], -1, per_row)  # (..., row, col)
    rows = (grid.sum(-1) >= 2).sum(-1) >= 2
    cols = (grid.sum(-2) >= 2).sum(-1) >= 2
    return (ok.sum(-1) >= MIN_CORNERS) & (rows | cols)


def camera_matrix(v: np.ndarray) -> np.ndarray:
    return np.array(
        [
            [v[SLOT["fx"]], v[SLOT["skew"]], v[SLOT["cx"]]],
            [0.0, v[SLOT["fy"]], v[SLOT["cy"]]],
            [0.0, 0.0, 1.0],
        ]
    )


# --- the OpenCV route ---------------------------------------------------------------------------


def evenly_spread(frames: np.ndarray, limit: int) -> np.ndarray:
    if limit <= 0 or len(frames) <= limit:
        return frames
    return frames[np.linspace(0, len(frames) - 1, limit).round().astype(int)]


def opencv_intrinsics(uv: np.ndarray, sizes: np.ndarray, max_views: int) -> tuple[list, list, list]:
    """Per camera: K (3, 3), distortion (5,), views used, by a plain `cv2.calibrateCamera`."""
    obj = BOARD.corners().astype(np.float32)
    ks, dists, used = [], [], []
    for c in range(uv.shape[1]):
        ok = np.all(np.isfinite(uv[:, c]), -1)
        frames = evenly_spread(np.flatnonzero(usable(ok)), max_views)
        _, k, d, _, _ = cv2.calibrateCamera(
            [obj[ok[f]] for f in frames],
            [uv[f, c][ok[f]].astype(np.float32) for f in frames],
            (int(sizes[c, 0]), int(sizes[c, 1])),
            None,
            None,
            flags=cv2.CALIB_FIX_K3,
        )
        ks.append(np.asarray(k, np.float64))
        dists.append(np.asarray(d, np.float64).ravel()[:5])
        used.append(len(frames))
    return ks, dists, used


def common_views(uv: np.ndarray) -> np.ndarray:
    """(frame, cam, cam) bool: the corners both cameras saw in that frame make a `usable` view."""
    ok = np.all(np.isfinite(uv), -1)  # (frame, cam, corner)
    return usable(ok[:, :, None, :] & ok[:, None, :, :])


def chain_edges(shared: np.ndarray) -> list[tuple[int, int]]:
    return [(c - 1, c) for c in range(1, len(shared))]


def tree_edges(shared: np.ndarray) -> list[tuple[int, int]]:
    """Maximum spanning tree by shared frames, grown from camera 0 (Prim's): (placed, new)."""
    placed, edges = [0], []
    while len(placed) < len(shared):
        rest = [c for c in range(len(shared)) if c not in placed]
        p, c = max(((p, c) for p in placed for c in rest), key=lambda e: shared[e])
        edges.append((p, c))
        placed.append(c)
    return edges


def opencv_extrinsics(
    uv: np.ndarray, sizes: np.ndarray, ks: list, dists: list, edges: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """World (= camera 0) -> camera rotations (cam, 3, 3) and translations (cam, 3) by chaining
    `cv2.stereoCalibrate` (fixed intrinsics) along `edges`; frames used per edge."""
    obj = BOARD.corners().astype(np.float32)
    ok = np.all(np.isfinite(uv), -1)
    num_cams = uv.shape[1]
    rot = np.full((num_cams, 3, 3), np.nan)
    trans = np.full((num_cams, 3), np.nan)
    rot[0], trans[0] = np.eye(3), np.zeros(3)
    pairs_used = []
    for a, b in edges:
        both = ok[:, a] & ok[:, b]
        frames = np.flatnonzero(usable(both))
        pairs_used.append(len(frames))
        if len(frames) == 0:
            continue  # camera b stays NaN: the chain is broken
        # x_b = R x_a + T
        _, _, _, _, _, r, t, _, _ = cv2.stereoCalibrate(
            [obj[both[f]] for f in frames],
            [uv[f, a][both[f]].astype(np.float32) for f in frames],
            [uv[f, b][both[f]].astype(np.float32) for f in frames],
            ks[a],
            dists[a],
            ks[b],
            dists[b],
            (int(sizes[b, 0]), int(sizes[b, 1])),
            flags=cv2.CALIB_FIX_INTRINSIC,
        )
        rot[b] = r @ rot[a]
        trans[b] = r @ trans[a] + np.asarray(t, np.float64).ravel()
    return rot, trans, pairs_used


def to_vectors(ks, dists, rot, trans) -> np.ndarray:
    """(cam, 16) in SLOTS order from OpenCV intrinsics and world -> camera poses."""
    out = np.zeros((len(ks), 16))
    for c, (k, d) in enumerate(zip(ks, dists, strict=True)):
        out[c, 0:3] = cv2.Rodrigues(rot[c])[0].ravel() if np.all(np.isfinite(rot[c])) else np.nan
        out[c, 3:6] = trans[c]
        out[c, 6:11] = k[0, 0], k[1, 1], k[0, 2], k[1, 2], k[0, 1]
        out[c, 11:16] = d
    return out


def tree_depth(edges: list[tuple[int, int]], num_cams: int) -> list[int]:
    """Hops from camera 0 to each camera along the edges (how many relative poses compose)."""
    depth = [0] * num_cams
    for a, b in edges:
        depth[b] = depth[a] + 1
    return depth


# --- scores -------------------------------------------------------------------------------------


def board_reprojection(vectors: np.ndarray, sizes: np.ndarray, uv: np.ndarray) -> dict:
    """Board pose per frame by PnP in its best camera, to the world, projected into all cameras."""
    obj = BOARD.corners()
    if not np.all(np.isfinite(vectors)):  # a failed calibration, or a broken chain
        nan = float("nan")
        return dict(mean_px=nan, rms_px=nan, cross_mean_px=nan, frames_used=0, corners_scored=0)
    ok = np.all(np.isfinite(uv), -1)  # (frame, cam, corner)
    counts = np.where(usable(ok), ok.sum(-1), 0)
    best = counts.argmax(1)
    world = np.full((uv.shape[0], len(obj), 3), np.nan)
    for f in np.flatnonzero(counts.max(1) > 0):
        c = best[f]
        v = vectors[c]
        success, rvec, tvec = cv2.solvePnP(
            obj[ok[f, c]], uv[f, c, ok[f, c]], camera_matrix(v), v[11:16]
        )
        if not success:
            continue
        rb = cv2.Rodrigues(rvec)[0]
        rc = cv2.Rodrigues(v[:3])[0]
        cam_points = obj @ rb.T + tvec.ravel()
        world[f] = (cam_points - v[3:6]) @ rc  # R_c^T (x_cam - t_c)
    used = np.all(np.isfinite(world), (-1, -2))
    proj, _ = project_points(vectors_to_rig(vectors, sizes), world[used])  # (cam, f, corner, 2)
    err = np.linalg.norm(proj.transpose(1, 0, 2, 3) - uv[used], axis=-1)  # (f, cam, corner)
    seen = ok[used]
    cross = seen.copy()
    cross[np.arange(len(cross)), best[used]] = False
    e = err[seen]
    return dict(
        mean_px=float(e.mean()),
        rms_px=float(np.sqrt(np.mean(e**2))),
        cross_mean_px=float(err[cross].mean()) if cross.any() else float("nan"),
        frames_used=int(used.sum()),
        corners_scored=int(seen.sum()),
    )


def truth_errors(truth: np.ndarray, estimate: np.ndarray) -> dict:
    """Worst-camera errors of an estimate whose world is camera 0's frame, after expressing the
    truth in camera 0's frame too (the idea of tests/test_calibration.py::relative_errors)."""
    rt = np.stack([cv2.Rodrigues(v[:3])[0] for v in truth])
    r0, t0 = rt[0], truth[0, 3:6]
    # true camera centres and rotations, in camera 0's frame: X0 = r0 X + t0
    centres_t = -np.einsum("cji,cj->ci", rt, truth[:, 3:6]) @ r0.T + t0
    rot_t = np.einsum("cij,kj->cik", rt, r0)  # R_c r0^T
    focal = 100 * np.abs(estimate[:, 6:8] / truth[:, 6:8] - 1).max(1)
    principal = np.abs(estimate[:, 8:10] - truth[:, 8:10]).max(1)
    centre = np.full(len(truth), np.nan)
    angle = np.full(len(truth), np.nan)
    for c in range(len(truth)):
        if not np.all(np.isfinite(estimate[c, :6])):
            continue
        re = cv2.Rodrigues(estimate[c, :3])[0]
        centre[c] = np.linalg.norm(-re.T @ estimate[c, 3:6] - centres_t[c])
        angle[c] = np.degrees(np.linalg.norm(cv2.Rodrigues(re @ rot_t[c].T)[0]))
    return dict(
        focal_pct=float(focal.max()),
        principal_px=float(principal.max()),
        centre_mm=float(centre.max()),
        rotation_deg=float(angle.max()),
        per_camera=dict(
            focal_pct=focal.tolist(),
            principal_px=principal.tolist(),
            centre_mm=centre.tolist(),
            rotation_deg=angle.tolist(),
        ),
    )


# --- timing -------------------------------------------------------------------------------------


def timed(fn, repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times, result


def run_jaxpose(uv, sizes, names, repeats: int) -> tuple[dict, np.ndarray]:
    def full():
        return calibrate(BOARD, uv, sizes, names)

    def init_only():
        options = BundleAdjustOptions()
        return initialise(
            BOARD.corners(),
            uv,
            sizes,
            names,
            reference=options.reference,
            min_corners=MIN_CORNERS,
            fix_k3="k3" in options.fix,
        )

    (first,), _ = timed(full, 1)
    times, result = timed(full, repeats)
    init_times, _ = timed(init_only, repeats)
    wall, init = float(np.median(times)), float(np.median(init_times))
    ba = result.adjustment
    err = np.linalg.norm(ba.residuals, axis=-1)
    return dict(
        wall_s=wall,
        wall_s_all=times,
        init_s=init,
        ba_s=wall - init,
        first_call_s=first,
        compile_s=max(first - wall, 0.0),
        ba_mean_px=float(err.mean()),
        ba_rms_px=float(np.sqrt(np.mean(err**2))),
        ba_iterations=int(ba.solver.iterations),
        ba_converged=bool(ba.solver.converged),
        outliers_rejected=int(sum(result.calibration.metadata["outliers_rejected"].values())),
    ), np.asarray(ba.cameras, np.float64)


def run_opencv(uv, sizes, repeats: int, max_views: int) -> dict[str, tuple[dict, np.ndarray]]:
    """Both OpenCV variants; the intrinsics stage is shared, so it is timed once per repeat."""
    intr_times, (ks, dists, views) = timed(lambda: opencv_intrinsics(uv, sizes, max_views), repeats)
    shared = common_views(uv).sum(0)
    out = {}
    for method, make_edges in (("opencv_chain", chain_edges), ("opencv_tree", tree_edges)):
        edges = make_edges(shared)
        ext_times, (rot, trans, frames) = timed(
            lambda edges=edges: opencv_extrinsics(uv, sizes, ks, dists, edges), repeats
        )
        intr, ext = float(np.median(intr_times)), float(np.median(ext_times))
        out[method] = (
            dict(
                wall_s=intr + ext,
                intrinsics_s=intr,
                stereo_s=ext,
                views_per_camera=views,
                edges=[list(e) for e in edges],
                frames_per_edge=frames,
                depth=tree_depth(edges, uv.shape[1]),
            ),
            to_vectors(ks, dists, rot, trans),
        )
    return out


# --- output -------------------------------------------------------------------------------------

HEADER = (
    f"{'method':<13} {'cams':>4} {'wall s':>7} {'init s':>7} {'BA s':>6} {'compile s':>9} "
    f"{'mean px':>8} {'RMS px':>7} {'cross px':>8} {'BA px':>6} {'focal %':>8} {'pp px':>6} "
    f"{'centre mm':>9} {'rot deg':>8}"
)


def _f(x, fmt: str) -> str:
    """`format(x, fmt)`, or a dash padded to the same width where a method has no such figure."""
    return "-".rjust(int(fmt.split(".")[0])) if x is None else format(x, fmt)


def report(r: dict) -> None:
    if "error" in r:
        print(f"{r['method']:<13} {r['cameras']:>4} FAILED: {r['error']}", flush=True)
        return
    rep, err = r["reprojection"], r["truth_errors"]
    init = r.get("init_s", r.get("intrinsics_s"))
    solve = r.get("ba_s", r.get("stereo_s"))
    print(
        f"{r['method']:<13} {r['cameras']:>4} {r['wall_s']:>7.2f} {_f(init, '7.2f')} "
        f"{_f(solve, '6.2f')} {_f(r.get('compile_s'), '9.1f')} {rep['mean_px']:>8.3f} "
        f"{rep['rms_px']:>7.3f} {rep['cross_mean_px']:>8.3f} {_f(r.get('ba_mean_px'), '6.3f')} "
        f"{err['focal_pct']:>8.3f} {err['principal_px']:>6.2f} {err['centre_mm']:>9.2f} "
        f"{err['rotation_deg']:>8.3f}",
        flush=True,
    )


def bench(num_cameras: int, args) -> tuple[list[dict], dict]:
    truth, uv, sizes, names = make_data(num_cameras, args.frames, args.noise, args.seed, args.sweep)
    ok = np.all(np.isfinite(uv), -1)
    views = int((ok.sum(-1) >= MIN_CORNERS).sum())
    # Views with enough corners, all in one board row or column (the board's edge in view):
    # OpenCV needs them gone, and jaxpose's initialisation is thrown off by them (module doc).
    degenerate = (ok.sum(-1) >= MIN_CORNERS) & ~usable(ok)
    if not args.keep_collinear:
        uv = uv.copy()
        uv[degenerate] = np.nan
    floor = dict(
        cameras=num_cameras,
        views=views,
        collinear_views=int(degenerate.sum()),
        collinear_dropped=not args.keep_collinear,
        **board_reprojection(truth, sizes, uv),
    )
    print(
        f"{num_cameras} cameras, {args.frames} frames: {views} camera views with >= "
        f"{MIN_CORNERS} corners, {int(degenerate.sum())} of them collinear "
        f"({'kept' if args.keep_collinear else 'dropped'}); the true rig scores mean "
        f"{floor['mean_px']:.3f} px, RMS {floor['rms_px']:.3f} px, cross "
        f"{floor['cross_mean_px']:.3f} px (noise floor)"
    )
    nan_cams = np.full((num_cameras, 16), np.nan)
    try:
        results = {"jaxpose": run_jaxpose(uv, sizes, names, args.repeats)}
    except Exception as e:  # a failure is a result here: record it and go on
        results = {
            "jaxpose": (dict(wall_s=float("nan"), error=f"{type(e).__name__}: {e}"), nan_cams)
        }
    try:
        results.update(run_opencv(uv, sizes, args.repeats, args.max_views))
    except cv2.error as e:
        failed = dict(wall_s=float("nan"), error=f"cv2.error: {e}")
        results.update({m: (failed, nan_cams) for m in METHODS if m != "jaxpose"})
    rows = []
    for method in METHODS:
        row, cams = results[method]
        r = dict(
            method=method,
            cameras=num_cameras,
            frames=args.frames,
            **row,
            reprojection=board_reprojection(cams, sizes, uv),
            truth_errors=truth_errors(truth, cams),
        )
        rows.append(r)
        report(r)
    return rows, floor


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 and 3 cameras, 60 frames"
    )
    parser.add_argument("--cameras", type=int, nargs="+", help="rig sizes (default 2 6 12)")
    parser.add_argument("--frames", type=int, help="board frames (default 300)")
    parser.add_argument("--noise", type=float, default=0.3, help="corner noise, px per coordinate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sweep",
        type=float,
        default=0.0,
        help="fraction of frames with the board held close to each camera in turn (0: waved only)",
    )
    parser.add_argument(
        "--keep-collinear",
        action="store_true",
        help="keep views whose >= 6 corners lie in one board row or column (dropped by default)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is kept")
    parser.add_argument(
        "--max-views",
        type=int,
        default=0,
        help="cap on views per camera for cv2.calibrateCamera, evenly spread (0: all)",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "calibration.json"
    )
    args = parser.parse_args(argv)
    if args.cameras is None:
        args.cameras = [2, 3] if args.quick else [2, 6, 12]
    if args.frames is None:
        args.frames = 60 if args.quick else 300
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    started = time.perf_counter()
    load_start = warn_if_busy("times will be high")
    print(
        f"jaxpose calibration benchmark: jax {jax.__version__} on {jax.devices()[0].platform}; "
        f"OpenCV {cv2.__version__}, NumPy {np.__version__}; {os.cpu_count()} CPU cores"
    )
    print(
        f"ChArUco 10x7, 30 mm squares; {args.noise:g} px noise; seed {args.seed}; times are "
        f"medians of {args.repeats} runs; cv2.calibrateCamera on "
        + (f"at most {args.max_views}" if args.max_views > 0 else "all")
        + f" views with >= {MIN_CORNERS} corners, not collinear, per camera"
    )
    print("init s / BA s: jaxpose initialise / the rest; OpenCV: calibrateCamera / stereoCalibrate")
    print(HEADER)
    rows, floors = [], []
    for num_cameras in args.cameras:
        r, floor = bench(num_cameras, args)
        rows += r
        floors.append(floor)
        print("-" * len(HEADER))
    total = time.perf_counter() - started
    load = os.getloadavg()
    print(f"total {total:.0f} s; load average (1, 5, 15 min) at the end: {load}")

    result = dict(
        benchmark="calibration",
        meta=dict(
            **run_meta(argv),
            opencv=cv2.__version__,
            repeats=args.repeats,
            notes=(
                "wall_s is the median of `repeats` runs after a first (compiling) call; jaxpose "
                "init_s is initialise() alone and ba_s = wall_s - init_s; compile_s = first call "
                "- median, with the persistent cache in JAX_COMPILATION_CACHE_DIR (a cold cache "
                "is slower). OpenCV wall_s = intrinsics_s (calibrateCamera, all cameras; shared "
                "by both variants) + stereo_s (stereoCalibrate along the tree). reprojection: "
                "board pose by solvePnP in the camera that saw the most corners, moved to the "
                "world, projected into every camera; cross_mean_px leaves out that camera. "
                "truth_errors: worst camera, in camera 0's frame."
            ),
            total_seconds=total,
            load_average_start=load_start,
            load_average_end=load,
        ),
        config=dict(
            board=dict(kind=BOARD.kind, squares=BOARD.squares, square_mm=BOARD.square_mm),
            cameras=args.cameras,
            frames=args.frames,
            noise_px=args.noise,
            seed=args.seed,
            sweep=args.sweep,
            min_corners=MIN_CORNERS,
            max_views=args.max_views,
            keep_collinear=args.keep_collinear,
            methods=list(METHODS),
        ),
        results=rows,
        noise_floor=floors,
    )
    save_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
