"""Property tests (hypothesis): random shapes, dtypes and values (NaN, inf, huge, zeros, wrong
dimensions) into ``compute_features`` and ``Predictor.predict`` give correct outputs or an
``InputError``, never anything else. Row ``array-property`` of the table."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.errors import InputError
from engine.features import MAX_ABS_VALUE, NUM_FEATURES, NUM_KEYPOINTS, compute_features
from engine.inference import Predictor
from robustness_cases import CASES
from robustness_helpers import plausible_landmarks

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NASTY = st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, 1e9, -3e38, 99.9, 100.5,
                         1e300, 0.5, 1.0])
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int8, np.uint8,
                          np.bool_, np.complex64])


@st.composite
def landmark_arrays(draw) -> np.ndarray:
    """Mostly (F, 33, 10) arrays: plausible frames with random corruption, or random values;
    sometimes other shapes and dtypes."""
    kind = draw(st.sampled_from(["corrupted", "scaled", "random", "shape", "dtype"]))
    frames = draw(st.integers(0, 24))
    if kind == "shape":
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12))
        return draw(hnp.arrays(np.float32, shape, elements=st.floats(-2, 2, width=32)))
    if kind == "dtype":
        dtype = draw(DTYPES)
        return draw(hnp.arrays(dtype, (frames, 33, 10)))
    if kind == "random":
        elements = st.one_of(st.floats(-150, 150), NASTY)
        with np.errstate(over="ignore"):  # beyond float32: inf
            return draw(hnp.arrays(np.float64, (frames, 33, 10), elements=elements)
                        ).astype(np.float32)
    lm = plausible_landmarks(frames, draw(st.integers(0, 2**16)))
    if kind == "scaled":  # whole frames blown up (or shrunk): finite but absurd
        scale = draw(st.sampled_from([1e-30, 0.0, 101.0, 1e3, 1e9, 1e20, 1e30]))
        with np.errstate(over="ignore"):
            lm[draw(st.lists(st.integers(0, max(frames - 1, 0)), max_size=frames))] *= scale
        return lm
    for _ in range(draw(st.integers(0, 12))):  # single values, whole landmarks or frames
        if frames == 0:
            break
        f, j, c = draw(st.integers(0, frames - 1)), draw(st.integers(0, 32)), \
            draw(st.integers(0, 9))
        scope = draw(st.sampled_from(["value", "landmark", "frame"]))
        where = (f, j, c) if scope == "value" else (f, j) if scope == "landmark" else (f,)
        with np.errstate(over="ignore"):
            lm[where] = draw(NASTY)
    with np.errstate(over="ignore"):
        return lm.astype(draw(st.sampled_from([np.float32, np.float64, np.float16])))


ASPECT = st.one_of(st.sampled_from([16 / 9, 9 / 16, 1.0]), st.floats(allow_nan=True,
                                                                      allow_infinity=True))
FOCAL = st.one_of(st.just(0.67), st.floats(-1, 100))
FPS = st.one_of(st.sampled_from([30.0, 25.0, 59.94]), st.floats(allow_nan=True,
                                                                allow_infinity=True))


def _is_landmark_array(lm: np.ndarray) -> bool:
    return lm.ndim == 3 and lm.shape[1:] == (33, 10) and lm.dtype.kind in "fiu"


@SETTINGS
@given(lm=landmark_arrays(), aspect=ASPECT, focal=FOCAL)
def test_features_give_finite_output_or_input_error(lm, aspect, focal):
    assert CASES["array-property"].code is None
    try:
        feats, valid, state = compute_features(lm, aspect, focal=focal)
    except InputError:
        in_range = 0.01 <= aspect <= 100 and 0.05 <= focal <= 50
        assert not (_is_landmark_array(lm) and in_range)  # refused only what is documented
        return
    n = lm.shape[0]
    assert feats.shape == (n, NUM_KEYPOINTS, NUM_FEATURES) and feats.dtype == np.float32
    assert valid.shape == (n,) and valid.dtype == bool
    assert np.isfinite(feats).all() and (feats[~valid] == 0).all()
    with np.errstate(over="ignore", invalid="ignore"):
        plausible = (np.abs(lm.astype(np.float32)) <= MAX_ABS_VALUE).all(axis=(1, 2))
    assert not (valid & ~plausible).any()  # a frame with NaN / inf / huge values is never valid
    assert not (valid & ~lm.astype(bool).any(axis=(1, 2))).any()  # nor an all-zero one


@pytest.fixture(scope="module")
def predictors(tiny_weights) -> dict[str, Predictor]:
    return {b: Predictor.from_checkpoint(tiny_weights, backend=b) for b in ("torch", "numpy")}


@SETTINGS
@given(lm=landmark_arrays(), aspect=ASPECT, fps=FPS, backend=st.sampled_from(["torch", "numpy"]),
       chunk=st.integers(1, 30))
def test_predict_gives_finite_unit_output_or_input_error(predictors, lm, aspect, fps, backend,
                                                         chunk):
    try:
        pred = predictors[backend].predict(lm, aspect=aspect, fps=fps, chunk=chunk)
    except InputError:
        ok = 0.01 <= aspect <= 100 and np.isfinite(fps) and fps > 0
        assert not (_is_landmark_array(lm) and lm.shape[0] > 0 and ok)
        return
    n = lm.shape[0]
    assert pred.joints.shape == (n, 21, 3) and pred.global_quats.shape == (n, 21, 4)
    assert pred.local_6d.shape == (n, 22, 6) and pred.root_translation.shape == (n, 3)
    assert pred.valid.shape == (n,) and pred.coverage.frames == n
    for a in (pred.joints, pred.global_quats, pred.local_6d, pred.root_translation):
        assert np.isfinite(a).all()
    np.testing.assert_allclose(np.linalg.norm(pred.global_quats, axis=-1), 1.0, atol=1e-4)
