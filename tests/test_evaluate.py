"""Evaluation of trained runs: metrics on fixed arrays, whole-frame prediction, reports, sweeps.

Two kinds of run folders, both tiny:

- a "dot finder" run: a parameter-free stand-in network that returns the centroid of each pure
  colour (the synthetic frames have a red, a green and a blue dot at the labels), saved with the
  checkpoint functions. Its errors are known (about 0), so the whole-frame geometry (resize,
  pad, map back) is checked end to end;
- a run trained for two steps by `jaxpose.train.train` with a tiny convolutional stand-in, so
  the evaluation reads exactly what training writes.
"""

from __future__ import annotations

import functools
import json
import math

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import yaml
from flax import nnx

from jaxpose.data import IMAGENET_MEAN, IMAGENET_STD, LabelledFrames
from jaxpose.io.dlc import read_dlc
from jaxpose.models.heads import decode_argmax
from jaxpose.train import CheckpointError, RunInfo, TrainConfig, train
from jaxpose.train import trainer as trainer_module
from jaxpose.train.checkpoint import checkpoint_manager, save_checkpoint, split_model
from jaxpose.train.evaluate import (
    EvaluateOptions,
    EvaluationError,
    FullFramePredictor,
    bodypart_table,
    compare_runs,
    draw_predictions,
    error_metrics,
    evaluate_run,
    find_runs,
    frame_scales,
    keypoint_errors,
    run_input_scale,
    scorer_name,
)

WIDTH, HEIGHT = 96, 64
BODYPARTS = ("nose", "tail", "paw")
COLOURS = ((255, 40, 40), (40, 255, 40), (40, 40, 255))  # RGB: body part k is channel k
CONFIDENCE = (0.9, 0.9, 0.3)  # the dot finder's fixed confidences: 2 of 3 above 0.6


# ---------------------------------------------------------------------------------------------
# Synthetic data and stand-in networks


def draw_dots(width: int, height: int, points: np.ndarray, radius: float = 3.0) -> np.ndarray:
    """(H, W, 3) uint8 RGB grey frame with a pure-colour dot centred on each point."""
    image = np.full((height, width, 3), 40, np.uint8)
    for (x, y), colour in zip(points, COLOURS, strict=True):
        centre = (int(round(x * 16)), int(round(y * 16)))
        cv2.circle(image, centre, int(radius * 16), colour, -1, lineType=cv2.LINE_AA, shift=4)
    return image


