"""Video analysis: a trained network over every frame of videos -> DeepLabCut prediction files.

Frames are decoded one at a time with ``cv2.VideoCapture`` (never the whole video in memory), in a
background thread that also resizes them to the run's scale, while the network predicts the
previous batch (:class:`~jaxpose.train.evaluate.FullFramePredictor`: whole frames, fully
convolutional, no crop).

Long videos are analysed in chunks of ``chunk_frames`` frames. Each finished chunk is saved as
``<out>/<video stem>_<scorer>.partial/chunk_<first frame>.npz`` (written atomically, beside a
``meta.json`` naming the video, network and settings), so an interrupted analysis resumes from
the last complete chunk: the frames before it are skipped with ``grab()`` (demuxed, not
converted) rather than predicted again. At the end the chunks are joined into

- ``<stem>_<scorer>.h5`` and ``.csv``: DeepLabCut's layout (``scorer / bodyparts / coords`` with
  ``x, y, likelihood``; one row per frame), written atomically;
- ``<stem>_<scorer>_meta.json``: frame rate, frame size and count, network, scale, timing;
- optionally ``<stem>_<scorer>_labeled.mp4``: the predictions drawn on the video;

and the partial folder is removed. A video whose ``.h5`` exists is skipped (``overwrite=True``
analyses it again).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import queue
import shutil
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jaxpose.data import DatasetError
from jaxpose.io.atomic import atomic_path, atomic_write_text
from jaxpose.io.dlc import Keypoints2D, read_dlc, write_dlc
from jaxpose.train.checkpoint import RunInfo, load_trained
from jaxpose.train.evaluate import (
    EvaluationError,
    FullFramePredictor,
    InputScale,
    augment_config,
    draw_predictions,
    load_run_frames,
    run_input_scale,
    scorer_name,
)

__all__ = [
    "VIDEO_EXTENSIONS",
    "AnalyzeOptions",
    "ChunkStore",
    "VideoError",
    "VideoInfo",
    "VideoResult",
    "analyze_video",
    "analyze_videos",
    "find_videos",
    "probe_video",
    "read_frames",
    "write_labelled_video",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".wmv", ".webm")
# Frames above this many pixels after scaling make a batch's activations large: warn.
_LARGE_FRAME_PX = 4_000_000


class VideoError(ValueError):
    """A video that cannot be analysed (missing, undecodable, a stale partial result)."""


@dataclasses.dataclass(frozen=True)
class AnalyzeOptions:
    """Settings of :func:`analyze_videos` (the keys of ``conf/analyze.yaml`` of the same names).

    Attributes:
        batch_size: frames per forward pass.
        chunk_frames: frames per saved chunk: an interrupted run loses at most this many.
        scale_factor: network input px per original px; ``None`` = the run's.
        labelled_video: also write the video with the predictions drawn on it.
        pcutoff: predictions below this confidence are drawn thin in the labelled video.
        save_csv: write the ``.csv`` beside the ``.h5``.
        overwrite: analyse videos whose ``.h5`` exists again, discarding partial results.
        keep_partial: keep the chunk folder after the final files are written.
        stop_after_chunks: stop (as if interrupted) after saving this many chunks in this call;
            for tests and time-boxed runs. ``None`` runs to the end.
        progress: show a tqdm bar per video.
    """

    batch_size: int = 8
    chunk_frames: int = 500
    scale_factor: float | None = None
    labelled_video: bool = False
    pcutoff: float = 0.6
    save_csv: bool = True
    overwrite: bool = False
    keep_partial: bool = False
    stop_after_chunks: int | None = None
    progress: bool = True

    def __post_init__(self):
        if self.batch_size < 1:
            raise VideoError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.chunk_frames < 1:
            raise VideoError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.stop_after_chunks is not None and self.stop_after_chunks < 1:
            raise VideoError(f"stop_after_chunks must be >= 1, got {self.stop_after_chunks}")
        if self.scale_factor is not None and not self.scale_factor > 0:
            raise VideoError(f"scale_factor must be positive, got {self.scale_factor}")


# ---------------------------------------------------------------------------------------------
# Videos


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video's container says about it.

    Attributes:
        path: the file.
        width, height: frame size in px.
        fps: frame rate; NaN when the container does not say.
        frame_count: frames the container reports (an estimate for some codecs; 0 = unknown).
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(
            f"{path}: OpenCV cannot open this video (not a video, corrupt, or a codec its FFmpeg "
            "lacks); convert it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`"
        )
    return capture


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Opens a video and decodes its first frame.

    Raises:
        VideoError: the file is missing or no frame can be decoded (the message names it).
    """
    path = Path(path)
    capture = _open(path)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoError(f"{path}: no frame could be decoded (empty or corrupt video)")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return VideoInfo(
        path=path,
        width=int(frame.shape[1]),
        height=int(frame.shape[0]),
        fps=fps if fps > 0 and math.isfinite(fps) else math.nan,
        frame_count=max(count, 0),
    )


