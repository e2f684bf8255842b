"""Multi-view training on a rendered study: 2D-only vs joint 2D+3D, and trainable cameras.

Renders a seeded ``--cameras``-camera study (default 4), labels ``--labelled`` frames in every camera, keeps the other
early video frames as unlabelled and the last ``--test`` frames as held-out. Trains, with one
seed and one step count:

  (a) 2D only (3D weights 0, no unlabelled frames),
  (b) joint 2D + 3D (label3d + consistency, unlabelled frames),
  (c) as (b) with trainable cameras, starting from a perturbed calibration
      (rotations +-1 deg, translations +-5 mm, focal +-2 %),
  (d) as (b) plus the temporal-smoothness term (one clip of 3 consecutive unlabelled frames per
      step) and the limb-length term (the project's skeleton); not in the default --runs.

Each network predicts every camera on the held-out frames; the points are triangulated (robust,
with the TRUE calibration) and compared with the 3D ground truth (MPJPE). For (c) the camera
errors before and after training are reported (``calibration_errors``, after ``align_to``).

    OPENBLAS_NUM_THREADS=1 python benchmarks/multiview.py [--steps 300] [--out /tmp/mv_bench]

Writes ``benchmarks/results/multiview.json`` (``multiview_<N>cam.json`` for ``--cameras N`` other
than 4); ``benchmarks/reconstruction.py``'s sweep table lists the rows of every such file.
"""

from __future__ import annotations

from _bench import save_result  # first: threads, compile cache, sys.path

# isort: split

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from jaxpose.calibration.evaluate import calibration_errors
from jaxpose.io.calibration import Calibration, load_calibration, save_calibration
from jaxpose.metrics3d import reconstruction_metrics
from jaxpose.synth.animal import render_study_videos, write_labelled_frames
from jaxpose.synth.study import make_study
from jaxpose.train.multiview import (
    MultiViewTrainConfig,
    predict_frames,
    read_video_frames,
    train_multiview,
)
from jaxpose.triangulation import triangulate_frames

RESULTS = Path(__file__).parent / "results" / "multiview.json"


