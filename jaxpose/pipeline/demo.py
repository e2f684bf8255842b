"""`jaxpose demo`: the embedded synthetic study, end to end, checked against ground truth.

1. make a seeded synthetic study (rig, walking/rearing mouse, noisy 2D with outliers);
2. write what a lab would have on disk: `calibration.toml` and one DeepLabCut prediction file
   per camera;
3. run the same code path as `jaxpose triangulate` on those files;
4. compare each triangulation method with the exact 3D and write a report.
"""

from __future__ import annotations

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


def write_study_inputs(study, out: Path) -> tuple[Path, Path]:
    """Write the study's calibration.toml and per-camera DeepLabCut prediction h5 files."""
    calibration = save_calibration(study.calibration, out / "calibration.toml")
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
    progress: bool = True,
) -> dict:
    """Run the demo on a synthetic study; returns the metrics dict (also written as JSON)."""
    import dataclasses

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    calibration_path, predictions = write_study_inputs(study, out)
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
    rig32 = study.calibration.rig.astype(np.float32)
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
    metrics_main = error_metrics(main_points, truth, pck_thresholds_mm)

    names = list(study.skeleton.names)
    plot_errors(out / "errors.png", names, metrics)
    result = {
        "study": study.summary(),
        "main_method": triangulator.method,
        "main": metrics_main,
        "methods": metrics,
        "seconds": {"main_pipeline": t_main, **{f"triangulate_{k}": v for k, v in timings.items()}},
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
    return f"""# jaxpose demo report

{result["study"]}

## 3D error against ground truth

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
        progress=bool(cfg.progress),
    )
    print(format_summary(result["triangulate_summary"]))
    print()
    print(method_table(result["methods"], list(cfg.pck_thresholds_mm), result["seconds"]))
    print(f"\nreport: {Path(cfg.out) / 'report.md'}")
    return 0
