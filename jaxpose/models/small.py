"""A small plain CNN backbone for CPU-speed demos and tests.

Plain 3x3 convolutions + batch norm + ReLU only: no depthwise convolutions, whose gradients are
about ten times slower than dense ones on XLA's CPU backend (see ``shared/CPU-PERF.md``), and no
residual branches (a network this shallow trains without them). Two stride-2 convolutions take
the input to stride 4; each further stage halves the resolution with a stride-2 3x3 convolution
followed by ``depth`` stride-1 ones.

``features(x, train=...)`` returns ``{4, 8, 16, 32: map}`` and ``feature_channels`` gives their
channel counts, the backbone contract of :class:`jaxpose.models.PoseNet` (as ResNet-18).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from jaxpose.models.resnet import ConvBNReLU

__all__ = ["SmallCNN"]


class SmallCNN(nnx.Module):
    """Four-stage plain CNN: strides 4, 8, 16, 32 with ``widths`` channels.

    Args:
        rngs: random streams for initialisation.
        widths: channels of the stride-4, 8, 16 and 32 maps.
        depth: stride-1 3x3 convolutions after the downsampling one in each stage (>= 0).
        stem_width: channels of the first (stride-2) convolution; default ``widths[0] // 2``.
    """

    def __init__(
        self,
        rngs: nnx.Rngs,
        widths: Sequence[int] = (16, 32, 64, 128),
        *,
        depth: int = 1,
        stem_width: int | None = None,
    ):
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be 4 positive channel counts, got {widths}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        stem = int(stem_width) if stem_width is not None else max(widths[0] // 2, 8)
        self.widths = widths
        self.depth = int(depth)
        self.stem = ConvBNReLU(3, stem, stride=2, rngs=rngs)
        stages = []
        previous = stem
        for width in widths:
            layers = [ConvBNReLU(previous, width, stride=2, rngs=rngs)]
            layers += [ConvBNReLU(width, width, rngs=rngs) for _ in range(self.depth)]
            stages.append(nnx.List(layers))
            previous = width
        self.stages = nnx.List(stages)
        self.feature_channels = nnx.static({4 * 2**i: w for i, w in enumerate(widths)})

    def features(self, x: jax.Array, *, train: bool) -> dict[int, jax.Array]:
        """Feature maps of a ``(B, H, W, 3)`` batch (H, W multiples of 32) by output stride:
        ``{4: (B, H/4, W/4, widths[0]), ..., 32: (B, H/32, W/32, widths[3])}``."""
        y = self.stem(x, train=train)
        out = {}
        for i, stage in enumerate(self.stages):
            for layer in stage:
                y = layer(y, train=train)
            out[4 * 2**i] = y
        return out

    def signature(self) -> str:
        """Everything that fixes the parameter shapes, e.g. ``small_cnn(16-32-64-128,depth=1)``."""
        return f"small_cnn({'-'.join(map(str, self.widths))},depth={self.depth})"
