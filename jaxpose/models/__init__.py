"""Neural network models: ImageNet backbones, ResNets, the heatmap pose head and decoders."""

from jaxpose.models.backbones import (
    FEATURE_STRIDES,
    ConvBN,
    EfficientNetLite0,
    InvertedResidual,
    MobileNetV2,
)
from jaxpose.models.heads import (
    LOCREF_STD,
    UPSAMPLE_MODES,
    HeatmapHead,
    decode_argmax,
    decode_soft_argmax,
)
from jaxpose.models.posenet import (
    BACKBONES,
    DECODERS,
    HEAD_DEFAULTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PoseNet,
    Renormalize,
    architecture_signature,
    build_backbone,
    build_posenet,
    build_posenet_from_config,
    param_count,
)
from jaxpose.models.resnet import ResNet, ResNet18, ResNet50
from jaxpose.models.weights import (
    PRETRAINED,
    default_weights_dir,
    load_pretrained,
    weights_path,
)

__all__ = [
    "BACKBONES",
    "DECODERS",
    "FEATURE_STRIDES",
    "HEAD_DEFAULTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LOCREF_STD",
    "PRETRAINED",
    "UPSAMPLE_MODES",
    "ConvBN",
    "EfficientNetLite0",
    "HeatmapHead",
    "InvertedResidual",
    "MobileNetV2",
    "PoseNet",
    "Renormalize",
    "ResNet",
    "ResNet18",
    "ResNet50",
    "architecture_signature",
    "build_backbone",
    "build_posenet",
    "build_posenet_from_config",
    "decode_argmax",
    "decode_soft_argmax",
    "default_weights_dir",
    "load_pretrained",
    "param_count",
    "weights_path",
]
