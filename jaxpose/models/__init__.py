"""Neural network models: ImageNet backbones and their pretrained weights."""

from jaxpose.models.backbones import (
    FEATURE_STRIDES,
    ConvBN,
    EfficientNetLite0,
    InvertedResidual,
    MobileNetV2,
)
from jaxpose.models.weights import (
    PRETRAINED,
    default_weights_dir,
    load_pretrained,
    weights_path,
)

__all__ = [
    "FEATURE_STRIDES",
    "PRETRAINED",
    "ConvBN",
    "EfficientNetLite0",
    "InvertedResidual",
    "MobileNetV2",
    "default_weights_dir",
    "load_pretrained",
    "weights_path",
]
