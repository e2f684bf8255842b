"""Checkpoints of a training run (orbax `CheckpointManager`) and loading a trained model.

Layout: `<run>/checkpoints/<step>/` holds three orbax items:

- ``model``: ``{"params": nnx.State of nnx.Param, "rest": every other model variable}`` (batch
  statistics, random-stream state);
- ``optimizer``: the optax state;
- ``meta``: JSON with ``architecture_signature``, ``bodyparts``, ``input_size``, ``step``,
  ``seed``, ``data_step`` (the position of the training batch stream) and ``wall_time_s``.

Orbax writes each step to a temporary folder and renames it when complete, so an interrupted save
never leaves a checkpoint that looks finished. The metadata is read first, so that a checkpoint of
another architecture fails with both signatures named, before any tensor is touched.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

__all__ = [
    "CHECKPOINT_DIR",
    "CheckpointError",
    "RunInfo",
    "checkpoint_manager",
    "load_trained",
    "read_checkpoint_metadata",
    "restore_checkpoint",
    "save_checkpoint",
    "split_model",
]

CHECKPOINT_DIR = "checkpoints"


class CheckpointError(RuntimeError):
    """A run folder or checkpoint that cannot be used (missing, incomplete, other architecture)."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a trained run's checkpoint says about its model.

    Attributes:
        run_dir: the run folder.
        bodyparts: (K,) names, in the order of the network's outputs.
        input_size: side of the square network input in pixels.
        architecture_signature: the model's architecture, as
            :func:`jaxpose.models.architecture_signature` writes it.
        step: the training step of the loaded checkpoint.
        config: the run's resolved configuration (`<run>/config.yaml`) as a dict.
    """

    run_dir: Path
    bodyparts: tuple[str, ...]
    input_size: int
    architecture_signature: str
    step: int
    config: dict[str, Any]


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """``(graphdef, params, rest)``: trainable parameters and every other variable."""
    return nnx.split(model, nnx.Param, ...)


def checkpoint_manager(
    run_dir: str | os.PathLike, *, max_to_keep: int | None = 3, create: bool = True
) -> ocp.CheckpointManager:
    """The orbax manager of `<run_dir>/checkpoints` (keeps the newest ``max_to_keep`` steps)."""
    directory = Path(run_dir).resolve() / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=create, enable_async_checkpointing=True
    )
    return ocp.CheckpointManager(directory, options=options)


def save_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    *,
    params: nnx.State,
    rest: nnx.State,
    opt_state: Any,
    metadata: Mapping[str, Any],
) -> None:
    """Saves one step (asynchronously; ``manager.wait_until_finished()`` before exiting)."""
    manager.save(
        int(step),
        args=ocp.args.Composite(
            model=ocp.args.StandardSave({"params": params, "rest": rest}),
            optimizer=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave(dict(metadata)),
        ),
        force=True,
    )


def read_checkpoint_metadata(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """The JSON metadata of one saved step."""
    restored = manager.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored.meta)


def _abstract(tree: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _check_signature(meta: Mapping[str, Any], expected: str, where: Path) -> None:
    found = meta.get("architecture_signature")
    if found != expected:
        raise CheckpointError(
            f"{where}: the checkpoint holds another architecture.\n"
            f"  checkpoint: {found}\n"
            f"  model:      {expected}\n"
            "Rebuild the model with the run's backbone/head configuration (load_trained does), "
            "or train into a new run folder."
        )


def restore_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    *,
    params: nnx.State,
    rest: nnx.State,
    opt_state: Any | None,
    architecture_signature: str,
) -> tuple[nnx.State, nnx.State, Any | None, dict[str, Any]]:
    """Restores one step into the structures of freshly built ``params``/``rest``/``opt_state``.

    Args:
        manager: the run's checkpoint manager.
        step: the step to restore.
        params, rest: the model's state (from :func:`split_model`), giving structure and dtypes.
        opt_state: the optimiser state to fill, or ``None`` to skip it (inference).
        architecture_signature: the signature of the model being filled.

    Returns:
        ``(params, rest, opt_state or None, metadata)``.

    Raises:
        CheckpointError: the checkpoint's architecture signature differs from the model's.
    """
    where = Path(manager.directory) / str(step)
    meta = read_checkpoint_metadata(manager, step)
    _check_signature(meta, architecture_signature, where)
    items = {"model": ocp.args.StandardRestore(_abstract({"params": params, "rest": rest}))}
    if opt_state is not None:
        items["optimizer"] = ocp.args.StandardRestore(_abstract(opt_state))
    restored = manager.restore(int(step), args=ocp.args.Composite(**items))
    model = restored.model
    return model["params"], model["rest"], restored.get("optimizer"), meta


def load_trained(
    run_dir: str | os.PathLike, *, step: int | None = None
) -> tuple[nnx.Module, RunInfo]:
    """Rebuilds a trained model from its run folder and restores its weights.

    Args:
        run_dir: a folder written by ``jaxpose train`` (``config.yaml`` + ``checkpoints/``).
        step: the checkpoint step to load; ``None`` loads the newest.

    Returns:
        ``(model, info)``: the :class:`~jaxpose.models.PoseNet` with restored parameters and
        batch statistics (call it with ``train=False``), and what the run says about it.

    Raises:
        CheckpointError: the folder, its config or its checkpoints are missing, the step was not
            saved, or the checkpoint's architecture differs from the configuration's.
    """
    from jaxpose.train import trainer

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder (written by `jaxpose train`)")
    cfg = trainer.read_run_config(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if not ckpt_dir.is_dir():
        raise CheckpointError(
            f"{run_dir}: no {CHECKPOINT_DIR}/ folder; the run saved no checkpoint yet (it is "
            "still running, or stopped before its first train.checkpoint_every steps)"
        )
    manager = checkpoint_manager(run_dir, max_to_keep=None, create=False)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise CheckpointError(f"{ckpt_dir}: no complete checkpoint")
        if step is None:
            step = steps[-1]
        elif int(step) not in steps:
            raise CheckpointError(f"{ckpt_dir}: no checkpoint of step {step}; saved steps: {steps}")
        meta = read_checkpoint_metadata(manager, step)
        bodyparts = tuple(meta["bodyparts"])
        model = trainer.build_model(cfg, num_keypoints=len(bodyparts), pretrained=False)
        signature = trainer.model_signature(model)
        _, params, rest = split_model(model)
        params, rest, _, meta = restore_checkpoint(
            manager,
            step,
            params=params,
            rest=rest,
            opt_state=None,
            architecture_signature=signature,
        )
    finally:
        manager.close()
    nnx.update(model, params, rest)
    info = RunInfo(
        run_dir=run_dir,
        bodyparts=bodyparts,
        input_size=int(meta["input_size"]),
        architecture_signature=signature,
        step=int(step),
        config=cfg.to_dict(),
    )
    return model, info
