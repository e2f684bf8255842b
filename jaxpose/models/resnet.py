"""ResNet-18 and ResNet-50 in Flax NNX, trained from scratch (no pretrained weights are shipped).

The torchvision layout ("ResNet v1.5"): a 7x7 stride-2 stem conv, a 3x3 stride-2 max pool, then
four stages of residual blocks at strides 4, 8, 16 and 32. ResNet-18 uses basic blocks (two 3x3
convs, 64/128/256/512 channels); ResNet-50 uses bottleneck blocks (1x1 reduce, 3x3 carrying the
stride, 1x1 expand by 4: 256/512/1024/2048 channels). Padding is symmetric ``k // 2`` (PyTorch
style), batch norm has PyTorch's momentum 0.1 (``0.9`` in Flax terms) and eps 1e-5, and
convolution kernels are He-normal (fan-out, as torchvision). The last batch norm of every residual
branch starts at scale 0, so each block starts as the identity (Goyal et al. 2017, "Accurate,
large minibatch SGD"); that makes training from scratch faster and steadier.

All tensors are NHWC float32. ``features(x, train=...)`` returns the last block output of each
stage keyed by output stride (4, 8, 16, 32), the same contract as
:class:`jaxpose.models.EfficientNetLite0`, and ``feature_channels`` gives their channel counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["ConvBNReLU", "BasicBlock", "Bottleneck", "ResNet", "ResNet18", "ResNet50"]

# PyTorch batch-norm momentum 0.1 == Flax momentum 0.9; BN statistics of a network trained from
# scratch change fast, and the slower 0.99 lags behind them for the first thousands of steps.
_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5


class ConvBNReLU(nnx.Module):
    """Bias-free square convolution (symmetric ``k // 2`` padding), batch norm, optional ReLU.

    Also used by the pose heads (:mod:`jaxpose.models.heads`).

    Args:
        in_features: input channels.
        out_features: output channels.
        kernel: square kernel size (odd).
        stride: spatial stride.
        relu: apply ReLU after batch norm.
        zero_scale: initialise the batch-norm scale to 0 (the last layer of a residual branch).
        rngs: random streams for initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        kernel: int = 3,
        stride: int = 1,
        relu: bool = True,
        zero_scale: bool = False,
        rngs: nnx.Rngs,
    ):
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd for symmetric padding, got {kernel}")
        pad = kernel // 2
        self.conv = nnx.Conv(
            in_features,
            out_features,
            kernel_size=(kernel, kernel),
            strides=(stride, stride),
            padding=((pad, pad), (pad, pad)),
            use_bias=False,
            kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
            rngs=rngs,
        )
        self.bn = nnx.BatchNorm(
            out_features,
            momentum=_BN_MOMENTUM,
            epsilon=_BN_EPS,
            scale_init=nnx.initializers.zeros if zero_scale else nnx.initializers.ones,
            rngs=rngs,
        )
        self.relu = relu

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """``(B, H, W, in)`` -> ``(B, H / stride, W / stride, out)``; batch statistics if ``train``."""
        y = self.bn(self.conv(x), use_running_average=not train)
        return jax.nn.relu(y) if self.relu else y