def read_frames(path: str | os.PathLike, *, start: int = 0) -> Iterator[np.ndarray]:
    """The frames of a video from frame ``start`` on, as (H, W, 3) uint8 RGB, one at a time.

    Frames before ``start`` are skipped with ``grab()`` (exact, unlike seeking, which lands on
    key frames for many codecs).

    Raises:
        VideoError: the video cannot be opened, or ends before ``start``.
    """
    path = Path(path)
    capture = _open(path)
    try:
        for skipped in range(start):
            if not capture.grab():
                raise VideoError(
                    f"{path}: ends after {skipped} frames, before frame {start} where the "
                    "partial analysis stopped; the video changed? Analyse it with overwrite=true"
                )
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def find_videos(
    videos: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> list[Path]:
    """Video files: a file, a folder (its files with a video extension, sorted), or a list.

    Raises:
        VideoError: a path does not exist, or a folder holds no video.
    """
    if isinstance(videos, str | os.PathLike):
        videos = [videos]
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    found: list[Path] = []
    for item in videos:
        path = Path(item)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in extensions)
            if not inside:
                raise VideoError(
                    f"{path}: no videos in this folder (extensions {', '.join(extensions)})"
                )
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise VideoError(f"{path}: no such video file or folder")
    return found


# ---------------------------------------------------------------------------------------------
# The resumable store of finished chunks


