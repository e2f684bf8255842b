"""Video analysis throughput: frames/s of whole-frame 2D pose inference per backbone, on this CPU.

Each backbone (efficientnet_lite0, mobilenet_v2, resnet18, resnet50) with the heatmap head
(conf/head/heatmap.yaml defaults: stride-4 heatmaps with location refinement, argmax decoding),
12 keypoints, random weights (timing does not depend on them), float32, batch 8, analyses
640x480 frames whole, as `jaxpose analyze` does, at two scales:

    scale 1.0   the frame padded to 640x480 (already multiples of 32)
    scale 0.5   resized to 320x240 (OpenCV INTER_AREA) and padded to 320x256

Rows, all timed on the same frames in one process (median of --repeats runs after a warm-up):

    network     the jitted predict (backbone, head, decoder) on a prepared, normalised batch,
                results copied to NumPy
    pipeline    `FullFramePredictor.prepare` + `predict_batch`: resize, pad, ImageNet
                normalisation, network, decoding, mapping back to original px (what
                `jaxpose analyze` runs per batch, minus decoding the video)
Baselines (the non-network part):
    preprocess  `FullFramePredictor.prepare` alone: OpenCV resize + NumPy normalisation
    decode      cv2.VideoCapture reading a 640x480 mp4v video, frames/s

`jaxpose analyze` decodes and prepares the next batch in a background thread while the network
runs, so its rate is about min(pipeline-without-preprocess, preprocess + decode) on an idle
machine. With --onednn the script also re-runs itself with XLA_FLAGS=--xla_cpu_use_onednn=true
(XLA reads the flag at start-up) and adds those rows (variant "onednn").

Usage:
    python benchmarks/inference.py                 # everything; writes benchmarks/results/inference.json
    python benchmarks/inference.py --onednn        # also with XLA's oneDNN convolutions
    python benchmarks/inference.py --quick         # smoke run: 160x128 frames, batch 2, 1 repeat
    python benchmarks/inference.py --backbones resnet18 --scales 0.5 --repeats 5
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
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import jax
import numpy as np
from flax import nnx

from jaxpose.models import BACKBONES, build_posenet, param_count
from jaxpose.train.evaluate import FullFramePredictor
from jaxpose.train.inference import Predictor

NUM_KEYPOINTS = 12
ONEDNN_FLAG = "--xla_cpu_use_onednn=true"


# --- inputs ---------------------------------------------------------------------------------------


def synthetic_frames(count: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random RGB frames (uint8), like a camera image more than white noise is."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        small = rng.integers(0, 256, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        frames.append(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not open a video writer for {path}")
    for frame in frames:
        writer.write(frame[..., ::-1])
    writer.release()
    return path


# --- timing ---------------------------------------------------------------------------------------


def timed(fn, repeats: int) -> list[float]:
    """Wall times in seconds of `repeats` calls of `fn`, each waited on."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def decode_rate(path: Path, repeats: int) -> tuple[float, int]:
    """Frames/s of reading the whole video with cv2.VideoCapture (BGR -> RGB included)."""

    def read_all() -> int:
        capture = cv2.VideoCapture(str(path))
        n = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            n += 1
        capture.release()
        return n

    n = read_all()  # warm the file cache
    return n / statistics.median(timed(read_all, repeats)), n


@functools.partial(nnx.jit, static_argnums=(0, 1))
def build(backbone: str, num_keypoints: int, rngs: nnx.Rngs):
    # jitted: one compilation instead of one small program per parameter shape
    return build_posenet(
        backbone={"name": backbone, "pretrained": False},
        head={"name": "heatmap"},
        num_keypoints=num_keypoints,
        rngs=rngs,
    )


def bench_backbone(name: str, frames: list[np.ndarray], args, variant: str) -> list[dict]:
    model = build(name, NUM_KEYPOINTS, nnx.Rngs(0))
    params = param_count(model)
    predictor = Predictor(model)
    rows = []
    for scale in args.scales:
        full = FullFramePredictor(predictor, scale_factor=scale, batch_size=args.batch)
        height, width = frames[0].shape[:2]
        canvas = full.canvas_size([(width, height)])
        batch, affines = full.prepare(frames, canvas)
        start = time.perf_counter()
        jax.block_until_ready(predictor(batch))
        first = time.perf_counter() - start  # compilation (or cache load) + one run
        network = statistics.median(timed(lambda b=batch: predictor(b), args.repeats))
        pipeline = statistics.median(
            timed(lambda f=full, c=canvas: f.predict_batch(*f.prepare(frames, c)), args.repeats)
        )
        row = {
            "variant": variant,
            "backbone": name,
            "head": "heatmap",
            "params": params,
            "scale": scale,
            "frame": [width, height],
            "network_input": list(canvas),
            "batch": args.batch,
            "network_fps": args.batch / network,
            "pipeline_fps": args.batch / pipeline,
            "network_seconds_per_batch": network,
            "compile_seconds": max(first - network, 0.0),
        }
        print(
            f"{variant:<8} {name:<18} {params / 1e6:>6.2f} M {scale:>5.2f} "
            f"{canvas[0]:>4}x{canvas[1]:<4} {row['network_fps']:>9.2f} {row['pipeline_fps']:>9.2f} "
            f"{row['compile_seconds']:>9.1f}",
            flush=True,
        )
        rows.append(row)
    return rows


