"""The LSTM variants of issue 13 that add parameters: ``proj_size`` (PyTorch's LSTMP; the
golden files of real PyTorch are in tests/test_golden.py) and ``use_peepholes``, each
against the NumPy equations of tests/reference.py, with finite-difference gradients, the
neutral setting against the plain layer, the wrappers, the one-step cell and export."""
import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
from nnlstm import interop
import reference

B, T, D, H, P = 2, 4, 3, 5, 2


def var(a, need_grad=False):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32), need_grad=need_grad)


def randomize(rng, scale=0.5):
    for v in nn.get_parameters(grad_only=False).values():
        v.d = rng.uniform(-scale, scale, v.shape).astype(np.float32)


def arrays(name):
    with nn.parameter_scope(name):
        return {k: v.d.astype(np.float64) for k, v in nn.get_parameters(grad_only=False).items()}


def reference_of(p, x, c0=None, h0=None, reverse=False):
    peep = ((p['peephole/w_ci'], p['peephole/w_cf'], p['peephole/w_co'])
            if 'peephole/w_ci' in p else None)
    return reference.lstm(x, p['WaWiWfWo/affine/W'], p['WaWiWfWo/affine/b'], c0, h0, reverse,
                          peepholes=peep, whr=p.get('Whr/affine/W'))


VARIANTS = [dict(proj_size=P), dict(use_peepholes=True), dict(proj_size=P, use_peepholes=True)]


@pytest.mark.parametrize('options', VARIANTS, ids=lambda o: ','.join(sorted(o)))
@pytest.mark.parametrize('go_backwards', [False, True])
def test_layer_equals_the_numpy_equations(rng, options, go_backwards):
    x = rng.randn(B, T, D)
    size = options.get('proj_size', H)
    c0, h0 = rng.randn(B, H), rng.randn(B, size)
    y, c, h = nnlstm.LSTM(var(x), H, (var(c0), var(h0)), return_sequences=True,
                          return_state=True, go_backwards=go_backwards, name='v', **options)
    assert (y.shape, c.shape, h.shape) == ((B, T, size), (B, H), (B, size))
    randomize(rng)
    F.sink(y, c, h).forward()
    ys, c_t, h_t = reference_of(arrays('v'), x, c0, h0, go_backwards)
    # Keras' go_backwards: the sequence comes back in processing order
    np.testing.assert_allclose(y.d, ys[:, ::-1] if go_backwards else ys, atol=1e-5)
    np.testing.assert_allclose(c.d, c_t, atol=1e-5)
    np.testing.assert_allclose(h.d, h_t, atol=1e-5)


@pytest.mark.parametrize('options', VARIANTS, ids=lambda o: ','.join(sorted(o)))
def test_gradients_match_finite_differences(rng, options):
    b, t, d, h = 2, 3, 2, 3
    size = min(options.get('proj_size', h), h - 1) if 'proj_size' in options else h
    options = dict(options, **({'proj_size': size} if 'proj_size' in options else {}))
    x, c0, h0, g = rng.randn(b, t, d), rng.randn(b, h), rng.randn(b, size), rng.randn(b, t, size)
    xv, cv, hv = var(x, True), var(c0, True), var(h0, True)
    y = nnlstm.LSTM(xv, h, (cv, hv), return_sequences=True, name='v', **options)
    randomize(rng)
    loss = F.sum(y * var(g))
    for p in nn.get_parameters().values():
        p.grad.zero()
    loss.forward()
    loss.backward()
    values = dict(arrays('v'), x=x, c0=c0, h0=h0)

    def objective(v):
        return np.sum(reference_of(v, v['x'], v['c0'], v['h0'])[0] * g)

    with nn.parameter_scope('v'):
        analytic = {k: p.g for k, p in nn.get_parameters().items()}
    analytic.update(x=xv.g, c0=cv.g, h0=hv.g)
    reference.assert_gradients(analytic, values, objective, eps=1e-4)


def test_zero_peepholes_are_exactly_the_plain_lstm(rng):
    x = var(rng.randn(B, T, D))
    y0 = nnlstm.LSTM(x, H, return_sequences=True, name='plain', fused=False)  # unrolled, as y1
    y1 = nnlstm.LSTM(x, H, return_sequences=True, name='peep', use_peepholes=True)
    randomize(rng)
    plain, peep = arrays('plain'), nn.get_parameters(grad_only=False)
    for k, v in plain.items():
        peep['peep/' + k].d = v
    for k in ('w_ci', 'w_cf', 'w_co'):
        peep['peep/peephole/' + k].d = 0
    F.sink(y0, y1).forward()
    np.testing.assert_array_equal(y0.d, y1.d)


def test_parameter_names_and_shapes():
    nnlstm.LSTM(var(np.zeros((B, T, D))), H, name='p', proj_size=P, use_peepholes=True)
    assert {k: v.shape for k, v in nn.get_parameters().items()} == {
        'p/WaWiWfWo/affine/W': (D + P, 4 * H), 'p/WaWiWfWo/affine/b': (4 * H,),
        'p/Whr/affine/W': (H, P), 'p/peephole/w_ci': (H,), 'p/peephole/w_cf': (H,),
        'p/peephole/w_co': (H,)}


def test_one_step_cell_uses_the_layers_parameters(rng):
    x = rng.randn(B, T, D)
    y = nnlstm.LSTM(var(x), H, return_sequences=True, name='v', proj_size=P,
                    use_peepholes=True)
    randomize(rng)
    y.forward()
    c, h = var(np.zeros((B, H))), var(np.zeros((B, P)))
    before = set(nn.get_parameters())
    for t in range(T):
        c, h = nnlstm.LSTMCell(var(x[:, t]), c, h, name='v', proj_size=P, use_peepholes=True)
        h.forward()
        np.testing.assert_allclose(h.d, y.d[:, t], atol=1e-6)
        c, h = var(c.d), var(h.d)
    assert set(nn.get_parameters()) == before