class ChunkStore:
    """Finished chunks of one video's analysis: ``meta.json`` + ``chunk_<first frame>.npz``.

    Each chunk file holds ``keypoints (n, K, 2)`` float32 original px and ``confidence (n, K)``
    float32 of frames ``[first, first + n)``, and is written atomically, so a chunk file on disk
    is always complete. The frames done are the chunks that follow one another from frame 0.

    Args:
        path: the folder.
        meta: what the chunks depend on (video, network, scale, chunk size, body parts). An
            existing folder with other ``meta`` raises :class:`VideoError`: its chunks came from
            another network or setting.
    """

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any]):
        self.path = Path(path)
        meta = json.loads(json.dumps(meta))  # plain JSON types, as read back
        meta_path = self.path / "meta.json"
        if meta_path.is_file():
            old = json.loads(meta_path.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            if changed:
                details = "; ".join(f"{k}: {old.get(k)!r} -> {meta.get(k)!r}" for k in changed)
                raise VideoError(
                    f"{self.path}: a partial analysis made with other settings ({details}); "
                    "delete the folder, or pass overwrite=true to start this video again"
                )
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
        self.meta = meta

    def chunks(self) -> list[tuple[int, Path]]:
        """(first frame, file) of the chunks that follow one another from frame 0."""
        files = {}
        for f in self.path.glob("chunk_*.npz"):
            try:
                files[int(f.stem.split("_")[1])] = f
            except (IndexError, ValueError):
                continue
        out, frame = [], 0
        while frame in files:
            with np.load(files[frame]) as data:
                n = len(data["confidence"])
            out.append((frame, files[frame]))
            frame += n
        return out

    @property
    def frames_done(self) -> int:
        """Frames [0, frames_done) are stored."""
        chunks = self.chunks()
        if not chunks:
            return 0
        with np.load(chunks[-1][1]) as data:
            return chunks[-1][0] + len(data["confidence"])

    def write(self, start: int, keypoints: np.ndarray, confidence: np.ndarray) -> None:
        """Stores frames [start, start + n) atomically."""
        if len(keypoints) != len(confidence) or not len(keypoints):
            raise ValueError("a chunk needs as many (>= 1) keypoint rows as confidence rows")
        with atomic_path(self.path / f"chunk_{start:09d}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                keypoints=np.asarray(keypoints, np.float32),
                confidence=np.asarray(confidence, np.float32),
            )

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keypoints (N, K, 2), confidence (N, K))`` of every stored frame, float32."""
        parts = []
        for _, path in self.chunks():
            with np.load(path) as data:
                parts.append((data["keypoints"], data["confidence"]))
        if not parts:
            k = len(self.meta.get("bodyparts", []))
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Analysis


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """What :func:`analyze_video` did with one video.

    Attributes:
        video: the video file.
        h5: the DeepLabCut ``.h5`` (None until complete).
        csv: the ``.csv`` (None if not written).
        meta: the ``_meta.json``.
        labelled_video: the ``_labeled.mp4`` (None if not asked for).
        frames: frames stored so far.
        complete: every frame was analysed and the final files written.
        skipped: the ``.h5`` existed already (nothing was predicted).
        frames_per_s: analysis speed of this call (decoding to storing, after the first
            batch); NaN if nothing was predicted.
    """

    video: Path
    h5: Path | None
    csv: Path | None
    meta: Path | None
    labelled_video: Path | None
    frames: int
    complete: bool
    skipped: bool = False
    frames_per_s: float = math.nan


def _background(items: Iterator, depth: int = 2) -> Iterator:
    """Iterates ``items`` in a worker thread, up to ``depth`` ahead of the consumer.

    Decoding (cv2) and resizing release the GIL, so they overlap the network. Errors in the
    worker are raised in the consumer; leaving the loop early stops the worker.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the consumer
            put(("error", e))
        finally:
            if hasattr(items, "close"):
                items.close()  # releases the video capture now, in this thread

    thread = threading.Thread(target=work, name="jaxpose-video-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _prepared_batches(
    predictor: FullFramePredictor,
    video: VideoInfo,
    *,
    start: int,
    chunk_frames: int,
    canvas: tuple[int, int],
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """``(first frame, n, batch, affines)`` from frame ``start`` on; no batch crosses a chunk
    boundary (a multiple of ``chunk_frames``)."""
    frames = read_frames(video.path, start=start)
    index = start
    while True:
        boundary = (index // chunk_frames + 1) * chunk_frames
        want = min(predictor.batch_size, boundary - index)
        chunk = []
        for frame in frames:
            chunk.append(frame)
            if len(chunk) == want:
                break
        if not chunk:
            return
        try:
            batch, affines = predictor.prepare(chunk, canvas)
        except ValueError as e:
            raise VideoError(
                f"{video.path}: frames {index}-{index + len(chunk) - 1}: {e}"
            ) from None
        yield index, len(chunk), batch, affines
        index += len(chunk)
        if len(chunk) < want:
            return


def _output_paths(out: Path, video: Path, scorer: str) -> dict[str, Path]:
    stem = f"{video.stem}_{scorer}"
    return {
        "h5": out / f"{stem}.h5",
        "csv": out / f"{stem}.csv",
        "meta": out / f"{stem}_meta.json",
        "labelled": out / f"{stem}_labeled.mp4",
        "partial": out / f"{stem}.partial",
    }


def write_labelled_video(
    video: str | os.PathLike,
    keypoints: np.ndarray,
    confidence: np.ndarray,
    path: str | os.PathLike,
    *,
    bodyparts: Sequence[str],
    fps: float,
    pcutoff: float = 0.6,
    progress: bool = False,
) -> Path:
    """The video with each frame's predictions drawn (crosses; thin below ``pcutoff``).

    Args:
        video: the analysed video (read again, frame by frame).
        keypoints: ``(N, K, 2)`` original px.
        confidence: ``(N, K)``.
        path: output ``.mp4`` (mp4v), written atomically.
        bodyparts: ``(K,)`` names.
        fps: frame rate of the output (NaN: 30).
    """
    from tqdm.auto import tqdm

    path = Path(path)
    fps = fps if math.isfinite(fps) and fps > 0 else 30.0
    writer = None
    with atomic_path(path) as tmp:
        try:
            frames = read_frames(video)
            for f, frame in enumerate(
                tqdm(frames, total=len(keypoints), desc="draw", unit="frame", disable=not progress)
            ):
                if f >= len(keypoints):
                    break
                canvas = draw_predictions(
                    frame,
                    keypoints[f],
                    confidence[f],
                    bodyparts,
                    pcutoff=pcutoff,
                    title=f"frame {f}",
                    min_side=0,
                    panel=False,
                )
                if writer is None:
                    size = (canvas.shape[1], canvas.shape[0])
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                    if not writer.isOpened():
                        raise VideoError(f"{path}: OpenCV could not open a video writer (mp4v)")
                writer.write(canvas)
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise VideoError(f"{video}: no frame to draw")
    return path


def analyze_video(
    predictor: FullFramePredictor,
    video: str | os.PathLike,
    out: str | os.PathLike,
    *,
    info: RunInfo,
    scale: InputScale,
    options: AnalyzeOptions | None = None,
) -> VideoResult:
    """Analyses one video (resuming a partial analysis), writing its DeepLabCut files.

    Args:
        predictor: the run's network at ``scale``, batch size set.
        video: the video file.
        out: output folder.
        info: the run (body parts, scorer, architecture).
        scale: how frames are sized (recorded in the metadata).
        options: see :class:`AnalyzeOptions`.

    Raises:
        VideoError: unreadable video, or a partial analysis made with other settings.
    """
    from tqdm.auto import tqdm

    options = options or AnalyzeOptions()
    video, out = Path(video), Path(out)
    scorer = scorer_name(info)
    paths = _output_paths(out, video, scorer)
    labelled = paths["labelled"] if options.labelled_video else None
    if paths["h5"].is_file() and not options.overwrite:
        if labelled is not None and not labelled.is_file():
            done = read_dlc(paths["h5"])
            meta = json.loads(paths["meta"].read_text()) if paths["meta"].is_file() else {}
            write_labelled_video(
                video,
                done.xy,
                done.likelihood,
                labelled,
                bodyparts=done.bodyparts,
                fps=meta.get("fps") or math.nan,
                pcutoff=options.pcutoff,
                progress=options.progress,
            )
        csv = paths["csv"] if paths["csv"].is_file() else None
        frames = len(read_dlc(paths["h5"]).index)
        return VideoResult(video, paths["h5"], csv, paths["meta"], labelled, frames, True, True)
    if options.overwrite:
        shutil.rmtree(paths["partial"], ignore_errors=True)

    probe = probe_video(video)
    canvas = predictor.canvas_size([(probe.width, probe.height)])
    if canvas[0] * canvas[1] > _LARGE_FRAME_PX:
        warnings.warn(
            f"{video}: {probe.width}x{probe.height} frames at scale {scale.scale_factor:.3g} "
            f"make a {canvas[0]}x{canvas[1]} network input; if memory runs out, lower "
            "batch_size (or analyse at a smaller scale_factor)",
            stacklevel=2,
        )
    store = ChunkStore(
        paths["partial"],
        {
            "video": video.name,
            "frame_size": [probe.width, probe.height],
            "frame_count_reported": probe.frame_count,
            "scorer": scorer,
            "architecture": info.architecture_signature,
            "step": info.step,
            "scale_factor": scale.scale_factor,
            "chunk_frames": options.chunk_frames,
            "bodyparts": list(info.bodyparts),
        },
    )
    start = store.frames_done
    total = probe.frame_count if probe.frame_count > 0 else None
    bar = tqdm(
        total=total,
        initial=start,
        desc=video.name,
        unit="frame",
        disable=not options.progress,
        dynamic_ncols=True,
    )
    pending_points: list[np.ndarray] = []
    pending_conf: list[np.ndarray] = []
    pending_start = start
    chunks_written = 0
    frame = start
    timed_frames, t_first = 0, None
    stopped = False
    batches = None
    try:
        batches = _background(
            _prepared_batches(
                predictor, probe, start=start, chunk_frames=options.chunk_frames, canvas=canvas
            )
        )
        for first, n, batch, affines in batches:
            points, conf = predictor.predict_batch(batch, affines)
            if t_first is None:
                t_first = time.perf_counter()  # after the first (compiling) batch
            else:
                timed_frames += n
            pending_points.append(points)
            pending_conf.append(conf)
            frame = first + n
            bar.update(n)
            if frame % options.chunk_frames == 0:
                store.write(
                    pending_start, np.concatenate(pending_points), np.concatenate(pending_conf)
                )
                pending_points, pending_conf, pending_start = [], [], frame
                chunks_written += 1
                if options.stop_after_chunks and chunks_written >= options.stop_after_chunks:
                    stopped = True
                    break
        if pending_points and not stopped:
            store.write(pending_start, np.concatenate(pending_points), np.concatenate(pending_conf))
    finally:
        if batches is not None:
            batches.close()  # stops the reader thread now, not when garbage-collected
        bar.close()
    elapsed = time.perf_counter() - t_first if t_first is not None else 0.0
    speed = timed_frames / elapsed if timed_frames and elapsed > 0 else math.nan
    if stopped:
        return VideoResult(video, None, None, None, None, frame, False, frames_per_s=speed)

    keypoints, confidence = store.load()
    if not len(keypoints):
        raise VideoError(f"{video}: no frame could be decoded")
    if probe.frame_count and len(keypoints) != probe.frame_count:
        warnings.warn(
            f"{video}: the container reports {probe.frame_count} frames but {len(keypoints)} "
            "were decoded; the predictions have one row per decoded frame",
            stacklevel=2,
        )
    predictions = Keypoints2D(
        xy=keypoints.astype(np.float64),
        likelihood=confidence.astype(np.float64),
        bodyparts=info.bodyparts,
        scorer=scorer,
    )
    write_dlc(paths["h5"], predictions)
    csv = write_dlc(paths["csv"], predictions) if options.save_csv else None
    meta = {
        "video": str(video),
        "frames": len(keypoints),
        "frame_count_reported": probe.frame_count,
        "fps": probe.fps if math.isfinite(probe.fps) else None,
        "frame_size": [probe.width, probe.height],
        "scorer": scorer,
        "run_dir": str(info.run_dir),
        "step": info.step,
        "architecture": info.architecture_signature,
        "bodyparts": list(info.bodyparts),
        "scale_factor": scale.scale_factor,
        "scale_source": scale.source,
        "network_input": list(canvas),
        "batch_size": predictor.batch_size,
        "chunk_frames": options.chunk_frames,
        "resumed_from_frame": start or None,
        "analysis_frames_per_s": speed if math.isfinite(speed) else None,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    atomic_write_text(paths["meta"], json.dumps(meta, indent=1) + "\n")
    if labelled is not None:
        write_labelled_video(
            video,
            keypoints,
            confidence,
            labelled,
            bodyparts=info.bodyparts,
            fps=probe.fps,
            pcutoff=options.pcutoff,
            progress=options.progress,
        )
    if not options.keep_partial:
        store.remove()
    return VideoResult(
        video, paths["h5"], csv, paths["meta"], labelled, len(keypoints), True, frames_per_s=speed
    )


def _analysis_scale(info: RunInfo, options: AnalyzeOptions, data) -> InputScale:
    """The run's scale; runs without a fixed scale need their training frames for it."""
    if options.scale_factor is not None or augment_config(info).crop_mode == "fixed_scale":
        return run_input_scale(info, scale_factor=options.scale_factor)
    try:
        run_frames = load_run_frames(info, data=data)
    except (DatasetError, EvaluationError, OSError) as e:
        raise EvaluationError(
            f"{info.run_dir}: trained with crop_mode={augment_config(info).crop_mode}, so the "
            f"scale of whole frames comes from its training frames, which cannot be read ({e}); "
            "pass scale_factor=<input px per original px>, or data=<the run's project>"
        ) from None
    return run_input_scale(info, train_frames=run_frames.frames.subset(run_frames.train))


def analyze_videos(
    run_dir: str | os.PathLike,
    videos: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    step: int | None = None,
    data: str | os.PathLike | None = None,
    options: AnalyzeOptions | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> list[VideoResult]:
    """Analyses videos with a trained run (see the module docstring for the outputs).

    Args:
        run_dir: a folder written by ``jaxpose train``.
        videos: a video file, a folder of videos, or a list of either.
        out: output folder.
        step: checkpoint step; default the newest.
        data: the run's labelled data, only needed to find the scale of runs trained without
            ``crop_mode=fixed_scale`` when the run's own data path is gone.
        options: see :class:`AnalyzeOptions`.
        extensions: video file extensions looked for in folders.

    Raises:
        CheckpointError: no run folder or checkpoint.
        VideoError: a missing or unreadable video.
        EvaluationError: the scale cannot be found.
    """
    options = options or AnalyzeOptions()
    files = find_videos(videos, extensions=extensions)
    model, info = load_trained(run_dir, step=step)
    scale = _analysis_scale(info, options, data)
    predictor = FullFramePredictor(
        model,
        scale_factor=scale.scale_factor,
        batch_size=options.batch_size,
        antialias=augment_config(info).antialias,
    )
    return [
        analyze_video(predictor, video, out, info=info, scale=scale, options=options)
        for video in files
    ]
