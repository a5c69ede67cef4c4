"""nnlstm.LSTM and LSTMCell against a hand-stepped cell, the NumPy equations, the seed's own
code, NNabla's fused F.lstm and finite differences."""
import itertools

import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
from nnlstm import gates
from nnlstm.unroll import unroll
import reference

B, T, D, H = 3, 6, 2, 4


def var(a, need_grad=False):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32), need_grad=need_grad)


def params(name='lstm'):
    p = nn.get_parameters(grad_only=False)
    b = p.get(name + '/WaWiWfWo/affine/b')
    return p[name + '/WaWiWfWo/affine/W'].d.copy(), None if b is None else b.d.copy()


def randomize(rng, name='lstm', scale=0.5):
    """Replace the layer's parameters with random values (zeros hide gate-order errors)."""
    for k, v in nn.get_parameters(grad_only=False).items():
        if k.startswith(name + '/'):
            v.d = rng.uniform(-scale, scale, v.shape)


def forward(*vs):
    F.sink(*vs).forward()
    return [v.d.copy() for v in vs]


def test_layer_equals_hand_stepped_cell(rng):
    x = rng.randn(B, T, D)
    c0, h0 = rng.randn(B, H), rng.randn(B, H)
    y, c, h = nnlstm.LSTM(var(x), H, (var(c0), var(h0)), return_sequences=True,
                          return_state=True)
    randomize(rng)
    cs, hs = var(c0), var(h0)
    steps = []
    with nn.parameter_scope('lstm'):
        for t in range(T):
            cs, hs = nnlstm.LSTMCell(var(x[:, t]), cs, hs)
            steps.append(hs)
    got = forward(y, c, h, *steps)
    np.testing.assert_allclose(got[0], np.stack(got[3:], axis=1), atol=1e-6)
    np.testing.assert_allclose(got[1], forward(cs)[0], atol=1e-6)
    np.testing.assert_allclose(got[2], got[-1], atol=1e-6)


@pytest.mark.parametrize('return_sequences,return_state,go_backwards,with_state',
                         list(itertools.product([False, True], repeat=4)))
def test_matches_numpy_equations(rng, return_sequences, return_state, go_backwards,
                                 with_state):
    x = rng.randn(B, T, D)
    c0, h0 = (rng.randn(B, H), rng.randn(B, H)) if with_state else (None, None)
    state = (var(c0), var(h0)) if with_state else None
    out = nnlstm.LSTM(var(x), H, state, return_sequences=return_sequences,
                      return_state=return_state, go_backwards=go_backwards)
    randomize(rng)
    out = out if return_state else (out,)
    got = forward(*out)
    ys, c, h = reference.lstm(x, *params(), c0, h0, reverse=go_backwards)
    if go_backwards:
        ys = ys[:, ::-1]  # Keras: the sequence comes back in processing order
    want_y = ys if return_sequences else ys[:, -1]
    np.testing.assert_allclose(got[0], want_y, atol=1e-5)
    assert got[0].shape == ((B, T, H) if return_sequences else (B, H))
    if return_state:
        np.testing.assert_allclose(got[1], c, atol=1e-5)
        np.testing.assert_allclose(got[2], h, atol=1e-5)


@pytest.mark.parametrize('activation,use_bias,steps', [
    ('relu', True, T), ('tanh', False, T), ('linear', True, 3), ('tanh', True, 1)])
def test_options_match_numpy_equations(rng, activation, use_bias, steps):
    x = rng.randn(B, steps, D)
    y = nnlstm.LSTM(var(x), H, return_sequences=True, activation=activation,
                    use_bias=use_bias)
    randomize(rng)
    ys, _, _ = reference.lstm(x, *params(), act=activation)
    np.testing.assert_allclose(forward(y)[0], ys, atol=1e-5)
    assert ('lstm/WaWiWfWo/affine/b' in nn.get_parameters()) == use_bias


def test_time_major_equals_batch_major(rng):
    x = rng.randn(B, T, D)
    y1, c1, h1 = nnlstm.LSTM(var(x), H, return_sequences=True, return_state=True)
    randomize(rng)
    y2, c2, h2 = nnlstm.LSTM(var(x.transpose(1, 0, 2)), H, return_sequences=True,
                             return_state=True, time_major=True)
    got = forward(y1, c1, h1, y2, c2, h2)
    assert got[3].shape == (T, B, H)
    np.testing.assert_array_equal(got[0], got[3].transpose(1, 0, 2))
    np.testing.assert_array_equal(got[1], got[4])
    np.testing.assert_array_equal(got[2], got[5])


