"""DeepLabCut 2D keypoint files: round trips, every real file in shared/data, bad files."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxpose.io.dlc import KeypointFileError, Keypoints2D, read_dlc, read_dlc_multi, write_dlc
from tests.conftest import data_path

OPENFIELD = ("dlc-openfield", "labeled-data", "m4s1")
REACHING = ("dlc-reaching", "labeled-data", "reachingvideo1")
EKS_FILES = [
    f"05272019_fly4_0_R1C24_Cam-{cam}_rot-ccw-0.06_sec.rng={rng}.csv"
    for cam in "ABC"
    for rng in range(3)
]


def _random_keypoints(*, likelihood: bool, labelled: bool, seed: int = 0) -> Keypoints2D:
    rng = np.random.default_rng(seed)
    frames, kpts = 7, 3
    # Values with long decimal expansions, across magnitudes, so an inexact float format shows.
    xy = rng.uniform(-1, 1, (frames, kpts, 2)) * 10.0 ** rng.integers(-3, 4, (frames, kpts, 2))
    xy[1, 2] = np.nan
    xy[4, 0] = np.nan
    lik = rng.uniform(0, 1, (frames, kpts)) if likelihood else None
    index = (
        tuple(f"labeled-data/vid1/img{i:04d}.png" for i in range(frames))
        if labelled
        else tuple(range(100, 100 + frames))
    )
    return Keypoints2D(xy, lik, ("snout", "left ear", "tail_base"), "scorer1", index)


def _assert_same(a: Keypoints2D, b: Keypoints2D) -> None:
    np.testing.assert_array_equal(a.xy, b.xy)  # exact, NaN in the same places
    assert (a.likelihood is None) == (b.likelihood is None)
    if a.likelihood is not None:
        np.testing.assert_array_equal(a.likelihood, b.likelihood)
    assert a.bodyparts == b.bodyparts
    assert a.scorer == b.scorer
    assert a.index == b.index
    assert [type(i) for i in a.index] == [type(i) for i in b.index]


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
@pytest.mark.parametrize("likelihood", [False, True])
@pytest.mark.parametrize("labelled", [False, True])
def test_round_trip_is_exact(tmp_path, suffix, likelihood, labelled):
    kp = _random_keypoints(likelihood=likelihood, labelled=labelled)
    path = write_dlc(tmp_path / f"out{suffix}", kp)
    back = read_dlc(path)
    _assert_same(kp, back)
    assert back.source == str(path)
    assert not list(tmp_path.glob(".*tmp*")), "atomic write left a temporary file"


def test_written_h5_is_what_deeplabcut_writes(tmp_path):
    kp = _random_keypoints(likelihood=True, labelled=False)
    path = write_dlc(tmp_path / "pred.h5", kp)
    with pd.HDFStore(path, "r") as store:
        assert store.keys() == ["/df_with_missing"]
        assert store.get_storer("df_with_missing").is_table
    df = pd.read_hdf(path, "df_with_missing")
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(df.columns[:3]) == [
        ("scorer1", "snout", "x"),
        ("scorer1", "snout", "y"),
        ("scorer1", "snout", "likelihood"),
    ]
    assert df.index.tolist() == list(range(100, 107))
    np.testing.assert_array_equal(df[("scorer1", "tail_base", "y")].to_numpy(), kp.xy[:, 2, 1])


def test_written_csv_has_deeplabcut_header_rows(tmp_path):
    kp = _random_keypoints(likelihood=False, labelled=True)
    path = write_dlc(tmp_path / "CollectedData_scorer1.csv", kp)
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["scorer"] + ["scorer1"] * 6
    assert rows[1] == [
        "bodyparts",
        "snout",
        "snout",
        "left ear",
        "left ear",
        "tail_base",
        "tail_base",
    ]
    assert rows[2] == ["coords"] + ["x", "y"] * 3
    assert rows[3][0] == "labeled-data/vid1/img0000.png"
    assert rows[4][5:7] == ["", ""], "NaN must be written as empty cells"
    # DeepLabCut's own reading recipe gives the same numbers.
    df = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    np.testing.assert_array_equal(df.to_numpy().reshape(7, 3, 2), kp.xy)


def test_overwrite_replaces_file(tmp_path):
    path = tmp_path / "a.csv"
    write_dlc(path, _random_keypoints(likelihood=True, labelled=False, seed=1))
    kp = _random_keypoints(likelihood=False, labelled=True, seed=2)
    write_dlc(path, kp)
    _assert_same(kp, read_dlc(path))


# --------------------------------------------------------------------------------------------
# Real files


@pytest.mark.parametrize("name", ["CollectedData_Pranav.h5", "CollectedData_Pranav.csv"])
def test_read_openfield(name):
    kp = read_dlc(data_path(*OPENFIELD, name))
    assert kp.xy.shape == (116, 4, 2)
    assert kp.likelihood is None
    assert kp.bodyparts == ("snout", "leftear", "rightear", "tailbase")
    assert kp.scorer == "Pranav"
    assert kp.index[0] == "labeled-data/m4s1/img0000.png"
    assert kp.index[-1] == "labeled-data/m4s1/img0115.png"
    # First row of the CSV shown in SOURCE.md.
    np.testing.assert_array_equal(kp.xy[0, 0], [21.521, 265.428])
    np.testing.assert_array_equal(kp.xy[0, 3], [87.11, 152.69799999999998])
    assert np.isfinite(kp.xy).all()
    np.testing.assert_array_equal(kp.confidence(), np.ones((116, 4)))


def test_openfield_h5_and_csv_agree_exactly():
    h5 = read_dlc(data_path(*OPENFIELD, "CollectedData_Pranav.h5"))
    csv_ = read_dlc(data_path(*OPENFIELD, "CollectedData_Pranav.csv"))
    _assert_same(h5, csv_)


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_read_reaching_with_missing_labels(suffix):
    kp = read_dlc(data_path(*REACHING, "CollectedData_Mackenzie" + suffix))
    assert kp.xy.shape == (55, 5, 2)
    assert kp.bodyparts == ("Hand", "Finger1", "Tongue", "Joystick1", "Joystick2")
    missing = np.isnan(kp.xy).any(axis=-1).sum(axis=0)
    np.testing.assert_array_equal(missing, [1, 1, 40, 0, 0])
    # x and y are missing together.
    np.testing.assert_array_equal(np.isnan(kp.xy[..., 0]), np.isnan(kp.xy[..., 1]))
    np.testing.assert_array_equal(kp.xy[0, 0], [185.25173502386923, 610.3622760638572])
    assert kp.index[0] == "labeled-data/reachingvideo1/img005.png"
    conf = kp.confidence()
    assert conf[:, 2].sum() == 15 and set(np.unique(conf)) == {0.0, 1.0}


def test_reaching_h5_and_csv_agree_exactly():
    _assert_same(
        read_dlc(data_path(*REACHING, "CollectedData_Mackenzie.h5")),
        read_dlc(data_path(*REACHING, "CollectedData_Mackenzie.csv")),
    )


def test_read_lightning_pose_mirror_mouse():
    kp = read_dlc(data_path("lp-mirror-mouse", "CollectedData.csv"))
    assert kp.xy.shape == (90, 17, 2)
    assert kp.scorer == "rick"
    assert kp.likelihood is None
    assert kp.index[0] == "labeled-data/img01.png"
    assert kp.bodyparts[0] == "paw1LH_top" and kp.bodyparts[-1] == "obsLow_bot"
    np.testing.assert_array_equal(kp.xy[0, 0], [77.25, 36.25])
    np.testing.assert_array_equal(kp.xy[0, 1], [253.5, 101.900392541708])
    missing = dict(zip(kp.bodyparts, np.isnan(kp.xy[..., 0]).sum(axis=0), strict=True))
    assert missing["obs_top"] == 35 and missing["obsHigh_bot"] == 36
    assert missing["tailMid_top"] == 12 and missing["nose_top"] == 0
    top = kp.select(["nose_top", "paw1LH_top"])
    assert top.bodyparts == ("nose_top", "paw1LH_top")
    np.testing.assert_array_equal(top.xy[:, 1], kp.xy[:, 0])


@pytest.mark.parametrize("name", EKS_FILES)
def test_read_eks_predictions(name):
    kp = read_dlc(data_path("eks-fly-3cam", name))
    assert kp.xy.shape == (500, 12, 2)
    assert kp.likelihood.shape == (500, 12)
    assert kp.scorer == "heatmap_tracker"
    assert kp.index == tuple(range(500))
    assert kp.bodyparts == tuple(f"{s}{leg}{p}" for s in "LR" for leg in "123" for p in "AB")
    assert np.isfinite(kp.xy).all()
    assert 0.99 < kp.likelihood.mean() <= 1.0
    np.testing.assert_array_equal(kp.confidence(), kp.likelihood)


def test_eks_known_first_row():
    kp = read_dlc(data_path("eks-fly-3cam", EKS_FILES[0]))
    np.testing.assert_array_equal(kp.xy[0, 0], [194.698, 161.2993])
    assert kp.likelihood[0, 0] == 0.9946


# --------------------------------------------------------------------------------------------
# Layout variants


def test_deeplabcut3_three_column_index_csv(tmp_path):
    path = tmp_path / "CollectedData_me.csv"
    path.write_text(
        "scorer,,,me,me,me,me\n"
        "bodyparts,,,nose,nose,tail,tail\n"
        "coords,,,x,y,x,y\n"
        "labeled-data,vid1,img0000.png,1.5,2.25,,\n"
        "labeled-data,vid1,img0007.png,3.0,4.0,5.0,6.125\n"
    )
    kp = read_dlc(path)
    assert kp.index == ("labeled-data/vid1/img0000.png", "labeled-data/vid1/img0007.png")
    assert kp.bodyparts == ("nose", "tail")
    np.testing.assert_array_equal(
        kp.xy, [[[1.5, 2.25], [np.nan, np.nan]], [[3.0, 4.0], [5.0, 6.125]]]
    )


def test_deeplabcut3_multiindex_rows_h5(tmp_path):
    kp = _random_keypoints(likelihood=False, labelled=True)
    df = pd.read_hdf(write_dlc(tmp_path / "a.h5", kp))
    df.index = pd.MultiIndex.from_tuples([tuple(i.split("/")) for i in df.index])
    # PyTables' table format cannot hold MultiIndex rows and columns together; DLC uses fixed.
    df.to_hdf(tmp_path / "b.h5", key="df_with_missing")
    _assert_same(kp, read_dlc(tmp_path / "b.h5"))


def test_windows_paths_in_index_become_forward_slashes(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        "scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\nlabeled-data\\vid\\img1.png,1.0,2.0\n"
    )
    assert read_dlc(path).index == ("labeled-data/vid/img1.png",)


def test_h5_under_another_key(tmp_path):
    kp = _random_keypoints(likelihood=True, labelled=False)
    df = pd.read_hdf(write_dlc(tmp_path / "a.h5", kp))
    df.to_hdf(tmp_path / "b.h5", key="predictions")
    _assert_same(kp, read_dlc(tmp_path / "b.h5"))


def _multi_animal_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    cols = [
        ("dlc", ind, bp, c)
        for ind, bps in [
            ("mouse1", ["nose", "tail"]),
            ("mouse2", ["nose", "tail"]),
            ("single", ["corner"]),
        ]
        for bp in bps
        for c in ("x", "y", "likelihood")
    ]
    columns = pd.MultiIndex.from_tuples(
        cols, names=["scorer", "individuals", "bodyparts", "coords"]
    )
    values = rng.uniform(0, 500, (6, len(cols)))
    values[2, 3:6] = np.nan  # mouse1 tail unseen in frame 2
    return pd.DataFrame(values, columns=columns)


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_multi_animal_file(tmp_path, suffix):
    df = _multi_animal_frame()
    path = tmp_path / f"ma{suffix}"
    if suffix == ".h5":
        df.to_hdf(path, key="df_with_missing", format="table")
    else:
        df.to_csv(path)
    with pytest.warns(UserWarning, match="mouse1"):
        first = read_dlc(path)
    assert first.bodyparts == ("nose", "tail")
    np.testing.assert_array_equal(first.xy[:, 1, 0], df[("dlc", "mouse1", "tail", "x")])
    assert np.isnan(first.xy[2, 1]).all()
    assert first.index == tuple(range(6))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = read_dlc(path, individual="mouse2")
    np.testing.assert_array_equal(
        second.likelihood[:, 0], df[("dlc", "mouse2", "nose", "likelihood")]
    )

    everyone = read_dlc_multi(path)
    assert list(everyone) == ["mouse1", "mouse2", "single"]
    assert everyone["single"].bodyparts == ("corner",)
    np.testing.assert_array_equal(everyone["mouse2"].xy, second.xy)

    with pytest.raises(KeypointFileError, match="mouse3.*mouse1"):
        read_dlc(path, individual="mouse3")


def test_read_dlc_multi_on_single_animal_file(tmp_path):
    kp = _random_keypoints(likelihood=False, labelled=True)
    out = read_dlc_multi(write_dlc(tmp_path / "a.csv", kp))
    assert list(out) == [""]
    _assert_same(kp, out[""])
    with pytest.raises(KeypointFileError, match="single-animal"):
        read_dlc(tmp_path / "a.csv", individual="mouse1")


# --------------------------------------------------------------------------------------------
# Bad files


def _raises_naming(path: Path, match: str | None = None):
    return pytest.raises(KeypointFileError, match=match or path.name.replace(".", r"\."))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.h5"
    with _raises_naming(path, "nope.h5.*not found"):
        read_dlc(path)


def test_truncated_h5(tmp_path):
    good = write_dlc(tmp_path / "good.h5", _random_keypoints(likelihood=True, labelled=False))
    path = tmp_path / "truncated.h5"
    path.write_bytes(good.read_bytes()[:3000])
    with _raises_naming(path) as info:
        read_dlc(path)
    assert "HDF5 error back trace" not in str(info.value)


def test_h5_without_pandas_table(tmp_path):
    import h5py

    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with _raises_naming(path):
        read_dlc(path)


def test_text_file_named_h5(tmp_path):
    path = tmp_path / "fake.h5"
    path.write_text("not hdf5")
    with _raises_naming(path):
        read_dlc(path)


def test_csv_without_header_rows(tmp_path):
    path = tmp_path / "bare.csv"
    path.write_text("0,1.0,2.0\n1,3.0,4.0\n")
    with _raises_naming(path, r"bare\.csv.*scorer.*bodyparts.*coords"):
        read_dlc(path)


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with _raises_naming(path):
        read_dlc(path)


def test_csv_missing_y_column(tmp_path):
    path = tmp_path / "noy.csv"
    path.write_text("scorer,me,me,me\nbodyparts,nose,tail,tail\ncoords,x,x,y\n0,1,2,3\n")
    with _raises_naming(path, r"noy\.csv.*'nose'.*no y.*expected coords x and y"):
        read_dlc(path)


def test_csv_non_numeric_value(tmp_path):
    path = tmp_path / "text.csv"
    path.write_text("scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\n0,1.0,oops\n")
    with _raises_naming(path, r"text\.csv.*non-numeric"):
        read_dlc(path)


def test_csv_ragged_rows(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\n0,1.0,2.0,3.0\n")
    with _raises_naming(path):
        read_dlc(path)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text("{}")
    with _raises_naming(path, r"labels\.json.*expected \.h5 or \.csv"):
        read_dlc(path)
    with pytest.raises(KeypointFileError, match="expected"):
        write_dlc(path, _random_keypoints(likelihood=False, labelled=False))


def test_select_unknown_bodypart_names_file():
    path = data_path(*OPENFIELD, "CollectedData_Pranav.csv")
    kp = read_dlc(path)
    with pytest.raises(KeypointFileError, match=r"CollectedData_Pranav\.csv.*'nose'.*snout"):
        kp.select(["snout", "nose"])


# --------------------------------------------------------------------------------------------
# The dataclass


def test_keypoints_validate_shapes():
    with pytest.raises(ValueError, match=r"\(frame, kpt, 2\)"):
        Keypoints2D(np.zeros((3, 2, 3)), None, ("a", "b"))
    with pytest.raises(ValueError, match="likelihood"):
        Keypoints2D(np.zeros((3, 2, 2)), np.zeros((3, 3)), ("a", "b"))
    with pytest.raises(ValueError, match="1 body part names for 2"):
        Keypoints2D(np.zeros((3, 2, 2)), None, ("a",))
    with pytest.raises(ValueError, match="unique"):
        Keypoints2D(np.zeros((3, 2, 2)), None, ("a", "a"))
    with pytest.raises(ValueError, match="index has 2 entries for 3 frames"):
        Keypoints2D(np.zeros((3, 2, 2)), None, ("a", "b"), index=(0, 1))
    kp = Keypoints2D(np.zeros((3, 2, 2), np.float32), None, ["a", "b"])
    assert kp.xy.dtype == np.float64 and kp.index == (0, 1, 2) and kp.num_frames == 3


def test_confidence_zero_where_missing():
    xy = np.array([[[1.0, 2.0], [np.nan, np.nan]], [[3.0, 4.0], [5.0, 6.0]]])
    lik = np.array([[0.9, 0.8], [np.nan, 0.7]])
    labelled = Keypoints2D(xy, None, ("a", "b"))
    np.testing.assert_array_equal(labelled.confidence(), [[1, 0], [1, 1]])
    predicted = Keypoints2D(xy, lik, ("a", "b"))
    np.testing.assert_array_equal(predicted.confidence(), [[0.9, 0.0], [0.0, 0.7]])


def test_select_keeps_order_and_likelihood():
    kp = _random_keypoints(likelihood=True, labelled=False)
    sub = kp.select(["tail_base", "snout"])
    assert sub.bodyparts == ("tail_base", "snout")
    np.testing.assert_array_equal(sub.xy, kp.xy[:, [2, 0]])
    np.testing.assert_array_equal(sub.likelihood, kp.likelihood[:, [2, 0]])
    assert sub.index == kp.index