class BasicBlock(nnx.Module):
    """ResNet-18/34 block: ``relu(x + bn(conv3x3(relu(bn(conv3x3(x))))))``.

    A 1x1 strided projection replaces the identity shortcut when the stride or width changes.

    Args:
        in_features: input channels.
        features: output channels.
        stride: stride of the first 3x3 conv (and of the shortcut).
        rngs: random streams for initialisation.
    """

    expansion = 1

    def __init__(self, in_features: int, features: int, *, stride: int, rngs: nnx.Rngs):
        self.conv1 = ConvBNReLU(in_features, features, stride=stride, rngs=rngs)
        self.conv2 = ConvBNReLU(features, features, relu=False, zero_scale=True, rngs=rngs)
        self.shortcut = (
            ConvBNReLU(in_features, features, kernel=1, stride=stride, relu=False, rngs=rngs)
            if stride != 1 or in_features != features
            else None
        )

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Applies the block to an NHWC batch."""
        y = self.conv2(self.conv1(x, train=train), train=train)
        skip = x if self.shortcut is None else self.shortcut(x, train=train)
        return jax.nn.relu(skip + y)


class Bottleneck(nnx.Module):
    """ResNet-50 block: 1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand by 4, plus shortcut.

    Args:
        in_features: input channels.
        features: bottleneck width; the block outputs ``4 * features`` channels.
        stride: stride of the 3x3 conv (and of the shortcut).
        rngs: random streams for initialisation.
    """

    expansion = 4

    def __init__(self, in_features: int, features: int, *, stride: int, rngs: nnx.Rngs):
        out = features * self.expansion
        self.conv1 = ConvBNReLU(in_features, features, kernel=1, rngs=rngs)
        self.conv2 = ConvBNReLU(features, features, stride=stride, rngs=rngs)
        self.conv3 = ConvBNReLU(features, out, kernel=1, relu=False, zero_scale=True, rngs=rngs)
        self.shortcut = (
            ConvBNReLU(in_features, out, kernel=1, stride=stride, relu=False, rngs=rngs)
            if stride != 1 or in_features != out
            else None
        )

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Applies the block to an NHWC batch."""
        y = self.conv3(self.conv2(self.conv1(x, train=train), train=train), train=train)
        skip = x if self.shortcut is None else self.shortcut(x, train=train)
        return jax.nn.relu(skip + y)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """3x3 max pool, stride 2, padding 1 (padded cells never win): ``(B, H, W, C)`` ->
    ``(B, ceil(H / 2), ceil(W / 2), C)``."""
    return jax.lax.reduce_window(
        x,
        -jnp.inf,
        jax.lax.max,
        window_dimensions=(1, 3, 3, 1),
        window_strides=(1, 2, 2, 1),
        padding=((0, 0), (1, 1), (1, 1), (0, 0)),
    )


class ResNet(nnx.Module):
    """ResNet trunk (no classifier) with feature maps at strides 4, 8, 16 and 32.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: number of blocks in each of the four stages.
        rngs: random streams for initialisation.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        rngs: nnx.Rngs,
    ):
        if len(layers) != 4:
            raise ValueError(f"a ResNet has 4 stages, got layers={tuple(layers)}")
        self.stem = ConvBNReLU(3, 64, kernel=7, stride=2, rngs=rngs)
        stages, cin = [], 64
        for i, (width, repeats) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = []
            for r in range(repeats):
                stride = 2 if i > 0 and r == 0 else 1
                blocks.append(block(cin, width, stride=stride, rngs=rngs))
                cin = width * block.expansion
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
        self.feature_channels = nnx.static(
            {4: 64 * block.expansion, 8: 128 * block.expansion}
            | {16: 256 * block.expansion, 32: 512 * block.expansion}
        )

    def features(self, x: jax.Array, *, train: bool) -> dict[int, jax.Array]:
        """Feature maps at output strides 4, 8, 16 and 32.

        Args:
            x: ``(batch, height, width, 3)`` float32 image batch (ImageNet mean/std normalised).
            train: use batch statistics (and update the running ones) instead of the stored
                running statistics.

        Returns:
            Dict from stride to the NHWC output of that stage's last block; a map is
            ``ceil(size / stride)`` pixels on a side, with :attr:`feature_channels` channels.
        """
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected an NHWC RGB batch (batch, h, w, 3), got shape {x.shape}")
        y = max_pool_3x3_s2(self.stem(x, train=train))
        out = {}
        for stride, stage in zip((4, 8, 16, 32), self.stages, strict=True):
            for block in stage:
                y = block(y, train=train)
            out[stride] = y
        return out

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Global-average-pooled stride-32 features, ``(batch, feature_channels[32])``."""
        return jnp.mean(self.features(x, train=train)[32], axis=(1, 2))


class ResNet18(ResNet):
    """ResNet-18: basic blocks, stages (2, 2, 2, 2), feature channels 64/128/256/512.

    Args:
        rngs: random streams for initialisation.
    """

    def __init__(self, *, rngs: nnx.Rngs):
        super().__init__(BasicBlock, (2, 2, 2, 2), rngs=rngs)


class ResNet50(ResNet):
    """ResNet-50: bottleneck blocks, stages (3, 4, 6, 3), feature channels 256/512/1024/2048.

    Args:
        rngs: random streams for initialisation.
    """

    def __init__(self, *, rngs: nnx.Rngs):
        super().__init__(Bottleneck, (3, 4, 6, 3), rngs=rngs)
