"""The benchmark scripts still run and write what they promise (figures are not checked: never
timed tests)."""

from __future__ import annotations

import json
import math

from tests.conftest import run_benchmark


def test_triangulation_benchmark_smoke(tmp_path):
    out = tmp_path / "triangulation.json"
    proc = run_benchmark(
        "triangulation.py", "--quick", "--sizes", "1000", "--cameras", "2", "3",
        "--repeats", "1", "--out", str(out),
    )  # fmt: skip
    assert "numpy_svd_loop" in proc.stdout and "points/s" in proc.stdout

    result = json.loads(out.read_text())
    assert {"meta", "config", "results", "breakdown"} <= result.keys()
    methods = {
        "numpy_svd_loop",
        "opencv_pairs_median",
        "jaxpose_dlt",
        "jaxpose_robust",
        "jaxpose_refine",
        "jaxpose_robust_refine",
    }
    rows = result["results"]
    assert {(r["method"], r["cameras"]) for r in rows} == {(m, c) for m in methods for c in (2, 3)}
    for r in rows:
        assert r["n_points"] == 1000 and 0 < r["timed_points"] <= 1000
        for key in ("points_per_second", "speedup_vs_numpy_loop", "seconds_median", "mpjpe_mm"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["method"], key, r[key])
        assert math.isfinite(r["mpjpe_outliers_mm"]), r
        assert r["mpjpe_mm"] < 5.0, r  # 1 px noise on a 600 mm ring: about 1 mm
        if r["method"].startswith("jaxpose_"):
            assert math.isfinite(r["compile_seconds"]) and r["compile_seconds"] >= 0
    for b in result["breakdown"]:
        assert (
            math.isfinite(b["undistort_seconds_per_point"]) and b["undistort_seconds_per_point"] > 0
        )


def test_reconstruction_sweep_smoke(tmp_path):
    """The cameras x noise sweep calibrates, triangulates and writes one table and one plot;
    more cameras and a spatiotemporal refinement must not be worse than a 2-camera DLT."""
    out = tmp_path / "reconstruction.json"
    run_benchmark(
        "reconstruction.py", "--quick", "--sweep-only", "--sweep-cameras", "2", "4",
        "--sweep-noise", "1", "--out", str(out), timeout=600,
    )  # fmt: skip
    result = json.loads(out.read_text())
    rows = [r for r in result["sweep"]["results"] if "metrics" in r]
    assert {(r["cameras"], r["method"]) for r in rows} == {
        (c, m) for c in (2, 4) for m in ("dlt", "robust_refine", "spatiotemporal")
    }
    mpjpe = {(r["cameras"], r["method"]): r["metrics"]["mpjpe_mm"] for r in rows}
    assert all(math.isfinite(v) and v > 0 for v in mpjpe.values()), mpjpe
    assert mpjpe[(4, "spatiotemporal")] < mpjpe[(2, "dlt")], mpjpe
    for r in rows:
        assert r["calibration"]["centre_mm"] < 5.0, r["calibration"]  # calibrated, not failed
    table = (tmp_path / "reconstruction_sweep.md").read_text()
    assert "| sweep | 4 | 1 | spatiotemporal |" in table
    assert (tmp_path / "reconstruction_sweep.png").stat().st_size > 1000


def test_reconstruction_sleap_part(tmp_path):
    """The real 8-camera rig's human labels: a reprojection table for every camera."""
    from tests.conftest import data_path

    data_path("sleap-mouse-8cam")  # skips with a reason when the data set is absent
    out = tmp_path / "reconstruction.json"
    run_benchmark("reconstruction.py", "--parts", "sleap", "--out", str(out))
    sleap = json.loads(out.read_text())["sleap"]
    assert len(sleap["cameras"]) == 8 and len(sleap["instances"]) == 6
    for method in ("dlt", "robust_refine"):
        per_camera = sleap["methods"][method]["per_camera"]
        assert set(per_camera) == set(sleap["cameras"])
        for cam, r in per_camera.items():
            assert r["views"] > 20 and 0.5 < r["median_px"] < 10.0, (method, cam, r)
    table = (tmp_path / "sleap_mouse_8cam.md").read_text()
    assert all(f"| {cam} |" in table for cam in sleap["cameras"])
    assert (tmp_path / "sleap_mouse_8cam.png").stat().st_size > 1000