def _earlier_runs(path: Path, results: dict, *, skip) -> dict:
    """The runs in an earlier result file at `path` made on the same study (same cameras,
    frames, labelled frames, seed, scales and steps), other than those in `skip`."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    keys = ("seed", "cameras", "frames", "labelled_frames", "render_scale", "input_scale_factor")
    same = all(old.get("study", {}).get(k) == results["study"].get(k) for k in keys)
    same = same and old.get("steps") == results.get("steps")
    return {k: v for k, v in old.get("runs", {}).items() if k not in skip} if same else {}


def perturb(cal: Calibration, seed: int) -> Calibration:
    """Rotations +-1 deg, translations +-5 mm, focal +-2 % (uniform per component)."""
    rng = np.random.default_rng(seed)
    rig = jax.tree.map(lambda a: np.array(a, np.float64), cal.rig)
    c = len(cal.names)
    rig = dataclasses.replace(
        rig,
        rotation=rig.rotation + np.radians(rng.uniform(-1, 1, (c, 3)) / np.sqrt(3)),
        translation=rig.translation + rng.uniform(-5, 5, (c, 3)) / np.sqrt(3),
        focal=rig.focal * (1 + rng.uniform(-0.02, 0.02, (c, 1))),
    )
    return Calibration(rig, cal.names, dict(cal.metadata))


def evaluate(
    model, project: Path, study, names, test_frames, scale_factor, truth_cal, render_scale
):
    keypoints, confidence = [], []
    for name in names:
        frames = read_video_frames(project / "videos" / f"{name}.mp4", test_frames)
        k, c = predict_frames(model, list(frames), scale_factor=scale_factor)
        keypoints.append(k)
        confidence.append(c)
    points_2d = np.stack(keypoints, 1)  # (frame, cam, kpt, 2)
    conf = np.stack(confidence, 1)
    tri = triangulate_frames(truth_cal.rig, points_2d, conf, method="robust")
    truth = np.asarray(study.points_3d)[np.asarray(test_frames)]
    metrics = reconstruction_metrics(np.asarray(tri.points), truth)
    # 2D error against the exact projections, where visible.
    # The study's projections are at the rig's full resolution; the videos at render_scale.
    s = render_scale
    true_2d = (np.asarray(study.points_2d_true)[np.asarray(test_frames)] + 0.5) * s - 0.5
    vis = np.asarray(study.visible)[np.asarray(test_frames)]
    err2d = np.linalg.norm(points_2d - true_2d, axis=-1)[vis]
    return {
        "mpjpe_mm": metrics["mpjpe_mm"],
        "median_mm": metrics.get("median_mm"),
        "pa_mpjpe_mm": metrics.get("pa_mpjpe_mm"),
        "mean_2d_px": float(np.mean(err2d)),
        "median_2d_px": float(np.median(err2d)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/jaxpose_multiview_bench")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--labelled", type=int, default=30)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--render-scale", type=float, default=0.25)
    parser.add_argument("--scale-factor", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="a,b,c")
    parser.add_argument("--cameras", type=int, default=4, help="cameras in the rendered rig")
    parser.add_argument("--temporal-weight", type=float, default=0.01, help="run d's temporal term")
    parser.add_argument("--limb-weight", type=float, default=0.01, help="run d's limb term")
    args = parser.parse_args()
    if args.cameras < 2:
        parser.error("--cameras must be at least 2")
    results_path = (
        RESULTS if args.cameras == 4 else RESULTS.with_name(f"multiview_{args.cameras}cam.json")
    )

    out = Path(args.out)
    project = out / "project"
    study = make_study(
        num_cameras=args.cameras, num_frames=args.frames, num_board_frames=0, seed=args.seed
    )
    pool_end = args.frames - args.test
    labelled = np.linspace(0, pool_end - 1, args.labelled).round().astype(int)
    test_frames = list(range(pool_end, args.frames))
    unlabelled = sorted(set(range(pool_end)) - set(labelled.tolist()))
    t = time.perf_counter()
    if not (project / "config.yaml").is_file():
        render_study_videos(study, project, scale=args.render_scale)
        write_labelled_frames(study, project, frames=labelled, scale=args.render_scale)
    render_s = time.perf_counter() - t
    truth_cal = load_calibration(project / "calibration.toml")
    names = list(truth_cal.names)
    extent = np.nanmax(study.points_2d_true, 2) - np.nanmin(study.points_2d_true, 2)
    mouse_px = float(np.nanmedian(extent.max(-1))) * args.render_scale

    base = dict(
        project=str(project),
        scale_factor=args.scale_factor,
        steps=args.steps,
        batch_frames=2,
        seed=args.seed,
        unlabelled_frames=tuple(unlabelled),
        checkpoint_every=args.steps,
        warmup_steps=min(20, args.steps // 5),  # short smoke runs stay valid
        progress=True,
    )
    perturbed = perturb(truth_cal, args.seed + 1)
    save_calibration(perturbed, out / "calibration_perturbed.toml")
    runs = {
        "a_2d_only": dict(
            label3d_weight=0.0, consistency_weight=0.0, unlabelled_frames_per_batch=0
        ),
        "b_joint": dict(unlabelled_frames_per_batch=2),
        "c_joint_train_cameras": dict(
            unlabelled_frames_per_batch=2,
            train_cameras=True,
            calibration=str(out / "calibration_perturbed.toml"),
            # Wider than the perturbation and weak, so the data move the cameras: the labels'
            # bundle adjustment (camera_label_weight, default 1) recovers them up to the
            # similarity transform that no image term can see; the prior mainly fixes that gauge.
            camera_prior_sigma={"rotation": 0.03, "translation": 15.0, "focal": 20.0},
            camera_prior_weight=0.01,
        ),
        # Weighted like the 3D terms: at the 2 mm Huber scales an untrained network's
        # accelerations and bone-length spreads (tens of mm) cost about as much as its
        # reprojection errors (tens of px at huber_px 4).
        "d_joint_temporal_limb": dict(
            unlabelled_frames_per_batch=2,
            temporal_weight=args.temporal_weight,
            clip_length=3,
            clips_per_batch=1,
            limb_weight=args.limb_weight,
        ),
    }
    wanted = {r.strip() for r in args.runs.split(",")}
    results = {
        "command": f"python benchmarks/multiview.py --steps {args.steps} --runs {args.runs} "
        f"--cameras {args.cameras}"
        + (
            f" --temporal-weight {args.temporal_weight:g} --limb-weight {args.limb_weight:g}"
            if "d" in args.runs
            else ""
        ),
        "study": {
            "seed": args.seed,
            "cameras": names,
            "frames": args.frames,
            "labelled_frames": labelled.tolist(),
            "unlabelled_frames": len(unlabelled),
            "test_frames": [test_frames[0], test_frames[-1]],
            "render_scale": args.render_scale,
            "image_size": truth_cal.rig.image_size[0].tolist(),
            "mouse_length_px_median": mouse_px,
            "input_scale_factor": args.scale_factor,
            "render_s": render_s,
        },
        "steps": args.steps,
        "runs": {},
    }
    for key, options in runs.items():
        if key[0] not in wanted:
            continue
        run_dir = out / key
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = MultiViewTrainConfig(out=str(run_dir), **base, **options)
        t = time.perf_counter()
        result = train_multiview(cfg)
        train_s = time.perf_counter() - t
        entry = evaluate(
            result.model,
            project,
            study,
            names,
            test_frames,
            args.scale_factor,
            truth_cal,
            args.render_scale,
        )
        entry |= {"train_s": train_s, "final": result.metrics[-1], "options": options}
        if cfg.train_cameras:
            entry["camera_errors_before"] = calibration_errors(perturbed, truth_cal)
            entry["camera_errors_after"] = calibration_errors(result.calibration, truth_cal)
        results["runs"][key] = entry
        print(key, json.dumps(entry, indent=1))
    kept = _earlier_runs(results_path, results, skip=results["runs"].keys())
    if kept:  # runs of the same study from an earlier invocation (e.g. --runs d after a,b,c)
        results["runs"] = dict(sorted({**kept, **results["runs"]}.items()))
        results["runs_kept_from_earlier"] = sorted(kept)
    r = results["runs"]
    if "a_2d_only" in r and "b_joint" in r:
        results["mpjpe_ratio_joint_over_2d"] = r["b_joint"]["mpjpe_mm"] / r["a_2d_only"]["mpjpe_mm"]
    print("\n| run | MPJPE mm | PA-MPJPE mm | 2D mean px | train s |")
    print("| --- | --- | --- | --- | --- |")
    for key, e in r.items():
        print(
            f"| {key} | {e['mpjpe_mm']:.2f} | {e['pa_mpjpe_mm'] or float('nan'):.2f} | "
            f"{e['mean_2d_px']:.2f} | {e['train_s']:.0f} |"
        )
    if "mpjpe_ratio_joint_over_2d" in results:
        print(f"MPJPE ratio joint / 2D-only: {results['mpjpe_ratio_joint_over_2d']:.3f}")
    if "c_joint_train_cameras" in r:
        c = r["c_joint_train_cameras"]
        for when in ("before", "after"):
            e = c[f"camera_errors_{when}"]
            print(
                f"cameras {when}: rotation {e['rotation_deg']:.3f} deg, centre "
                f"{e['centre_mm']:.2f} mm, focal {e['focal_pct']:.2f} %"
            )
    save_result(results_path, results)


if __name__ == "__main__":
    main()
