"""Train-step time of PoseNet (backbone + heatmap head) on this CPU: forward + backward + SGD.

A plain binary cross-entropy on random targets stands in for the real losses; the step is one
jitted function of (params, batch statistics, images, targets). Compilation is reported apart
and never timed; the variants of one backbone run interleaved, ``--repeats`` times each after
one warm-up, and the minimum and median are reported.

    python benchmarks/posenet_step.py                                  # the default grid
    python benchmarks/posenet_step.py --backbones resnet18 --sizes 128 --upsample pixel_shuffle
"""

from __future__ import annotations

from _bench import save_result  # first: threads, compile cache, sys.path

# isort: split

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxpose.models import build_posenet, param_count


def make_step(model: nnx.Module):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params, rest, images, targets):
        rest = jax.tree.map(lambda x: x, rest)
        m = nnx.merge(graphdef, params, rest)
        out = m(images, train=True)
        loss = optax.sigmoid_binary_cross_entropy(out["heatmap"], targets).mean()
        if out["offset"] is not None:
            loss = loss + 0.05 * jnp.mean(out["offset"] ** 2)
        return loss, nnx.state(m, nnx.BatchStat)

    @jax.jit
    def step(params, rest, images, targets):
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, rest, images, targets
        )
        params = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
        return params, rest, loss

    return step, params, rest


def prepare(backbone: str, *, size: int, batch: int, head: dict) -> dict:
    """Builds and compiles one configuration; returns its runner and description."""
    model = build_posenet(
        backbone={"name": backbone}, head=head, num_keypoints=16, rngs=nnx.Rngs(0)
    )
    step, params, rest = make_step(model)
    s = model.output_stride
    images = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
    targets = jax.random.uniform(jax.random.key(1), (batch, size // s, size // s, 16))
    t0 = time.perf_counter()
    compiled = step.lower(params, rest, images, targets).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(params, rest, images, targets))  # warm-up

    def run() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, rest, images, targets))
        return time.perf_counter() - t0

    row = {"backbone": backbone, "size": size, "batch": batch, **head}
    row |= {"params_M": round(param_count(model) / 1e6, 2), "compile_s": round(compile_s, 1)}
    return {"row": row, "run": run, "times": []}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backbones", nargs="+", default=["resnet18", "efficientnet_lite0", "mobilenet_v2"]
    )
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--upsample", nargs="+", default=["pixel_shuffle", "resize_conv"])
    p.add_argument("--channels", type=int, default=128)
    p.add_argument("--feature-stride", type=int, default=32)
    p.add_argument("--fuse", nargs="*", type=int, default=[16, 8])
    p.add_argument("--output-stride", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    load = os.getloadavg()[0]
    if load > 1.0:
        print(f"warning: load average {load:.1f}: other processes share the cores")
    rows = []
    for size in args.sizes:
        for backbone in args.backbones:
            # The variants of one backbone run interleaved, so that a burst of load from other
            # processes hits them alike; the minimum is the least disturbed figure.
            jobs = []
            for upsample in args.upsample:
                head = {
                    "upsample": upsample,
                    "channels": args.channels,
                    "feature_stride": args.feature_stride,
                    "fuse_strides": tuple(args.fuse),
                    "output_stride": args.output_stride,
                }
                jobs.append(prepare(backbone, size=size, batch=args.batch, head=head))
            for _ in range(args.repeats):
                for job in jobs:
                    job["times"].append(job["run"]())
            for job in jobs:
                best, median = min(job["times"]), statistics.median(job["times"])
                row = job["row"] | {
                    "step_s_min": round(best, 3),
                    "step_s_median": round(median, 3),
                    "images_per_s": round(args.batch / best, 1),
                    "load_avg": round(os.getloadavg()[0], 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        save_result(args.out, rows)


if __name__ == "__main__":
    main()
