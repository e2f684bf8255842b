"""Video analysis: DeepLabCut files from synthetic videos, resuming, labelled videos, errors.

The network is the dot finder of test_evaluate (the centroid of each pure colour), so the
predictions of a video with moving coloured dots are known: they must land on the dots.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import yaml

from jaxpose.io.dlc import read_dlc
from jaxpose.train import CheckpointError
from jaxpose.train.analyze import (
    AnalyzeOptions,
    ChunkStore,
    VideoError,
    analyze_videos,
    find_videos,
    probe_video,
    read_frames,
)
from jaxpose.train.evaluate import EvaluationError, FullFramePredictor
from tests.test_evaluate import (
    CONFIDENCE,
    draw_dots,
    use_stand_ins,
    write_dot_run,
    write_project,
)

SCORER = "jaxpose_dots_heatmap_dots_7"


def dot_positions(frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """(frames, 3, 2) dots moving smoothly inside the frame."""
    rng = np.random.default_rng(seed)
    start = rng.uniform([15, 15], [width - 16, height - 16], size=(3, 2))
    step = rng.uniform(-1.5, 1.5, size=(3, 2))
    points = start + step * np.arange(frames)[:, None, None]
    return np.clip(points, 12, [width - 13, height - 13])


def write_video(path, positions: np.ndarray, width: int, height: int, fps: float = 25.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for points in positions:
        writer.write(draw_dots(width, height, points, radius=4.0)[..., ::-1])
    writer.release()
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analyze")
    mp = pytest.MonkeyPatch()
    try:
        use_stand_ins(mp)
        project = write_project(tmp / "project", frames=4)
        run = write_dot_run(project, tmp / "dots", scale_factor=0.5)
        truth = dot_positions(12, 160, 120)
        video = write_video(tmp / "videos" / "cam1.mp4", truth, 160, 120)
        yield {"run": run, "video": video, "truth": truth, "tmp": tmp}
    finally:
        mp.undo()


@pytest.fixture
def stand_ins(monkeypatch):
    use_stand_ins(monkeypatch)


def options(**kw) -> AnalyzeOptions:
    return AnalyzeOptions(**({"batch_size": 3, "chunk_frames": 5, "progress": False} | kw))


def test_analyze_writes_dlc_files_on_the_dots(setup, stand_ins, tmp_path):
    [result] = analyze_videos(setup["run"], setup["video"], tmp_path, options=options(
        labelled_video=True))  # fmt: skip
    assert result.complete and not result.skipped and result.frames == 12
    assert result.h5 == tmp_path / f"cam1_{SCORER}.h5"
    predictions = read_dlc(result.h5)
    assert predictions.scorer == SCORER and predictions.index == tuple(range(12))
    # whole frames at scale 0.5 through mp4 compression, back in original px: on the dots
    error = np.linalg.norm(predictions.xy - setup["truth"], axis=-1)
    assert error.max() < 1.0, error.max()
    np.testing.assert_allclose(predictions.likelihood, np.tile(CONFIDENCE, (12, 1)), atol=1e-6)
    np.testing.assert_allclose(read_dlc(result.csv).xy, predictions.xy)
    meta = json.loads(result.meta.read_text())
    assert meta["fps"] == pytest.approx(25.0) and meta["frames"] == 12
    assert meta["frame_size"] == [160, 120] and meta["scale_factor"] == 0.5
    assert meta["network_input"] == [96, 64] and meta["step"] == 7
    assert not (tmp_path / f"cam1_{SCORER}.partial").exists()
    labelled = probe_video(result.labelled_video)
    assert (labelled.width, labelled.height) == (160, 120)
    assert sum(1 for _ in read_frames(result.labelled_video)) == 12
    # a second run skips the analysed video
    [again] = analyze_videos(setup["run"], setup["video"], tmp_path, options=options())
    assert again.skipped and again.frames == 12


def test_interrupted_analysis_resumes_from_the_last_chunk(setup, stand_ins, tmp_path, monkeypatch):
    predicted = []
    original = FullFramePredictor.predict_batch

    def counting(self, batch, affines):
        predicted.append(len(affines))
        return original(self, batch, affines)

    monkeypatch.setattr(FullFramePredictor, "predict_batch", counting)
    [full] = analyze_videos(setup["run"], setup["video"], tmp_path / "full", options=options())
    assert predicted == [3, 2, 3, 2, 2]  # batches never cross a chunk boundary (5, 10)
    predicted.clear()

    out = tmp_path / "resumed"
    [first] = analyze_videos(setup["run"], setup["video"], out, options=options(
        stop_after_chunks=1))  # fmt: skip
    assert not first.complete and first.frames == 5 and first.h5 is None
    assert not (out / f"cam1_{SCORER}.h5").exists()
    partial = out / f"cam1_{SCORER}.partial"
    assert sorted(p.name for p in partial.glob("chunk_*.npz")) == ["chunk_000000000.npz"]
    assert predicted == [3, 2]
    predicted.clear()

    [second] = analyze_videos(setup["run"], setup["video"], out, options=options())
    assert second.complete and second.frames == 12
    assert predicted == [3, 2, 2]  # frames 5-11 only
    assert json.loads(second.meta.read_text())["resumed_from_frame"] == 5
    np.testing.assert_array_equal(read_dlc(second.h5).xy, read_dlc(full.h5).xy)
    np.testing.assert_array_equal(read_dlc(second.h5).likelihood, read_dlc(full.h5).likelihood)
    assert not partial.exists()


def test_partial_results_of_other_settings_are_refused(setup, stand_ins, tmp_path):
    video, run = setup["video"], setup["run"]
    analyze_videos(run, video, tmp_path, options=options(stop_after_chunks=1))
    with pytest.raises(VideoError, match=r"chunk_frames: 5 -> 4.*overwrite=true"):
        analyze_videos(run, video, tmp_path, options=options(chunk_frames=4))
    [redone] = analyze_videos(run, video, tmp_path, options=options(chunk_frames=4,
                                                                    overwrite=True))  # fmt: skip
    assert redone.complete and redone.frames == 12


def test_chunk_store_keeps_only_consecutive_chunks(tmp_path):
    store = ChunkStore(tmp_path / "p", {"bodyparts": ["a"], "chunk_frames": 2})
    assert store.frames_done == 0 and store.load()[0].shape == (0, 1, 2)
    store.write(0, np.zeros((2, 1, 2)), np.ones((2, 1)))
    store.write(4, np.zeros((2, 1, 2)), np.ones((2, 1)))  # a gap: frames 2-3 missing
    assert store.frames_done == 2 and len(store.load()[0]) == 2
    store.write(2, np.full((2, 1, 2), 5.0), np.ones((2, 1)))
    assert store.frames_done == 6
    np.testing.assert_array_equal(store.load()[0][2:4], 5.0)
    reopened = ChunkStore(tmp_path / "p", {"bodyparts": ["a"], "chunk_frames": 2})
    assert reopened.frames_done == 6


def test_frames_of_another_size_just_work(setup, stand_ins, tmp_path):
    truth = dot_positions(5, 260, 90, seed=3)
    video = write_video(tmp_path / "wide.avi", truth, 260, 90)
    [result] = analyze_videos(setup["run"], tmp_path, tmp_path / "out", options=options())
    assert result.video == video and result.frames == 5
    error = np.linalg.norm(read_dlc(result.h5).xy - truth, axis=-1)
    assert error.max() < 1.0


def test_runs_without_a_fixed_scale_need_their_data_or_a_scale(setup, stand_ins, tmp_path):
    run = tmp_path / "crops"
    shutil.copytree(setup["run"], run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["augment"] = {"crop": True}
    config["data"] = str(tmp_path / "gone")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(EvaluationError, match=r"crop_mode=keypoints.*pass scale_factor="):
        analyze_videos(run, setup["video"], tmp_path / "out", options=options())
    [result] = analyze_videos(run, setup["video"], tmp_path / "out", options=options(
        scale_factor=1.0))  # fmt: skip
    assert json.loads(result.meta.read_text())["scale_factor"] == 1.0


def test_clear_errors(setup, stand_ins, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(VideoError, match=r"notes\.mp4: OpenCV cannot open"):
        analyze_videos(setup["run"], bad, tmp_path / "out", options=options())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(setup["video"].read_bytes()[:600])
    with pytest.raises(VideoError, match=r"truncated\.mp4: (OpenCV cannot open|no frame)"):
        analyze_videos(setup["run"], truncated, tmp_path / "out", options=options())
    with pytest.raises(VideoError, match=r"missing\.mp4: no such video file or folder"):
        find_videos(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no videos in this folder"):
        find_videos(tmp_path / "empty")
    run = tmp_path / "untrained"
    run.mkdir()
    shutil.copy(setup["run"] / "config.yaml", run / "config.yaml")
    with pytest.raises(CheckpointError, match="no checkpoints/ folder"):
        analyze_videos(run, setup["video"], tmp_path / "out", options=options())
    with pytest.raises(VideoError, match="ends after 12 frames, before frame 20"):
        list(read_frames(setup["video"], start=20))
    with pytest.raises(VideoError, match="chunk_frames must be >= 1"):
        AnalyzeOptions(chunk_frames=0)


def test_cli_analyze(setup, stand_ins, tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from jaxpose.cli import CONF_DIR
    from jaxpose.pipeline.analyze_cli import main

    base = [f"run={setup['run']}", f"out={tmp_path}", "progress=false", "chunk_frames=5"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("analyze", overrides=[*base, f"videos={setup['video']}",
                                            "stop_after_chunks=2"])  # fmt: skip
        assert main(cfg) == 0
        assert "stopped after 10 frames; run again to resume" in capsys.readouterr().out
        assert main(compose("analyze", overrides=[*base, f"videos=[{setup['video']}]"])) == 0
        assert "cam1.mp4: 12 frames" in capsys.readouterr().out
        assert (tmp_path / f"cam1_{SCORER}.h5").is_file()
        assert main(compose("analyze", overrides=base)) == 2
        assert "missing videos" in capsys.readouterr().err
        cfg = compose("analyze", overrides=[*base, f"videos={tmp_path / 'nothing.mp4'}"])
        assert main(cfg) == 1
        assert "nothing.mp4: no such video file" in capsys.readouterr().err
