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
from omegaconf import DictConfig, OmegaConf

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
    # The rendered board is the only target in view, so a marker id it does not carry is a
    # false detection in image noise, not a wrong board configuration: drop it quietly.
    dets = detect_cameras(
        study.board,
        images,
        cache_dir=out / "detections",
        camera_names=names,
        progress=progress,
        ignore_unknown_markers=True,
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
        per_kpt = metrics[m]["per_keypoint_mm"]
        vals = [np.nan if per_kpt.get(n) is None else per_kpt[n] for n in names]
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
    network: dict | None = None,
    postprocess=None,
    progress: bool = True,
) -> dict:
    """Run the demo on a synthetic study; returns the metrics dict (also written as JSON).

    Args:
        network: options of `jaxpose.pipeline.study.train_and_analyze` (render the videos,
            label frames, train a 2D network, analyse every camera); None: the 2D input is the
            study's synthetic noisy keypoints instead.
        postprocess: `PostprocessOptions` for the steps after triangulation (spatiotemporal
            refinement, filters, kinematics, plots, overlays); None: triangulation only.
    """
    from jaxpose.metrics3d import reconstruction_metrics
    from jaxpose.pipeline.triangulate import load_predictions, resolve_predictions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    calibration_errors, calibration_table, calibration_warnings = None, None, []
    used = study.calibration
    if calibrate:
        result, used, calibration_errors = calibrate_from_rendered_board(
            study, out / "calibration", options=bundle_adjust, render=render, progress=progress
        )
        calibration_table = result.report.table(result.adjustment.standard_errors)
        calibration_warnings = list(result.report.warnings)
    seconds["calibration"] = time.perf_counter() - t0

    net = None
    if network is not None:
        from jaxpose.pipeline.study import scale_calibration, train_and_analyze

        net = train_and_analyze(study, out / "network", network=network, progress=progress)
        seconds.update({f"network_{k}": v for k, v in net["seconds"].items()})
        scale = net["scale"]
        calibration_path = save_calibration(
            scale_calibration(used, scale), out / "calibration.toml"
        )
        true_calibration = scale_calibration(study.calibration, scale)
        predictions = Path(net["predictions"])
        if postprocess is not None:
            postprocess = dataclasses.replace(
                postprocess, videos=out / "network" / "render" / "videos"
            )
    else:
        calibration_path, predictions = write_study_inputs(study, out, used)
        true_calibration = study.calibration

    t0 = time.perf_counter()
    summary = run_triangulate(
        calibration_path,
        predictions,
        out / "triangulated",
        triangulator=triangulator,
        postprocess=postprocess,
        progress=progress,
    )
    seconds["triangulate_and_postprocess"] = time.perf_counter() - t0

    from jaxpose.io.calibration import load_calibration
    from jaxpose.io.pose3d import read_pose3d_h5

    truth = np.asarray(study.points_3d, np.float64)
    names = list(study.skeleton.names)
    cal = load_calibration(calibration_path)
    xy, conf, _ = load_predictions(resolve_predictions(predictions, cal), bodyparts=names)
    rig32 = cal.rig.astype(np.float32)
    metrics: dict[str, dict] = {}
    timings: dict[str, float] = {}
    for method in compare_methods:
        tri = dataclasses.replace(triangulator, method=method)
        args = (rig32, xy.astype(np.float32), conf.astype(np.float32))
        tri(*args)  # compile once, time the second call
        t = time.perf_counter()
        res = tri(*args)
        timings[method] = time.perf_counter() - t
        metrics[method] = reconstruction_metrics(
            np.asarray(res.points, np.float64),
            truth,
            bodyparts=names,
            pck_thresholds_mm=pck_thresholds_mm,
        )
    if calibrate:  # the same method with the true cameras: what the calibration error costs
        res = triangulator(
            true_calibration.rig.astype(np.float32), xy.astype(np.float32), conf.astype(np.float32)
        )
        metrics[f"{triangulator.method} (true cameras)"] = reconstruction_metrics(
            np.asarray(res.points, np.float64),
            truth,
            bodyparts=names,
            pck_thresholds_mm=pck_thresholds_mm,
        )
    final = read_pose3d_h5(out / "triangulated" / "pose3d.h5").points
    metrics_main = reconstruction_metrics(
        final, truth, bodyparts=names, pck_thresholds_mm=pck_thresholds_mm
    )
    steps = summary.get("postprocess", {}).get("steps", [])
    if steps:
        metrics[f"{triangulator.method} + " + " + ".join(steps)] = metrics_main

    plot_errors(out / "errors.png", names, metrics)
    result = {
        "study": study.summary(),
        "main_method": triangulator.method,
        "postprocess_steps": steps,
        "main": metrics_main,
        "methods": metrics,
        "seconds": {**seconds, **{f"triangulate_{k}": v for k, v in timings.items()}},
        "calibration_errors": calibration_errors,
        "calibration_table": calibration_table,
        "calibration_warnings": calibration_warnings,
        "triangulate_summary": summary,
    }
    if net is not None:
        result["network"] = {k: v for k, v in net.items() if k not in ("truth_2d", "visible")}
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2, default=str))
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
                _f(v["pa_mpjpe_mm"]),
                *[f"{100 * v['pck'][f'{t:g}mm']:.1f}" for t in thresholds],
                f"{100 * v['reconstructed']:.1f}",
                _f(timings.get(f"triangulate_{m}"), 2),
            )
        )
    header = (
        "method",
        "MPJPE mm",
        "median mm",
        "p95 mm",
        "PA-MPJPE mm",
        *[f"PCK@{t:g}mm %" for t in thresholds],
        "reconstructed %",
        "seconds",
    )
    return summary_table([r[0] for r in rows], rows, header)