def write_project(root, *, frames: int = 10, seed: int = 0):
    """A DeepLabCut project of 96x64 frames; body part 1 is unlabelled in frame 0."""
    rng = np.random.default_rng(seed)
    folder = root / "labeled-data" / "synth"
    folder.mkdir(parents=True)
    index, values = [], []
    for i in range(frames):
        points = rng.uniform([12, 12], [WIDTH - 13, HEIGHT - 13], size=(len(BODYPARTS), 2))
        cv2.imwrite(str(folder / f"img{i:03d}.png"), draw_dots(WIDTH, HEIGHT, points)[..., ::-1])
        if i == 0:
            points[1] = np.nan
        index.append(f"labeled-data/synth/img{i:03d}.png")
        values.append(points.reshape(-1))
    columns = pd.MultiIndex.from_product(
        [["tester"], list(BODYPARTS), ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    pd.DataFrame(np.array(values), index=index, columns=columns).to_csv(
        folder / "CollectedData_tester.csv"
    )
    config = {"Task": "synth", "scorer": "tester", "bodyparts": list(BODYPARTS), "skeleton": []}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


class DotFinder(nnx.Module):
    """Keypoint k = centroid of the pixels where colour channel k exceeds the other two."""

    def __init__(self, num_keypoints: int):
        self.gain = nnx.Param(jnp.ones(()))  # something for the checkpoint to hold
        self.count = nnx.BatchStat(jnp.zeros(()))
        self.k = num_keypoints

    def predict(self, images):
        pixels = images * (255 * jnp.asarray(IMAGENET_STD)) + 255 * jnp.asarray(IMAGENET_MEAN)
        others = (jnp.sum(pixels, axis=-1, keepdims=True) - pixels) / 2
        weight = jax.nn.relu(pixels - others - 20.0)[..., : self.k]  # (B, H, W, K)
        ys = jnp.arange(images.shape[1], dtype=jnp.float32)[None, :, None, None]
        xs = jnp.arange(images.shape[2], dtype=jnp.float32)[None, None, :, None]
        total = weight.sum(axis=(1, 2)) + 1e-6
        x = (weight * xs).sum(axis=(1, 2)) / total
        y = (weight * ys).sum(axis=(1, 2)) / total
        confidence = jnp.broadcast_to(jnp.asarray(CONFIDENCE[: self.k]), x.shape)
        return jnp.stack([x, y], axis=-1) * self.gain, confidence


class TinyPoseNet(nnx.Module):
    """Two strided convs and a heatmap + offset head: the PoseNet interface, output stride 4."""

    def __init__(self, num_keypoints: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(3, 8, (3, 3), strides=(2, 2), rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), strides=(2, 2), rngs=rngs)
        self.heatmap = nnx.Conv(16, num_keypoints, (1, 1), rngs=rngs)
        self.offset = nnx.Conv(16, 2 * num_keypoints, (1, 1), rngs=rngs)
        self.k = num_keypoints

    def __call__(self, images, *, train: bool):
        x = jax.nn.relu(self.bn(self.conv1(images), use_running_average=not train))
        x = jax.nn.relu(self.conv2(x))
        offset = self.offset(x)
        return {"heatmap": self.heatmap(x), "offset": offset.reshape(*offset.shape[:3], self.k, 2)}

    def predict(self, images):
        outputs = self(images, train=False)
        return decode_argmax(outputs["heatmap"], outputs["offset"], 4, 7.2801)


@functools.partial(nnx.jit, static_argnums=0)
def build_tiny(num_keypoints, rngs):
    return TinyPoseNet(num_keypoints, rngs=rngs)


def use_stand_ins(monkeypatch):
    """`train` and `load_trained` build the stand-ins named by the run's backbone."""

    def build(cfg, *, num_keypoints, pretrained=None, rngs=None):
        if cfg.backbone["name"] == "dots":
            return DotFinder(num_keypoints)
        return build_tiny(num_keypoints, rngs if rngs is not None else nnx.Rngs(cfg.seed))

    def signature(model):
        return f"{type(model).__name__}(k={model.k})"

    monkeypatch.setattr(trainer_module, "build_model", build)
    monkeypatch.setattr(trainer_module, "model_signature", signature)


def run_config(project, out, *, backbone: str, augment: dict, steps: int = 2) -> dict:
    return {
        "data": str(project),
        "out": str(out),
        "backbone": {"name": backbone, "pretrained": False},
        "head": {"name": "heatmap"},
        "augment": augment,
        "loss": {
            "heatmap": {"weight": 1.0, "sigma": 3.0},
            "locref": {"weight": 0.05, "radius": 8.0, "std": 7.2801},
        },
        "input_size": 32,
        "seed": 0,
        "split": {"train_fraction": 0.7, "seed": 0},
        "train": {"steps": steps, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": steps,
                  "eval_batch_size": 4, "progress": False, "tensorboard": False},
    }  # fmt: skip


def write_dot_run(project, run, *, scale_factor: float = 0.5):
    """A run folder holding the dot finder, as `jaxpose train` lays it out."""
    from jaxpose.data import load_dlc_project, split_indices

    augment = {"crop_mode": "fixed_scale", "scale_factor": scale_factor}
    cfg = TrainConfig.from_mapping(run_config(project, run, backbone="dots", augment=augment))
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    frames = load_dlc_project(project)
    train_idx, test_idx = split_indices(len(frames), 0.7, 0)
    split = {"root": str(frames.root), "train_fraction": 0.7, "seed": 0}
    for name, idx in (("train", train_idx), ("test", test_idx)):
        images = [frames.images[i].relative_to(frames.root).as_posix() for i in idx]
        split[name] = {"indices": [int(i) for i in idx], "images": images}
    (run / "split.json").write_text(json.dumps(split))
    _, params, rest = split_model(DotFinder(len(BODYPARTS)))
    manager = checkpoint_manager(run, max_to_keep=None)
    meta = {"architecture_signature": "DotFinder(k=3)", "bodyparts": list(BODYPARTS),
            "input_size": 32, "step": 7, "data_step": 7, "seed": 0, "wall_time_s": 1.0}  # fmt: skip
    save_checkpoint(manager, 7, params=params, rest=rest, opt_state={"n": jnp.zeros(())},
                    metadata=meta)  # fmt: skip
    manager.wait_until_finished()
    manager.close()
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    mp = pytest.MonkeyPatch()
    try:
        use_stand_ins(mp)
        project = write_project(tmp / "project")
        dots = write_dot_run(project, tmp / "runs" / "dots")
        trained = train(
            run_config(project, tmp / "runs" / "tiny", backbone="tiny", augment={"crop": True})
        )
        yield {"project": project, "dots": dots, "tiny": trained.run_dir, "tmp": tmp}
    finally:
        mp.undo()


@pytest.fixture
def stand_ins(monkeypatch):
    use_stand_ins(monkeypatch)


# ---------------------------------------------------------------------------------------------
# Metrics on fixed arrays


ERRORS = np.array([[3.0, 4.0, np.nan], [0.0, 12.0, 5.0]])
CONF = np.array([[0.9, 0.5, 0.9], [0.7, 0.8, 0.1]])


def test_keypoint_errors_and_frame_scales():
    predictions = np.array([[[3.0, 4.0], [1.0, 1.0]], [[0.0, 0.0], [2.0, 2.0]]])
    labels = np.array([[[0.0, 0.0], [np.nan, np.nan]], [[0.0, 0.0], [5.0, 6.0]]])
    np.testing.assert_allclose(keypoint_errors(predictions, labels), [[5.0, np.nan], [0.0, 5.0]])
    scales = frame_scales(np.array([[[0, 0], [10, 4], [np.nan, np.nan]], [[1, 1], [np.nan] * 2,
                                     [np.nan] * 2], [[np.nan] * 2] * 3]))  # fmt: skip
    np.testing.assert_allclose(scales, [10.0, np.nan, np.nan])


def test_error_metrics_by_hand():
    m = error_metrics(ERRORS, CONF, pcutoff=0.6, pck_px=(2, 5, 10), pck_relative=(0.1, 0.5),
                      scales=np.array([10.0, 100.0]))  # fmt: skip
    # labelled: 3, 4, 0, 12, 5; above the cut-off: 3, 0, 12
    assert m["n"] == 5 and m["n_above_cutoff"] == 3
    assert m["rmse_px"] == pytest.approx(math.sqrt((9 + 16 + 0 + 144 + 25) / 5))
    assert m["mean_px"] == pytest.approx(24 / 5) and m["median_px"] == 4.0
    assert m["rmse_above_cutoff_px"] == pytest.approx(math.sqrt(153 / 3))
    assert m["mean_above_cutoff_px"] == pytest.approx(5.0)
    assert m["fraction_above_cutoff"] == pytest.approx(0.6)
    assert m["pck_px"] == {"2": pytest.approx(0.2), "5": pytest.approx(0.8), "10": 0.8}
    # frame 0 (size 10): 3 and 4 are within 5 but not 1; frame 1 (size 100): 0, 5 within 10
    assert m["pck_relative"] == {"0.1": pytest.approx(0.4), "0.5": pytest.approx(1.0)}


def test_error_metrics_without_points_and_bad_shapes():
    m = error_metrics(np.full((2, 3), np.nan), CONF, pcutoff=0.6, pck_px=(5,))
    assert m["n"] == 0 and math.isnan(m["rmse_px"]) and math.isnan(m["pck_px"]["5"])
    with pytest.raises(ValueError, match="differ"):
        error_metrics(ERRORS, CONF[:1], pcutoff=0.6)
    with pytest.raises(ValueError, match="needs the per-frame scales"):
        error_metrics(ERRORS, CONF, pcutoff=0.6, pck_relative=(0.1,))


def test_bodypart_table_by_hand():
    rows = bodypart_table(ERRORS, CONF, ("a", "b", "c"), pcutoff=0.6, pck_px=(5,))
    assert [r["bodypart"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["n"] == 2 and rows[0]["rmse_px"] == pytest.approx(math.sqrt(4.5))
    assert rows[1]["mean_above_cutoff_px"] == pytest.approx(12.0)
    assert rows[1]["fraction_above_cutoff"] == pytest.approx(0.5)
    assert rows[2]["n"] == 1 and rows[2]["n_above_cutoff"] == 0 and rows[2]["pck_5px"] == 1.0
    assert math.isnan(rows[2]["rmse_above_cutoff_px"])


def test_options_are_checked():
    with pytest.raises(EvaluationError, match="pcutoff must be in"):
        EvaluateOptions(pcutoff=1.5)
    with pytest.raises(EvaluationError, match="thresholds must be positive"):
        EvaluateOptions(pck_px=(0, 5))


# ---------------------------------------------------------------------------------------------
# The run's scale


def fake_info(augment: dict, input_size: int = 32) -> RunInfo:
    return RunInfo("runs/x", BODYPARTS, input_size, "sig", 5,
                   {"augment": augment, "backbone": {"name": "resnet18"},
                    "head": {"name": "heatmap"}})  # fmt: skip


def test_run_input_scale_for_every_crop_mode():
    keypoints = np.array([[[10, 10], [50, 30], [np.nan, np.nan]]] * 3, np.float32)
    keypoints[1, :2] += 5  # same extent, elsewhere
    keypoints[2, 1] = [90, 30]  # 80 px wide
    frames = LabelledFrames(root=".", images=("a.png", "b.png", "c.png"), keypoints=keypoints,
                            bodyparts=BODYPARTS, image_sizes=[[200, 100], [200, 100], [400, 100]])  # fmt: skip
    fixed = run_input_scale(fake_info({"crop_mode": "fixed_scale", "scale_factor": 0.4}))
    assert fixed.scale_factor == 0.4
    letterbox = run_input_scale(fake_info({"crop": False}), train_frames=frames)
    assert letterbox.scale_factor == pytest.approx(32 / 200)  # median of 32/200, 32/200, 32/400
    # 40 px extent, margin 0.25 each side: 60 px crops (twice) and one 120 px crop
    crops = run_input_scale(fake_info({"crop_margin": 0.25, "crop_min_size": 0.0}),
                            train_frames=frames)  # fmt: skip
    assert crops.scale_factor == pytest.approx(32 / 60) and "median over 3" in crops.source
    assert run_input_scale(fake_info({}), scale_factor=0.7).scale_factor == 0.7
    with pytest.raises(EvaluationError, match="pass scale_factor="):
        run_input_scale(fake_info({"crop": True}))


def test_scorer_name_names_network_run_and_step():
    assert scorer_name(fake_info({})) == "jaxpose_resnet18_heatmap_x_5"


# ---------------------------------------------------------------------------------------------
# Whole-frame prediction


@pytest.mark.parametrize("scale", [1.0, 0.5, 1.5])
def test_full_frame_predictor_maps_back_to_original_pixels(scale):
    truth = np.array([[[20.3, 30.7], [70.2, 12.9], [50.5, 50.1]], [[51.0, 15.5], [30.0, 40.0],
                                                                    [10.6, 20.2]]])  # fmt: skip
    frames = [draw_dots(WIDTH, HEIGHT, truth[0]), draw_dots(64, 80, truth[1])]  # other size
    predictor = FullFramePredictor(DotFinder(3), scale_factor=scale, batch_size=3)
    canvas = predictor.canvas_size([[WIDTH, HEIGHT], [64, 80]])
    assert canvas == tuple(-(-round(v * scale) // 32) * 32 for v in (WIDTH, 80))
    result = predictor.predict(frames, canvas=canvas)
    np.testing.assert_allclose(result.keypoints, truth, atol=0.15 * max(1, 1 / scale))
    np.testing.assert_allclose(result.confidence, [CONFIDENCE] * 2)
    assert result.frames_per_s > 0


# ---------------------------------------------------------------------------------------------
# Evaluating a run


def test_evaluate_dot_finder_run_end_to_end(runs, stand_ins, tmp_path):
    out = tmp_path / "evaluation"
    options = EvaluateOptions(worst_frames=2, progress=False, pck_px=(1, 2))
    summary = evaluate_run(runs["dots"], out=out, options=options)
    assert summary["input"]["scale_factor"] == 0.5 and summary["step"] == 7
    assert summary["num_train"] == 7 and summary["num_test"] == 3
    for split in ("train", "test"):
        m = summary[split]
        assert m["rmse_px"] < 0.5, m  # whole frames at scale 0.5, mapped back: sub-pixel
        assert m["pck_px"]["2"] == 1.0
        assert m["fraction_above_cutoff"] == pytest.approx(2 / 3, abs=0.07)
    # frame 0 has an unlabelled body part: it is not scored
    assert summary["train"]["n"] + summary["test"]["n"] == 10 * 3 - 1
    # predictions file: DeepLabCut layout, one row per labelled frame, image paths as index
    predictions = read_dlc(out / "predictions.h5")
    assert predictions.scorer == "jaxpose_dots_heatmap_dots_7"
    assert len(predictions.index) == 10 and predictions.likelihood is not None
    assert str(predictions.index[0]).startswith("labeled-data/synth/img")
    np.testing.assert_allclose(read_dlc(out / "predictions.csv").xy, predictions.xy)
    # the summary's errors are those of the written predictions
    labels = pd.read_csv(runs["project"] / "labeled-data/synth/CollectedData_tester.csv",
                         header=[0, 1, 2], index_col=0)  # fmt: skip
    truth = labels.loc[list(predictions.index)].to_numpy().reshape(10, 3, 2)
    errors = keypoint_errors(predictions.xy, truth)
    split = json.loads((runs["dots"] / "split.json").read_text())
    test_rows = [predictions.index.index(p) for p in split["test"]["images"]]
    expected = math.sqrt(np.nanmean(errors[test_rows] ** 2))
    assert summary["test"]["rmse_px"] == pytest.approx(expected, rel=1e-4)  # labels: float32
    table = pd.read_csv(out / "per_bodypart.csv")
    assert list(table["bodypart"]) == list(BODYPARTS) and set(table["split"]) == {"test"}
    per_frame = pd.read_csv(out / "per_frame.csv")
    assert len(per_frame) == 10 and set(per_frame["split"]) == {"train", "test"}
    worst = sorted((out / "worst").glob("*.png"))
    assert len(worst) == 2 and cv2.imread(str(worst[0])).shape[1] == 480 + 230  # enlarged
    report = (out / "report.md").read_text()
    assert "Test error per body part" in report and "worst/01_" in report
    assert json.loads((out / "summary.json").read_text())["test"]["n"] == summary["test"]["n"]


def test_evaluate_at_another_scale_and_step_errors(runs, stand_ins, tmp_path):
    options = EvaluateOptions(worst_frames=0, progress=False, scale_factor=1.0)
    summary = evaluate_run(runs["dots"], out=tmp_path / "e", options=options)
    assert summary["input"]["scale_factor"] == 1.0 and summary["test"]["rmse_px"] < 0.3
    assert summary["input"]["canvas"] == [96, 64]
    with pytest.raises(CheckpointError, match="no checkpoint of step 3"):
        evaluate_run(runs["dots"], step=3, out=tmp_path / "e", options=options)


def test_evaluate_trained_run_and_moved_data(runs, stand_ins, tmp_path):
    options = EvaluateOptions(worst_frames=1, progress=False)
    # trained on crops around the labels, whose scale varied with the pose: a warning, and
    # whole frames at the median crop scale
    with pytest.warns(UserWarning, match="crops varied in scale.*crop_mode=fixed_scale"):
        summary = evaluate_run(runs["tiny"], options=options)
    assert "median over 7 training frames of the keypoints crop" in summary["input"]["source"]
    assert summary["train"]["n"] + summary["test"]["n"] == 29
    assert np.isfinite(summary["test"]["rmse_px"])
    assert (runs["tiny"] / "evaluation" / "report.md").is_file()
    # data elsewhere whose frames are not the run's: named in the error
    other = write_project(tmp_path / "other", frames=3)
    (other / "labeled-data" / "synth" / "img002.png").rename(
        other / "labeled-data" / "synth" / "img_x.png"
    )
    csv = other / "labeled-data" / "synth" / "CollectedData_tester.csv"
    csv.write_text(csv.read_text().replace("img002.png", "img_x.png"))
    with pytest.raises(EvaluationError, match="frame 'labeled-data/synth/img0.*is not in the data"):
        evaluate_run(runs["tiny"], data=other, out=tmp_path / "e2", options=options)


@pytest.mark.filterwarnings("ignore:.*crops varied in scale")
def test_compare_runs_table(runs, stand_ins, tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("data: x\n")
    found = find_runs(runs["tmp"] / "runs")
    assert [p.name for p in found] == ["dots", "tiny"]
    options = EvaluateOptions(worst_frames=0, progress=False)
    with pytest.warns(UserWarning, match="broken: not evaluated"):
        rows = compare_runs([*found, tmp_path / "broken"], out=tmp_path, options=options,
                            reevaluate=True)  # fmt: skip
    assert [r.get("backbone") for r in rows] == ["dots", "tiny", None]
    assert "error" in rows[2] and "error" not in rows[0]
    assert rows[0]["test_rmse_px"] < 0.5 and rows[0]["params"] == 1
    assert rows[1]["train_images_per_s"] > 0 and rows[1]["inference_fps"] > 0
    text = (tmp_path / "comparison.md").read_text()
    assert "| dots | dots | heatmap |" in text and "PCK@5px" in text and "error:" in text
    assert len(pd.read_csv(tmp_path / "comparison.csv")) == 3
    with pytest.raises(EvaluationError, match="no run folders"):
        find_runs(tmp_path / "broken")


def test_draw_predictions_marks_labels_and_predictions():
    image = np.full((40, 60, 3), 40, np.uint8)
    labels = np.array([[10.0, 10.0], [np.nan, np.nan]])
    predictions = np.array([[30.0, 20.0], [50.0, 30.0]])
    picture = draw_predictions(image, predictions, np.array([0.9, 0.2]), ("a", "b"),
                               labels=labels, title="t")  # fmt: skip
    zoom = 480 / 60
    assert picture.shape[0] == 320 and picture.shape[1] == 480 + 230
    # something is drawn at the label and at the prediction, nothing in an empty corner
    background = picture[300, 20].astype(int)
    for x, y in (labels[0], predictions[0]):
        cx, cy = (round((x + 0.5) * zoom - 0.5), round((y + 0.5) * zoom - 0.5))
        patch = picture[cy - 8 : cy + 9, cx - 8 : cx + 9].astype(int)
        assert np.abs(patch - background).max() > 100
    np.testing.assert_array_equal(picture[300, 20], [40, 40, 40])


@pytest.mark.filterwarnings("ignore:.*crops varied in scale")
def test_cli_evaluate(runs, stand_ins, tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from jaxpose.cli import CONF_DIR
    from jaxpose.pipeline.evaluate_cli import main

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"run={runs['dots']}", f"out={tmp_path / 'cli'}",
                                             "progress=false", "worst_frames=0"])  # fmt: skip
        assert main(cfg) == 0
        printed = capsys.readouterr().out
        assert "test  RMSE" in printed and "PCK@5px" in printed and "report:" in printed
        cfg = compose("evaluate", overrides=[f"sweep={runs['tmp'] / 'runs'}", "progress=false",
                                             f"out={tmp_path / 'sweep'}"])  # fmt: skip
        assert main(cfg) == 0
        assert "| tiny | tiny |" in capsys.readouterr().out
        assert main(compose("evaluate", overrides=[])) == 2
        assert "exactly one of run, runs, sweep" in capsys.readouterr().err
        cfg = compose("evaluate", overrides=[f"run={tmp_path / 'nowhere'}", "progress=false"])
        assert main(cfg) == 1
        assert "no such run folder" in capsys.readouterr().err
