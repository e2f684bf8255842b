"""`jaxpose demo`: the embedded synthetic study, end to end, checked against ground truth.

1. make a seeded synthetic study (rig, walking/rearing mouse, noisy 2D with outliers, and a
   hand-held ChArUco board);
2. render the board through every camera (distortion, blur, noise, lighting), detect it and
   calibrate the rig by bundle adjustment, as `jaxpose calibrate` does; measure the calibration
   against the true cameras;
3. write what a lab would have on disk: the estimated `calibration.toml` and one DeepLabCut
   prediction file per camera;
4. run the same code path as `jaxpose triangulate` on those files;
5. compare each triangulation method with the exact 3D and write a report.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from jaxpose.io.atomic import atomic_path, atomic_write_text
from jaxpose.io.calibration import save_calibration
from jaxpose.io.dlc import Keypoints2D, write_dlc
from jaxpose.pipeline.triangulate import format_summary, run_triangulate, summary_table
from jaxpose.triangulation.api import Triangulator


def calibrate_from_rendered_board(
    study, out: Path, *, options=None, render: dict | None = None, progress: bool = True
):
    """Render the study's board frames, detect the board and calibrate the rig.

    Returns:
        (CalibrationResult, calibration aligned to the truth's world frame, error dict).
    """
    from jaxpose.calibration.calibrate import calibrate
    from jaxpose.calibration.detect import detect_cameras, stack_detections
    from jaxpose.calibration.evaluate import align_to, calibration_errors
    from jaxpose.calibration.report import write_report
    from jaxpose.synth.render import write_board_images

    names = list(study.calibration.names)
    images = out / "board_images"
    write_board_images(
        images,
        study.calibration,
        study.board,
        study.board_poses,
        seed=study.seed,
        progress=progress,
        **(render or {}),
    )
    dets = detect_cameras(
        study.board, images, cache_dir=out / "detections", camera_names=names, progress=progress
    )
    _, corners = stack_detections(dets, names)
    sizes = np.array([dets[n].image_size for n in names], np.float64)
    result = calibrate(study.board, corners, sizes, names, options=options, seed=study.seed)
    write_report(result, out, sizes)
    save_calibration(result.calibration, out / "calibration.toml")
    aligned = align_to(result.calibration, study.calibration)
    return result, aligned, calibration_errors(result.calibration, study.calibration)


def write_study_inputs(study, out: Path, calibration=None) -> tuple[Path, Path]:
    """Write a calibration.toml (the study's true one unless given) and per-camera DeepLabCut
    prediction h5 files."""
    calibration = save_calibration(calibration or study.calibration, out / "calibration.toml")
    folder = out / "predictions"
    names = study.calibration.names
    for c, name in enumerate(names):
        xy = np.asarray(study.points_2d[:, c], np.float64)
        likelihood = np.where(np.isfinite(xy[..., 0]), study.confidence[:, c], np.nan)
        write_dlc(
            folder / f"synthetic_{name}.h5",
            Keypoints2D(
                xy=xy,
                likelihood=np.asarray(likelihood, np.float64),
                bodyparts=tuple(study.skeleton.names),
                scorer="jaxpose-synth",
                index=tuple(range(xy.shape[0])),
            ),
        )
    return calibration, folder


def error_metrics(estimate: np.ndarray, truth: np.ndarray, thresholds_mm: Sequence[float]) -> dict:
    """MPJPE-style statistics of (frame, kpt, 3) estimates against the truth."""
    err = np.linalg.norm(estimate - truth, axis=-1)
    found = np.isfinite(err)
    e = err[found]
    return {
        "mpjpe_mm": float(np.mean(e)) if e.size else None,
        "median_mm": float(np.median(e)) if e.size else None,
        "p95_mm": float(np.percentile(e, 95)) if e.size else None,
        "coverage": float(found.mean()),
        **{
            f"pck@{t:g}mm": float(np.mean(np.where(found, err, np.inf) <= t)) for t in thresholds_mm
        },
        "per_keypoint_mm": [
            float(np.nanmean(err[:, k])) if found[:, k].any() else None for k in range(err.shape[1])
        ],
    }


def plot_errors(path: Path, names: Sequence[str], metrics: dict[str, dict]) -> None:
    """Bar chart of mean error per keypoint, one bar group per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(metrics)
    x = np.arange(len(names))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(names)), 4.2))
    for i, m in enumerate(methods):
        vals = [np.nan if v is None else v for v in metrics[m]["per_keypoint_mm"]]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean 3D error (mm)")
    ax.set_yscale("log")
    ax.set_title("Reconstruction error per keypoint against ground truth")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run_demo(
    study,
    out: str | Path,
    *,
    triangulator: Triangulator,
    compare_methods: Sequence[str] = ("dlt", "robust", "refine", "robust_refine"),
    pck_thresholds_mm: Sequence[float] = (2.0, 5.0, 10.0),
    calibrate: bool = True,
    bundle_adjust=None,
    render: dict | None = None,
    progress: bool = True,
) -> dict:
    """Run the demo on a synthetic study; returns the metrics dict (also written as JSON)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    calibration_errors, calibration_table, calibration_warnings = None, None, []
    used = study.calibration
    if calibrate:
        result, used, calibration_errors = calibrate_from_rendered_board(
            study, out / "calibration", options=bundle_adjust, render=render, progress=progress
        )
        calibration_table = result.report.table(result.adjustment.standard_errors)
        calibration_warnings = list(result.report.warnings)
    t_calibration = time.perf_counter() - t0
    t0 = time.perf_counter()
    calibration_path, predictions = write_study_inputs(study, out, used)
    summary = run_triangulate(
        calibration_path,
        predictions,
        out / "triangulated",
        triangulator=triangulator,
        progress=progress,
    )
    t_main = time.perf_counter() - t0

    from jaxpose.io.pose3d import read_pose3d_h5

    main_points = read_pose3d_h5(out / "triangulated" / "pose3d.h5").points
    truth = np.asarray(study.points_3d, np.float64)
    rig32 = used.rig.astype(np.float32)
    metrics: dict[str, dict] = {}
    timings: dict[str, float] = {}
    for method in compare_methods:
        tri = dataclasses.replace(triangulator, method=method)
        args = (rig32, study.points_2d.astype(np.float32), study.confidence.astype(np.float32))
        tri(*args)  # compile once, time the second call
        t = time.perf_counter()
        res = tri(*args)
        timings[method] = time.perf_counter() - t
        metrics[method] = error_metrics(
            np.asarray(res.points, np.float64), truth, pck_thresholds_mm
        )
    if calibrate:  # the same method with the true cameras: what the calibration error costs
        res = triangulator(
            study.calibration.rig.astype(np.float32),
            study.points_2d.astype(np.float32),
            study.confidence.astype(np.float32),
        )
        metrics[f"{triangulator.method} (true cameras)"] = error_metrics(
            np.asarray(res.points, np.float64), truth, pck_thresholds_mm
        )
    metrics_main = error_metrics(main_points, truth, pck_thresholds_mm)

    names = list(study.skeleton.names)
    plot_errors(out / "errors.png", names, metrics)
    result = {
        "study": study.summary(),
        "main_method": triangulator.method,
        "main": metrics_main,
        "methods": metrics,
        "seconds": {
            "calibration": t_calibration,
            "main_pipeline": t_main,
            **{f"triangulate_{k}": v for k, v in timings.items()},
        },
        "calibration_errors": calibration_errors,
        "calibration_table": calibration_table,
        "calibration_warnings": calibration_warnings,
        "triangulate_summary": summary,
    }
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    atomic_write_text(out / "report.md", report_markdown(result, names, pck_thresholds_mm))
    return result


def _f(v, digits=2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def method_table(metrics: dict[str, dict], thresholds: Sequence[float], timings: dict) -> str:
    rows = []
    for m, v in metrics.items():
        rows.append(
            (
                m,
                _f(v["mpjpe_mm"]),
                _f(v["median_mm"]),
                _f(v["p95_mm"]),
                *[f"{100 * v[f'pck@{t:g}mm']:.1f}" for t in thresholds],
                f"{100 * v['coverage']:.1f}",
                _f(timings.get(f"triangulate_{m}"), 2),
            )
        )
    header = (
        "method",
        "MPJPE mm",
        "median mm",
        "p95 mm",
        *[f"PCK@{t:g}mm %" for t in thresholds],
        "coverage %",
        "seconds",
    )
    return summary_table([r[0] for r in rows], rows, header)


def report_markdown(result: dict, names: Sequence[str], thresholds: Sequence[float]) -> str:
    table = method_table(result["methods"], thresholds, result["seconds"])
    per_kpt = summary_table(
        names,
        [
            (n, *[_f(result["methods"][m]["per_keypoint_mm"][k]) for m in result["methods"]])
            for k, n in enumerate(names)
        ],
        ("keypoint", *result["methods"]),
    )
    cams = result["triangulate_summary"]["per_camera"]
    cam_table = summary_table(
        list(cams),
        [(c, _f(v["median_px"]), _f(v["p95_px"]), v["views_used"]) for c, v in cams.items()],
        ("camera", "median px", "p95 px", "views used"),
    )
    cal = ""
    if result.get("calibration_errors"):
        e = result["calibration_errors"]
        warn = "\n".join(f"- {w}" for w in result["calibration_warnings"]) or "- none"
        cal = f"""## Calibration from rendered board images