def report_markdown(result: dict, names: Sequence[str], thresholds: Sequence[float]) -> str:
    table = method_table(result["methods"], thresholds, result["seconds"])
    per_kpt = summary_table(
        names,
        [
            (n, *[_f(result["methods"][m]["per_keypoint_mm"].get(n)) for m in result["methods"]])
            for n in names
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
    network = ""
    if result.get("network"):
        n = result["network"]
        ts = n.get("train_summary") or {}
        errs = n["errors_2d_heldout"]
        rows = [(c, _f(v["mean_px"]), _f(v["median_px"]), _f(v["p95_px"])) for c, v in errs.items()]
        table2d = summary_table(list(errs), rows, ("camera", "mean px", "median px", "p95 px"))
        secs = ", ".join(f"{k} {v:.0f} s" for k, v in n["seconds"].items())
        test = (ts.get("test") or {}).get("mean_px")
        network = f"""## 2D network

Every camera's video was rendered at {n["scale"]:g}x the rig's resolution
(`network/render/videos/`); {len(n["labelled_frames"])} frames were labelled in every camera
(`network/project/`, a DeepLabCut project) and a {ts.get("backbone", "?")} network was trained
on them (`network/model/`, {ts.get("steps", "?")} steps, test-frame error {_f(test)} px), then
every frame of every video was analysed (`network/predictions/`). Time: {secs}.

Error of the predictions against the exact projections, on frames nobody labelled:

```
{table2d}
```

"""
    post = ""
    outputs = result["triangulate_summary"].get("outputs", {})
    if result.get("postprocess_steps") is not None:
        pictures = []
        if "reprojection_png" in outputs:
            pictures.append("![reprojection error](triangulated/plots/reprojection.png)")
        if "skeleton_png" in outputs:
            pictures.append("![3D skeleton](triangulated/plots/skeleton_3d.png)")
        overlays = outputs.get("overlays") or {}
        listing = ", ".join(f"`triangulated/overlays/{Path(v).name}`" for v in overlays.values())
        steps = " -> ".join(["triangulate", *result["postprocess_steps"]])
        post = f"""## After triangulation

Steps: {steps}. Final poses: `triangulated/pose3d.csv` (raw triangulation kept as
`pose3d_raw.csv`){"; kinematics: `triangulated/kinematics.csv`" if "kinematics" in outputs else ""}.
{("Overlay videos of the reprojected skeleton: " + listing) if listing else ""}

{chr(10).join(pictures)}

"""
    return f"""# jaxpose demo report

{result["study"]}

{cal}{network}## 3D error against ground truth (triangulated with the estimated calibration)

```
{table}
```

The pipeline's own output (`triangulated/pose3d.csv`, method `{result["main_method"]}`):
MPJPE {_f(result["main"]["mpjpe_mm"])} mm, median {_f(result["main"]["median_mm"])} mm.

![error per keypoint](errors.png)

{post}## Reprojection error per camera (`{result["main_method"]}`)

```
{cam_table}
```

## Mean 3D error per keypoint (mm)

```
{per_kpt}
```
"""


def postprocess_options(cfg: DictConfig, study):
    """The steps after triangulation from the demo's config (the skeleton is the study's)."""
    from jaxpose.pipeline.pose3d import PostprocessOptions

    post = cfg.postprocess
    if not post.enabled:
        return None
    names = study.skeleton.names

    def plain(value):
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

    kinematics = plain(post.kinematics)
    return PostprocessOptions(
        fps=float(study.fps),
        skeleton=tuple((names[a], names[b]) for a, b in study.skeleton.edges),
        spatiotemporal=(plain(post.spatiotemporal.options) or {})
        if post.spatiotemporal.enabled
        else None,
        filters=tuple(plain(post.filters)),
        kinematics=kinematics,
        zarr=bool(post.zarr),
        plots=True,
        overlay_frames=post.overlay_frames,
    )


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
        network=(
            OmegaConf.to_container(cfg.network, resolve=True) if cfg.network.enabled else None
        ),
        postprocess=postprocess_options(cfg, study),
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
