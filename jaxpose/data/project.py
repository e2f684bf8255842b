"""Labelled frames of a DeepLabCut project (or a Lightning Pose data set) as they lie on disk.

A DeepLabCut project is a folder with `config.yaml` (body parts, skeleton) and one label file
per video under `labeled-data/<video>/CollectedData_<scorer>.h5` (or `.csv`), whose index names
each labelled image relative to the project root, e.g. `labeled-data/m4s1/img0000.png`
(DeepLabCut 2.2+ splits that path into three index columns; `jaxpose.io.dlc` joins them).
Lightning Pose keeps one `CollectedData.csv` at the data set root and no `config.yaml`.

Coordinates are pixels, x right and y down, with integer values at pixel centres (OpenCV's and
matplotlib's convention, which the labelling GUIs use). NaN marks an unlabelled point.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

from jaxpose.io.dlc import KeypointFileError, read_dlc_multi

LABEL_SUFFIXES = (".h5", ".csv")  # h5 first: DeepLabCut treats the h5 as the source of truth


class DatasetError(ValueError):
    """A labelled data set is malformed; the message names the file, frame or body part."""


# ---------------------------------------------------------------------------------------------
# Images


def _png_size(head: bytes) -> tuple[int, int] | None:
    # PNG: 8-byte signature, then the IHDR chunk (length, b"IHDR", width, height).
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    return None


def _jpeg_size(path: Path) -> tuple[int, int] | None:
    # JPEG: walk the marker segments to the first start-of-frame (SOF0..SOF15 but DHT, JPG, DAC).
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return None
        while True:
            byte = f.read(1)
            while byte and byte != b"\xff":
                byte = f.read(1)
            while byte == b"\xff":
                byte = f.read(1)
            if not byte:
                return None
            marker = byte[0]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                continue  # markers without a length
            raw = f.read(2)
            if len(raw) < 2:
                return None
            length = struct.unpack(">H", raw)[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                data = f.read(5)
                if len(data) < 5:
                    return None
                height, width = struct.unpack(">HH", data[1:5])
                return width, height
            f.seek(length - 2, os.SEEK_CUR)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, read from the PNG/JPEG header without decoding.

    Other formats (and headers that do not parse) are decoded in full.

    Raises:
        DatasetError: the file is missing or is not a readable image.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(24)
        size = _png_size(head) or (_jpeg_size(path) if head[:2] == b"\xff\xd8" else None)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read image file ({e.strerror})") from None
    if size is not None and min(size) > 0:
        return int(size[0]), int(size[1])
    image = read_image(path)
    return image.shape[1], image.shape[0]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as RGB.

    Grey or single-channel images are repeated into 3 channels, an alpha channel is dropped and
    16-bit images are scaled to 8 bits. EXIF orientation is ignored: labels refer to the stored
    pixel grid.

    Returns:
        (H, W, 3) uint8, RGB.

    Raises:
        DatasetError: the file is missing, or cannot be decoded (corrupt or not an image).
    """
    path = Path(path)
    try:
        # np.fromfile + imdecode rather than imread: imread fails silently on non-ASCII paths.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read image file ({e.strerror})") from None
    image = None
    if data.size:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise DatasetError(
            f"{path}: cannot decode the image (corrupt, truncated or not an image file); "
            f"replace the file or remove its label row"
        )
    return image


# ---------------------------------------------------------------------------------------------
# Left/right pairs


_SIDE_WORDS = {"left": "right", "right": "left"}
_SIDE_LETTERS = {"l": "r", "r": "l"}
# A name split into word-ish tokens and the separators between them: "ear_L" -> ear, _, L;
# camelCase splits too ("earL" -> ear, L), but a run of capitals stays one token ("LH").
_TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^A-Za-z\d]+")


def _match_case(word: str, like: str) -> str:
    if like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word.capitalize()
    return word


def _mirror_name(name: str) -> str:
    """The name a body part would have on the other side: left<->right anywhere in the name
    (`leftear` -> `rightear`), and L<->R where one letter is a token (`ear_L`, `L_ear`, `earL`).
    """
    swapped = re.sub(
        "left|right",
        lambda m: _match_case(_SIDE_WORDS[m.group().lower()], m.group()),
        name,
        flags=re.IGNORECASE,
    )
    if swapped != name:
        return swapped
    tokens = _TOKEN.findall(name)
    out = [
        _match_case(_SIDE_LETTERS[t.lower()], t) if t.lower() in _SIDE_LETTERS else t
        for t in tokens
    ]
    return "".join(out)