HEADER = (
    f"{'variant':<8} {'backbone':<18} {'params':>8} {'scale':>5} {'input':<9} "
    f"{'net fps':>9} {'pipe fps':>9} {'compile s':>9}"
)


def run_child(args, argv: list[str]) -> list[dict]:
    """The same benchmark (networks only) in a fresh process with XLA's oneDNN flag."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", "--out", str(out)]
        cmd = [c for c in cmd if c != "--onednn"]
        flags = " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), ONEDNN_FLAG) if f)
        env = dict(os.environ, XLA_FLAGS=flags)
        subprocess.run(cmd, env=env, check=True)
        return json.loads(out.read_text())["results"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 160x128, batch 2")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is kept")
    parser.add_argument("--onednn", action="store_true", help=f"also with XLA_FLAGS={ONEDNN_FLAG}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "inference.json"
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.height, args.batch, args.repeats = 160, 128, 2, 1

    started = time.perf_counter()
    load_start = os.getloadavg() if args.child else warn_if_busy("rates will be low")
    variant = "onednn" if ONEDNN_FLAG in os.environ.get("XLA_FLAGS", "") else "default"
    frames = synthetic_frames(args.batch, args.width, args.height)
    baselines = []
    if not args.child:
        print(
            f"jaxpose inference benchmark: jax {jax.__version__} on {jax.devices()[0].platform}, "
            f"float32; OpenCV {cv2.__version__}; {os.cpu_count()} CPU cores; "
            f"{args.width}x{args.height} frames, batch {args.batch}, {NUM_KEYPOINTS} keypoints, "
            f"heatmap head, random weights; median of {args.repeats} runs after a warm-up"
        )
        for scale in args.scales:
            full = FullFramePredictor(lambda b: b, scale_factor=scale, batch_size=args.batch)
            canvas = full.canvas_size([(args.width, args.height)])
            seconds = statistics.median(
                timed(lambda f=full, c=canvas: f.prepare(frames, c)[0], max(args.repeats, 5))
            )
            baselines.append(
                {
                    "baseline": "preprocess (OpenCV resize + NumPy normalisation)",
                    "scale": scale,
                    "network_input": list(canvas),
                    "fps": args.batch / seconds,
                }
            )
        with tempfile.TemporaryDirectory() as tmp:
            video_frames = synthetic_frames(max(4 * args.batch, 32), args.width, args.height, 1)
            rate, n = decode_rate(write_video(Path(tmp) / "v.mp4", video_frames), args.repeats)
        baselines.append({"baseline": f"decode (cv2.VideoCapture, mp4v, {n} frames)", "fps": rate})
        for b in baselines:
            where = ""
            if "scale" in b:
                where = f" scale {b['scale']:g} -> {b['network_input'][0]}x{b['network_input'][1]}"
            print(f"baseline {b['baseline']}{where}: {b['fps']:.1f} fps")
        print(HEADER, flush=True)

    rows = []
    for name in args.backbones:
        rows += bench_backbone(name, frames, args, variant)
    if args.onednn and not args.child:
        rows += run_child(args, argv)

    total = time.perf_counter() - started
    load = os.getloadavg()
    if not args.child:
        print(f"total {total:.0f} s; load average (1, 5, 15 min) at the end: {load}")
    result = dict(
        benchmark="inference",
        meta=dict(
            **run_meta(argv),
            opencv=cv2.__version__,
            xla_flags=os.environ.get("XLA_FLAGS", ""),
            dtype="float32",
            repeats=args.repeats,
            notes=(
                "random weights; fps = batch / median seconds per batch; network_fps times the "
                "jitted predict on a prepared batch, pipeline_fps adds resizing, padding, "
                "normalisation and mapping back (FullFramePredictor); compile_seconds is the "
                "first call minus the median, with the persistent compilation cache"
            ),
            total_seconds=total,
            load_average_start=load_start,
            load_average_end=load,
        ),
        config=dict(
            frame=[args.width, args.height],
            batch=args.batch,
            scales=args.scales,
            backbones=args.backbones,
            num_keypoints=NUM_KEYPOINTS,
            head="heatmap (conf/head/heatmap.yaml defaults)",
        ),
        baselines=baselines,
        results=rows,
    )
    save_result(args.out, result, quiet=args.child)
    return result


if __name__ == "__main__":
    main()
