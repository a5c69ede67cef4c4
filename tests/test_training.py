"""nnlstm.clip_grad_by_global_norm: one norm over every gradient, PyTorch's semantics."""
import math

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import nnabla.solvers as S
import pytest

import nnlstm


def parameters_with_grads(rng, shapes, scale=1.0):
    """Variables of ``shapes`` with random gradients; returns (dict, list of numpy grads)."""
    params, grads = {}, []
    for k, shape in enumerate(shapes):
        p = nn.Variable(shape, need_grad=True)
        p.d = rng.randn(*shape)
        p.g = scale * rng.randn(*shape)
        params['p%d' % k] = p
        grads.append(p.g.copy())
    return params, grads


def torch_clip_grad_norm(grads, max_norm, eps=1e-6):
    """``torch.nn.utils.clip_grad_norm_`` (norm_type 2) written out in NumPy, in float64:
    total_norm = ||[||g||_2 for g]||_2; clip_coef = max_norm / (total_norm + 1e-6);
    gradients multiplied by clip_coef when clip_coef < 1; total_norm returned."""
    norm = np.linalg.norm([np.linalg.norm(g.astype(np.float64)) for g in grads])
    coef = max_norm / (norm + eps)
    return norm, [g * coef if coef < 1 else g for g in grads]


SHAPES = [(3, 4), (4,), (5, 2, 3), ()]


@pytest.mark.parametrize('max_norm, clipped', [(0.5, True), (1e3, False)])
def test_matches_torch_clip_grad_norm_semantics(rng, max_norm, clipped):
    params, grads = parameters_with_grads(rng, SHAPES)
    want_norm, want = torch_clip_grad_norm(grads, max_norm)
    assert (want_norm > max_norm) == clipped
    norm = nnlstm.clip_grad_by_global_norm(params, max_norm)
    assert isinstance(norm, float)
    assert norm == pytest.approx(want_norm, rel=1e-6)
    for p, g in zip(params.values(), want):
        np.testing.assert_allclose(p.g, g, rtol=1e-6, atol=1e-7)
    after = math.sqrt(sum(float(np.sum(p.g.astype(np.float64) ** 2)) for p in params.values()))
    assert after == pytest.approx(min(want_norm, max_norm), rel=1e-5)


def test_keeps_the_direction_unlike_nnabla_per_parameter_clipping(rng):
    """NNabla's solver.clip_grad_by_norm clips each gradient on its own: the update
    direction changes. The global norm scales all gradients by one factor."""
    params, grads = parameters_with_grads(rng, [(4, 4), (4,)])
    params['p1'].g *= 100.0  # one gradient much larger than the other
    grads[1] = params['p1'].g.copy()
    nnlstm.clip_grad_by_global_norm(params, 1.0)
    ratios = [p.g / g for p, g in zip(params.values(), grads)]
    np.testing.assert_allclose(np.concatenate([r.ravel() for r in ratios]),
                               ratios[0].ravel()[0], rtol=1e-5)
    solver = S.Sgd(1.0)
    solver.set_parameters({k: v for k, v in params.items()})
    for p, g in zip(params.values(), grads):
        p.g = g
    solver.clip_grad_by_norm(1.0)
    r0, r1 = (params['p0'].g / grads[0]).ravel()[0], (params['p1'].g / grads[1]).ravel()[0]
    assert not np.isclose(r0, r1)


def test_accepts_a_list_and_the_parameters_of_a_real_graph(rng):
    x = nn.Variable.from_numpy_array(rng.randn(4, 6, 3).astype(np.float32))
    y = PF.affine(nnlstm.LSTM(x, 5, name='lstm'), 2, name='fc')
    loss = F.sum(F.pow_scalar(y, 2.0))
    loss.forward()
    params = nn.get_parameters()
    for p in params.values():
        p.grad.zero()
    loss.backward()
    grads = [p.g.copy() for p in params.values()]
    want_norm, want = torch_clip_grad_norm(grads, 0.01)
    norm = nnlstm.clip_grad_by_global_norm(list(params.values()), 0.01)
    assert norm == pytest.approx(want_norm, rel=1e-5)
    for p, g in zip(params.values(), want):
        np.testing.assert_allclose(p.g, g, rtol=1e-5, atol=1e-8)


def test_empty_parameters_have_norm_zero():
    assert nnlstm.clip_grad_by_global_norm({}, 1.0) == 0.0


@pytest.mark.parametrize('bad', [np.inf, np.nan])
def test_non_finite_norm_is_returned_and_gradients_are_left_alone(rng, bad):
    params, grads = parameters_with_grads(rng, [(2, 3), (3,)])
    params['p1'].g[0] = bad
    before = [p.g.copy() for p in params.values()]
    norm = nnlstm.clip_grad_by_global_norm(params, 1.0)
    assert not math.isfinite(norm)
    for p, g in zip(params.values(), before):
        np.testing.assert_array_equal(p.g, g)


@pytest.mark.parametrize('parameters, max_norm, error, match', [
    ('P', 0.0, ValueError, r"`max_norm` must be a finite number > 0; received 0\.0"),
    ('P', -1, ValueError, r"`max_norm` must be a finite number > 0; received -1"),
    ('P', float('inf'), ValueError, r"`max_norm` must be a finite number > 0; received inf"),
    ('P', '5', ValueError, r"`max_norm` must be a finite number > 0; received '5'"),
    ('V', 1.0, TypeError, r"received one Variable \(wrap it in a list\)"),
    (3, 1.0, TypeError, r"`parameters` must be a dict .* received int"),
    ([np.zeros(3)], 1.0, TypeError, r"`parameters\[0\]` must be an nnabla.Variable; "
                                    r"received ndarray"),
])
def test_bad_arguments(rng, parameters, max_norm, error, match):
    params, _ = parameters_with_grads(rng, [(2,)])
    parameters = {'P': params, 'V': params['p0']}.get(parameters, parameters) \
        if isinstance(parameters, str) else parameters
    with pytest.raises(error, match=match):
        nnlstm.clip_grad_by_global_norm(parameters, max_norm)


@pytest.mark.parametrize('eps, error, match', [
    (-1.0, ValueError, r"`eps` must be a finite number >= 0; received -1\.0"),
    (float('nan'), ValueError, r"`eps` must be a finite number >= 0; received nan"),
    ('0', TypeError, r"`eps` must be a finite number >= 0; received str '0'"),
    (None, TypeError, r"`eps` must be a finite number >= 0; received NoneType None"),
])
def test_bad_eps_is_refused_before_any_gradient_changes(rng, eps, error, match):
    params, grads = parameters_with_grads(rng, [(3,)])
    with pytest.raises(error, match=match):
        nnlstm.clip_grad_by_global_norm(params, 1e-3, eps=eps)
    np.testing.assert_array_equal(params['p0'].g, grads[0])