def test_matches_the_seed_code_and_loads_its_parameter_file(rng, tmp_path):
    """A parameter file written by the seed's code loads unchanged and gives its numbers."""
    x = rng.randn(B, T, D)
    c0, h0 = rng.randn(B, H), rng.randn(B, H)
    seed_y, seed_c, seed_h = reference.seed_lstm(var(x), H, (var(c0), var(h0)),
                                                 return_sequences=True, return_state=True)
    randomize(rng)
    want = forward(seed_y, seed_c, seed_h)
    nn.save_parameters(str(tmp_path / 'seed.h5'))
    nn.clear_parameters()
    nn.load_parameters(str(tmp_path / 'seed.h5'))
    y, c, h = nnlstm.LSTM(var(x), H, (var(c0), var(h0)), return_sequences=True,
                          return_state=True)
    assert len(nn.get_parameters()) == 2
    for g, w in zip(forward(y, c, h), want):
        np.testing.assert_allclose(g, w, atol=1e-6)


def to_fused(w, b):
    """nnlstm's W (D + H, 4H), b (4H,) as F.lstm's weight_l0 (1, 4, H, D + H), bias (1, 1, 4, H)."""
    rows, units = w.shape[0], w.shape[1] // 4
    w = gates.reorder(w, 'lstm', 'nnlstm', 'nnabla', axis=1).reshape(rows, 4, units)
    b = gates.reorder(b, 'lstm', 'nnlstm', 'nnabla').reshape(1, 1, 4, units)
    return w.transpose(1, 2, 0)[None], b


def test_matches_nnabla_fused_lstm(rng):
    x = rng.randn(B, T, D)
    c0, h0 = rng.randn(B, H), rng.randn(B, H)
    y, c, h = nnlstm.LSTM(var(x), H, (var(c0), var(h0)), return_sequences=True,
                          return_state=True)
    randomize(rng)
    w0, bias = to_fused(*params())
    fy, fh, fc = F.lstm(var(x.transpose(1, 0, 2)), var(h0[None, None]), var(c0[None, None]),
                        var(w0), bias=var(bias), training=False)
    got = forward(y, c, h, fy, fc, fh)
    np.testing.assert_allclose(got[0], got[3].transpose(1, 0, 2), atol=1e-5)
    np.testing.assert_allclose(got[1], got[4][0, 0], atol=1e-5)
    np.testing.assert_allclose(got[2], got[5][0, 0], atol=1e-5)


def test_gradients_match_finite_differences(rng):
    """NNabla's backward through the unrolled graph against float64 central differences of
    the NumPy equations, for the input, both states and both parameters."""
    b, t, d, h = 2, 3, 2, 3
    x, c0, h0 = rng.randn(b, t, d), rng.randn(b, h), rng.randn(b, h)
    g = rng.randn(b, t, h)
    xv, cv, hv = var(x, True), var(c0, True), var(h0, True)
    y = nnlstm.LSTM(xv, h, (cv, hv), return_sequences=True)
    randomize(rng)
    loss = F.sum(y * var(g))
    for p in nn.get_parameters().values():
        p.grad.zero()
    loss.forward()
    loss.backward()
    w, bias = params()
    inputs = {'x': x, 'c0': c0, 'h0': h0, 'w': w.astype(np.float64),
              'b': bias.astype(np.float64)}

    def objective(v):
        ys, _, _ = reference.lstm(v['x'], v['w'], v['b'], v['c0'], v['h0'])
        return np.sum(ys * g)

    p = nn.get_parameters()
    analytic = {'x': xv.g, 'c0': cv.g, 'h0': hv.g,
                'w': p['lstm/WaWiWfWo/affine/W'].g, 'b': p['lstm/WaWiWfWo/affine/b'].g}
    reference.assert_gradients(analytic, inputs, objective)


