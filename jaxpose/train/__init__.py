"""Training 2D pose networks: losses, the training loop, checkpoints and per-step metrics."""

from jaxpose.train.checkpoint import CheckpointError, RunInfo, load_trained
from jaxpose.train.inference import Predictor, predict_images
from jaxpose.train.losses import (
    LOSSES,
    LossError,
    coordinate_loss,
    heatmap_loss,
    heatmap_targets,
    locref_loss,
    locref_targets,
    total_loss,
)
from jaxpose.train.metrics import MetricsWriter, read_metrics
from jaxpose.train.trainer import (
    DEFAULT_LOSS,
    PixelErrors,
    SplitConfig,
    TrainConfig,
    TrainError,
    TrainOptions,
    TrainResult,
    build_model,
    pixel_errors,
    read_run_config,
    summarize_errors,
    train,
)

__all__ = [
    "DEFAULT_LOSS",
    "LOSSES",
    "CheckpointError",
    "LossError",
    "MetricsWriter",
    "PixelErrors",
    "Predictor",
    "RunInfo",
    "SplitConfig",
    "TrainConfig",
    "TrainError",
    "TrainOptions",
    "TrainResult",
    "build_model",
    "coordinate_loss",
    "heatmap_loss",
    "heatmap_targets",
    "load_trained",
    "locref_loss",
    "locref_targets",
    "pixel_errors",
    "predict_images",
    "read_metrics",
    "read_run_config",
    "summarize_errors",
    "total_loss",
    "train",
]
