"""`jaxpose demo` end to end on a small study, and every config composes and instantiates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from jaxpose.cli import CONF_DIR, main
from jaxpose.triangulation import Triangulator

REPO = Path(__file__).resolve().parent.parent


def test_demo_small_study(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            f"out={out}",
            "synth.num_cameras=4",
            "synth.num_frames=40",
            "synth.num_board_frames=40",
            "synth.outlier_fraction=0.1",
            "synth.noise_px=1.0",
            "compare_methods=[dlt,robust_refine]",
            "network.enabled=false",
            "postprocess.enabled=false",
            "progress=false",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    dlt = metrics["methods"]["dlt"]["mpjpe_mm"]
    robust = metrics["methods"]["robust_refine"]["mpjpe_mm"]
    # 1 px noise on a ~500 mm rig: sub-millimetre with robust refinement, and outliers hurt DLT
    assert robust < 1.5
    assert robust < dlt / 2
    assert metrics["main"]["mpjpe_mm"] == pytest.approx(robust, rel=1e-4)
    report = (out / "report.md").read_text()
    assert "MPJPE" in report and "robust_refine" in report
    assert (out / "errors.png").stat().st_size > 1000
    assert (out / "calibration.toml").is_file()
    # the rig was calibrated from rendered board images, and the result is close to the truth
    cal = metrics["calibration_errors"]
    assert cal["focal_pct"] < 1.0 and cal["centre_mm"] < 5.0
    assert (out / "calibration" / "report.md").is_file()
    assert "robust_refine (true cameras)" in metrics["methods"]
    assert len(list((out / "predictions").glob("*.h5"))) == 4
    assert "MPJPE" in capsys.readouterr().out


def test_demo_with_the_network_stage(tmp_path):
    """The whole study at toy size: render, label, train (a few steps), analyse, triangulate,
    refine, kinematics, report. The network is barely trained here, so only the plumbing and
    the outputs are checked; the full run's figures are in the README."""
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            f"out={out}",
            "synth.num_cameras=3",
            "synth.num_frames=20",
            "synth.num_board_frames=30",
            "network.scale=0.25",
            "network.labelled_frames=6",
            "network.train_overrides=['backbone=small_cnn','input_size=96',"
            "'augment=fixed_scale','augment.scale_factor=1.0','train.steps=4',"
            "'train.warmup_steps=1','train.batch_size=4','train.checkpoint_every=4',"
            "'train.tensorboard=false']",
            "compare_methods=[dlt]",
            "postprocess.overlay_frames=5",
            "progress=false",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    net = metrics["network"]
    assert net["train_summary"]["steps"] == 4 and len(net["labelled_frames"]) == 6
    assert set(net["errors_2d_heldout"]) == {"cam0", "cam1", "cam2"}
    assert len(list((out / "network" / "predictions").glob("*.h5"))) == 3
    assert metrics["postprocess_steps"] == ["spatiotemporal", "kinematics"]
    for f in ("triangulated/pose3d.csv", "triangulated/pose3d_raw.csv",
              "triangulated/kinematics.csv", "triangulated/plots/skeleton_3d.png",
              "triangulated/overlays/cam0.mp4", "report.md"):  # fmt: skip
        assert (out / f).is_file(), f
    assert "2D network" in (out / "report.md").read_text()


@pytest.mark.parametrize("command", ["demo", "triangulate"])
@pytest.mark.parametrize("method", ["dlt", "robust", "refine", "robust_refine"])
def test_every_config_composes_and_instantiates(command, method):
    overrides = [f"triangulation={method}"]
    if command == "triangulate":
        overrides += ["calibration=c.toml", "predictions=p", "out=o"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=command, overrides=overrides)
    tri = instantiate(cfg.triangulation)
    assert isinstance(tri, Triangulator) and tri.method == method
    if command == "demo":
        study = instantiate(cfg.synth, num_frames=5, num_board_frames=2)
        assert study.points_3d.shape[0] == 5
        options = instantiate(cfg.calibration.bundle_adjust, _convert_="all")
        assert "k3" in options.fix


def test_experiment_configs_compose():
    """Every experiment composes on the command it names first in its defaults list (as
    `jaxpose <command> --config-dir experiments --config-name <experiment>` does)."""
    from omegaconf import OmegaConf

    from jaxpose.train.trainer import TrainConfig

    commands = {}
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        base = OmegaConf.load(path).defaults[0]
        commands[path.stem] = base
        with initialize_config_dir(config_dir=str(REPO / "experiments"), version_base="1.3"):
            cfg = compose(
                config_name=path.stem, overrides=[f"hydra.searchpath=[file://{CONF_DIR}]"]
            )
        if base == "demo":
            study = instantiate(cfg.synth, num_frames=5, num_board_frames=2)
            assert study.points_3d.shape[0] == 5, path
        elif base == "train":
            mapping = OmegaConf.to_container(cfg, resolve=True)
            assert mapping.pop("multiview")["enabled"] is False
            TrainConfig.from_mapping(mapping)  # every key known
            assert "/data/" in mapping["data"], path
        else:
            raise AssertionError(f"{path}: unexpected base config {base!r}")
    assert {"demo", "train"} <= set(commands.values()), commands
