"""DeepLabCut 2D keypoint files (`.h5` and `.csv`), as written by DeepLabCut and Lightning Pose.

Both formats hold one pandas DataFrame. Columns are a MultiIndex with levels
`scorer / bodyparts / coords` (single animal) or `scorer / individuals / bodyparts / coords`
(multi-animal); `coords` is `x`, `y` and, for network predictions, `likelihood`. Rows are frames:
an integer frame number for predictions, or an image path such as
`labeled-data/m4s1/img0000.png` for human labels. Missing labels are NaN.

CSV layout, 3 header rows (4 with `individuals`), then one row per frame:

    scorer,Pranav,Pranav,...
    bodyparts,snout,snout,...
    coords,x,y,...
    labeled-data/m4s1/img0000.png,21.521,265.428,...

DeepLabCut 2.2+ splits the image path of labelled data into 3 index columns
(`labeled-data,m4s1,img0000.png`, with `scorer,,,Pranav` above); the reader joins them with `/`.

Everything is float64, and CSVs are written with the shortest exact repr (pandas' default),
which pandas 3 parses back exactly, so `read_dlc(write_dlc(x)) == x` exactly in both formats.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from jaxpose.io.atomic import atomic_path, atomic_write_text

H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
H5_KEY = "df_with_missing"  # the key DeepLabCut writes and most tools look for
LEVELS = ("scorer", "individuals", "bodyparts", "coords")
_INT = re.compile(r"[+-]?\d+")


class KeypointFileError(ValueError):
    """A keypoint file is missing, unreadable or malformed; the message names the file."""


@dataclasses.dataclass(frozen=True, eq=False)
class Keypoints2D:
    """2D keypoints of one animal seen by one camera, as stored in a DeepLabCut file.

    Attributes:
        xy: (frame, kpt, 2) float64 pixel coordinates, x right and y down from the top-left
            corner; NaN where a keypoint is missing.
        likelihood: (frame, kpt) float64 network confidence, or None for human labels.
        bodyparts: keypoint names, one per `kpt`.
        scorer: the labeller's or the network's name (DeepLabCut's `scorer` level).
        index: one name per frame: an image path (str) for labelled frames, or an int frame
            number for predictions.
        source: the file these keypoints were read from, for error messages only.
    """

    xy: np.ndarray
    likelihood: np.ndarray | None
    bodyparts: tuple[str, ...]
    scorer: str = ""
    index: tuple = ()
    source: str | None = None

    def __post_init__(self):
        xy = np.asarray(self.xy, dtype=np.float64)
        where = f" (from {self.source})" if self.source else ""
        if xy.ndim != 3 or xy.shape[-1] != 2:
            raise ValueError(
                f"Keypoints2D.xy must have shape (frame, kpt, 2), got {xy.shape}{where}"
            )
        object.__setattr__(self, "xy", xy)
        if self.likelihood is not None:
            lik = np.asarray(self.likelihood, dtype=np.float64)
            if lik.shape != xy.shape[:2]:
                raise ValueError(
                    f"Keypoints2D.likelihood must have shape (frame, kpt) = {xy.shape[:2]}, "
                    f"got {lik.shape}{where}"
                )
            object.__setattr__(self, "likelihood", lik)
        bodyparts = tuple(str(b) for b in self.bodyparts)
        if len(bodyparts) != xy.shape[1]:
            raise ValueError(
                f"Keypoints2D has {len(bodyparts)} body part names "
                f"for {xy.shape[1]} keypoints{where}"
            )
        repeated = sorted({b for b in bodyparts if bodyparts.count(b) > 1})
        if repeated:
            raise ValueError(
                f"Keypoints2D body part names must be unique, repeated: {repeated}{where}"
            )
        object.__setattr__(self, "bodyparts", bodyparts)
        # An empty index means "frames 0, 1, ...", the natural default for predictions.
        index = tuple(self.index) if len(self.index) else tuple(range(xy.shape[0]))
        if len(index) != xy.shape[0]:
            raise ValueError(
                f"Keypoints2D.index has {len(index)} entries for {xy.shape[0]} frames{where}"
            )
        object.__setattr__(self, "index", index)

    @property
    def num_frames(self) -> int:
        return self.xy.shape[0]

    @property
    def num_keypoints(self) -> int:
        return self.xy.shape[1]

    def confidence(self) -> np.ndarray:
        """Per-keypoint weight in [0, 1], shape (frame, kpt).

        The likelihood where there is one; for human labels 1 where labelled. Missing points
        (NaN x or y, or NaN likelihood) get 0, so downstream code can weight rather than branch.
        """
        present = np.isfinite(self.xy).all(axis=-1)
        if self.likelihood is None:
            return present.astype(np.float64)
        return np.where(present & np.isfinite(self.likelihood), self.likelihood, 0.0)

    def select(self, bodyparts: Sequence[str]) -> Keypoints2D:
        """Keep only `bodyparts`, in the order given.

        Raises:
            KeypointFileError: a name is not one of `self.bodyparts`.
        """
        if isinstance(bodyparts, str):
            bodyparts = [bodyparts]
        missing = [b for b in bodyparts if b not in self.bodyparts]
        if missing:
            raise KeypointFileError(
                f"{self.source or 'keypoints'}: no body part(s) {missing}; "
                f"the body parts are {list(self.bodyparts)}"
            )
        idx = np.asarray([self.bodyparts.index(b) for b in bodyparts], dtype=np.intp)
        return dataclasses.replace(
            self,
            xy=self.xy[:, idx],
            likelihood=None if self.likelihood is None else self.likelihood[:, idx],
            bodyparts=tuple(bodyparts),
        )


# ---------------------------------------------------------------------------------------------
# Reading


@dataclasses.dataclass(frozen=True)
class _Table:
    """A DeepLabCut frame in neutral form: one label tuple per column, named by `levels`."""

    levels: tuple[str, ...]
    columns: list[tuple[str, ...]]
    values: np.ndarray  # (frame, column) float64
    index: tuple


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in H5_SUFFIXES:
        return "h5"
    if suffix == ".csv":
        return "csv"
    raise KeypointFileError(
        f"{path}: unknown keypoint file type {path.suffix!r}; expected .h5 or .csv"
    )


def _index_entry(value) -> str | int:
    """One frame name: DLC 3's (folder, video, image) tuples become one path, ints stay ints."""
    if isinstance(value, tuple):
        value = "/".join(str(v) for v in value if not (isinstance(v, float) and np.isnan(v)))
    if isinstance(value, np.integer | int) and not isinstance(value, bool):
        return int(value)
    # Labels made on Windows store `labeled-data\video\img.png`.
    return str(value).replace("\\", "/")


def _short_reason(error: Exception) -> str:
    """PyTables errors carry a long HDF5 back trace; keep its innermost cause and summary."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if not lines:
        return type(error).__name__
    end = "End of HDF5 error back trace"
    if end in lines and lines.index(end) > 0:
        return f"{lines[lines.index(end) - 1]}; {lines[-1]}"
    return lines[-1]


def _read_h5_table(path: Path) -> _Table:
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = store.keys()
            if not keys:
                raise KeypointFileError(
                    f"{path}: HDF5 file holds no pandas table; expected a DeepLabCut file "
                    f"with key '{H5_KEY}'"
                )
            key = "/" + H5_KEY if "/" + H5_KEY in keys else keys[0]
            df = store.get(key)
    except KeypointFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as e:
        raise KeypointFileError(
            f"{path}: not a readable pandas HDF5 file ({_short_reason(e)}); "
            f"expected a DeepLabCut .h5 written with DataFrame.to_hdf"
        ) from None
    if not isinstance(df, pd.DataFrame):
        raise KeypointFileError(f"{path}: key {key!r} holds a {type(df).__name__}, not a DataFrame")
    if not isinstance(df.columns, pd.MultiIndex):
        raise KeypointFileError(
            f"{path}: columns are not a MultiIndex; expected DeepLabCut levels "
            f"scorer/bodyparts/coords, got columns {list(df.columns)[:6]}"
        )
    nlev = df.columns.nlevels
    names = tuple(df.columns.names)
    if any(n is None for n in names):
        # Files written without level names: DLC's order is the only sensible reading.
        if nlev == 3:
            names = ("scorer", "bodyparts", "coords")
        elif nlev == 4:
            names = LEVELS
        else:
            raise KeypointFileError(
                f"{path}: {nlev} unnamed column levels; expected 3 (scorer/bodyparts/coords) "
                f"or 4 (scorer/individuals/bodyparts/coords)"
            )
    try:
        values = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise KeypointFileError(f"{path}: non-numeric keypoint values ({e})") from None
    columns = [tuple(str(v) for v in c) for c in df.columns]
    index = tuple(_index_entry(v) for v in df.index)
    return _Table(names, columns, values, index)


def _read_csv_table(path: Path) -> _Table:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            head = []
            for row in csv.reader(f):
                head.append(row)
                if len(head) == len(LEVELS) + 1:
                    break
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise KeypointFileError(f"{path}: cannot read as a text CSV ({e})") from None

    levels = []
    for row in head:
        if not row or row[0].strip() not in LEVELS:
            break
        levels.append(row[0].strip())
    if "bodyparts" not in levels or "coords" not in levels or levels[-1] != "coords":
        first = head[0][:4] if head else "empty file"
        raise KeypointFileError(
            f"{path}: no DeepLabCut header; expected rows starting 'scorer', 'bodyparts', "
            f"'coords' (and 'individuals' for multi-animal files) before the data, got {first}"
        )
    n_header = len(levels)
    header = head[:n_header]
    # Index columns have empty header cells: one for a path or frame number, three for
    # DeepLabCut 2.2+'s (labeled-data, video, image) split.
    n_index = 1
    while n_index < len(header[0]) and all(
        n_index < len(r) and not r[n_index].strip() for r in header
    ):
        n_index += 1
    widths = {len(r) for r in header}
    if len(widths) != 1:
        raise KeypointFileError(f"{path}: header rows have different lengths {sorted(widths)}")
    columns = [tuple(r[i] for r in header) for i in range(n_index, len(header[0]))]

    try:
        df = pd.read_csv(
            path,
            header=None,
            skiprows=n_header,
            dtype={i: str for i in range(n_index)},
        )
    except pd.errors.EmptyDataError:
        df = pd.DataFrame(np.zeros((0, n_index + len(columns))))
    except (ValueError, UnicodeDecodeError) as e:
        raise KeypointFileError(f"{path}: malformed CSV data ({e})") from None
    if df.shape[1] != n_index + len(columns):
        raise KeypointFileError(
            f"{path}: data rows have {df.shape[1]} fields but the header names "
            f"{n_index} index column(s) and {len(columns)} keypoint columns"
        )
    data = df.iloc[:, n_index:]
    bad = [columns[i] for i, t in enumerate(data.dtypes) if not pd.api.types.is_numeric_dtype(t)]
    if bad:
        raise KeypointFileError(f"{path}: non-numeric values in column(s) {bad[:3]}")
    values = data.to_numpy(dtype=np.float64)

    index_cols = [df.iloc[:, i].tolist() for i in range(n_index)]
    rows = []
    for parts in zip(*index_cols, strict=True):
        parts = tuple(p for p in parts if isinstance(p, str) and p)
        rows.append(parts[0] if len(parts) == 1 else parts)  # () joins to ""
    if rows and all(isinstance(r, str) and _INT.fullmatch(r.strip()) for r in rows):
        index = tuple(int(r) for r in rows)
    else:
        index = tuple(_index_entry(r) for r in rows)
    return _Table(tuple(levels), columns, values, index)


def _read_table(path: str | os.PathLike) -> tuple[Path, _Table]:
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise KeypointFileError(f"{path}: keypoint file not found")
    return path, _read_h5_table(path) if kind == "h5" else _read_csv_table(path)


def _split(path: Path, table: _Table) -> dict[str | None, Keypoints2D]:
    """Group a table's columns by individual (None for single-animal files)."""
    level = {name: i for i, name in enumerate(table.levels)}
    for need in ("bodyparts", "coords"):
        if need not in level:
            raise KeypointFileError(
                f"{path}: no '{need}' column level; levels are {list(table.levels)}, "
                f"expected scorer/bodyparts/coords"
            )
    scorers = [""]
    if "scorer" in level:
        scorers = list(dict.fromkeys(c[level["scorer"]] for c in table.columns))
    if len(scorers) > 1:
        raise KeypointFileError(
            f"{path}: several scorers {scorers}; expected one per file (split it first)"
        )
    scorer = scorers[0] if scorers else ""

    groups: dict[str | None, dict[tuple[str, str], int]] = {}
    for col, labels in enumerate(table.columns):
        ind = labels[level["individuals"]] if "individuals" in level else None
        key = (labels[level["bodyparts"]], labels[level["coords"]])
        cols = groups.setdefault(ind, {})
        if key in cols:
            raise KeypointFileError(
                f"{path}: column {labels} appears twice; expected one column per "
                f"(body part, coordinate)"
            )
        cols[key] = col

    out = {}
    for ind, cols in groups.items():
        who = f" (individual {ind!r})" if ind is not None else ""
        bodyparts = list(dict.fromkeys(bp for bp, _ in cols))
        for bp in bodyparts:
            lacking = [c for c in ("x", "y") if (bp, c) not in cols]
            if lacking:
                raise KeypointFileError(
                    f"{path}: body part {bp!r}{who} has no {'/'.join(lacking)} coords column; "
                    f"expected coords x and y (and optionally likelihood) for every body part"
                )
        with_lik = [bp for bp in bodyparts if (bp, "likelihood") in cols]
        if with_lik and len(with_lik) != len(bodyparts):
            raise KeypointFileError(
                f"{path}: only some body parts{who} have a likelihood column "
                f"({sorted(set(bodyparts) - set(with_lik))} lack one); expected all or none"
            )
        take = lambda c: table.values[:, [cols[(bp, c)] for bp in bodyparts]]  # noqa: B023
        xy = np.stack([take("x"), take("y")], axis=-1)
        likelihood = take("likelihood") if with_lik else None
        out[ind] = Keypoints2D(
            xy=xy,
            likelihood=likelihood,
            bodyparts=tuple(bodyparts),
            scorer=scorer,
            index=table.index,
            source=str(path),
        )
    if not out:
        raise KeypointFileError(f"{path}: no keypoint columns")
    return out


def read_dlc(path: str | os.PathLike, *, individual: str | None = None) -> Keypoints2D:
    """Read one animal's keypoints from a DeepLabCut / Lightning Pose `.h5` or `.csv` file.

    Args:
        path: a `.h5` (any pandas key; `df_with_missing` preferred) or `.csv` file.
        individual: for multi-animal files, which individual to read. When omitted the first
            one is read, with a warning; see `read_dlc_multi` for all of them.

    Returns:
        The keypoints, with `source` set to `path`.

    Raises:
        KeypointFileError: the file is missing, unreadable, lacks x/y columns, or
            `individual` is not in it.
    """
    path, table = _read_table(path)
    groups = _split(path, table)
    if None in groups:
        if individual is not None:
            raise KeypointFileError(
                f"{path}: single-animal file (no 'individuals' level), but individual "
                f"{individual!r} was asked for; omit `individual`"
            )
        return groups[None]
    names = list(groups)
    if individual is None:
        warnings.warn(
            f"{path}: multi-animal file with individuals {names}; reading only {names[0]!r}. "
            f"Pass individual=... or use read_dlc_multi to read them all.",
            stacklevel=2,
        )
        return groups[names[0]]
    if individual not in groups:
        raise KeypointFileError(
            f"{path}: no individual {individual!r}; the individuals are {names}"
        )
    return groups[individual]


def read_dlc_multi(path: str | os.PathLike) -> dict[str, Keypoints2D]:
    """Read every individual of a DeepLabCut file, in file order.

    DeepLabCut puts body parts unique to the scene under the individual `single`; it comes back
    as its own entry. A single-animal file gives one entry under the key `""`.

    Raises:
        KeypointFileError: as `read_dlc`.
    """
    path, table = _read_table(path)
    return {("" if k is None else k): v for k, v in _split(path, table).items()}


# ---------------------------------------------------------------------------------------------
# Writing


def _to_frame(keypoints: Keypoints2D) -> pd.DataFrame:
    coords = ("x", "y") if keypoints.likelihood is None else ("x", "y", "likelihood")
    columns = pd.MultiIndex.from_tuples(
        [(keypoints.scorer, bp, c) for bp in keypoints.bodyparts for c in coords],
        names=["scorer", "bodyparts", "coords"],
    )
    parts = [keypoints.xy[..., 0], keypoints.xy[..., 1]]
    if keypoints.likelihood is not None:
        parts.append(keypoints.likelihood)
    # (frame, kpt, coord) -> (frame, kpt * coord), body part major like DeepLabCut.
    values = np.stack(parts, axis=-1).reshape(keypoints.num_frames, -1)
    entries = keypoints.index
    if all(isinstance(i, int | np.integer) and not isinstance(i, bool) for i in entries):
        index = pd.Index(np.asarray(entries, dtype=np.int64))
    else:
        index = pd.Index([str(i) for i in entries], dtype=object)
    return pd.DataFrame(values, index=index, columns=columns)


def write_dlc(path: str | os.PathLike, keypoints: Keypoints2D) -> Path:
    """Write keypoints as a DeepLabCut `.h5` or `.csv` file (chosen by the suffix), atomically.

    The `.h5` is a PyTables table under the key `df_with_missing`, as DeepLabCut writes it.
    Columns are `scorer / bodyparts / coords` with coords `x, y` (plus `likelihood` when
    present); rows are `keypoints.index`.

    Args:
        path: output file, `.h5` or `.csv`.
        keypoints: what to write.

    Returns:
        `path` as a Path.
    """
    path = Path(path)
    kind = _kind(path)
    df = _to_frame(keypoints)
    if kind == "csv":
        buf = io.StringIO()
        df.to_csv(buf)
        atomic_write_text(path, buf.getvalue())
    else:
        with atomic_path(path) as tmp:
            df.to_hdf(tmp, key=H5_KEY, mode="w", format="table")
    return path
