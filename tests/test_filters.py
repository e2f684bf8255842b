"""Trajectory filters: NaN handling, agreement with SciPy where they coincide, and a Kalman/RTS
check against a plain NumPy implementation of the same equations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from jaxpose.filters import (
    ButterworthFilter,
    GapFill,
    KalmanSmoother,
    MedianFilter,
    apply_filters,
    butterworth_filter,
    fill_gaps,
    filter_config,
    filter_trajectory,
    gap_lengths,
    kalman_smooth,
    mask_low_confidence,
    median_filter,
    savgol_filter,
)

RNG = np.random.default_rng(0)


def line(num_frames: int = 40, coord: int = 3) -> np.ndarray:
    """(frame, 2, coord) two keypoints moving along straight lines."""
    t = np.arange(num_frames, dtype=np.float64)[:, None, None]
    start = np.array([[1.0, -2.0, 3.0], [10.0, 5.0, -1.0]])[:, :coord]
    step = np.array([[0.5, 0.25, -1.0], [-0.3, 2.0, 0.1]])[:, :coord]
    return start + step * t


# ---------------------------------------------------------------------------------------------
# Gaps, masking, filling


def test_gap_lengths_counts_each_run():
    valid = np.array([[1, 0, 0, 1, 0, 1, 1, 0, 0, 0]], dtype=bool).T
    assert gap_lengths(valid)[:, 0].tolist() == [0, 2, 2, 0, 1, 0, 0, 3, 3, 3]


def test_a_point_with_one_nan_coordinate_is_missing_entirely():
    x = line()
    x[5, 0, 1] = np.nan
    out = median_filter(x, window=3)
    assert np.all(np.isnan(out[5, 0])) and np.all(np.isfinite(out[5, 1]))


def test_mask_low_confidence():
    x = line(5, coord=2)
    conf = np.array([[0.9, 0.2], [0.5, 0.0], [np.nan, 1.0], [0.49, 0.51], [1.0, 1.0]])
    out = mask_low_confidence(x, conf, cutoff=0.5)
    expect_missing = np.array([[0, 1], [0, 1], [1, 0], [1, 0], [0, 0]], dtype=bool)
    np.testing.assert_array_equal(np.isnan(out[..., 0]), expect_missing)
    np.testing.assert_array_equal(out[~expect_missing], x[~expect_missing])
    # Zero confidence is missing even with cutoff 0.
    assert np.isnan(mask_low_confidence(x, conf, cutoff=0.0)[1, 1, 0])
    with pytest.raises(ValueError, match=r"confidence must have shape \(frame, kpt\)"):
        mask_low_confidence(x, conf[:, :1], cutoff=0.5)


@pytest.mark.parametrize("method", ["linear", "cubic", "pchip"])
def test_fill_gaps_short_interior_only(method):
    x = line(30)
    holes = line(30)
    holes[0:2] = np.nan  # edge gap: never filled
    holes[5:8, 0] = np.nan  # 3 frames: filled
    holes[12:20, 0] = np.nan  # 8 frames: too long
    holes[28:, 1] = np.nan  # edge gap
    out = fill_gaps(holes, max_gap=4, method=method)
    np.testing.assert_allclose(out[5:8, 0], x[5:8, 0], atol=1e-9)  # a line is reproduced
    assert np.all(np.isnan(out[12:20, 0])) and np.all(np.isnan(out[:2]))
    assert np.all(np.isnan(out[28:, 1]))
    valid = np.isfinite(holes)
    np.testing.assert_array_equal(out[valid], holes[valid])


def test_fill_gaps_cubic_is_exact_for_a_cubic():
    t = np.arange(25, dtype=np.float64)
    x = (0.01 * t**3 - 0.2 * t**2 + t)[:, None, None]
    holes = x.copy()
    holes[10:13] = np.nan
    np.testing.assert_allclose(fill_gaps(holes, max_gap=3, method="cubic"), x, atol=1e-9)
    assert np.max(np.abs(fill_gaps(holes, max_gap=3, method="linear") - x)) > 0.1


def test_fill_gaps_bad_options():
    with pytest.raises(ValueError, match="unknown gap-filling method 'spline'"):
        fill_gaps(line(), max_gap=3, method="spline")
    with pytest.raises(ValueError, match="max_gap must be a whole number"):
        fill_gaps(line(), max_gap=-1)


# ---------------------------------------------------------------------------------------------
# Median


def test_median_removes_a_single_frame_spike_and_keeps_a_line():
    x = line()
    spiky = x.copy()
    spiky[17, 0] += 100.0
    out = median_filter(spiky, window=5)
    # Away from the spike the line passes unchanged, ends included (the window shrinks
    # symmetrically there); near the spike the median moves by at most one sample (the outlier
    # takes one rank).
    away = np.r_[0:15, 20:40]
    np.testing.assert_allclose(out[away], x[away], atol=1e-12)
    assert np.all(np.abs(out - x) <= np.abs(np.diff(x, axis=0)).max() + 1e-12)


def test_median_matches_scipy_without_gaps():
    x = RNG.normal(size=(50, 3, 2))
    ours = median_filter(x, window=7)
    theirs = scipy.signal.medfilt(x, kernel_size=(7, 1, 1))
    np.testing.assert_allclose(ours[3:-3], theirs[3:-3])


def test_median_ignores_nan_in_the_window_and_keeps_long_gaps():
    x = line(30)
    x[10, 0] = np.nan  # 1-frame gap
    x[20:26, 0] = np.nan  # 6-frame gap
    x[11, 0] += 50.0  # spike next to the gap
    kept = median_filter(x, window=5)
    assert np.isnan(kept[10, 0, 0]) and np.all(np.isnan(kept[20:26, 0]))
    clean = line(30)
    np.testing.assert_allclose(kept[11, 0], clean[11, 0], atol=1.5)  # spike gone
    filled = median_filter(x, window=5, max_gap=2)
    np.testing.assert_allclose(filled[10, 0], clean[10, 0], atol=1.5)
    assert np.all(np.isnan(filled[20:26, 0]))  # longer than max_gap


# ---------------------------------------------------------------------------------------------
# Savitzky-Golay


def test_savgol_matches_scipy_without_gaps():
    x = RNG.normal(size=(60, 2, 3))
    ours = savgol_filter(x, window=9, polyorder=3)
    theirs = scipy.signal.savgol_filter(x, 9, 3, axis=0)
    np.testing.assert_allclose(ours[4:-4], theirs[4:-4], atol=1e-10)


def test_savgol_reproduces_polynomials_around_gaps_and_ends():
    t = np.arange(40, dtype=np.float64)
    x = np.stack([0.02 * t**2 - t + 3, -0.01 * t**2 + 0.5 * t], -1)[:, None]  # degree 2
    holes = x.copy()
    holes[[3, 9, 10, 25]] = np.nan
    out = savgol_filter(holes, window=7, polyorder=2, max_gap=2)
    np.testing.assert_allclose(out, x, atol=1e-8)  # gaps of <= 2 filled exactly, ends too


def test_savgol_smooths_noise_and_keeps_long_gaps():
    x = line(80)
    noisy = x + RNG.normal(scale=1.0, size=x.shape)
    noisy[30:45, 1] = np.nan
    out = savgol_filter(noisy, window=11, polyorder=1)
    assert np.all(np.isnan(out[30:45, 1]))
    ok = np.isfinite(out)
    assert np.sqrt(np.mean((out[ok] - x[ok]) ** 2)) < 0.5 * np.sqrt(
        np.mean((noisy[ok] - x[ok]) ** 2)
    )


def test_savgol_keeps_the_sample_where_the_fit_is_undetermined():
    x = line(20)
    holes = x.copy()
    holes[1:6] = np.nan
    holes[7:12] = np.nan  # frame 6 alone: a 5-frame window holds 1 valid sample
    holes[6] += 3.0
    out = savgol_filter(holes, window=5, polyorder=2)
    np.testing.assert_array_equal(out[6], holes[6])


def test_savgol_bad_options():
    with pytest.raises(ValueError, match="odd number of frames"):
        savgol_filter(line(), window=6, polyorder=2)
    with pytest.raises(ValueError, match="polyorder < window"):
        savgol_filter(line(), window=5, polyorder=5)


# ---------------------------------------------------------------------------------------------
# Butterworth


def test_butterworth_attenuates_high_frequencies():
    fps = 200.0
    t = np.arange(800) / fps
    slow = np.sin(2 * np.pi * 2.0 * t)
    fast = np.sin(2 * np.pi * 40.0 * t)
    x = np.stack([slow, fast], -1)[:, None]
    out = butterworth_filter(x, cutoff=10.0, fps=fps, order=4)
    mid = slice(100, -100)
    assert np.max(np.abs(out[mid, 0, 1])) < 1e-3  # 40 Hz is 12 dB/octave x 2 passes down
    np.testing.assert_allclose(out[mid, 0, 0], slow[mid], atol=5e-3)  # 2 Hz passes, no lag


def test_butterworth_filters_each_valid_run_alone():
    fps = 100.0
    x = RNG.normal(size=(120, 2, 3)).cumsum(0)
    x[50:53, 0] = np.nan
    x[100:112, 1] = np.nan  # leaves an 8-frame run at the end of keypoint 1
    out = butterworth_filter(x, cutoff=5.0, fps=fps, order=2)
    sos = scipy.signal.butter(2, 5.0, fs=fps, output="sos")
    padlen = 3 * (2 * len(sos) + 1)
    for run in (slice(0, 50), slice(53, 120)):
        expect = scipy.signal.sosfiltfilt(sos, x[run, 0], axis=0, padlen=padlen)
        np.testing.assert_allclose(out[run, 0], expect, atol=1e-12)
    assert padlen == 9
    assert np.all(np.isnan(out[50:53, 0])) and np.all(np.isnan(out[100:112, 1]))
    np.testing.assert_array_equal(out[112:, 1], x[112:, 1])  # too short to pad: unchanged
    assert not np.allclose(out[:100, 1], x[:100, 1])


def test_butterworth_cutoff_above_nyquist_is_refused():
    with pytest.raises(ValueError, match="Nyquist frequency fps / 2 = 15 Hz"):
        butterworth_filter(line(), cutoff=20.0, fps=30.0)


# ---------------------------------------------------------------------------------------------
# Kalman filter and RTS smoother


def reference_kalman(z, r, f, q, m0, p0):
    """Textbook Kalman filter + RTS smoother for a position observed alone, float64, loops.

    z: (frame, obs) with NaN for missing; r: (frame, obs, obs). Returns smoothed means and
    covariances (frame, state), (frame, state, state)."""
    n, obs = z.shape
    h = np.eye(len(m0))[:obs]
    mf, pf, mp, pp = [], [], [], []
    m, p = m0, p0
    for t in range(n):
        mp.append(m)
        pp.append(p)
        if np.all(np.isfinite(z[t])):
            s = h @ p @ h.T + r[t]
            k = p @ h.T @ np.linalg.inv(s)
            m = m + k @ (z[t] - h @ m)
            p = (np.eye(len(m)) - k @ h) @ p
        mf.append(m)
        pf.append(p)
        m, p = f @ m, f @ p @ f.T + q
    ms, ps = [mf[-1]], [pf[-1]]
    for t in range(n - 2, -1, -1):
        g = pf[t] @ f.T @ np.linalg.inv(pp[t + 1])
        ms.insert(0, mf[t] + g @ (ms[0] - mp[t + 1]))
        ps.insert(0, pf[t] + g @ (ps[0] - pp[t + 1]) @ g.T)
    return np.array(ms), np.array(ps)


@pytest.mark.parametrize("model", ["constant_velocity", "constant_acceleration"])
def test_kalman_matches_a_numpy_reference_in_1d(model):
    num_frames, process_sigma, sigma, prior = 60, 0.3, 0.8, 50.0
    t = np.arange(num_frames, dtype=np.float64)
    x = 5.0 + 0.4 * t + 3.0 * np.sin(t / 6.0) + RNG.normal(scale=sigma, size=num_frames)
    x = x[:, None, None]
    x[[7, 20, 21, 22, 23, 40]] = np.nan
    conf = RNG.uniform(0.3, 1.0, size=(num_frames, 1))
    conf[33] = 0.0  # zero confidence: skipped like NaN
    ours = kalman_smooth(
        x,
        model=model,
        process_sigma=process_sigma,
        measurement_sigma=sigma,
        confidence=conf,
        initial_sigma=prior,
        fps=30.0,
    )
    # The same model written out here: continuous white-noise acceleration (or jerk), dt = 1.
    q = process_sigma**2
    if model == "constant_velocity":
        f = np.array([[1.0, 1.0], [0.0, 1.0]])
        qm = q * np.array([[1 / 3, 1 / 2], [1 / 2, 1]])
    else:
        f = np.array([[1.0, 1.0, 0.5], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
        qm = q * np.array([[1 / 20, 1 / 8, 1 / 6], [1 / 8, 1 / 3, 1 / 2], [1 / 6, 1 / 2, 1]])
    z = x[:, 0].copy()
    z[conf[:, 0] == 0] = np.nan
    centre = np.nanmean(z)
    with np.errstate(divide="ignore"):
        r = (sigma / conf[:, 0]) ** 2  # inf at zero confidence, never used
    ms, ps = reference_kalman(
        z - centre, r[:, None, None], f, qm, np.zeros(len(f)), prior**2 * np.eye(len(f))
    )
    np.testing.assert_allclose(ours.position[:, 0, 0], ms[:, 0] + centre, rtol=0, atol=2e-3)
    np.testing.assert_allclose(ours.velocity[:, 0, 0], ms[:, 1] * 30.0, rtol=0, atol=2e-2)
    np.testing.assert_allclose(ours.variance[:, 0, 0], ps[:, 0, 0], rtol=2e-3, atol=1e-5)


def test_kalman_with_correlated_covariances_matches_the_numpy_reference():
    # 2D points with a full, correlated 2x2 noise covariance per observation: the coupled model.
    num_frames, process_sigma, prior = 40, 0.5, 30.0
    t = np.arange(num_frames, dtype=np.float64)
    x = np.stack([0.3 * t + np.cos(t / 5), 4.0 - 0.1 * t], -1)[:, None]
    a = RNG.normal(scale=0.7, size=(num_frames, 2, 2))
    cov = a @ a.transpose(0, 2, 1) + 0.05 * np.eye(2)
    x = (
        x
        + np.einsum("fij,fj->fi", np.linalg.cholesky(cov), RNG.normal(size=(num_frames, 2)))[
            :, None
        ]
    )
    x[[5, 6, 30]] = np.nan
    ours = kalman_smooth(
        x, covariance=cov[:, None], process_sigma=process_sigma, initial_sigma=prior
    )
    q = process_sigma**2
    f = np.kron(np.array([[1.0, 1.0], [0.0, 1.0]]), np.eye(2))
    qm = np.kron(q * np.array([[1 / 3, 1 / 2], [1 / 2, 1]]), np.eye(2))
    z = x[:, 0]
    centre = np.nanmean(z, axis=0)
    ms, ps = reference_kalman(z - centre, cov, f, qm, np.zeros(4), prior**2 * np.eye(4))
    np.testing.assert_allclose(ours.position[:, 0], ms[:, :2] + centre, atol=2e-3)
    np.testing.assert_allclose(ours.covariance[:, 0], ps[:, :2, :2], rtol=2e-3, atol=1e-5)


def noisy_3d_track(num_frames: int = 300, sigma: float = 2.0, fps: float = 100.0):
    t = np.arange(num_frames) / fps
    truth = np.stack(
        [50 * np.sin(2 * np.pi * t), 30 * np.cos(2 * np.pi * 0.7 * t), 20 * t + 100], -1
    )[:, None]
    truth = np.concatenate([truth, truth[:, :, [1, 2, 0]]], 1)  # 2 keypoints
    return truth, truth + RNG.normal(scale=sigma, size=truth.shape)


def rmse(a, b):
    return float(np.sqrt(np.nanmean(np.sum((a - b) ** 2, -1))))


def test_kalman_smoother_beats_raw_and_fills_gaps():
    truth, noisy = noisy_3d_track()
    noisy[150:165, 0] = np.nan  # 15-frame gap
    out = kalman_smooth(noisy, process_sigma=0.1, measurement_sigma=2.0, fps=100.0)
    assert rmse(out.position, truth) < 0.4 * rmse(noisy, truth)
    gap = out.position[150:165, 0] - truth[150:165, 0]
    assert np.max(np.linalg.norm(gap, axis=-1)) < 6.0  # a 15-frame gap, 2 mm noise
    # Uncertainty grows into the gap and shrinks back.
    var = out.variance[:, 0, 0]
    assert var[157] > 3 * var[140] and var[157] > var[151] and var[157] > var[164]
    # The smoothed velocity is the derivative of the truth (mm/s).
    true_velocity = np.gradient(truth, axis=0) * 100.0
    assert rmse(out.velocity[5:-5], true_velocity[5:-5]) < 0.05 * np.abs(true_velocity).max()
    np.testing.assert_allclose(out.covariance[..., 0, 0], out.variance[..., 0])


def test_kalman_covariance_input_equals_confidence_noise():
    truth, noisy = noisy_3d_track(100)
    conf = RNG.uniform(0.2, 1.0, size=noisy.shape[:2])
    by_conf = kalman_smooth(noisy, measurement_sigma=2.0, confidence=conf, confidence_exponent=0.5)
    cov = (4.0 / conf)[..., None, None] * np.eye(3)
    by_cov = kalman_smooth(noisy, covariance=cov)
    np.testing.assert_allclose(by_cov.position, by_conf.position, atol=1e-3)
    # A non-finite covariance marks the point missing, like a NaN point.
    cov[40:45, 1] = np.nan
    holes = noisy.copy()
    holes[40:45, 1] = np.nan
    np.testing.assert_allclose(
        kalman_smooth(noisy, covariance=cov).position,
        kalman_smooth(holes, covariance=np.where(np.isnan(cov), 1.0, cov)).position,
        atol=1e-3,
    )


def test_kalman_forward_filter_is_causal_and_gaps_and_empty_tracks():
    truth, noisy = noisy_3d_track(100)
    noisy[:, 1] = np.nan  # never seen
    changed = noisy.copy()
    changed[60:, 0] += 10.0
    a = kalman_smooth(noisy, smooth=False)
    b = kalman_smooth(changed, smooth=False)
    # Equal up to float32 rounding: the data are centred on the mean of all frames.
    np.testing.assert_allclose(a.position[:60], b.position[:60], atol=1e-3)
    assert not np.allclose(a.position[60:, 0], b.position[60:, 0])
    assert np.all(np.isnan(a.position[:, 1])) and np.all(np.isnan(a.variance[:, 1]))
    holes = noisy.copy()
    holes[30:33, 0] = np.nan
    holes[50:60, 0] = np.nan
    out = kalman_smooth(holes, max_gap=5)
    assert np.all(np.isfinite(out.position[30:33, 0]))
    assert np.all(np.isnan(out.position[50:60, 0])) and np.all(np.isnan(out.velocity[50:60, 0]))


def test_kalman_bad_inputs():
    x = line()
    with pytest.raises(ValueError, match="unknown Kalman motion model 'jerk'"):
        kalman_smooth(x, model="jerk")
    with pytest.raises(
        ValueError, match=r"covariance must have shape \(frame, kpt, coord, coord\)"
    ):
        kalman_smooth(x, covariance=np.zeros((40, 2, 2, 2)))
    with pytest.raises(ValueError, match="process_sigma must be a positive"):
        kalman_smooth(x, process_sigma=0.0)
    with pytest.raises(ValueError, match=r"shape \(frame, kpt, coord\)"):
        kalman_smooth(x[:, 0])


# ---------------------------------------------------------------------------------------------
# Configured chains


def test_chain_from_mappings_equals_calling_the_filters():
    truth, noisy = noisy_3d_track(120)
    noisy[60, 0] += 80.0
    noisy[70:73, 1] = np.nan
    conf = np.ones(noisy.shape[:2])
    conf[20, 0] = 0.1
    chain = [
        {"kind": "mask", "cutoff": 0.5},
        {"kind": "median", "window": 5},
        {"kind": "fill", "max_gap": 4, "method": "cubic"},
        ButterworthFilter(cutoff=10.0, order=2),
    ]
    out = apply_filters(noisy, chain, fps=100.0, confidence=conf)
    expect = mask_low_confidence(noisy, conf, cutoff=0.5)
    expect = fill_gaps(median_filter(expect, window=5), max_gap=4, method="cubic")
    expect = butterworth_filter(expect, cutoff=10.0, fps=100.0, order=2)
    np.testing.assert_allclose(out, expect)
    assert np.all(np.isfinite(out)) and rmse(out, truth) < rmse(noisy, truth)
    np.testing.assert_allclose(
        filter_trajectory(noisy, "median", window=5), median_filter(noisy, window=5)
    )
    kalman = apply_filters(noisy, [KalmanSmoother(process_sigma=0.2, measurement_sigma=2.0)])
    np.testing.assert_allclose(
        kalman, kalman_smooth(noisy, process_sigma=0.2, measurement_sigma=2.0).position
    )


def test_chain_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown filter kind 'gaussian'"):
        filter_config("gaussian")
    with pytest.raises(ValueError, match=r"filter 'median' has no option\(s\) \['order'\]"):
        filter_config("median", order=3)
    with pytest.raises(ValueError, match="needs a 'kind' key"):
        apply_filters(line(), [{"window": 5}])
    with pytest.raises(ValueError, match="odd number of frames"):
        MedianFilter(window=4)
    with pytest.raises(ValueError, match="polyorder < window=5"):
        filter_config("savgol", window=5, polyorder=7)
    with pytest.raises(ValueError, match="unknown gap-filling method"):
        GapFill(method="nearest")
    with pytest.raises(ValueError, match="'mask' filter needs confidence"):
        apply_filters(line(), [{"kind": "mask"}])
    with pytest.raises(ValueError, match="'butterworth' filter .* needs the frame rate"):
        apply_filters(line(), [{"kind": "butterworth", "cutoff": 5}])
    with pytest.raises(ValueError, match=r"shape \(frame, kpt, coord\)"):
        apply_filters(np.zeros((10, 3)), [])


def test_chain_from_an_omegaconf_list():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        """
        filters:
          - {kind: median, window: 3}
          - {kind: kalman, model: constant_acceleration, process_sigma: 1e-2, max_gap: 4}
        """
    )
    x = line(30)
    x[10:12, 0] = np.nan
    x[20:26, 1] = np.nan
    out = apply_filters(x, cfg.filters)
    expect = kalman_smooth(
        median_filter(x, window=3), model="constant_acceleration", process_sigma=0.01, max_gap=4
    ).position
    np.testing.assert_allclose(out, expect)
    assert np.all(np.isfinite(out[10:12, 0])) and np.all(np.isnan(out[20:26, 1]))