def test_bidirectional_stacked_and_lengths(rng):
    x, lengths = rng.randn(B, T, D), np.array([T, 2])
    y = nnlstm.Stacked(nnlstm.LSTM, var(x), H, num_layers=2, name='s', return_sequences=True,
                       proj_size=P, use_peepholes=True, lengths=lengths)
    yb = nnlstm.Bidirectional(nnlstm.LSTM, var(x), H, name='b', return_sequences=True,
                              proj_size=P, lengths=lengths)
    assert y.shape == (B, T, P) and yb.shape == (B, T, 2 * P)
    randomize(rng)
    F.sink(y, yb).forward()
    s0, s1 = arrays('s/layer0'), arrays('s/layer1')
    fw, bw = arrays('b/forward'), arrays('b/backward')
    for row, n in enumerate(lengths):
        seq = x[row:row + 1, :n]
        want = reference_of(s1, reference_of(s0, seq)[0])[0]
        np.testing.assert_allclose(y.d[row, :n], want[0], atol=1e-5)
        np.testing.assert_array_equal(y.d[row, n:], 0)
        want_b = np.concatenate([reference_of(fw, seq)[0], reference_of(bw, seq, reverse=True)[0]],
                                axis=2)
        np.testing.assert_allclose(yb.d[row, :n], want_b[0], atol=1e-5)


def test_stateful_carry_joins_chunks(rng):
    x = rng.randn(B, 2 * T, D)
    carry = nnlstm.Carry()
    y1 = nnlstm.LSTM(var(x[:, :T]), H, return_sequences=True, stateful=carry, name='v',
                     proj_size=P, use_peepholes=True)
    randomize(rng)
    y1.forward()
    carry.advance()
    y2 = nnlstm.LSTM(var(x[:, T:]), H, return_sequences=True, stateful=carry, name='v',
                     proj_size=P, use_peepholes=True)
    y2.forward()
    want = reference_of(arrays('v'), x)[0]
    np.testing.assert_allclose(np.concatenate([y1.d, y2.d], axis=1), want, atol=1e-5)


@pytest.mark.parametrize('call, error, match', [
    (lambda x: nnlstm.LSTM(x, H, proj_size=H), ValueError, r'`proj_size` must satisfy 0 < P < H'),
    (lambda x: nnlstm.LSTM(x, H, proj_size=-1), ValueError, r'`proj_size`'),
    (lambda x: nnlstm.LSTM(x, H, proj_size=2.0), TypeError, r'`proj_size` must be None or an int'),
    (lambda x: nnlstm.LSTM(x, H, use_peepholes='yes'), TypeError, r'use_peepholes'),
    (lambda x: nnlstm.GRU(x, H, proj_size=P), TypeError, r'proj_size'),
    (lambda x: nnlstm.SimpleRNN(x, H, use_peepholes=True), TypeError, r'use_peepholes'),
    (lambda x: nnlstm.LSTM(x, H, proj_size=P, fused=True), ValueError, r'`proj_size`=2'),
    (lambda x: nnlstm.LSTM(x, H, (var(np.zeros((B, H))), var(np.zeros((B, H)))), proj_size=P),
     ValueError, r'initial_state\[1\] \(h0\)` has shape \(2, 5\); expected \(B, proj_size\)'),
])
def test_refusals_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call(var(np.zeros((B, T, D))))


def test_proj_size_zero_is_no_projection_as_in_pytorch():
    nnlstm.LSTM(var(np.zeros((B, T, D))), H, name='p', proj_size=0)
    assert 'p/Whr/affine/W' not in nn.get_parameters()


def test_torch_round_trip_and_refusals_of_unmapped_variants(rng):
    nnlstm.LSTM(var(np.zeros((B, T, D))), H, name='p', proj_size=P)
    randomize(rng)
    sd = interop.save_torch('p')
    assert sd['weight_hr_l0'].shape == (P, H) and sd['weight_hh_l0'].shape == (4 * H, P)
    before = arrays('p')
    nn.clear_parameters()
    interop.load_torch(sd, 'q')
    after = arrays('q')
    assert sorted(before) == sorted(after)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    nnlstm.LSTM(var(np.zeros((B, T, D))), H, name='peep', use_peepholes=True)
    with pytest.raises(ValueError, match="'peephole/w_c.', a parameter of the use_peepholes"):
        interop.save_torch('peep')
    with pytest.raises(ValueError, match='use_peepholes'):
        interop.save_keras('peep')


def test_nnp_export_round_trip(rng, tmp_path):
    from nnabla.utils.nnp_graph import NnpLoader
    x = nn.Variable((1, T, D))
    with nn.no_grad():
        y = nnlstm.LSTM(x, H, return_sequences=True, name='v', proj_size=P, use_peepholes=True)
    randomize(rng)
    x.d = rng.randn(1, T, D)
    y.forward()
    path = nnlstm.export_network(str(tmp_path / 'v.nnp'), {'x': x}, {'y': y})['nnp']
    net = NnpLoader(path).get_network('inference', batch_size=3)
    xs = rng.randn(3, T, D)
    net.inputs['x'].d = xs
    out = net.outputs['y']
    out.forward()
    np.testing.assert_allclose(out.d, reference_of(arrays('v'), xs)[0], atol=1e-5)
