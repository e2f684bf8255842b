"""Anipose calibration.toml and DANNCE .mat readers: real files, exact round trips, bad files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.geometry import FISHEYE, Camera, make_camera, stack_cameras
from jaxpose.io import (
    Calibration,
    CalibrationError,
    load_calibration,
    load_dannce_calibration,
    save_calibration,
)
from tests.conftest import data_path

REAL_TOMLS = {
    "sleap-mouse-8cam": (
        ("sleap-mouse-8cam", "calibration.toml"),
        ("back", "backL", "mid", "midL", "side", "sideL", "top", "topL"),
    ),
    "sleap-anipose-minimal-session": (
        ("sleap-anipose-minimal-session", "tests", "data", "minimal_session", "calibration.toml"),
        ("back", "mid", "side", "top"),
    ),
    "eks-fly-3cam": (("eks-fly-3cam", "calibration.toml"), ("Cam-A", "Cam-B", "Cam-C")),
}
FIELDS = ("rotation", "translation", "focal", "principal_point", "skew", "distortion", "image_size")


def _sections(text: str) -> dict[str, str]:
    """The raw text of each [section] of a TOML file."""
    parts = re.split(r"^\[([^\]]+)\]\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _assert_bitwise_equal(a: Calibration, b: Calibration) -> None:
    assert a.names == b.names
    assert a.rig.model == b.rig.model
    for field in FIELDS:
        x, y = getattr(a.rig, field), getattr(b.rig, field)
        assert isinstance(y, np.ndarray) and y.dtype == np.float64, field
        assert x.shape == y.shape, field
        assert np.asarray(x, np.float64).tobytes() == y.tobytes(), field
    assert dict(a.metadata) == dict(b.metadata)


# --- the real files ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(REAL_TOMLS))
def test_load_real_calibration_matches_file_text(key):
    parts, names = REAL_TOMLS[key]
    path = data_path(*parts)
    cal = load_calibration(path)
    assert cal.names == names
    assert len(cal) == cal.rig.num_cameras == len(names)
    assert cal.rig.batch_shape == (len(names),)
    assert cal.rig.model == "brown_conrady"
    for field in FIELDS:
        arr = getattr(cal.rig, field)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64, field
    # Every number must appear verbatim in its own section: the files were written from Python
    # floats, so repr() of the value read back reproduces the text when parsing is exact.
    sections = _sections(path.read_text())
    assert sorted(k for k in sections if k.startswith("cam_")) == [
        f"cam_{i}" for i in range(len(names))
    ]
    for i, name in enumerate(names):
        text, cam = sections[f"cam_{i}"], cal.rig[i]
        assert f'name = "{name}"' in text
        values = [
            *cam.focal,
            *cam.principal_point,
            *cam.distortion,
            *cam.rotation,
            *cam.translation,
        ]
        for v in values:
            assert repr(float(v)) in text, (name, v)
        w, h = (int(v) for v in cam.image_size)
        assert re.search(rf"size = \[ {w}, {h},\]", text), name
        assert float(cam.skew) == 0.0
        assert cal.camera(name) is not None and cal.index(name) == i


def test_spot_check_values():
    mouse = load_calibration(data_path(*REAL_TOMLS["sleap-mouse-8cam"][0]))
    back = mouse.camera("back")
    assert back.focal.tolist() == [762.513822135494, 762.513822135494]
    assert back.principal_point.tolist() == [639.5, 511.5]
    assert back.distortion.tolist() == [-0.2868458380166852, 0.0, 0.0, 0.0, 0.0]
    assert back.rotation.tolist() == [0.3571857188780474, 0.8879473292757126, 1.6832001677006176]
    assert back.translation.tolist() == [
        -555.4577842902744,
        -294.43494957092884,
        -190.82196458369515,
    ]
    assert back.image_size.tolist() == [1280.0, 1024.0]
    assert mouse.rig.focal[7, 0] == 860.8004120100271
    assert mouse.metadata == {}

    fly = load_calibration(data_path(*REAL_TOMLS["eks-fly-3cam"][0]))
    assert fly.rig.focal[:, 0].tolist() == [
        20003.023008090135,
        37108.38819953355,
        136330.25013473458,
    ]
    assert fly.rig.distortion[:, 0].tolist() == [
        -58.1898806599525,
        20.68372493071476,
        -6468.60716369641,
    ]
    assert fly.rig.image_size.tolist() == [[832.0, 632.0]] * 3
    assert fly.metadata == {"adjusted": True, "error": 2.105956142962366}

    session = load_calibration(data_path(*REAL_TOMLS["sleap-anipose-minimal-session"][0]))
    # the data set's known defect: 'side' holds a copy of 'top'
    for field in ("rotation", "translation", "focal", "distortion"):
        np.testing.assert_array_equal(
            getattr(session.camera("side"), field), getattr(session.camera("top"), field)
        )
    assert session.camera("back").translation[2] == -122.27936818948484


def test_subset_and_unknown_name():
    cal = load_calibration(data_path(*REAL_TOMLS["sleap-mouse-8cam"][0]))
    sub = cal.subset(["top", "back"])
    assert sub.names == ("top", "back")
    np.testing.assert_array_equal(sub.rig.focal, cal.rig.focal[[6, 0]])
    with pytest.raises(KeyError, match=r"no camera named 'nope'.*'back'"):
        cal.camera("nope")


# --- save -> load round trips --------------------------------------------------------------------


@pytest.mark.parametrize("key", list(REAL_TOMLS))
def test_real_calibration_round_trip_is_bitwise(key, tmp_path):
    cal = load_calibration(data_path(*REAL_TOMLS[key][0]))
    out = save_calibration(cal, tmp_path / "calibration.toml")
    again = load_calibration(out)
    _assert_bitwise_equal(cal, again)
    # saving is deterministic and leaves no temporary files behind
    first = out.read_bytes()
    save_calibration(again, out)
    assert out.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.toml"]


def _random_rig(rng: np.random.Generator, n: int, model: str) -> Camera:
    ncoef = 4 if model == FISHEYE else 5
    cams = [
        make_camera(
            rotation=rng.normal(size=3),
            translation=rng.normal(scale=300.0, size=3),
            focal=rng.uniform(300.0, 3000.0, size=2),
            principal_point=rng.uniform(200.0, 800.0, size=2),
            skew=rng.normal(),
            distortion=rng.normal(scale=0.1, size=ncoef) * 10.0 ** rng.integers(-6, 2, ncoef),
            image_size=(1920, 1200),
            model=model,
        )
        for _ in range(n)
    ]
    return stack_cameras(cams)


METADATA = {
    "adjusted": True,
    "error": 0.1 + 0.2,  # not representable in few digits: must survive exactly
    "n_frames": 1234,
    "board": {"type": "charuco", "rows": 8, "square_mm": 24.0, "tags": ["a", "b"]},
    "note": 'quotes " and unicode µm',
    "history": [1.5, -2.25e-17, 3e300],
}


@pytest.mark.parametrize("model", ["brown_conrady", FISHEYE])
def test_round_trip_is_bitwise_with_metadata(model, tmp_path):
    rng = np.random.default_rng(0 if model == FISHEYE else 1)
    cal = Calibration(_random_rig(rng, 3, model), ("left", "centre cam", "right-2"), METADATA)
    path = save_calibration(cal, tmp_path / "sub" / "calib.toml")  # creates the folder
    doc = tomllib.loads(path.read_text())
    assert doc["cam_1"]["name"] == "centre cam"
    assert len(doc["cam_0"]["distortions"]) == (4 if model == FISHEYE else 5)
    assert doc["cam_0"].get("fisheye", False) == (model == FISHEYE)
    again = load_calibration(path)
    _assert_bitwise_equal(cal, again)
    assert again.metadata == METADATA


def test_round_trip_of_a_jax_rig(tmp_path):
    rig = load_calibration(data_path(*REAL_TOMLS["eks-fly-3cam"][0])).rig
    with jax.enable_x64(True):
        rig64 = jax.tree_util.tree_map(jnp.asarray, rig)
        cal = Calibration(rig64, ("a", "b", "c"))
        again = load_calibration(save_calibration(cal, tmp_path / "c.toml"))
    _assert_bitwise_equal(Calibration(rig, ("a", "b", "c")), again)
    # a float32 rig saves the float32 values (widened exactly)
    rig32 = rig.astype(jnp.float32)
    again32 = load_calibration(
        save_calibration(Calibration(rig32, ("a", "b", "c")), tmp_path / "d.toml")
    )
    np.testing.assert_array_equal(again32.rig.focal, np.asarray(rig32.focal, np.float64))


# --- bad files -----------------------------------------------------------------------------------

GOOD_SECTION = """\
[cam_0]
name = "a"
size = [640, 480]
matrix = [[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]]
distortions = [-0.1, 0.01, 0.0, 0.0, 0.0]
rotation = [0.1, 0.2, 0.3]
translation = [1.0, 2.0, 3.0]
"""


def _write(tmp_path: Path, text: str, name: str = "calibration.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _good_file(tmp_path: Path, **replace: str) -> Path:
    """A valid two-camera file; replace={key: new line or ""} edits cam_1 only."""
    lines = GOOD_SECTION.replace("cam_0", "cam_1").replace('"a"', '"b"').splitlines()
    for key, new in replace.items():
        lines = [new if line.startswith(f"{key} =") else line for line in lines]
    return _write(tmp_path, GOOD_SECTION + "\n" + "\n".join(lines) + "\n\n[metadata]\n")


def test_the_good_fixture_loads(tmp_path):
    cal = load_calibration(_good_file(tmp_path))
    assert cal.names == ("a", "b")
    assert cal.rig.distortion[1].tolist() == [-0.1, 0.01, 0.0, 0.0, 0.0]


def _raises(path: Path, *fragments: str) -> str:
    with pytest.raises(CalibrationError) as info:
        load_calibration(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, (frag, msg)
    return msg


def test_missing_file(tmp_path):
    _raises(tmp_path / "nowhere" / "calibration.toml", "not found")


def test_invalid_toml(tmp_path):
    text = GOOD_SECTION.replace("[640, 480]", "[640 480]")  # missing comma on line 3
    _raises(_write(tmp_path, text), "not a valid TOML file", "line 3")  # the parser's position


def test_no_camera_sections(tmp_path):
    _raises(_write(tmp_path, "[metadata]\nerror = 1.0\n"), "no [cam_N] sections")


@pytest.mark.parametrize("key", ["matrix", "distortions", "rotation", "translation", "size"])
def test_section_missing_a_key(key, tmp_path):
    _raises(_good_file(tmp_path, **{key: ""}), "[cam_1]", f"'{key}'")


@pytest.mark.parametrize(
    ("key", "line", "expected"),
    [
        ("matrix", "matrix = [[500.0, 0.0, 320.0], [0.0, 500.0, 240.0]]", "shape (3, 3)"),
        ("rotation", "rotation = [0.1, 0.2]", "shape (3,)"),
        ("size", "size = [640, 480, 3]", "shape (2,)"),
        ("distortions", "distortions = [0.1, 0.2, 0.3]", "expected 5"),
        ("distortions", "distortions = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]", "expected 5"),
        (
            "matrix",
            'matrix = [[500.0, 0.0, "c"], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]]',
            "not numeric",
        ),
        ("distortions", 'distortions = ["k1", 0.0, 0.0, 0.0, 0.0]', "not numeric"),
    ],
)
def test_malformed_value(key, line, expected, tmp_path):
    _raises(_good_file(tmp_path, **{key: line}), "[cam_1]", f"'{key}'", expected)


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("matrix", "matrix = [[nan, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]]"),
        ("translation", "translation = [1.0, inf, 3.0]"),
        ("distortions", "distortions = [-0.1, nan, 0.0, 0.0, 0.0]"),
        ("size", "size = [nan, 480]"),
    ],
)
def test_non_finite_value(key, line, tmp_path):
    _raises(_good_file(tmp_path, **{key: line}), "[cam_1]", f"'{key}'", "NaN or infinity")


def test_bad_section_names_and_duplicates(tmp_path):
    _raises(_write(tmp_path, GOOD_SECTION.replace("cam_0", "cam_x")), "cam_0, cam_1")
    _raises(
        _write(tmp_path, GOOD_SECTION + "\n" + GOOD_SECTION.replace("cam_0", "cam_1")),
        "unique",
        "'a'",
    )
    _raises(_write(tmp_path, "cam_0 = 3\n"), "[cam_0] is not a table")


def test_fisheye_needs_four_coefficients(tmp_path):
    text = GOOD_SECTION.replace("translation", "fisheye = true\ntranslation")
    cal = load_calibration(
        _write(tmp_path, text.replace("0.01, 0.0, 0.0, 0.0]", "0.01, 0.0, 0.0]"))
    )
    assert cal.rig.model == FISHEYE and cal.rig.distortion.shape == (1, 4)
    _raises(_write(tmp_path, text), "[cam_0]", "'distortions'", "expected 4")


# --- DANNCE ----------------------------------------------------------------------------------


@pytest.mark.parametrize("session", [1, 2])
def test_dannce_loader(session):
    import scipy.io

    path = data_path(
        "dannce-markerless-mouse", "demo", f"markerless_mouse_{session}", "label3d_dannce.mat"
    )
    cal = load_dannce_calibration(path)
    assert cal.names == tuple(f"Camera{i}" for i in range(1, 7))
    assert cal.rig.batch_shape == (6,)
    assert cal.metadata["source"] == str(path)
    params = scipy.io.loadmat(path)["params"].ravel()
    for i, p in enumerate(params):
        cam = cal.rig[i]
        k, r, t = p["K"][0, 0], p["r"][0, 0], p["t"][0, 0].ravel()
        rd, td = p["RDistort"][0, 0].ravel(), p["TDistort"][0, 0].ravel()
        # MATLAB stores K transposed, with the skew below the diagonal
        assert cam.focal.tolist() == [k[0, 0], k[1, 1]]
        assert cam.principal_point.tolist() == [k[2, 0], k[2, 1]]
        assert float(cam.skew) == k[1, 0] != 0.0
        assert cam.distortion.tolist() == [rd[0], rd[1], td[0], td[1], rd[2]]
        assert cam.translation.tolist() == t.tolist()
        # row-vector convention: Xc = X r + t, so the world -> camera matrix is r^T
        np.testing.assert_allclose(cv2.Rodrigues(cam.rotation)[0], r.T, atol=1e-12)
    if session == 2:  # both sessions share one calibration
        first = load_dannce_calibration(
            data_path("dannce-markerless-mouse", "demo", "markerless_mouse_1", "label3d_dannce.mat")
        )
        _assert_bitwise_equal(Calibration(first.rig, first.names), Calibration(cal.rig, cal.names))


def test_dannce_bad_files(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        load_dannce_calibration(tmp_path / "missing.mat")
    bad = _write(tmp_path, "not a mat file", "bad.mat")
    with pytest.raises(CalibrationError, match=re.escape(str(bad))):
        load_dannce_calibration(bad)
    import scipy.io

    no_params = tmp_path / "no_params.mat"
    scipy.io.savemat(no_params, {"camnames": np.array(["Camera1"], dtype=object)})
    with pytest.raises(CalibrationError, match="no 'params' variable"):
        load_dannce_calibration(no_params)