def test_reverse_unroll_equals_flipped_forward_run(rng):
    x = rng.randn(B, T, D)
    with nn.parameter_scope('lstm'):
        core = nnlstm.cells.LSTMCore(D, H)
    randomize(rng)
    backward, sb = unroll(core, var(x), reverse=True)
    forward_, sf = unroll(core, var(x[:, ::-1].copy()))
    got = forward(*backward, *forward_, sb.h, sf.h)
    for t in range(T):
        np.testing.assert_array_equal(got[t], got[T + (T - 1 - t)])
    np.testing.assert_array_equal(got[-2], got[-1])


def test_parameter_names_shapes_and_keras_initialization():
    nnlstm.LSTM(var(np.zeros((B, T, D))), H, name='enc')
    p = nn.get_parameters()
    assert {k: v.shape for k, v in p.items()} == {
        'enc/WaWiWfWo/affine/W': (D + H, 4 * H), 'enc/WaWiWfWo/affine/b': (4 * H,)}
    w, b = params('enc')
    forget = gates.index('lstm', 'nnlstm', 'f')
    want_b = np.zeros(4 * H)
    want_b[forget * H:(forget + 1) * H] = 1
    np.testing.assert_array_equal(b, want_b)  # unit_forget_bias
    recurrent = w[D:]  # orthogonal rows, as Keras' recurrent initializer
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(H), atol=1e-5)
    limit = np.sqrt(6 / (D + 4 * H))  # Glorot-uniform kernel
    assert np.abs(w[:D]).max() <= limit and np.abs(w[:D]).max() > limit / 2


def test_initializers_arrays_and_callables():
    kernel = np.full((D, 4 * H), 0.1)
    y = nnlstm.LSTM(var(np.ones((B, T, D))), H, kernel_initializer=kernel,
                    recurrent_initializer=lambda shape: np.full(shape, -0.2),
                    bias_initializer=nn.initializer.ConstantInitializer(0.3),
                    unit_forget_bias=False)
    w, b = params()
    np.testing.assert_allclose(w[:D], 0.1)
    np.testing.assert_allclose(w[D:], -0.2)
    np.testing.assert_allclose(b, 0.3)
    ys, _, _ = reference.lstm(np.ones((B, T, D)), w, b)
    np.testing.assert_allclose(forward(y)[0], ys[:, -1], atol=1e-5)


@pytest.mark.parametrize('fix', [False, True])
def test_fix_parameters(fix, rng):
    y = nnlstm.LSTM(var(rng.randn(B, T, D)), H, fix_parameters=fix)
    for p in nn.get_parameters(grad_only=False).values():
        p.grad.zero()
    loss = F.sum(y)
    loss.forward()
    loss.backward()
    grads = [np.abs(p.g).sum() for p in nn.get_parameters(grad_only=False).values()]
    assert all(g == 0 for g in grads) if fix else all(g > 0 for g in grads)


def test_same_name_shares_parameters_across_batch_sizes(rng):
    x = rng.randn(8, T, D)
    y8 = nnlstm.LSTM(var(x), H, name='enc')
    randomize(rng, 'enc')
    y3 = nnlstm.LSTM(var(x[:3]), H, name='enc')
    assert len(nn.get_parameters()) == 2
    a, b = forward(y8, y3)
    np.testing.assert_allclose(a[:3], b, atol=1e-6)


def test_no_initial_state_reads_no_state_variable(rng):
    """Without initial_state the graph's only leaf Variables are the input and parameters."""
    x = var(rng.randn(B, T, D))
    y = nnlstm.LSTM(x, H, return_sequences=True)
    leaves = set()

    def collect(f):
        for v in f.inputs:
            if v.parent is None:
                leaves.add(v.shape)
    y.visit(collect)
    assert leaves == {(B, T, D), (D + H, 4 * H), (4 * H,)}


def test_cell_alone_matches_numpy_equations(rng):
    x, c0, h0 = rng.randn(B, D), rng.randn(B, H), rng.randn(B, H)
    c, h = nnlstm.LSTMCell(var(x), var(c0), var(h0), name='cell')
    randomize(rng, 'cell')
    _, want_c, want_h = reference.lstm(x[:, None], *params('cell'), c0, h0)
    got_c, got_h = forward(c, h)
    np.testing.assert_allclose(got_c, want_c, atol=1e-5)
    np.testing.assert_allclose(got_h, want_h, atol=1e-5)


