"""Issue 13's ``layer_norm=True`` (LSTM and GRU; TF-Addons' LayerNormLSTMCell) against the
NumPy equations of tests/reference.py, together with ``proj_size`` and ``use_peepholes``:
forward, states, go_backwards, finite-difference gradients, the wrappers with ``lengths``,
stateful runs, the one-step cells, step networks, ``.nnp`` export, and the refusals by name.
The plain ``layer_norm`` layers are cases of test_layers.py's CASES too, so the layer tests
there and test_variants.py's (zoneout, weight_dropout, resets) run on them; the ONNX rows
are in test_onnx.py and test_onnx_native.py."""
import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
from nnlstm import interop
import reference

B, T, D, H, P = 3, 4, 2, 5, 3

#: case -> (layer, options)
CASES = {
    'lstm_all': (nnlstm.LSTM, dict(layer_norm=True, proj_size=P, use_peepholes=True)),
    'gru': (nnlstm.GRU, dict(layer_norm=True)),
    'gru_no_bias': (nnlstm.GRU, dict(layer_norm=True, use_bias=False)),
}


def var(a, need_grad=False):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32), need_grad=need_grad)


def forward(*vs):
    F.sink(*vs).forward()
    return [v.d.copy() for v in vs]


def params(name):
    n = len(name) + 1
    return {k[n:]: v.d.astype(np.float64)
            for k, v in nn.get_parameters(grad_only=False).items() if k.startswith(name + '/')}


def randomize(rng, name):
    """Random values; the gains around 1, so no normalization is close to zero."""
    for k, v in nn.get_parameters(grad_only=False).items():
        if k.startswith(name + '/'):
            v.d = rng.uniform(-0.6, 0.6, v.shape) + (1.0 if k.endswith('gamma') else 0.0)


def norms(p, scopes):
    return {s: (p[s + '_norm/gamma'], p[s + '_norm/beta']) for s in scopes}


def reference_run(case, x, p, state=None, reverse=False):
    """(ys, final state tuple) of the NumPy equations, from the layer's parameters ``p``."""
    if CASES[case][0] is nnlstm.GRU:
        ys, h = reference.gru(x, p['WzWrWn/affine/W'], p.get('WzWrWn/affine/b'),
                              p['UzUrUn/affine/W'], p.get('UzUrUn/affine/b'),
                              None if state is None else state[0], reverse=reverse,
                              norms=norms(p, ('kernel', 'recurrent')))
        return ys, (h,)
    c0, h0 = (None, None) if state is None else state
    peep = (tuple(p['peephole/' + k] for k in ('w_ci', 'w_cf', 'w_co'))
            if 'peephole/w_ci' in p else None)
    w = np.concatenate([p['WaWiWfWo/x/affine/W'], p['WaWiWfWo/h/affine/W']])
    ys, c, h = reference.lstm(x, w, p.get('WaWiWfWo/affine/b'), c0, h0, reverse, peepholes=peep,
                              whr=p.get('Whr/affine/W'),
                              norms=norms(p, ('kernel', 'recurrent', 'state')))
    return ys, (c, h)


def initial(case, rng, units=H, batch=B):
    layer, options = CASES[case]
    if layer is nnlstm.GRU:
        return (rng.randn(batch, units),)
    return rng.randn(batch, units), rng.randn(batch, options.get('proj_size', units))


def given(state):
    return tuple(map(var, state)) if len(state) > 1 else var(state[0])


@pytest.mark.parametrize('go_backwards', [False, True])
@pytest.mark.parametrize('case', CASES)
def test_layer_equals_the_numpy_equations(rng, case, go_backwards):
    layer, options = CASES[case]
    x, s0 = rng.randn(B, T, D), initial(case, rng)
    out = layer(var(x), H, given(s0), return_sequences=True, return_state=True,
                go_backwards=go_backwards, name='v', **options)
    randomize(rng, 'v')
    got = forward(*out)
    ys, final = reference_run(case, x, params('v'), s0, reverse=go_backwards)
    # Keras' go_backwards: the sequence comes back in processing order
    np.testing.assert_allclose(got[0], ys[:, ::-1] if go_backwards else ys, atol=1e-5)
    for g, want in zip(got[1:], final):
        np.testing.assert_allclose(g, want, atol=1e-5)