The board was rendered through every camera, detected, and the rig calibrated by bundle
adjustment (details: `calibration/report.md`). Against the true cameras (worst camera, after
aligning world frames): focal {e["focal_pct"]:.3f} %, principal point {e["principal_px"]:.2f} px,
rotation {e["rotation_deg"]:.4f} deg, camera centre {e["centre_mm"]:.3f} mm.

```
{result["calibration_table"]}
```

Warnings:
{warn}

"""
    return f"""# jaxpose demo report

{result["study"]}

{cal}## 3D error against ground truth (triangulated with the estimated calibration)

```
{table}
```

The pipeline's own output (`triangulated/pose3d.csv`, method `{result["main_method"]}`):
MPJPE {_f(result["main"]["mpjpe_mm"])} mm, median {_f(result["main"]["median_mm"])} mm.

![error per keypoint](errors.png)

## Reprojection error per camera (`{result["main_method"]}`)

```
{cam_table}
```

## Mean 3D error per keypoint (mm)

```
{per_kpt}
```
"""


def main(cfg: DictConfig) -> int:
    from hydra.utils import instantiate

    study = instantiate(cfg.synth)
    print(study.summary())
    result = run_demo(
        study,
        cfg.out,
        triangulator=instantiate(cfg.triangulation),
        compare_methods=list(cfg.compare_methods),
        pck_thresholds_mm=list(cfg.pck_thresholds_mm),
        calibrate=bool(cfg.calibration.enabled),
        bundle_adjust=instantiate(cfg.calibration.bundle_adjust, _convert_="all"),
        render=dict(cfg.calibration.render),
        progress=bool(cfg.progress),
    )
    if result["calibration_errors"]:
        e = result["calibration_errors"]
        print(result["calibration_table"])
        print(
            f"calibration vs truth (worst camera): focal {e['focal_pct']:.3f} %, principal "
            f"point {e['principal_px']:.2f} px, rotation {e['rotation_deg']:.4f} deg, centre "
            f"{e['centre_mm']:.3f} mm"
        )
    print(format_summary(result["triangulate_summary"]))
    print()
    print(method_table(result["methods"], list(cfg.pck_thresholds_mm), result["seconds"]))
    print(f"\nreport: {Path(cfg.out) / 'report.md'}")
    return 0
