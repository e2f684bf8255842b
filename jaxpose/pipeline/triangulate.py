"""`jaxpose triangulate`: per-camera DeepLabCut predictions + calibration.toml -> 3D poses.

Prediction files are matched to the calibration's cameras by name, as Anipose does: a file
belongs to camera `back` when `back` appears in its name as a whole token (bounded by
non-alphanumeric characters), so `session_back.h5` matches `back` but not `backL`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxpose.io.atomic import atomic_write_text
from jaxpose.io.calibration import Calibration, load_calibration
from jaxpose.io.dlc import Keypoints2D, read_dlc
from jaxpose.io.pose3d import Pose3D, write_pose3d
from jaxpose.triangulation.api import Triangulation, Triangulator

PREDICTION_SUFFIXES = (".h5", ".csv")


class InputError(ValueError):
    """Inputs that do not fit together; the message says which file or camera and what to do."""


def _token_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])")


def match_files_to_cameras(files: Sequence[Path], names: Sequence[str]) -> dict[str, Path]:
    """Assign each camera name exactly one file whose name contains it as a token.

    Raises:
        InputError: a camera with no file or several, or a file claimed by no camera.
    """
    matches: dict[str, list[Path]] = {n: [] for n in names}
    for f in files:
        for n in names:
            if _token_pattern(n).search(f.name):
                matches[n].append(f)
    problems = []
    for n, fs in matches.items():
        if not fs:
            problems.append(f"camera {n!r}: no prediction file has {n!r} in its name")
        elif len(fs) > 1:
            problems.append(f"camera {n!r}: several files match: {[f.name for f in fs]}")
    if problems:
        listing = ", ".join(f.name for f in files) or "(none)"
        raise InputError(
            "cannot match prediction files to the calibration's cameras "
            f"{list(names)}:\n  " + "\n  ".join(problems) + f"\nfiles considered: {listing}\n"
            "Rename the files so each contains exactly one camera name, or pass an explicit "
            "list in calibration order (predictions=[a.h5,b.h5,...]) or a mapping "
            "(predictions={cam: file})."
        )
    return {n: fs[0] for n, fs in matches.items()}


def resolve_predictions(
    predictions: str | os.PathLike | Sequence | Mapping, calibration: Calibration
) -> dict[str, Path]:
    """A folder, an explicit list (calibration order) or a {camera: file} mapping -> mapping."""
    names = calibration.names
    if isinstance(predictions, Mapping):
        unknown = sorted(set(predictions) - set(names))
        missing = [n for n in names if n not in predictions]
        if unknown or missing:
            raise InputError(
                f"prediction mapping does not fit the calibration's cameras {list(names)}: "
                f"unknown {unknown}, missing {missing}"
            )
        return {n: Path(predictions[n]) for n in names}
    if isinstance(predictions, (str, os.PathLike)):
        folder = Path(predictions)
        if not folder.exists():
            raise InputError(f"{folder}: predictions folder not found")
        if folder.is_file():
            raise InputError(
                f"{folder}: is a single file; give the folder holding one prediction file per "
                "camera, or a list of files in calibration order"
            )
        files = sorted(p for p in folder.iterdir() if p.suffix in PREDICTION_SUFFIXES)
        h5 = [p for p in files if p.suffix == ".h5"]
        # DeepLabCut writes both .h5 and .csv of the same predictions: prefer the h5 files.
        files = h5 or files
        if not files:
            raise InputError(f"{folder}: no .h5 or .csv prediction files in this folder")
        return match_files_to_cameras(files, names)
    files = [Path(p) for p in predictions]
    if len(files) != len(names):
        raise InputError(
            f"{len(files)} prediction files given for {len(names)} cameras {list(names)}; "
            "an explicit list must have one file per camera, in calibration order"
        )
    return dict(zip(names, files, strict=True))


def load_predictions(
    files: Mapping[str, Path], *, bodyparts: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read per-camera predictions into (frame, cam, kpt, 2) pixels and (frame, cam, kpt) confidence.

    Body parts are aligned by name across cameras (first-seen order unless given).

    Raises:
        InputError: different frame counts, or a body part missing in one camera's file.
    """
    data: dict[str, Keypoints2D] = {}
    for cam, path in files.items():
        if not Path(path).is_file():
            raise InputError(f"camera {cam!r}: prediction file {path} not found")
        data[cam] = read_dlc(path)
    cams = list(files)
    counts = {c: data[c].num_frames for c in cams}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{c}: {n} ({files[c].name})" for c, n in counts.items())
        raise InputError(
            f"cameras have different frame counts ({detail}); the videos must be synchronised "
            "and cover the same frames. Trim the longer recordings to the common frames."
        )
    if bodyparts is None:  # every body part any camera has, in first-seen order
        bodyparts = tuple(dict.fromkeys(b for c in cams for b in data[c].bodyparts))
    for c in cams:
        missing = [b for b in bodyparts if b not in data[c].bodyparts]
        if missing:
            raise InputError(
                f"camera {c!r} ({files[c]}): body parts {missing} are missing; it has "
                f"{list(data[c].bodyparts)}"
            )
    selected = {c: data[c].select(list(bodyparts)) for c in cams}
    xy = np.stack([selected[c].xy for c in cams], 1)
    conf = np.stack([selected[c].confidence() for c in cams], 1)
    return xy, conf, tuple(bodyparts)


