"""Temporal smoothing: filter identities and known answers, pose-sequence denoising, rotations
through pi, robust betas, and the acceleration metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from wbcap.eval.metrics import M_TO_MM, mpjpe
from wbcap.smooth.filters import gaussian, one_euro, one_euro_alpha
from wbcap.smooth.metrics import acceleration_error
from wbcap.smooth.sequence import (
    SmoothConfig,
    robust_mean,
    smooth_rotations,
    smooth_signal,
    smooth_track,
)

FPS = 30.0


def _geodesic(aa1: np.ndarray, aa2: np.ndarray) -> np.ndarray:
    """Angle (rad) of the relative rotation between two axis-angle arrays ``(..., 3)``."""
    r1 = Rotation.from_rotvec(aa1.reshape(-1, 3))
    r2 = Rotation.from_rotvec(aa2.reshape(-1, 3))
    return (r1.inv() * r2).magnitude().reshape(aa1.shape[:-1])


def _synthetic_motion(seed: int = 0, t_len: int = 120, joints: int = 22):
    """Clean and noisy SMPL-X-like motion at 30 fps.

    Every axis-angle component is a sinusoid (amplitude 0.3-1.2 rad, 0.2-1 Hz); translation is
    a smooth path in metres. Noise: a random rotation with N(0, 0.05 rad) rotation-vector
    components composed onto every joint, N(0, 1 cm) on the translation.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(t_len) / FPS
    amp = rng.uniform(0.3, 1.2, (joints, 3))
    freq = rng.uniform(0.2, 1.0, (joints, 3))
    phase = rng.uniform(0.0, 2 * math.pi, (joints, 3))
    aa = amp * np.sin(2 * math.pi * freq * t[:, None, None] + phase)  # (T, J, 3)
    w = 2 * math.pi * t
    trans = np.stack([0.5 * np.sin(0.3 * w), 0.1 * np.sin(0.7 * w), 3.0 + 0.3 * t], -1)
    noise = Rotation.from_rotvec(rng.normal(0.0, 0.05, (t_len * joints, 3)))
    aa_noisy = (Rotation.from_rotvec(aa.reshape(-1, 3)) * noise).as_rotvec().reshape(aa.shape)
    trans_noisy = trans + rng.normal(0.0, 0.01, trans.shape)
    bones = rng.normal(size=(joints, 3))
    bones *= 0.3 / np.linalg.norm(bones, axis=1, keepdims=True)  # 30 cm "bones"
    return t, aa, trans, aa_noisy, trans_noisy, bones


def _positions(aa: np.ndarray, trans: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """``(T, J, 3)`` points: each joint's bone vector rotated by its rotation, plus translation."""
    t_len, joints = aa.shape[:2]
    rot = Rotation.from_rotvec(aa.reshape(-1, 3))
    pts = rot.apply(np.broadcast_to(bones, (t_len, joints, 3)).reshape(-1, 3))
    return pts.reshape(t_len, joints, 3) + trans[:, None, :]


def _mpjpe_seq(pred: np.ndarray, gt: np.ndarray) -> float:
    """MPJPE of a ``(T, J, 3)`` sequence over all frames and joints, in the input units (metres)."""
    return float(mpjpe(pred, gt).mean()) / M_TO_MM


# ----------------------------------------------------------------------------- filters


def test_identity_limits() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 7))
    t = np.cumsum(rng.uniform(0.02, 0.05, 50))  # non-uniform timestamps
    np.testing.assert_array_equal(gaussian(x, 0.0), x)
    np.testing.assert_allclose(one_euro(x, t, min_cutoff=1e12, beta=0.0), x, rtol=0, atol=1e-6)
    # Small-but-not-zero strength is *not* the identity (the limit is really approached).
    assert np.abs(one_euro(x, t, min_cutoff=1.0) - x).max() > 0.1
    assert np.abs(gaussian(x, 1.0) - x).max() > 0.1

    aa = rng.normal(size=(50, 4, 3))
    out = smooth_track(aa, x[:, :3], x[:, 3:], t, SmoothConfig(method="none"))
    np.testing.assert_array_equal(out.poses_aa, aa)
    np.testing.assert_array_equal(out.transl, x[:, :3])


