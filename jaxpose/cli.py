"""The `jaxpose` command: one Hydra application per sub-command.

    jaxpose <command> [key=value ...] [--help] [-m key=a,b ...]

Each command's configuration is `conf/<command>.yaml`; `jaxpose <command> --help` prints its
options, and any value can be overridden on the command line (Hydra syntax).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

# command -> (summary, "module:function" taking the composed DictConfig); the configuration is
# conf/<command>.yaml unless CONFIG_NAMES says otherwise (a group of the same name may exist).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "Run the embedded synthetic study end to end and report errors against ground truth",
        "jaxpose.pipeline.demo:main",
    ),
    "board": (
        "Write a printable PNG of a calibration board (ChArUco, checkerboard, ArUco grid)",
        "jaxpose.pipeline.board_cli:main",
    ),
    "calibrate": (
        "Calibrate a multi-camera rig from board images or videos (bundle adjustment in JAX)",
        "jaxpose.pipeline.calibrate_cli:main",
    ),
    "triangulate": (
        "Triangulate per-camera DeepLabCut predictions with an Anipose calibration.toml",
        "jaxpose.pipeline.triangulate_cli:main",
    ),
    "train": (
        "Train a 2D pose network (heatmaps) on a labelled DeepLabCut project",
        "jaxpose.pipeline.train_cli:main",
    ),
    "evaluate": (
        "Evaluate trained runs on their labelled frames (whole frames), or compare runs",
        "jaxpose.pipeline.evaluate_cli:main",
    ),
    "analyze": (
        "Predict keypoints in videos with a trained run (DeepLabCut h5/csv, resumable)",
        "jaxpose.pipeline.analyze_cli:main",
    ),
}


CONFIG_NAMES = {"board": "board_print"}


def config_name(command: str) -> str:
    return CONFIG_NAMES.get(command, command)


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [
        "jaxpose: differentiable 3D markerless pose estimation in JAX.",
        "",
        "Usage: jaxpose <command> [key=value ...]",
        "       jaxpose <command> --help      (the command's options and defaults)",
        "",
        "Commands:",
    ]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (summary, _) in COMMANDS.items()]
    lines += [
        "",
        "Options use Hydra's syntax: key=value, nested.key=value, group=choice;",
        "-m runs a sweep over comma-separated values.",
    ]
    return "\n".join(lines)


def _load(target: str) -> Callable:
    import importlib

    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _plain_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings of a command are messages for its user: no source file, line or code."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"jaxpose: unknown command {command!r}\n", file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    name = config_name(command)
    if not (CONF_DIR / f"{name}.yaml").is_file():
        print(
            f"jaxpose: configuration {CONF_DIR / (name + '.yaml')} not found; "
            "install jaxpose from its source tree with `pip install -e .`",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")

    import hydra

    run = _load(COMMANDS[command][1])
    status = {"code": 0}

    @hydra.main(config_path=str(CONF_DIR), config_name=name, version_base="1.3")
    def app(cfg) -> None:
        import logging

        # Hydra sets the root logger to INFO; these libraries are chatty at that level.
        for logger in ("numexpr", "jax._src.xla_bridge", "absl"):
            logging.getLogger(logger).setLevel(logging.WARNING)
        status["code"] = run(cfg) or 0

    import logging

    saved = sys.argv
    # Hydra configures the root logger for the job; restore it afterwards so that an in-process
    # call (a notebook, a test) does not leave handlers bound to streams that later close.
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    sys.argv = [f"jaxpose {command}", *rest]
    import warnings

    saved_format = warnings.formatwarning
    warnings.formatwarning = _plain_warning
    try:
        app()
    finally:
        warnings.formatwarning = saved_format
        sys.argv = saved
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
    return int(status["code"])


if __name__ == "__main__":
    sys.exit(main())
