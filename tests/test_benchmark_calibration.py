"""`benchmarks/calibration.py --quick` still runs and writes what it promises (figures are not
checked beyond being finite and sane: never timed tests)."""

from __future__ import annotations

import json
import math

from tests.conftest import run_benchmark

METHODS = ("jaxpose", "opencv_chain", "opencv_tree")


def test_calibration_benchmark_quick(tmp_path):
    out = tmp_path / "calibration.json"
    proc = run_benchmark("calibration.py", "--quick", "--repeats", "1", "--out", str(out))
    assert "opencv_tree" in proc.stdout and "noise floor" in proc.stdout

    result = json.loads(out.read_text())
    assert {"meta", "config", "results", "noise_floor"} <= result.keys()
    assert result["config"]["cameras"] == [2, 3] and result["config"]["frames"] == 60
    rows = result["results"]
    assert {(r["method"], r["cameras"]) for r in rows} == {(m, c) for m in METHODS for c in (2, 3)}
    for r in rows:
        assert math.isfinite(r["wall_s"]) and r["wall_s"] > 0, r
        rep = r["reprojection"]
        for key in ("mean_px", "rms_px", "cross_mean_px"):
            # 0.3 px per coordinate: about 0.4 px per corner for any sound calibration
            assert math.isfinite(rep[key]) and 0 < rep[key] < 2.0, (r["method"], key, rep[key])
        assert rep["frames_used"] > 0
        for key in ("focal_pct", "principal_px", "centre_mm", "rotation_deg"):
            value = r["truth_errors"][key]
            assert math.isfinite(value) and value >= 0, (r["method"], key, value)
        assert r["truth_errors"]["focal_pct"] < 2.0 and r["truth_errors"]["rotation_deg"] < 1.0
        if r["method"] == "jaxpose":
            for key in ("init_s", "ba_s", "first_call_s", "compile_s", "ba_mean_px", "ba_rms_px"):
                assert math.isfinite(r[key]), (key, r[key])
        else:
            assert len(r["edges"]) == r["cameras"] - 1
            assert math.isfinite(r["intrinsics_s"]) and math.isfinite(r["stereo_s"])
    for floor in result["noise_floor"]:
        assert math.isfinite(floor["mean_px"]) and 0 < floor["mean_px"] < 1.0