def test_constant_signals_unchanged() -> None:
    t = np.arange(40) / FPS
    x = np.tile(np.array([1.5, -2.0, 0.25]), (40, 1))
    for cfg in (SmoothConfig(), SmoothConfig(bidirectional=False), SmoothConfig(method="gaussian")):
        np.testing.assert_allclose(smooth_signal(x, t, cfg), x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(one_euro(x, t, 0.5, 2.0), x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gaussian(x, 3.0), x, rtol=0, atol=1e-12)
    # A constant rotation (also one at angle pi) stays that rotation.
    aa = np.tile(np.array([[0.3, -1.0, 0.5], [0.0, 0.0, math.pi]]), (40, 1, 1))
    out = smooth_rotations(aa, t, SmoothConfig())
    assert _geodesic(out, aa).max() < 1e-6


def test_one_euro_known_answers() -> None:
    """Step response of the standard formulation; non-uniform steps use their own period."""
    fc = 2.0
    t = np.array([0.0, 0.1, 0.2, 0.5])
    x = np.array([0.0, 1.0, 1.0, 1.0])[:, None]
    out = one_euro(x, t, min_cutoff=fc, beta=0.0)[:, 0]
    a1 = 1.0 / (1.0 + (1.0 / (2 * math.pi * fc)) / 0.1)
    a3 = 1.0 / (1.0 + (1.0 / (2 * math.pi * fc)) / 0.3)
    assert a1 == pytest.approx(0.55686, abs=1e-5)
    assert one_euro_alpha(0.1, fc) == pytest.approx(a1)
    np.testing.assert_allclose(
        out, [0.0, a1, 1 - (1 - a1) ** 2, 1 - (1 - a1) ** 2 * (1 - a3)], rtol=0, atol=1e-12
    )
    # beta raises the cutoff with speed: less lag on a ramp (1 unit/s).
    t = np.arange(60) / FPS
    ramp = t[:, None].copy()
    lag0 = np.abs(one_euro(ramp, t, 1.0, 0.0) - ramp)[-1, 0]
    lag1 = np.abs(one_euro(ramp, t, 1.0, 5.0) - ramp)[-1, 0]
    assert lag0 == pytest.approx(1 / (2 * math.pi), rel=0.15)  # steady-state lag = tau * speed
    assert lag1 < 0.3 * lag0
    with pytest.raises(ValueError):
        one_euro(ramp, t[::-1], 1.0)


def test_gaussian_known_answers() -> None:
    impulse = np.zeros(41)
    impulse[20] = 1.0
    out = gaussian(impulse, 3.0)
    k = np.exp(-0.5 * (np.arange(-12, 13) / 3.0) ** 2)
    np.testing.assert_allclose(out[8:33], k / k.sum(), rtol=0, atol=1e-12)
    # A linear ramp is unchanged away from the ends (symmetric kernel), along the chosen axis.
    ramp = np.tile(np.arange(50.0), (2, 1))
    np.testing.assert_allclose(gaussian(ramp, 2.0, axis=1)[:, 10:40], ramp[:, 10:40], atol=1e-9)


# ----------------------------------------------------------------------------- sequences


def test_smoothing_reduces_jitter_without_losing_accuracy() -> None:
    t, aa, trans, aa_noisy, trans_noisy, bones = _synthetic_motion()
    betas = np.zeros((len(t), 10))
    clean = _positions(aa, trans, bones)
    noisy = _positions(aa_noisy, trans_noisy, bones)
    acc_noisy = acceleration_error(noisy, clean)
    err_noisy = _mpjpe_seq(noisy, clean)
    # Sanity of the synthetic data (metres): ~60 mm/frame^2 jitter, ~25 mm error.
    assert 0.03 < acc_noisy < 0.09 and 0.015 < err_noisy < 0.035

    for cfg, min_ratio in ((SmoothConfig(), 5.0), (SmoothConfig(method="gaussian"), 5.0)):
        out = smooth_track(aa_noisy, trans_noisy, betas, t, cfg)
        smooth = _positions(out.poses_aa, out.transl, bones)
        ratio = acc_noisy / acceleration_error(smooth, clean)
        err = _mpjpe_seq(smooth, clean)
        assert ratio >= min_ratio, (cfg.method, ratio)
        assert err <= 0.9 * err_noisy, (cfg.method, err, err_noisy)
        # The rotations themselves got closer to the clean ones, too.
        assert _geodesic(out.poses_aa, aa).mean() < _geodesic(aa_noisy, aa).mean()

    # The causal 1-euro filter lags: it removes jitter but the error grows (why the default
    # runs forwards and backwards).
    out = smooth_track(aa_noisy, trans_noisy, betas, t, SmoothConfig(bidirectional=False))
    assert _mpjpe_seq(_positions(out.poses_aa, out.transl, bones), clean) > err_noisy


def test_rotation_through_pi_has_no_flips() -> None:
    """A joint turning about a fixed axis through angle pi, where axis-angle jumps sign."""
    rng = np.random.default_rng(1)
    t = np.arange(90) / FPS
    axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    angle = math.pi + 0.15 * np.sin(2 * math.pi * 0.5 * t)  # 2.99 .. 3.29 rad
    clean = Rotation.from_rotvec(angle[:, None] * axis)
    noisy_rot = clean * Rotation.from_rotvec(rng.normal(0.0, 0.03, (len(t), 3)))
    # Second joint: an ordinary one, to check joints are independent.
    other = np.stack([0.5 * np.sin(2 * math.pi * 0.4 * t), 0.2 + 0 * t, 0 * t], -1)
    aa = np.stack([noisy_rot.as_rotvec(), other], axis=1)  # (T, 2, 3), angles in [0, pi]
    jumps_in = np.linalg.norm(np.diff(aa[:, 0], axis=0), axis=-1)
    assert jumps_in.max() > 5.0  # the input vector does flip (from ~+pi*axis to ~-pi*axis)

    for cfg in (SmoothConfig(), SmoothConfig(method="gaussian")):
        out = smooth_rotations(aa, t, cfg)
        step = _geodesic(out[1:, 0], out[:-1, 0])
        assert step.max() < 0.5 and step.max() < 0.1
        assert np.linalg.norm(out[:, 0], axis=-1).min() > 2.8  # stays near pi
        err = _geodesic(out[:, 0], clean.as_rotvec())
        assert err.mean() < _geodesic(aa[:, 0], clean.as_rotvec()).mean()
        np.testing.assert_allclose(out[:, 1], smooth_rotations(aa[:, 1:], t, cfg)[:, 0], atol=1e-12)

    # Filtering the raw axis-angle would average +pi and -pi to ~0: the test would catch it.
    naive = gaussian(aa[:, 0], 2.0)
    assert np.linalg.norm(naive, axis=-1).min() < 1.0


def test_betas_robust_mean_ignores_outlier() -> None:
    rng = np.random.default_rng(2)
    true = rng.normal(size=10)
    betas = true + rng.normal(0.0, 0.01, (30, 10))
    betas[7] = 50.0  # one broken frame
    betas[8, 3] = -40.0
    t = np.arange(30) / FPS
    out = smooth_track(np.zeros((30, 1, 3)), np.zeros((30, 3)), betas, t)
    assert out.betas.shape == (10,)
    assert np.abs(out.betas - true).max() < 0.02
    assert np.abs(betas.mean(axis=0) - true).max() > 1.0  # the plain mean would not
    np.testing.assert_allclose(robust_mean(betas, 0.0), betas.mean(axis=0))
    np.testing.assert_allclose(robust_mean(betas, 0.5), np.median(betas, axis=0))
    # Interquartile mean of 1..8: drop 2 each end -> mean(3..6) = 4.5.
    assert robust_mean(np.arange(1.0, 9.0)[:, None], 0.25)[0] == pytest.approx(4.5)


def test_extras_filtered_like_translation_and_dtypes() -> None:
    t, aa, trans, aa_noisy, trans_noisy, _ = _synthetic_motion(t_len=40, joints=3)
    expr = np.random.default_rng(3).normal(size=(40, 10))
    cfg = SmoothConfig()
    out = smooth_track(
        aa_noisy.astype(np.float32), trans_noisy, np.zeros((40, 10)), t, cfg, extras={"expr": expr}
    )
    assert set(out.extras) == {"expr"}
    np.testing.assert_allclose(out.extras["expr"], smooth_signal(expr, t, cfg))
    assert np.abs(out.extras["expr"] - expr).max() > 0.1
    assert out.poses_aa.dtype == np.float32 and out.poses_aa.shape == (40, 3, 3)
    assert out.transl.dtype == np.float64
    with pytest.raises(ValueError):
        smooth_track(aa_noisy, trans_noisy[:-1], np.zeros((40, 10)), t)
    with pytest.raises(ValueError):
        SmoothConfig(method="kalman")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- metrics


def test_acceleration_error_known_answers() -> None:
    f = np.arange(10.0)
    const_vel = np.stack([3.0 * f, -f, 0 * f], -1)[:, None, :]  # (T, 1, 3)
    assert acceleration_error(const_vel) == pytest.approx(0.0, abs=1e-12)
    quad = np.stack([f**2, 0 * f, 0 * f], -1)[:, None, :]
    assert acceleration_error(quad) == pytest.approx(2.0)
    assert acceleration_error(quad + const_vel, const_vel) == pytest.approx(2.0)
    assert acceleration_error(quad, quad) == pytest.approx(0.0)
    assert acceleration_error(quad, fps=30.0) == pytest.approx(2.0 * 900.0)  # units/s^2
    # Mean over frames and joints: joint 2 accelerates 2 in x and y -> norm 2*sqrt(2).
    two = np.concatenate([quad, np.stack([f**2, f**2, 0 * f], -1)[:, None, :]], axis=1)
    assert acceleration_error(two) == pytest.approx((2.0 + 2.0 * math.sqrt(2.0)) / 2)
    # Alternating +-1 noise in x: second difference magnitude 4 at every frame.
    alt = np.zeros((8, 1, 3))
    alt[:, 0, 0] = (-1.0) ** np.arange(8)
    assert acceleration_error(alt, np.zeros_like(alt)) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        acceleration_error(quad[:2])


def test_run_help_states_the_smoothing_defaults_smoothconfig_has() -> None:
    """`wbcap run --help` gave no defaults for --min-cutoff, --beta, --sigma (found by a user
    trial); the CLI keeps them None (unset) and SmoothConfig decides, so the help must say its
    values."""
    from click.testing import CliRunner

    from wbcap.cli import cli
    from wbcap.smooth.sequence import SmoothConfig

    text = " ".join(CliRunner().invoke(cli, ["run", "--help"]).output.split())
    cfg = SmoothConfig()
    assert f"lower = smoother; default {cfg.min_cutoff}, which keeps ~75 % of a 1 Hz motion at 30 fps" in text, text
    assert f"less lag on fast motion; default {cfg.beta})" in text
    assert f"standard deviation in frames (default {cfg.sigma})" in text


def test_a_missed_stretch_and_the_ends_do_not_pull_a_straight_motion() -> None:
    """A review: the Gaussian took the rows around a missed stretch (frames 30-35) for neighbours
    one frame apart, pulling a person walking at 1.5 m/s 12 cm off at the last row before it and a
    joint turning at 2 rad/s by up to 9 degrees; both filters pulled the first and last frames of
    every track back towards standing still (3.6-6.4 cm). Known answers: a straight motion comes
    back from the Gaussian exactly, gap or not, ends included; from the 1€ filter within 4 mm at
    the ends and 8 mm by the gap (its lag), and rotations likewise."""
    from scipy.spatial.transform import Rotation

    frames = np.r_[0:30, 36:66]
    for t in (frames / 30.0, np.arange(60) / 30.0):
        x = np.stack([1.5 * t, -0.4 * t + 2.0, np.full_like(t, 5.0)], 1)
        np.testing.assert_allclose(smooth_signal(x, t, SmoothConfig(method="gaussian")), x, atol=1e-9)
        err = np.abs(smooth_signal(x, t, SmoothConfig()) - x)
        assert err[[0, -1]].max() < 0.004 and err.max() < 0.008, err.max(axis=1)
        aa = np.zeros((len(t), 1, 3))
        aa[:, 0, 2] = 2.0 * t  # about z at 2 rad/s, through pi
        for config, bound in ((SmoothConfig(method="gaussian"), 0.3), (SmoothConfig(), 1.1)):
            out = smooth_rotations(aa, t, config)
            deg = np.degrees((Rotation.from_rotvec(out[:, 0]) * Rotation.from_rotvec(aa[:, 0]).inv()).magnitude())
            assert deg.max() < bound, (config.method, deg.max())
    # across a stretch longer than the kernel's reach nothing of the other side is taken
    t = np.r_[0:30, 61:91] / 30.0
    x = np.where(t < 1.0, 0.0, 1.0)[:, None]  # a step across the 1 s gap
    np.testing.assert_allclose(smooth_signal(x, t, SmoothConfig(method="gaussian")), x, atol=1e-12)


def test_the_pieces_a_track_is_split_into_are_smoothed_apart() -> None:
    """A review: a person re-identified after 1.5 s unseen (over --max-gap: written as two files)
    was smoothed as one sequence, the 1-euro filter carrying each side's values into the other's
    ends (7.6 cm and 2.6 degrees on part 1's last row). With ``pieces`` each is its own sequence:
    equal to smoothing it alone, a person standing still on either side comes back exactly, and
    the shape is the whole track's."""
    from wbcap.export.amass import clock_cuts

    t = np.r_[np.arange(60) / FPS, 59 / FPS + 1.5 + np.arange(60) / FPS]
    pieces = clock_cuts(t, FPS, 1.0, frames=np.round(t * FPS).astype(int), frame_step=1)
    assert pieces.tolist() == [60]
    before = np.arange(120) < 60
    root = np.where(before[:, None], Rotation.from_euler("x", np.pi).as_rotvec(),
                    (Rotation.from_euler("x", np.pi) * Rotation.from_euler("y", np.pi / 2)).as_rotvec())[:, None]
    transl = np.where(before[:, None], [0.0, 0.0, 5.0], [2.0, 0.0, 5.0])
    rng = np.random.default_rng(0)
    betas, expression = rng.normal(size=(120, 10)), rng.normal(size=(120, 10))
    for config in (SmoothConfig(), SmoothConfig(method="gaussian")):
        whole = smooth_track(root, transl, betas, t, config, extras={"expression": expression}, pieces=pieces)
        np.testing.assert_allclose(whole.transl, transl, atol=1e-12)
        assert _geodesic(whole.poses_aa, root).max() < 1e-6
        for part in (slice(0, 60), slice(60, 120)):
            alone = smooth_track(root[part], transl[part], betas[part], t[part], config,
                                 extras={"expression": expression[part]})
            np.testing.assert_array_equal(whole.poses_aa[part], alone.poses_aa)
            np.testing.assert_array_equal(whole.extras["expression"][part], alone.extras["expression"])
        np.testing.assert_array_equal(whole.betas, robust_mean(betas, config.betas_trim))
    joined = smooth_track(root, transl, betas, t, SmoothConfig())  # (what a track was smoothed as)
    assert np.abs(joined.transl - transl).max() > 0.05
    for bad in ([0], [120], [60, 60], [70, 60]):
        with pytest.raises(ValueError, match="pieces must be increasing indices in 1..119"):
            smooth_track(root, transl, betas, t, pieces=bad)


@pytest.mark.parametrize("fps, min_cutoff, kept", [(30, 2.0, (0.93, 0.75, 0.43, 0.25)), (10, 2.0, (0.89, 0.66, 0.34, 0.22)),
                                                   (30, 8.0, (1.00, 0.97, 0.86, 0.74))])
def test_the_amplitude_the_one_euro_filter_keeps_is_the_readmes(fps, min_cutoff, kept) -> None:
    """README's table ("What the smoothing keeps"): a 1 cm sinusoid at 0.5 / 1 / 2 / 3 Hz keeps
    these fractions of its amplitude (a biomechanics trial found the default halves 2 Hz, which
    the docs called the cutoff); no lag (zero phase)."""
    from wbcap.smooth.sequence import SmoothConfig, smooth_signal

    t = np.arange(12 * fps) / fps
    middle = (t > 3) & (t < 9)
    for f, expected in zip((0.5, 1.0, 2.0, 3.0), kept):
        x = 0.01 * np.sin(2 * np.pi * f * t)
        y = smooth_signal(x[:, None], t, SmoothConfig(min_cutoff=min_cutoff))[:, 0]
        s, c = np.sin(2 * np.pi * f * t[middle]), np.cos(2 * np.pi * f * t[middle])
        in_phase, quadrature = 2 * (y[middle] * s).mean(), 2 * (y[middle] * c).mean()
        assert np.hypot(in_phase, quadrature) / 0.01 == pytest.approx(expected, abs=0.006), f
        assert abs(np.arctan2(quadrature, in_phase)) < 2 * np.pi * f * 0.002  # (under 2 ms of lag)


def test_smooth_config_in_words_and_as_options():
    """What a --resume's warning of a changed smoothing says (a long-video trial lost its Gaussian
    smoothing to a --resume --no-render without a word)."""
    from wbcap.smooth.sequence import SmoothConfig

    assert SmoothConfig(method="gaussian", sigma=3).describe() == "gaussian (sigma 3)"
    assert SmoothConfig(method="gaussian", sigma=3).options() == "--smooth gaussian --sigma 3"
    assert SmoothConfig(min_cutoff=8).options() == "--smooth oneeuro --min-cutoff 8"
    assert SmoothConfig().describe() == "oneeuro (min_cutoff 2, beta 0.5)"
    assert SmoothConfig(d_cutoff=2.0).describe() == "oneeuro (min_cutoff 2, beta 0.5, d_cutoff 2)"
    assert SmoothConfig(method="none", sigma=5).describe() == "none" and SmoothConfig(method="none").options() == (
        "--smooth none")
    # exact values (":g" gave 1.23457 for 1.2345678: the options a warning named warned again, a break-it trial)
    odd = SmoothConfig(method="gaussian", sigma=1.2345678)
    assert odd.describe() == "gaussian (sigma 1.2345678)" and odd.options() == "--smooth gaussian --sigma 1.2345678"
    assert SmoothConfig(min_cutoff=0.1234567, beta=1.234567e-05).options() == (
        "--smooth oneeuro --min-cutoff 0.1234567 --beta 1.234567e-05")
    # settings no option takes: named, and said in Python
    api = SmoothConfig(bidirectional=False, betas_trim=0.0)
    assert api.describe() == "oneeuro (min_cutoff 2, beta 0.5, bidirectional False, betas_trim 0)"
    assert api.options() is None and api.python() == "SmoothConfig(method='oneeuro', bidirectional=False, betas_trim=0.0)"
    assert SmoothConfig(method="gaussian", sigma=3.0).python() == "SmoothConfig(method='gaussian', sigma=3.0)"
    # settings the method does not read change nothing
    assert SmoothConfig(method="gaussian", min_cutoff=9).effective() == SmoothConfig(method="gaussian").effective()
    assert SmoothConfig(betas_trim=0.0).effective() != SmoothConfig().effective()
