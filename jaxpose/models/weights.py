"""Loading ImageNet-pretrained PyTorch weights (``.npz``, state_dict names) into NNX backbones.

The weights live outside the repository (see ``shared/weights/README.md``): the folder is the
``weights_dir`` argument, else the ``JAXPOSE_WEIGHTS`` environment variable, else
``<repo>/../shared/weights``. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.models.backbones import CONV, LINEAR, VECTOR

__all__ = ["PRETRAINED", "default_weights_dir", "weights_path", "load_pretrained"]

# name -> (sub-folder, file) inside the weights folder.
PRETRAINED: dict[str, tuple[str, str]] = {
    "efficientnet_lite0": ("efficientnet_lite0", "efficientnet_lite0_imagenet.npz"),
    "mobilenet_v2_headless": ("mobilenet_v2_headless", "mobilenet_v2_headless_imagenet.npz"),
}

_REPO = Path(__file__).resolve().parents[2]


def default_weights_dir() -> Path:
    """``$JAXPOSE_WEIGHTS`` if set, else ``<repo>/../shared/weights``."""
    env = os.environ.get("JAXPOSE_WEIGHTS")
    return Path(env) if env else _REPO.parent / "shared" / "weights"


def weights_path(name: str, *, weights_dir: str | os.PathLike | None = None) -> Path:
    """Path of the ``.npz`` for a pretrained weight set.

    Args:
        name: one of :data:`PRETRAINED`.
        weights_dir: folder holding the weight sub-folders; defaults to
            :func:`default_weights_dir`.

    Returns:
        The path of the ``.npz`` file.

    Raises:
        KeyError: unknown ``name``.
        FileNotFoundError: the folder or file is missing; the message says where it looked.
    """
    if name not in PRETRAINED:
        raise KeyError(f"unknown pretrained weights {name!r}; known: {sorted(PRETRAINED)}")
    source = "argument weights_dir"
    if weights_dir is None:
        source = "$JAXPOSE_WEIGHTS" if os.environ.get("JAXPOSE_WEIGHTS") else "default"
        weights_dir = default_weights_dir()
    root = Path(weights_dir)
    folder, filename = PRETRAINED[name]
    path = root / folder / filename
    if not path.is_file():
        what = "weights folder" if not root.is_dir() else "weights file"
        raise FileNotFoundError(
            f"{what} for {name!r} not found: looked for {path} (weights folder from {source}: "
            f"{root}). Pass weights_dir=... or set the JAXPOSE_WEIGHTS environment variable to "
            "the folder holding efficientnet_lite0/ and mobilenet_v2_headless/ "
            "(see shared/weights/README.md)."
        )
    return path


def _to_flax(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == CONV:  # OIHW (depthwise: C,1,kh,kw) -> HWIO (kh,kw,1,C)
        return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array
    if kind == LINEAR:  # (out, in) -> (in, out)
        return array.T if array.ndim == 2 else array
    if kind == VECTOR:
        return array
    raise ValueError(f"unknown conversion kind {kind!r}")


def _torch_shape(shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The PyTorch-layout shape that converts to a Flax variable of ``shape``."""
    if kind == CONV and len(shape) == 4:
        h, w, i, o = shape
        return (o, i, h, w)
    if kind == LINEAR and len(shape) == 2:
        return shape[::-1]
    return tuple(shape)


def _fmt(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def load_pretrained(
    model: nnx.Module,
    name: str,
    *,
    weights_dir: str | os.PathLike | None = None,
    include_head: bool = True,
) -> nnx.Module:
    """Assigns pretrained PyTorch-layout weights to a backbone, in place.

    Every tensor in the file must match one model variable (by state_dict key) in shape, and
    every model variable must receive one tensor; otherwise nothing is assigned and a
    ``ValueError`` names the first offending key and both shapes.

    Args:
        model: a backbone with a ``torch_variables()`` method (``EfficientNetLite0``,
            ``MobileNetV2``).
        name: weight set, one of :data:`PRETRAINED` (``'efficientnet_lite0'``,
            ``'mobilenet_v2_headless'``).
        weights_dir: folder holding the weight sub-folders; defaults to ``$JAXPOSE_WEIGHTS``,
            else ``<repo>/../shared/weights``.
        include_head: also load the classifier (``EfficientNetLite0`` only). With ``False`` the
            file's classifier tensors are skipped, e.g. for a model built with another
            ``num_classes``.

    Returns:
        ``model``, for chaining.

    Raises:
        FileNotFoundError: the weights folder or file is missing.
        ValueError: key or shape mismatch between the file and the model.
    """
    path = weights_path(name, weights_dir=weights_dir)
    get_vars = getattr(model, "torch_variables", None)
    if get_vars is None:
        raise TypeError(f"{type(model).__name__} has no torch_variables(); cannot load {name!r}")
    targets = get_vars(include_head=include_head)
    with np.load(path) as npz:
        tensors = {k: npz[k] for k in npz.files}
    if not include_head:
        tensors = {k: v for k, v in tensors.items() if not k.startswith("_fc.")}

    model_name = type(model).__name__
    missing = [k for k in targets if k not in tensors]
    unused = [k for k in tensors if k not in targets]
    if missing or unused:
        parts = [f"cannot load {name!r} ({path.name}) into {model_name}:"]
        if missing:
            var, kind = targets[missing[0]]
            parts.append(
                f"{len(missing)} model tensor(s) missing from the file, first {missing[0]!r} "
                f"(model expects {_fmt(_torch_shape(var.shape, kind))});"
            )
        if unused:
            parts.append(
                f"{len(unused)} file tensor(s) unused by the model, first {unused[0]!r} "
                f"(file has {_fmt(tensors[unused[0]].shape)})."
            )
        parts.append("Is this weight set for another architecture?")
        raise ValueError(" ".join(parts))

    converted = {}
    for key, (var, kind) in targets.items():
        array = tensors[key]
        expected = _torch_shape(var.shape, kind)
        if tuple(array.shape) != expected:
            raise ValueError(
                f"cannot load {name!r} ({path.name}) into {model_name}: tensor {key!r} has "
                f"shape {_fmt(array.shape)} in the file but the model expects {_fmt(expected)} "
                "(PyTorch layout)."
            )
        converted[key] = _to_flax(array, kind).astype(var.dtype)
    for key, (var, _) in targets.items():
        var[...] = jnp.asarray(converted[key])
    return model
