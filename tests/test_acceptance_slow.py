"""Issue acceptance runs that take minutes to an hour on a 2-core CPU: marked slow, so CI skips
them (`python -m pytest -m slow tests/test_acceptance_slow.py` runs them). Each one runs the
README's experiment commands and checks the figure the issue asks for."""

from __future__ import annotations

import json

import pytest

from jaxpose.cli import main as cli_main
from tests.conftest import data_path

pytestmark = pytest.mark.slow


def _train_and_evaluate(experiment: str, out, *overrides: str) -> dict:
    code = cli_main(
        ["train", "--config-dir", "experiments", "--config-name", experiment, f"out={out}"]
        + ["train.progress=false", *overrides]
    )
    assert code == 0
    assert cli_main(["evaluate", f"run={out}", "progress=false"]) == 0
    return json.loads((out / "evaluation" / "summary.json").read_text())


def test_dlc_openfield_pretrained_efficientnet_reaches_3_5_px(tmp_path):
    """Issue 4: 50 % split, pretrained EfficientNet-Lite0, whole-frame test RMSE <= 3.5 px
    (about 8 minutes here)."""
    data_path("dlc-openfield")
    summary = _train_and_evaluate("dlc_openfield", tmp_path / "of")
    assert summary["test"]["rmse_px"] <= 3.5, summary["test"]


def test_lp_mirror_mouse_and_dlc_reaching_train_and_evaluate(tmp_path):
    """Issue 4: a single-channel two-view set and a set of mixed frame sizes with missing labels
    train with no special case (about 18 minutes here). Measured: lp-mirror-mouse test median
    3.9 px, 4.3 px mean above the confidence cut-off on 64 % of the points (the side view's paws
    fail, with low confidence); dlc-reaching median 6.7 px, 6.3 px mean above the cut-off on
    78 % (the rarely labelled Tongue is missed). The bounds are about twice those: a run that
    does not learn (tens of px, or confidence nowhere) fails."""
    data_path("lp-mirror-mouse")
    data_path("dlc-reaching")
    for experiment in ("lp_mirror_mouse", "dlc_reaching"):
        test = _train_and_evaluate(experiment, tmp_path / experiment)["test"]
        assert test["median_px"] < 12.0, (experiment, test)
        assert test["mean_above_cutoff_px"] < 12.0 and test["fraction_above_cutoff"] > 0.4, test