GOOD = np.zeros((B, T, D))


@pytest.mark.parametrize('call,error,match', [
    (lambda: nnlstm.LSTM(GOOD, H), TypeError, r'`inputs` must be an nnabla.Variable; received ndarray'),
    (lambda: nnlstm.LSTM(var(np.zeros((B, D))), H), ValueError, r'`inputs` must have rank 3, \(B, T, D\); received shape \(3, 2\)'),
    (lambda: nnlstm.LSTM(var(np.zeros((B, 0, D))), H), ValueError, r'`inputs` has no time steps: shape \(3, 0, 2\)'),
    (lambda: nnlstm.LSTM(var(GOOD), 0), ValueError, r'`units` must be a positive int; received 0'),
    (lambda: nnlstm.LSTM(var(GOOD), 4.0), TypeError, r'`units` must be a positive int; received float 4.0'),
    (lambda: nnlstm.LSTM(var(GOOD), True), TypeError, r'`units` must be a positive int; received bool'),
    (lambda: nnlstm.LSTM(var(GOOD), H, var(np.zeros((B, H)))), TypeError, r'`initial_state` must be a tuple \(c0, h0\)'),
    (lambda: nnlstm.LSTM(var(GOOD), H, (var(np.zeros((B, H))),)), ValueError, r'`initial_state` must hold 2 Variables \(c0, h0\); received 1'),
    (lambda: nnlstm.LSTM(var(GOOD), H, (var(np.zeros((B, H + 1))), var(np.zeros((B, H))))), ValueError, r'`initial_state\[0\] \(c0\)` has shape \(3, 5\); expected \(B, units\) = \(3, 4\)'),
    (lambda: nnlstm.LSTM(var(GOOD), H, (var(np.zeros((B, H))), np.zeros((B, H)))), TypeError, r'`initial_state\[1\] \(h0\)` must be an nnabla.Variable'),
    (lambda: nnlstm.LSTM(var(GOOD), H, activation='swish'), ValueError, r"`activation` must be a callable or one of"),
    (lambda: nnlstm.LSTM(var(GOOD), H, kernel_initializer=np.zeros((D, H))), ValueError, r'`kernel_initializer` gives shape \(2, 4\); expected \(2, 16\)'),
    (lambda: nnlstm.LSTM(var(GOOD), H, name=''), TypeError, r'`name` must be a non-empty str'),
    (lambda: nnlstm.LSTMCell(var(np.zeros((B, D))), var(np.zeros((B, H))), var(np.zeros((B, H + 1)))), ValueError, r'`h` has shape \(3, 5\); expected \(B, H\) = \(3, 4\)'),
    (lambda: nnlstm.LSTMCell(var(np.zeros((B, T, D))), var(np.zeros((B, H))), var(np.zeros((B, H)))), ValueError, r'`x` must have rank 2, \(B, D\); received shape \(3, 6, 2\)'),
])
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_reused_name_with_other_shapes_is_a_clear_error():
    nnlstm.LSTM(var(GOOD), H, name='enc')
    with pytest.raises(ValueError, match=r"layer `name` 'enc': parameter 'WaWiWfWo/affine/W' "
                                         r"exists with shape \(6, 16\); expected "
                                         r"\(D \+ H, 4H\) = \(7, 20\)"):
        nnlstm.LSTM(var(GOOD), H + 1, name='enc')


LONG = '''
import numpy as np, nnabla as nn, nnabla.functions as F, nnlstm
x = nn.Variable.from_numpy_array(np.random.RandomState(0).randn(2, 10000, 1).astype(np.float32),
                                 need_grad=True)
y = nnlstm.LSTM(x, 4, return_sequences=True)
loss = F.mean(y)
loss.forward(clear_no_need_grad=True)
loss.backward(clear_buffer=True)
print('ok', np.isfinite(x.g).all(), float(np.abs(x.g[:, 0]).sum()) > 0)
del x, y, loss
'''


def test_ten_thousand_steps_build_run_delete_and_exit_cleanly():
    """NNabla walks (and frees) the graph recursively: without nnlstm raising the stack
    limit this segfaults near T = 6000 with the default 8 MiB stack."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, '-c', LONG], capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['ok', 'True', 'True']