@pytest.mark.parametrize('case', CASES)
def test_gradients_match_finite_differences(rng, case):
    layer, options = CASES[case]
    b, t, d, h = 2, 3, 2, 3
    options = dict(options, proj_size=2) if 'proj_size' in options else options
    CASES['fd'] = (layer, options)
    try:
        x, s0 = rng.randn(b, t, d), initial('fd', rng, h, b)
        xv, sv = var(x, True), [var(s, True) for s in s0]
        y = layer(xv, h, tuple(sv) if len(sv) > 1 else sv[0], return_sequences=True,
                  name='v', **options)
        randomize(rng, 'v')
        g = rng.randn(*y.shape)
        loss = F.sum(F.mul2(y, var(g)))
        for p in nn.get_parameters().values():
            p.grad.zero()
        loss.forward()
        loss.backward()
        fields = ['s%d' % k for k in range(len(s0))]
        inputs = dict(params('v'), x=x, **dict(zip(fields, s0)))
        analytic = dict({k[2:]: v.g for k, v in nn.get_parameters().items()}, x=xv.g,
                        **{f: v.g for f, v in zip(fields, sv)})

        def objective(values):
            p = {k: v for k, v in values.items() if '/' in k}
            return np.sum(reference_run('fd', values['x'], p, [values[f] for f in fields])[0]
                          * g)

        reference.assert_gradients(analytic, inputs, objective, eps=1e-4)
    finally:
        del CASES['fd']


def test_parameter_names_shapes_and_initial_values(rng):
    nnlstm.LSTM(var(rng.randn(B, T, D)), H, name='v', proj_size=P, use_peepholes=True,
                layer_norm=True)
    nnlstm.GRU(var(rng.randn(B, T, D)), H, name='g', layer_norm=True, use_bias=False)
    p = params('v')
    assert {k: v.shape for k, v in p.items()} == {
        'WaWiWfWo/x/affine/W': (D, 4 * H), 'WaWiWfWo/h/affine/W': (P, 4 * H),
        'WaWiWfWo/affine/b': (4 * H,), 'Whr/affine/W': (H, P), 'peephole/w_ci': (H,),
        'peephole/w_cf': (H,), 'peephole/w_co': (H,), 'kernel_norm/gamma': (4 * H,),
        'kernel_norm/beta': (4 * H,), 'recurrent_norm/gamma': (4 * H,),
        'recurrent_norm/beta': (4 * H,), 'state_norm/gamma': (H,), 'state_norm/beta': (H,)}
    assert sorted(params('g')) == sorted(
        ['WzWrWn/affine/W', 'UzUrUn/affine/W', 'kernel_norm/gamma', 'kernel_norm/beta',
         'recurrent_norm/gamma', 'recurrent_norm/beta'])
    for scope in ('v/kernel_norm', 'v/recurrent_norm', 'v/state_norm', 'g/kernel_norm'):
        assert (params(scope)['gamma'] == 1).all() and (params(scope)['beta'] == 0).all()
    w_h = p['WaWiWfWo/h/affine/W']  # orthogonal rows, as the joint kernel's h rows
    np.testing.assert_allclose(w_h @ w_h.T, np.eye(P), atol=1e-5)


@pytest.mark.parametrize('case', ['lstm_all', 'gru'])
def test_bidirectional_and_stacked_with_lengths(rng, case):
    layer, options = CASES[case]
    x, lengths = rng.randn(B, T, D), np.array([T, 2, 1])
    bi = nnlstm.Bidirectional(layer, var(x), H, return_sequences=True, name='bi',
                              lengths=lengths, **options)
    st = nnlstm.Stacked(layer, var(x), H, num_layers=2, return_sequences=True, name='st',
                        lengths=lengths, **options)
    randomize(rng, 'bi')
    randomize(rng, 'st')
    got_bi, got_st = forward(bi, st)
    for row, n in enumerate(lengths):
        seq = x[row:row + 1, :n]
        fw = reference_run(case, seq, params('bi/forward'))[0]
        bw = reference_run(case, seq, params('bi/backward'), reverse=True)[0]
        np.testing.assert_allclose(got_bi[row, :n], np.concatenate([fw, bw], axis=2)[0],
                                   atol=1e-5)
        y0 = reference_run(case, seq, params('st/layer0'))[0]
        np.testing.assert_allclose(got_st[row, :n], reference_run(
            case, y0, params('st/layer1'))[0][0], atol=1e-5)
        np.testing.assert_array_equal(got_st[row, n:], 0)


@pytest.mark.parametrize('case', ['lstm_all', 'gru'])
def test_stateful_run_over_two_chunks_equals_one_run(rng, case):
    layer, options = CASES[case]
    x = rng.randn(B, 2 * T, D)
    whole = layer(var(x), H, return_sequences=True, name='v', **options)
    randomize(rng, 'v')
    carry = nnlstm.Carry()
    xv = nn.Variable((B, T, D))
    part = layer(xv, H, return_sequences=True, name='v', stateful=carry, **options)
    chunks = []
    for k in range(2):
        xv.d = x[:, k * T:(k + 1) * T]
        part.forward()
        chunks.append(part.d.copy())
        carry.advance()
    whole.forward()
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), whole.d, atol=1e-6)