def infer_flip_pairs(bodyparts: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Left/right body part pairs that a horizontal flip swaps, guessed from their names.

    `leftear`/`rightear`, `Left_paw`/`Right_paw`, `ear_L`/`ear_R` pair up; names such as
    `paw1LH_top` (no body part named `paw1RH_top`) pair with nothing.

    Returns:
        (i, j) index pairs with i < j, sorted.
    """
    index = {name: i for i, name in enumerate(bodyparts)}
    pairs = set()
    for i, name in enumerate(bodyparts):
        j = index.get(_mirror_name(name))
        if j is not None and j != i:
            pairs.add((min(i, j), max(i, j)))
    return tuple(sorted(pairs))


def body_part_pairs(
    pairs, bodyparts: Sequence[str], *, option: str, where: str, hint: str = ""
) -> list[tuple[int, int]]:
    """Pairs of body parts given by name or index (bones, left/right pairs) -> index pairs.

    Args:
        pairs: ``[[a, b], ...]`` of body-part names or indices; ``None`` is no pair.
        bodyparts: the data set's body parts, in order.
        option: the option's name, for the errors (``"flip_pairs"``, ``"bones"``).
        where: what holds the option (a file, a folder), for the errors.
        hint: appended to every error message (what to fix).

    Returns:
        ``[(i, j), ...]`` in the order given.

    Raises:
        DatasetError: an entry that is not a pair, an unknown name, an index out of range, or a
            body part paired with itself; the message names the entry, ``option`` and ``where``.
    """
    parts = list(bodyparts)
    out = []
    for pair in () if pairs is None else pairs:
        if isinstance(pair, str) or len(pair) != 2:
            raise DatasetError(f"{where}: {option} entry {pair!r} is not a pair [a, b]{hint}")
        idx = []
        for p in pair:
            if isinstance(p, int | np.integer) and not isinstance(p, bool):
                if not 0 <= p < len(parts):
                    raise DatasetError(
                        f"{where}: {option} entry {list(pair)}: index {p} is outside the "
                        f"{len(parts)} body parts {parts}{hint}"
                    )
                idx.append(int(p))
            elif str(p) in parts:
                idx.append(parts.index(str(p)))
            else:
                raise DatasetError(
                    f"{where}: {option} entry {list(pair)} names {p!r}, not a body part; the "
                    f"body parts are {parts}{hint}"
                )
        if idx[0] == idx[1]:
            raise DatasetError(
                f"{where}: {option} entry {list(pair)} pairs a body part with itself{hint}"
            )
        out.append((idx[0], idx[1]))
    return out


def config_skeleton(
    config, bodyparts: Sequence[str], *, where: str | None
) -> tuple[tuple[tuple[str, str], ...], list]:
    """The ``skeleton`` of a DeepLabCut ``config.yaml`` (already parsed), split by body parts.

    Returns:
        ``(kept, dropped)``: the bones whose two ends are both in ``bodyparts``, as name pairs,
        and the entries naming a body part that is not.

    Raises:
        DatasetError: an entry that is not a pair (the message names ``where``).
    """
    kept, dropped = [], []
    for pair in (config.get("skeleton") if isinstance(config, dict) else None) or ():
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise DatasetError(f"{where}: skeleton entry {pair!r} is not a pair [a, b]")
        if all(str(p) in bodyparts for p in pair):
            kept.append((str(pair[0]), str(pair[1])))
        else:
            dropped.append(list(pair))
    return tuple(kept), dropped


def _flip_pairs(pairs, bodyparts: Sequence[str], where: str) -> tuple[tuple[int, int], ...]:
    """Name or index pairs -> validated (i, j) index pairs, i < j; errors name `where`."""
    out = [
        (min(i, j), max(i, j))
        for i, j in body_part_pairs(pairs, bodyparts, option="flip_pairs", where=where)
    ]
    out = list(dict.fromkeys(out))
    used = [i for pair in out for i in pair]
    twice = sorted({bodyparts[i] for i in used if used.count(i) > 1})
    if twice:
        # A part swapped with two others has no single mirror image.
        raise DatasetError(f"{where}: flip_pairs use body part(s) {twice} more than once")
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# The data set


@dataclasses.dataclass(frozen=True, eq=False)
class LabelledFrames:
    """Labelled images of one animal: what a 2D pose network trains on.

    Attributes:
        root: the project (data set) folder.
        images: (N,) absolute image paths.
        keypoints: (N, K, 2) float32 pixel coordinates in each image; NaN = unlabelled.
        bodyparts: (K,) names.
        skeleton: body part name pairs to draw as lines.
        flip_pairs: (i, j) body part index pairs a horizontal flip swaps (left/right).
        image_sizes: (N, 2) int (width, height) of each image; frames may differ in size.
        name: a short name for reports (the project folder's name).
        label_files: (N,) the label file each frame was read from, for error messages.
    """

    root: Path
    images: tuple[Path, ...]
    keypoints: np.ndarray
    bodyparts: tuple[str, ...]
    skeleton: tuple[tuple[str, str], ...] = ()
    flip_pairs: tuple[tuple[int, int], ...] = ()
    image_sizes: np.ndarray | None = None
    name: str = ""
    label_files: tuple[Path, ...] = ()

    def __post_init__(self):
        images = tuple(Path(p) for p in self.images)
        keypoints = np.asarray(self.keypoints, dtype=np.float32)
        bodyparts = tuple(str(b) for b in self.bodyparts)
        n, k = len(images), len(bodyparts)
        if keypoints.shape != (n, k, 2):
            raise ValueError(
                f"LabelledFrames.keypoints must have shape (N, K, 2) = ({n}, {k}, 2) for "
                f"{n} images and {k} body parts, got {keypoints.shape}"
            )
        if self.image_sizes is None:
            sizes = np.array([image_size(p) for p in images], dtype=np.int64).reshape(n, 2)
        else:
            sizes = np.asarray(self.image_sizes, dtype=np.int64)
        if sizes.shape != (n, 2):
            raise ValueError(
                f"LabelledFrames.image_sizes must have shape ({n}, 2), got {sizes.shape}"
            )
        label_files = tuple(Path(p) for p in self.label_files)
        if label_files and len(label_files) != n:
            raise ValueError(f"LabelledFrames.label_files has {len(label_files)} entries for {n}")
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "bodyparts", bodyparts)
        object.__setattr__(self, "image_sizes", sizes)
        object.__setattr__(self, "label_files", label_files)
        object.__setattr__(self, "skeleton", tuple((str(a), str(b)) for a, b in self.skeleton))
        object.__setattr__(
            self,
            "flip_pairs",
            _flip_pairs(self.flip_pairs, bodyparts, "LabelledFrames"),
        )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_keypoints(self) -> int:
        return len(self.bodyparts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelledFrames:
        """The frames at `indices` (in that order), everything else shared."""
        idx = np.asarray(indices, dtype=np.intp).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset indices out of range for {len(self)} frames")
        return dataclasses.replace(
            self,
            images=tuple(self.images[i] for i in idx),
            keypoints=self.keypoints[idx],
            image_sizes=self.image_sizes[idx],
            label_files=tuple(self.label_files[i] for i in idx) if self.label_files else (),
        )

    def split(self, train_fraction: float, seed: int) -> tuple[LabelledFrames, LabelledFrames]:
        """Seeded random train/test split (see `split_indices`)."""
        train, test = split_indices(len(self), train_fraction, seed)
        return self.subset(train), self.subset(test)

    def load_image(self, i: int) -> np.ndarray:
        """Image `i` as (H, W, 3) uint8 RGB (grey frames become 3 equal channels).

        Raises:
            DatasetError: the file is missing or corrupt; the message names it and its label file.
        """
        try:
            return read_image(self.images[i])
        except DatasetError as e:
            if self.label_files:
                raise DatasetError(f"{e} (labelled in {self.label_files[i]})") from None
            raise

    def check_images(self) -> None:
        """Decode every image once, so a corrupt file fails now rather than mid-training.

        Raises:
            DatasetError: the first image that cannot be decoded, or whose size changed.
        """
        for i in range(len(self)):
            image = self.load_image(i)
            if (image.shape[1], image.shape[0]) != tuple(self.image_sizes[i]):
                raise DatasetError(
                    f"{self.images[i]}: decoded size {image.shape[1]}x{image.shape[0]} differs "
                    f"from its header size {tuple(self.image_sizes[i])}"
                )


def split_indices(n: int, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """DeepLabCut-style split: a seeded permutation, the first round(fraction * n) train.

    The same (n, train_fraction, seed) always gives the same split.

    Returns:
        (train, test) sorted int64 index arrays that together cover 0..n-1 once.
    """
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    num_train = int(round(n * train_fraction))
    if n and num_train == 0:
        raise ValueError(f"train_fraction {train_fraction} leaves no training frame of {n}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:num_train]), np.sort(order[num_train:])


# ---------------------------------------------------------------------------------------------
# Loading


def _read_config(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise DatasetError(f"{path}: cannot read the project config ({e})") from None
    if not isinstance(config, dict):
        raise DatasetError(f"{path}: expected a YAML mapping (DeepLabCut config.yaml)")
    if config.get("multianimalproject") or config.get("bodyparts") == "MULTI!":
        raise DatasetError(
            f"{path}: multi-animal DeepLabCut projects are not supported yet; "
            f"convert to a single-animal project"
        )
    bodyparts = config.get("bodyparts")
    if bodyparts is not None and (
        not isinstance(bodyparts, list) or not all(isinstance(b, str) for b in bodyparts)
    ):
        raise DatasetError(f"{path}: 'bodyparts' must be a list of names, got {bodyparts!r}")
    return config


def _find_label_files(folder: Path) -> list[Path]:
    """Label files of a project: one per labeled-data/<video>/ (h5 preferred), else at root."""
    found = []
    for sub in sorted(p for p in (folder / "labeled-data").glob("*") if p.is_dir()):
        for suffix in LABEL_SUFFIXES:
            files = sorted(sub.glob(f"CollectedData*{suffix}"))
            if files:
                found.extend(files)
                break
    if not found:
        for suffix in LABEL_SUFFIXES:
            found = sorted(folder.glob(f"CollectedData*{suffix}"))
            if found:
                break
    return found


def _resolve_image(entry: str, roots: Sequence[Path], label_file: Path) -> Path | None:
    """Where an index entry's image is: under a root, or beside its label file."""
    path = Path(entry)
    if path.is_absolute() and path.is_file():
        return path
    candidates = [root / entry for root in roots]
    # Moved projects keep images beside the label file under another folder name.
    candidates.append(label_file.parent / Path(entry.replace("\\", "/")).name)
    for c in candidates:
        if c.is_file():
            return Path(os.path.abspath(c))
    return None


def _pick_root(label_file: Path, entries: Sequence[str]) -> Path:
    """The folder the index paths are relative to: the label file's own or an ancestor."""
    candidates = [label_file.parent, *list(label_file.parent.parents)[:3]]
    sample = list(entries[:20])
    counts = [sum((c / e).is_file() for e in sample) for c in candidates]
    return candidates[int(np.argmax(counts))]  # ties: the nearest folder


def load_dlc_project(
    path: str | os.PathLike,
    *,
    bodyparts: Sequence[str] | None = None,
    flip_pairs: Sequence[Sequence[str | int]] | None = None,
) -> LabelledFrames:
    """Read a DeepLabCut project's labelled frames, or one CollectedData file.

    Args:
        path: a project folder (`config.yaml` + `labeled-data/*/CollectedData_*.h5|csv`, or a
            Lightning Pose folder with a root `CollectedData.csv`), or a single label file whose
            index holds image paths relative to its own folder or an ancestor folder.
        bodyparts: keep only these body parts, in this order. Default: `config.yaml`'s list when
            there is one, else the label files' own order.
        flip_pairs: left/right pairs (names or indices) a horizontal flip swaps. Default: the
            config's `flip_pairs` key if present, else inferred from the names
            (`infer_flip_pairs`).

    Returns:
        All labelled frames (one per label row, label files in folder order). Frames without any
        labelled point are kept: their crop is the whole image.

    Raises:
        DatasetError: no label files; a label file names body parts the config lacks; an image
            is missing (the message names it and the label file); `bodyparts` names an
            unknown part.

    Warns:
        UserWarning: config body parts absent from a label file (their columns become NaN).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such project folder or label file")
    if path.is_dir():
        folder = path
        label_files = _find_label_files(folder)
        if not label_files:
            raise DatasetError(
                f"{folder}: no label files; expected labeled-data/<video>/CollectedData_*.h5 "
                f"(or .csv), or a CollectedData*.csv at the top level"
            )
        config_path = folder / "config.yaml"
    else:
        folder = None
        label_files = [path]
        config_path = None

    tables = []
    for label_file in label_files:
        try:
            animals = read_dlc_multi(label_file)
        except KeypointFileError as e:
            raise DatasetError(str(e)) from None
        if len(animals) != 1:
            raise DatasetError(
                f"{label_file}: multi-animal labels (individuals {list(animals)}) are not "
                f"supported yet; export one individual"
            )
        tables.append(next(iter(animals.values())))

    # The root the index paths are relative to: the project folder, or for a lone label file
    # whichever of its ancestors holds the images (Lightning Pose keeps the CSV at the root).
    if folder is None:
        entries = [str(e) for e in tables[0].index]
        folder = _pick_root(path, entries)
        if (folder / "config.yaml").is_file():
            config_path = folder / "config.yaml"
    config = _read_config(config_path) if config_path and config_path.is_file() else {}
    config_where = str(config_path) if config else None

    config_parts = config.get("bodyparts")
    if config_parts:
        reference = tuple(config_parts)
        for table in tables:
            unknown = [b for b in table.bodyparts if b not in reference]
            if unknown:
                raise DatasetError(
                    f"{table.source}: body part(s) {unknown} are not in {config_where}'s "
                    f"bodyparts {list(reference)}; add them to the config or relabel"
                )
    else:
        reference = tuple(dict.fromkeys(b for t in tables for b in t.bodyparts))

    if bodyparts is not None:
        if isinstance(bodyparts, str):
            bodyparts = [bodyparts]
        unknown = [b for b in bodyparts if b not in reference]
        if unknown:
            raise DatasetError(
                f"{config_where or label_files[0]}: no body part(s) {unknown}; the body parts "
                f"are {list(reference)}"
            )
        chosen = tuple(str(b) for b in bodyparts)
    else:
        chosen = reference

    images, keypoints, sources = [], [], []
    for table in tables:
        label_file = Path(table.source)
        absent = [b for b in chosen if b not in table.bodyparts]
        if absent:
            warnings.warn(
                f"{label_file}: no labels for body part(s) {absent}; they are NaN in its frames",
                stacklevel=2,
            )
        xy = np.full((table.num_frames, len(chosen), 2), np.nan, dtype=np.float32)
        for k, b in enumerate(chosen):
            if b in table.bodyparts:
                xy[:, k] = table.xy[:, table.bodyparts.index(b)]
        roots = [folder] if path.is_dir() else [folder, label_file.parent]
        for entry, frame_xy in zip(table.index, xy, strict=True):
            image = _resolve_image(str(entry), roots, label_file)
            if image is None:
                raise DatasetError(
                    f"{folder / str(entry)}: image not found, referenced by {label_file}; "
                    f"restore the image or remove its row from the label file"
                )
            images.append(image)
            keypoints.append(frame_xy)
            sources.append(label_file)

    skeleton, dropped = config_skeleton(config, chosen, where=config_where)
    if dropped and bodyparts is None:
        warnings.warn(
            f"{config_where}: skeleton edge(s) {dropped} name body parts not in "
            f"{list(chosen)}; ignored",
            stacklevel=2,
        )

    if flip_pairs is not None:
        pairs = _flip_pairs(flip_pairs, chosen, "load_dlc_project(flip_pairs=...)")
    elif "flip_pairs" in config:
        # Names are checked against the config's full list, then kept where both are chosen.
        named = _flip_pairs(config["flip_pairs"], reference, config_where)
        pairs = tuple(
            (chosen.index(reference[i]), chosen.index(reference[j]))
            for i, j in named
            if reference[i] in chosen and reference[j] in chosen
        )
    else:
        pairs = infer_flip_pairs(chosen)

    return LabelledFrames(
        root=Path(os.path.abspath(folder)),
        images=tuple(images),
        keypoints=np.stack(keypoints) if keypoints else np.zeros((0, len(chosen), 2)),
        bodyparts=chosen,
        skeleton=tuple(skeleton),
        flip_pairs=pairs,
        name=Path(os.path.abspath(folder)).name,
        label_files=tuple(sources),
    )
