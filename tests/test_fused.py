"""The fused CPU kernels (nnlstm.fused) against the unrolled graph on the same parameters
(outputs, final states, every gradient, in float32), against float64 central differences of
their own forward, and without numba (the NumPy fallback)."""
import os
import subprocess
import sys

import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
from nnlstm import fused
from nnlstm.kinds import KINDS

B, T, D, H = 3, 5, 2, 4
LAYERS = {'lstm': nnlstm.LSTM, 'gru': nnlstm.GRU, 'rnn': nnlstm.SimpleRNN}
CASES = [('lstm', {}), ('gru', {'reset_after': True}), ('gru', {'reset_after': False}),
         ('rnn', {})]


def spec(kind, reverse=False, time_major=False, activation='tanh', **options):
    return fused.Spec(kind=kind, units=H, activation=activation,
                      recurrent_activation=None if kind == 'rnn' else 'sigmoid',
                      reset_after=options.get('reset_after'), reverse=reverse,
                      time_major=time_major)


def params_of(kind, name='l'):
    got = nn.get_parameters()
    return [got.get(name + '/' + p.name) for p in KINDS[kind].params]


def var(a, need_grad=False):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32), need_grad=need_grad)


@pytest.mark.parametrize('kind,options', CASES)
@pytest.mark.parametrize('reverse,lengths,with_state,use_bias,time_major', [
    (False, None, False, True, False), (True, None, True, True, False),
    (False, [5, 2, 3], True, False, False), (True, [5, 2, 0], False, True, False),
    (True, None, True, True, True)])
def test_kernel_equals_the_unrolled_graph(rng, kind, options, reverse, lengths, with_state,
                                          use_bias, time_major):
    x = rng.randn(T, B, D) if time_major else rng.randn(B, T, D)
    fields = KINDS[kind].state._fields
    s0 = [rng.randn(B, H) for _ in fields]
    xv = var(x, True)
    sv = [var(s, True) for s in s0] if with_state else None
    lengths = None if lengths is None else np.array(lengths)
    outs = LAYERS[kind](xv, H, sv, return_sequences=True, return_state=True, name='l',
                        go_backwards=reverse, lengths=lengths, time_major=time_major,
                        use_bias=use_bias, fused=False, **options)
    ps = [p for p in params_of(kind) if p is not None]
    for p in ps:
        p.d = rng.randn(*p.shape) * 0.5
        p.grad.zero()
    gy = rng.randn(*outs[0].shape)
    gs = [rng.randn(B, H) for _ in fields]
    loss = F.sum(F.mul2(outs[0], var(gy)))
    for v, g in zip(outs[1:], gs):
        loss = F.add2(loss, F.sum(F.mul2(v, var(g))))
    loss.forward()
    loss.backward()
    arrays = [None if p is None else p.d.copy() for p in params_of(kind)]
    sp = spec(kind, reverse, time_major, **options)
    y, final, cache = fused.forward(sp, x.astype(np.float32), arrays,
                                    [s.astype(np.float32) for s in s0] if with_state else None,
                                    lengths=lengths)
    np.testing.assert_allclose(y, outs[0].d, rtol=1e-5, atol=1e-6)
    for a, v in zip(final, outs[1:]):
        np.testing.assert_allclose(a, v.d, rtol=1e-5, atol=1e-6)
    dx, dparams, dstate = fused.backward(sp, cache, gy.astype(np.float32),
                                         [g.astype(np.float32) for g in gs])
    np.testing.assert_allclose(dx, xv.g, rtol=1e-5, atol=1e-5)
    for d, p in zip(dparams, params_of(kind)):
        assert (d is None) == (p is None)
        if p is not None:
            np.testing.assert_allclose(d, p.g, rtol=1e-5, atol=1e-5)
    if with_state:
        for d, v in zip(dstate, sv):
            np.testing.assert_allclose(d, v.g, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kind,options', CASES)
@pytest.mark.parametrize('activation', ['tanh', 'relu', 'linear'])
def test_kernel_gradients_match_float64_finite_differences(rng, kind, options, activation):
    """Every gradient of the kernel against central differences of its own forward, in
    float64, with both dropout masks and lengths (the blend) in the loop."""
    b, t, d, h = 2, 3, 2, H
    shapes = {name: shape for name, shape in KINDS[kind].parameters(d, h, **options).items()}
    params = [rng.randn(*shapes[p.name]) * 0.5 if p.name in shapes else None
              for p in KINDS[kind].params]
    x = rng.randn(b, t, d)
    state = [rng.randn(b, h) for _ in KINDS[kind].state._fields]
    x_mask = np.array([[2.0, 0.0], [2.0, 2.0]])
    h_mask = (rng.rand(b, h) > 0.3) * 1.5
    lengths = np.array([3, 2])
    gy = rng.randn(b, t, h)
    gs = [rng.randn(b, h) for _ in state]
    sp = spec(kind, True, activation=activation, **options)

    def loss():
        y, final, _ = fused.forward(sp, x, params, state, x_mask, h_mask, lengths, keep=False)
        return np.sum(y * gy) + sum(np.sum(f * g) for f, g in zip(final, gs))

    _, _, cache = fused.forward(sp, x, params, state, x_mask, h_mask, lengths)
    dx, dparams, dstate = fused.backward(sp, cache, gy, gs)
    for array, grad in [(x, dx)] + list(zip(params, dparams)) + list(zip(state, dstate)):
        if array is None:
            continue
        numeric = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + 1e-6
            up = loss()
            array[i] = old - 1e-6
            numeric[i] = (up - loss()) / 2e-6
            array[i] = old
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


def test_kernels_run_without_numba():
    """With numba not importable the same code runs as Python on NumPy, same numbers."""
    code = ("import sys; sys.modules['numba'] = None\n"
            "import numpy as np\n"
            "from nnlstm import fused\n"
            "assert fused.numba is None and not hasattr(fused.lstm_forward, 'py_func')\n"
            "rng = np.random.RandomState(0)\n"
            "sp = fused.Spec(kind='lstm', units=3, activation='tanh', "
            "recurrent_activation='sigmoid', reset_after=None, reverse=False, "
            "time_major=False)\n"
            "x, w = rng.randn(2, 4, 2), rng.randn(5, 12)\n"
            "y, (c, h), _ = fused.forward(sp, x, [w, None], keep=False)\n"
            "print(repr(h.tolist()))\n")
    env = dict(os.environ)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=env, check=True).stdout
    rng = np.random.RandomState(0)
    sp = spec('lstm')
    sp['units'] = 3
    x, w = rng.randn(2, 4, 2), rng.randn(5, 12)
    _, (_, h), _ = fused.forward(sp, x, [w, None], keep=False)
    np.testing.assert_allclose(np.array(eval(out.strip().splitlines()[-1])), h, rtol=1e-12)