@pytest.mark.parametrize('case', ['lstm_all', 'gru'])
def test_one_step_cell_uses_the_layers_parameters(rng, case):
    layer, options = CASES[case]
    x = rng.randn(B, T, D)
    y = layer(var(x), H, return_sequences=True, name='v', **options)
    randomize(rng, 'v')
    before = set(nn.get_parameters())
    state = [var(np.zeros(s.shape)) for s in initial(case, rng)]
    steps = []
    for t in range(T):
        if layer is nnlstm.LSTM:
            state = nnlstm.LSTMCell(var(x[:, t]), *state, name='v', **options)
        else:
            state = (nnlstm.GRUCell(var(x[:, t]), *state, name='v', **options),)
        steps.append(state[-1])
    got = forward(y, *steps)
    assert set(nn.get_parameters()) == before
    np.testing.assert_allclose(np.stack(got[1:], axis=1), got[0], atol=1e-6)


@pytest.mark.parametrize('case', ['lstm_all', 'gru'])
def test_step_network_nnp_runs_the_layer_step_by_step(rng, case, tmp_path):
    from nnabla.utils.nnp_graph import NnpLoader
    layer, options = CASES[case]
    x = rng.randn(1, T, D)
    y = layer(var(x), H, return_sequences=True, name='v', **options)
    randomize(rng, 'v')
    y.forward()
    inputs, outputs = nnlstm.step_network(layer, D, H, name='v', **options)
    nnlstm.export_network(str(tmp_path / 'step.nnp'), inputs, outputs)
    net = NnpLoader(str(tmp_path / 'step.nnp')).get_network('inference', batch_size=1)
    state = {k: np.zeros(v.shape) for k, v in inputs.items() if k != 'x'}
    for t in range(T):
        feed = dict(state, x=x[:, t])
        for k, v in net.inputs.items():
            v.d = feed[k]
        F.sink(*net.outputs.values()).forward()
        np.testing.assert_allclose(net.outputs['y'].d, y.d[:, t], atol=1e-5)
        state = {k: net.outputs[k + '_next'].d.copy() for k in state}


def test_nnp_export_round_trip_with_another_batch(rng, tmp_path):
    from nnabla.utils.nnp_graph import NnpLoader
    x = nn.Variable((1, T, D))
    with nn.no_grad():
        y = nnlstm.LSTM(x, H, return_sequences=True, name='v', **CASES['lstm_all'][1])
    randomize(rng, 'v')
    path = nnlstm.export_network(str(tmp_path / 'v.nnp'), {'x': x}, {'y': y})['nnp']
    net = NnpLoader(path).get_network('inference', batch_size=3)
    xs = rng.randn(3, T, D)
    net.inputs['x'].d = xs
    net.outputs['y'].forward()
    np.testing.assert_allclose(net.outputs['y'].d, reference_run('lstm_all', xs, params('v'))[0],
                               atol=1e-5)


@pytest.mark.parametrize('call, error, match', [
    (lambda x: nnlstm.GRU(x, H, layer_norm='yes'), TypeError, r'`layer_norm`'),
    (lambda x: nnlstm.LSTM(x, H, layer_norm=True, norm_epsilon=0), ValueError,
     r'`norm_epsilon` must be a finite number > 0; received 0'),
    (lambda x: nnlstm.GRU(x, H, norm_epsilon='small'), TypeError, r'`norm_epsilon`'),
    (lambda x: nnlstm.GRU(x, H, layer_norm=True, reset_after=False), ValueError,
     r'`layer_norm`=True needs `reset_after`=True: with reset_after=False the GRU'),
    (lambda x: nnlstm.SimpleRNN(x, H, layer_norm=True), TypeError,
     r"unexpected option 'layer_norm': it is an option of LSTM, GRU, not of SimpleRNN"),
    (lambda x: nnlstm.LSTM(x, H, layer_norm=True, fused=True), ValueError,
     r'`fused`=True cannot run this LSTM layer fused on cpu; these options prevent it: '
     r'`layer_norm`=True'),
])
def test_refusals_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call(var(np.zeros((B, T, D))))


@pytest.mark.parametrize('layer, save', [
    (nnlstm.LSTM, interop.save_torch), (nnlstm.LSTM, interop.save_keras),
    (nnlstm.LSTM, interop.save_nnabla), (nnlstm.GRU, interop.save_torch),
    (nnlstm.GRU, interop.save_keras)])
def test_weight_interop_refuses_layer_norm_by_name(layer, save):
    layer(var(np.zeros((B, T, D))), H, name='v', layer_norm=True)
    with pytest.raises(ValueError, match=r"`params` has '(WaWiWfWo/h/affine/W|kernel_norm/beta)"
                                         r"', a parameter of the layer_norm variant"):
        save('v')