def per_camera_errors(
    calibration: Calibration, result: Triangulation, points_2d: np.ndarray
) -> np.ndarray:
    """Reprojection error (frame, cam, kpt) in px of each used view; NaN elsewhere."""
    import jax

    from jaxpose.geometry.camera import project_rig

    with jax.enable_x64(True):
        proj = np.asarray(project_rig(calibration.rig, np.asarray(result.points, np.float64)))
    proj = np.moveaxis(proj, 0, 1)  # (frame, cam, kpt, 2)
    err = np.linalg.norm(proj - points_2d, axis=-1)
    used = np.moveaxis(np.asarray(result.used), -1, 1)  # (frame, kpt, cam) -> (frame, cam, kpt)
    return np.where(used, err, np.nan)


def summary_table(names: Sequence[str], rows: Sequence[Sequence], header: Sequence[str]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    return "\n".join(out)


def view_scores(confidence: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Anipose's per-point score: the lowest confidence among the views used (0 if none).

    Args:
        confidence: (frame, cam, kpt) 2D likelihoods.
        used: (frame, kpt, cam) views the triangulation kept.
    """
    conf = np.moveaxis(np.asarray(confidence, np.float64), 1, -1)  # (frame, kpt, cam)
    used = np.asarray(used, bool)
    lowest = np.min(np.where(used, np.nan_to_num(conf), np.inf), axis=-1)
    return np.where(np.any(used, -1), lowest, 0.0)


def triangulation_pose(
    result: Triangulation,
    bodyparts: Sequence[str],
    *,
    score: np.ndarray | None = None,
    frame_numbers: np.ndarray | None = None,
) -> Pose3D:
    """A `Pose3D` of a triangulation (score: `view_scores`, or 1 where triangulated)."""
    ncams = np.asarray(result.ncams)
    return Pose3D(
        points=np.asarray(result.points, np.float64),
        error=np.asarray(result.error, np.float64),
        ncams=ncams,
        score=np.where(ncams > 0, 1.0, 0.0) if score is None else score,
        bodyparts=tuple(bodyparts),
        frame_numbers=frame_numbers,
        covariance=np.asarray(result.covariance, np.float64),
    )


def write_results(out: Path, pose: Pose3D, *, stem: str = "pose3d") -> dict[str, Path]:
    """Write the pose-3d CSV (Anipose layout) and h5 (with covariances) atomically."""
    out.mkdir(parents=True, exist_ok=True)
    return {
        "csv": write_pose3d(out / f"{stem}.csv", dataclasses.replace(pose, covariance=None)),
        "h5": write_pose3d(out / f"{stem}.h5", pose),
    }


def run_triangulate(
    calibration: str | os.PathLike,
    predictions: str | os.PathLike | Sequence | Mapping,
    out: str | os.PathLike,
    *,
    triangulator: Triangulator | None = None,
    bodyparts: Sequence[str] | None = None,
    refine_calibration: Mapping | None = None,
    postprocess=None,
    progress: bool = True,
) -> dict:
    """The whole `jaxpose triangulate` command; returns a summary dict (also written as JSON).

    Args:
        refine_calibration: if given, options of
            `jaxpose.calibration.refine_keypoints.refine_with_keypoints` (min_confidence,
            refine_intrinsics, ...): the calibration is first refined by bundle adjustment on
            confident keypoints (keeping the board's scale), written as
            `calibration_refined.toml`, and used for triangulation.
        postprocess: a `jaxpose.pipeline.pose3d.PostprocessOptions`: spatiotemporal
            refinement, filters, kinematics, Zarr, plots and overlay videos after triangulation.
            The triangulation is then kept as `pose3d_raw.*` and `pose3d.*` is the final result.
    """
    triangulator = triangulator or Triangulator()
    cal = load_calibration(calibration)
    files = resolve_predictions(predictions, cal)
    xy, conf, bodyparts = load_predictions(files, bodyparts=bodyparts)
    refinement = None
    if refine_calibration is not None:
        from jaxpose.calibration.refine_keypoints import refine_with_keypoints
        from jaxpose.io.calibration import save_calibration

        refinement = refine_with_keypoints(
            cal, xy, conf, triangulator=triangulator, **dict(refine_calibration)
        )
        cal = refinement.calibration
        Path(out).mkdir(parents=True, exist_ok=True)
        save_calibration(cal, Path(out) / "calibration_refined.toml")
    result = triangulator(
        cal.rig.astype(np.float32),
        xy.astype(np.float32),
        conf.astype(np.float32),
        progress=progress,
    )
    out = Path(out)
    pose = triangulation_pose(result, bodyparts, score=view_scores(conf, result.used))
    post = None
    if postprocess is None:
        paths = write_results(out, pose)
    else:
        from jaxpose.pipeline.pose3d import postprocess_3d

        raw = {}
        if postprocess.spatiotemporal is not None or postprocess.filters:
            raw = write_results(out, pose, stem="pose3d_raw")  # kept: the unmodified result
        post = postprocess_3d(out, cal, xy, conf, pose, options=postprocess, progress=progress)
        paths = {**{f"raw_{k}": v for k, v in raw.items()}, **post.pop("outputs")}
    errors = per_camera_errors(cal, result, xy)
    ncams = np.asarray(result.ncams)
    summary = {
        "calibration": str(calibration),
        "files": {c: str(p) for c, p in files.items()},
        "frames": int(xy.shape[0]),
        "bodyparts": list(bodyparts),
        "method": triangulator.method,
        "points_triangulated": int(np.sum(ncams >= 2)),
        "points_total": int(ncams.size),
        "median_reprojection_px": _nanstat(np.nanmedian, errors),
        "per_camera": {
            c: {
                "median_px": _nanstat(np.nanmedian, errors[:, i]),
                "p95_px": _nanstat(lambda a: np.nanpercentile(a, 95), errors[:, i]),
                "views_used": int(np.sum(np.isfinite(errors[:, i]))),
            }
            for i, c in enumerate(cal.names)
        },
        "outputs": {k: (str(v) if isinstance(v, (str, Path)) else v) for k, v in paths.items()},
    }
    if post is not None:
        summary["postprocess"] = post
    if refinement is not None:
        summary["calibration_refinement"] = {
            "points": refinement.points_used,
            "views": refinement.views_used,
            "error_before_px": refinement.error_before_px,
            "error_after_px": refinement.error_after_px,
            "scale_correction": refinement.scale_correction,
            "file": str(Path(out) / "calibration_refined.toml"),
        }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _nanstat(fn, a) -> float | None:
    a = np.asarray(a, np.float64)
    return float(fn(a)) if np.any(np.isfinite(a)) else None


def format_summary(summary: dict) -> str:
    rows = [
        (c, _fmt(v["median_px"]), _fmt(v["p95_px"]), v["views_used"])
        for c, v in summary["per_camera"].items()
    ]
    table = summary_table(
        list(summary["per_camera"]), rows, ("camera", "median px", "p95 px", "views used")
    )
    refined = ""
    if "calibration_refinement" in summary:
        r = summary["calibration_refinement"]
        refined = (
            f"calibration refined on {r['points']} keypoints ({r['views']} views): reprojection "
            f"{r['error_before_px']:.2f} -> {r['error_after_px']:.2f} px; wrote {r['file']}\n"
        )
    return refined + (
        f"{summary['points_triangulated']} of {summary['points_total']} points triangulated "
        f"({summary['frames']} frames x {len(summary['bodyparts'])} body parts, "
        f"method {summary['method']}); median reprojection error "
        f"{_fmt(summary['median_reprojection_px'])} px\n{table}\n"
        f"wrote {summary['outputs']['csv']} and {summary['outputs']['h5']}"
    )


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"
