"""nnlstm.interop: its parameter table against the cores, round trips through every format,
NNabla's fused PF.lstm as an oracle, load semantics, and each error message.
(tests/test_golden.py checks the PyTorch and Keras conversions against the frameworks.)"""
import functools
import itertools

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import pytest

import nnlstm
from nnlstm import interop

B, T, D, H = 2, 5, 3, 4
LAYERS = {'lstm': nnlstm.LSTM, 'gru': nnlstm.GRU, 'rnn': nnlstm.SimpleRNN}
#: Every (cell, layer options) nnlstm can build, and the Keras config saying the same.
VARIANTS = [('lstm', {'use_bias': True}), ('lstm', {'use_bias': False}),
            ('rnn', {'use_bias': True}), ('rnn', {'use_bias': False})] + [
    ('gru', {'use_bias': b, 'reset_after': r}) for b, r in itertools.product([True, False],
                                                                                repeat=2)]
TORCH_VARIANTS = [v for v in VARIANTS if v[1].get('reset_after', True)]


def var(a, need_grad=False):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32), need_grad=need_grad)


def scope_params(name):
    with nn.parameter_scope(name):
        return {k: v.d.copy() for k, v in nn.get_parameters(grad_only=False).items()}


def build(cell, options, name, rng, d=D):
    """Build the layer ``name`` and give it random parameters (zeros and Keras' unit forget
    bias hide gate-order mistakes). Returns the output sequence Variable and its input."""
    x = var(rng.randn(B, T, d))
    y = LAYERS[cell](x, H, name=name, return_sequences=True, **options)
    with nn.parameter_scope(name):
        for v in nn.get_parameters(grad_only=False).values():
            v.d = rng.uniform(-0.8, 0.8, v.shape).astype(np.float32)
    return y, x


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize('cell,options', VARIANTS)
def test_parameter_table_matches_the_cores(cell, options, rng):
    build(cell, options, 'layer', rng)
    made = {k: v.shape for k, v in scope_params('layer').items()}
    table = interop.shapes(cell, D, H)
    assert set(made) <= set(interop.PARAMETERS[cell])
    assert made == {k: table[k][0] for k in made}


def test_module_docstring_table_is_the_parameter_table():
    assert nnlstm.interop is interop
    for cell in interop.PARAMETERS:
        for key, (_, legend) in interop.shapes(cell, D, H).items():
            assert '``%s`` %s' % (key, legend) in interop.__doc__, key


# ------------------------------------------------------------------ round trips

@pytest.mark.parametrize('cell,options', TORCH_VARIANTS)
@pytest.mark.parametrize('layer,reverse', [(0, False), (2, True)])
def test_torch_round_trip(cell, options, layer, reverse, rng):
    options = {k: v for k, v in options.items() if k != 'reset_after'}
    build(cell, options, 'a', rng)
    sd = interop.save_torch('a', cell, layer, reverse)
    suffix = '_l%d%s' % (layer, '_reverse' if reverse else '')
    assert all(k.endswith(suffix) for k in sd)
    assert len(sd) == (4 if options['use_bias'] else 2)
    interop.load_torch(sd, 'b', cell, layer, reverse)
    assert_same(scope_params('a'), scope_params('b'))
    assert_same(interop.save_torch('b', cell, layer, reverse), sd)


@pytest.mark.parametrize('cell', ['lstm', 'rnn'])
def test_torch_two_biases_are_summed_and_saved_as_one(cell, rng):
    build(cell, {}, 'a', rng)
    sd = interop.save_torch('a', cell)
    np.testing.assert_array_equal(sd['bias_hh_l0'], 0)
    sd['bias_hh_l0'] = rng.randn(*sd['bias_hh_l0'].shape).astype(np.float32)
    interop.load_torch(sd, 'b', cell)
    back = interop.save_torch('b', cell)
    np.testing.assert_allclose(back['bias_ih_l0'], sd['bias_ih_l0'] + sd['bias_hh_l0'],
                               rtol=1e-6)
    np.testing.assert_array_equal(back['bias_hh_l0'], 0)


@pytest.mark.parametrize('cell,options', VARIANTS)
def test_keras_round_trip(cell, options, rng):
    build(cell, options, 'a', rng)
    weights = interop.save_keras('a', cell, **options)
    assert len(weights) == (3 if options['use_bias'] else 2)
    if cell == 'gru' and options['use_bias']:
        assert weights[2].shape == ((2, 3 * H) if options['reset_after'] else (3 * H,))
    interop.load_keras(weights, 'b', cell, **options)
    assert_same(scope_params('a'), scope_params('b'))
    for w, again in zip(weights, interop.save_keras('b', cell, **options)):
        np.testing.assert_array_equal(w, again)


@pytest.mark.parametrize('use_bias', [True, False])
def test_nnabla_round_trip(use_bias, rng):
    stacked = functools.partial(nnlstm.Bidirectional, nnlstm.LSTM)
    nnlstm.Stacked(stacked, var(rng.randn(B, T, D)), H, num_layers=2, name='a',
                   use_bias=use_bias)
    slots = [('a/layer%d/%s' % (k, direction), k, direction == 'backward')
             for k in (1, 0) for direction in ('backward', 'forward')]
    fused = None
    for name, layer, reverse in slots:
        fused = interop.save_nnabla(name, 'lstm', layer, reverse, into=fused)
    assert {k: v.shape for k, v in fused.items()} == dict(
        weight_l0=(2, 4, H, D + H), weight=(1, 2, 4, H, 3 * H),
        **({'bias': (2, 2, 4, H)} if use_bias else {}))
    for name, layer, reverse in slots:
        interop.load_nnabla(fused, name.replace('a/', 'b/'), 'lstm', layer, reverse)
    assert_same(scope_params('a'), scope_params('b'))


# ------------------------------------------------------------------ gate layouts by value

# Each framework's gate blocks, written here from its own documentation (not read from
# nnlstm.gates): a converter that reorders consistently wrong survives every round trip,
# so the tests below fill block k of a framework's array with k and look where it lands.
# PyTorch nn.LSTM: W_ii|W_if|W_ig|W_io; nn.GRU: W_ir|W_iz|W_in.
# Keras LSTM kernel columns i, f, c, o; GRU z, r, h. NNabla PF.lstm / F.lstm: i, f, g, o.
GATES = {
    'torch': {'lstm': ('input', 'forget', 'candidate', 'output'),
              'gru': ('reset', 'update', 'candidate'), 'rnn': ('candidate',)},
    'keras': {'lstm': ('input', 'forget', 'candidate', 'output'),
              'gru': ('update', 'reset', 'candidate'), 'rnn': ('candidate',)},
    'nnabla': {'lstm': ('input', 'forget', 'candidate', 'output')},
}
#: nnlstm's own blocks, as its parameter names spell them: WaWiWfWo, WzWrWn/UzUrUn, Wh.
NNLSTM_GATES = {'lstm': ('candidate', 'input', 'forget', 'output'),
                'gru': ('update', 'reset', 'candidate'), 'rnn': ('candidate',)}
#: What fills the blocks of each array: block k of the input kernel holds k, of the
#: recurrent kernel 10 + k, of the input bias 20 + k, of the recurrent bias 30 + k.
KERNEL, RECURRENT, BIAS, RECURRENT_BIAS = 0, 10, 20, 30


def blocks(base, order, rows, axis):
    """An array of ``len(order)`` blocks of H along ``axis`` (columns: ``(rows, GH)``;
    rows: ``(GH, rows)``), block k filled with ``base + k``; ``rows`` None: a bias."""
    parts = [np.full((H,) if rows is None else ((rows, H) if axis else (H, rows)), base + k,
                     np.float32) for k in range(len(order))]
    return np.concatenate(parts, axis=0 if rows is None else axis)


def block_values(a, order, axis=-1):
    """The value of each of ``order``'s blocks along ``axis`` of ``a``, by gate name;
    each block must be constant."""
    out = {}
    for gate, block in zip(order, np.split(np.asarray(a), len(order), axis=axis)):
        assert np.all(block == block.flat[0]), (gate, block)
        out[gate] = float(block.flat[0])
    return out


def nnlstm_blocks(cell, arrays, d):
    """nnlstm's arrays of one layer as ``{array role: {gate: value}}``, read from the
    parameter names of the records (GRU ``reset_after=False``: UzUr's and Un's blocks)."""
    order = NNLSTM_GATES[cell]
    if cell == 'gru':
        out = {'kernel': block_values(arrays['WzWrWn/affine/W'], order)}
        if 'UzUrUn/affine/W' in arrays:
            out['recurrent'] = block_values(arrays['UzUrUn/affine/W'], order)
        else:
            out['recurrent'] = dict(block_values(arrays['UzUr/affine/W'], order[:2]),
                                    **block_values(arrays['Un/affine/W'], order[2:]))
        if 'WzWrWn/affine/b' in arrays:
            out['bias'] = block_values(arrays['WzWrWn/affine/b'], order)
        if 'UzUrUn/affine/b' in arrays:
            out['recurrent_bias'] = block_values(arrays['UzUrUn/affine/b'], order)
        return out
    w, b = {'lstm': ('WaWiWfWo/affine/W', 'WaWiWfWo/affine/b'),
            'rnn': ('Wh/affine/W', 'Wh/affine/b')}[cell]
    out = {'kernel': block_values(arrays[w][:d], order),
           'recurrent': block_values(arrays[w][d:], order)}
    if b in arrays:
        out['bias'] = block_values(arrays[b], order)
    return out


def numbered(order, base):
    return {gate: float(base + k) for k, gate in enumerate(order)}


def nnlstm_arrays(cell, reset_after=True):
    """nnlstm arrays whose blocks hold KERNEL + k etc. for nnlstm's block k."""
    order = NNLSTM_GATES[cell]
    if cell == 'gru':
        arrays = {'WzWrWn/affine/W': blocks(KERNEL, order, D, 1),
                  'WzWrWn/affine/b': blocks(BIAS, order, None, 0)}
        recurrent = blocks(RECURRENT, order, H, 1)
        if reset_after:
            arrays['UzUrUn/affine/W'] = recurrent
            arrays['UzUrUn/affine/b'] = blocks(RECURRENT_BIAS, order, None, 0)
        else:
            arrays['UzUr/affine/W'], arrays['Un/affine/W'] = recurrent[:, :2 * H], \
                recurrent[:, 2 * H:]
        return arrays
    w, b = {'lstm': ('WaWiWfWo/affine/W', 'WaWiWfWo/affine/b'),
            'rnn': ('Wh/affine/W', 'Wh/affine/b')}[cell]
    return {w: np.concatenate([blocks(KERNEL, order, D, 1), blocks(RECURRENT, order, H, 1)]),
            b: blocks(BIAS, order, None, 0)}


@pytest.mark.parametrize('cell', ['lstm', 'gru', 'rnn'])
def test_torch_gate_layout_by_value(cell):
    order = GATES['torch'][cell]
    sd = {'weight_ih_l0': blocks(KERNEL, order, D, 0),
          'weight_hh_l0': blocks(RECURRENT, order, H, 0),
          'bias_ih_l0': blocks(BIAS, order, None, 0),
          'bias_hh_l0': blocks(RECURRENT_BIAS, order, None, 0)}
    got = nnlstm_blocks(cell, interop.from_torch(sd, cell), D)
    assert got['kernel'] == numbered(order, KERNEL)
    assert got['recurrent'] == numbered(order, RECURRENT)
    if cell == 'gru':  # nn.GRU keeps b_hn inside r * (...): two biases, as reset_after
        assert got['bias'] == numbered(order, BIAS)
        assert got['recurrent_bias'] == numbered(order, RECURRENT_BIAS)
    else:  # b_ih + b_hh
        assert got['bias'] == {g: v + w for (g, v), w in zip(
            numbered(order, BIAS).items(), numbered(order, RECURRENT_BIAS).values())}

    back = interop.to_torch(nnlstm_arrays(cell), cell)
    mine = NNLSTM_GATES[cell]
    assert block_values(back['weight_ih_l0'], order, 0) == {
        g: numbered(mine, KERNEL)[g] for g in order}
    assert block_values(back['weight_hh_l0'], order, 0) == {
        g: numbered(mine, RECURRENT)[g] for g in order}
    assert block_values(back['bias_ih_l0'], order, 0) == {
        g: numbered(mine, BIAS)[g] for g in order}
    assert block_values(back['bias_hh_l0'], order, 0) == (
        {g: numbered(mine, RECURRENT_BIAS)[g] for g in order} if cell == 'gru'
        else dict.fromkeys(order, 0.0))


@pytest.mark.parametrize('cell,options', [
    ('lstm', {}), ('rnn', {}), ('gru', {'reset_after': True}),
    ('gru', {'reset_after': False})])
def test_keras_gate_layout_by_value(cell, options):
    order = GATES['keras'][cell]
    bias = blocks(BIAS, order, None, 0)
    if options.get('reset_after'):
        bias = np.stack([bias, blocks(RECURRENT_BIAS, order, None, 0)])
    weights = [blocks(KERNEL, order, D, 1), blocks(RECURRENT, order, H, 1), bias]
    got = nnlstm_blocks(cell, interop.from_keras(weights, cell, **options), D)
    assert got['kernel'] == numbered(order, KERNEL)
    assert got['recurrent'] == numbered(order, RECURRENT)
    assert got['bias'] == numbered(order, BIAS)
    if options.get('reset_after'):
        assert got['recurrent_bias'] == numbered(order, RECURRENT_BIAS)
    else:
        assert 'recurrent_bias' not in got

    mine = NNLSTM_GATES[cell]
    back = interop.to_keras(nnlstm_arrays(cell, options.get('reset_after', True)), cell,
                            **options)
    assert block_values(back[0], order) == {g: numbered(mine, KERNEL)[g] for g in order}
    assert block_values(back[1], order) == {g: numbered(mine, RECURRENT)[g] for g in order}
    if options.get('reset_after'):
        assert back[2].shape == (2, 3 * H)
        assert block_values(back[2][1], order) == {
            g: numbered(mine, RECURRENT_BIAS)[g] for g in order}
    assert block_values(back[2][0] if back[2].ndim == 2 else back[2], order) == {
        g: numbered(mine, BIAS)[g] for g in order}


def test_nnabla_gate_layout_by_value():
    """PF.lstm's weight_l0 (dirs, 4, H, I + H): gate blocks on axis 1, [x; h] on the last;
    bias (L, dirs, 4, H)."""
    order = GATES['nnabla']['lstm']
    w = np.zeros((1, 4, H, D + H), np.float32)
    b = np.zeros((1, 1, 4, H), np.float32)
    for k in range(4):
        w[0, k, :, :D], w[0, k, :, D:], b[0, 0, k] = KERNEL + k, RECURRENT + k, BIAS + k
    got = nnlstm_blocks('lstm', interop.from_nnabla({'weight_l0': w, 'bias': b}), D)
    assert got == {'kernel': numbered(order, KERNEL), 'recurrent': numbered(order, RECURRENT),
                   'bias': numbered(order, BIAS)}

    mine = NNLSTM_GATES['lstm']
    back = interop.to_nnabla(nnlstm_arrays('lstm'))
    for k, gate in enumerate(order):
        np.testing.assert_array_equal(back['weight_l0'][0, k, :, :D],
                                      numbered(mine, KERNEL)[gate])
        np.testing.assert_array_equal(back['weight_l0'][0, k, :, D:],
                                      numbered(mine, RECURRENT)[gate])
        np.testing.assert_array_equal(back['bias'][0, 0, k], numbered(mine, BIAS)[gate])


# ------------------------------------------------------------------ NNabla's fused LSTM

def test_nnabla_fused_lstm_equals_stacked_bidirectional_after_conversion(rng):
    """PF.lstm (2 layers, 2 directions) with random parameters, loaded slot by slot into
    Stacked(Bidirectional(LSTM)): same outputs and final states; and saved back, the same
    parameters."""
    x = rng.randn(B, T, D)
    h0, c0 = rng.randn(2, 2, B, H), rng.randn(2, 2, B, H)
    fy, fh, fc = PF.lstm(var(x.transpose(1, 0, 2)), var(h0), var(c0), num_layers=2,
                         bidirectional=True, training=False, name='fused')
    with nn.parameter_scope('fused/lstm'):  # PF's scope 'lstm', under its `name`
        for v in nn.get_parameters(grad_only=False).values():
            v.d = rng.uniform(-0.8, 0.8, v.shape).astype(np.float32)
        fused = {k: v.d.copy() for k, v in nn.get_parameters(grad_only=False).items()}
    for k, direction in itertools.product(range(2), ('forward', 'backward')):
        interop.load_nnabla(fused, 's/layer%d/%s' % (k, direction), 'lstm', k,
                            direction == 'backward')
    states = [(var(c0[k, 0]), var(h0[k, 0]), var(c0[k, 1]), var(h0[k, 1])) for k in range(2)]
    y, finals = nnlstm.Stacked(functools.partial(nnlstm.Bidirectional, nnlstm.LSTM), var(x),
                               H, num_layers=2, name='s', initial_state=states,
                               return_sequences=True, return_state=True)
    F.sink(fy, fh, fc, y, *[v for f in finals for v in f]).forward()
    np.testing.assert_allclose(y.d, fy.d.transpose(1, 0, 2), atol=1e-5)
    for k in range(2):
        c_f, h_f, c_b, h_b = [v.d for v in finals[k]]
        np.testing.assert_allclose(np.stack([h_f, h_b]), fh.d[k], atol=1e-5)
        np.testing.assert_allclose(np.stack([c_f, c_b]), fc.d[k], atol=1e-5)
    saved = None
    for k, direction in itertools.product(range(2), ('backward', 'forward')):
        saved = interop.save_nnabla('s/layer%d/%s' % (k, direction), 'lstm', k,
                                    direction == 'backward', into=saved)
    assert_same(saved, fused)


def test_nnabla_takes_variables_and_one_direction_without_bias(rng):
    PF.lstm(var(rng.randn(T, B, D)), var(np.zeros((1, 1, B, H))), var(np.zeros((1, 1, B, H))),
            with_bias=False, name='fused')
    with nn.parameter_scope('fused/lstm'):
        fused = nn.get_parameters(grad_only=False)
    interop.load_nnabla(fused, 'l')
    assert sorted(scope_params('l')) == ['WaWiWfWo/affine/W']
    saved = interop.save_nnabla('l')
    assert_same(saved, {'weight_l0': fused['weight_l0'].d})


# ------------------------------------------------------------------ load semantics

def test_load_overwrites_in_place_and_removes_what_the_weights_lack(rng):
    y, _ = build('lstm', {}, 'l', rng)
    w = nn.get_parameters(grad_only=False)['l/WaWiWfWo/affine/W']
    weights = [rng.randn(D, 4 * H), rng.randn(H, 4 * H)]
    interop.load_keras(weights, 'l', use_bias=False)
    assert nn.get_parameters(grad_only=False)['l/WaWiWfWo/affine/W'] is w  # graph sees it
    assert 'WaWiWfWo/affine/b' not in scope_params('l')
    y_nobias = nnlstm.LSTM(var(np.ones((B, T, D))), H, name='l', use_bias=False)
    y_nobias.forward()
    assert sorted(scope_params('l')) == ['WaWiWfWo/affine/W']


def test_load_replaces_the_other_gru_variant(rng):
    build('gru', {'reset_after': False}, 'g', rng)
    weights = [rng.randn(D, 3 * H), rng.randn(H, 3 * H), rng.randn(2, 3 * H)]
    interop.load_keras(weights, 'g', 'gru')
    assert sorted(scope_params('g')) == ['UzUrUn/affine/W', 'UzUrUn/affine/b',
                                         'WzWrWn/affine/W', 'WzWrWn/affine/b']


def test_load_works_inside_a_parameter_scope(rng):
    weights = [rng.randn(D, H), rng.randn(H, H), rng.randn(H)]
    with nn.parameter_scope('model'):
        interop.load_keras(weights, 'rnn', 'rnn')
        assert len(interop.save_keras('rnn', 'rnn')) == 3
    assert sorted(nn.get_parameters()) == ['model/rnn/Wh/affine/W', 'model/rnn/Wh/affine/b']


# ------------------------------------------------------------------ errors

def torch_sd(g=4):
    return {'weight_ih_l0': np.zeros((g * H, D)), 'weight_hh_l0': np.zeros((g * H, H)),
            'bias_ih_l0': np.zeros(g * H), 'bias_hh_l0': np.zeros(g * H)}


def keras_weights(g=4, bias_shape=None):
    return [np.zeros((D, g * H)), np.zeros((H, g * H)), np.zeros(bias_shape or (g * H,))]


def with_gru_before(rng):
    build('gru', {'reset_after': False}, 'g', rng)


ERRORS = [
    (lambda: interop.load_torch(torch_sd(), 'l', cell='cnn'), ValueError,
     r"`cell` must be one of \['gru', 'lstm', 'rnn'\]; received 'cnn'"),
    (lambda: interop.load_torch([1, 2], 'l'), TypeError,
     r"`state_dict` must be a dict of arrays; received list"),
    (lambda: interop.load_torch(torch_sd(), 'l', layer=1), ValueError,
     r"`state_dict` has no 'weight_hh_l1'; it holds \['bias_hh_l0', "),
    (lambda: interop.load_torch(torch_sd(), 'l', reverse=True), ValueError,
     r"`state_dict` has no 'weight_hh_l0_reverse'"),
    (lambda: interop.load_torch(torch_sd(), 'l', layer=-1), ValueError,
     r"`layer` must be an int >= 0; received -1"),
    (lambda: interop.load_torch(torch_sd(), 'l', layer=True), TypeError,
     r"`layer` must be an int >= 0; received bool True"),
    (lambda: interop.load_nnabla({}, 'l', layer=-2), ValueError,
     r"`layer` must be an int >= 0; received -2"),
    (lambda: interop.load_torch({**torch_sd(), 1: np.zeros(3)}, 'l'), TypeError,
     r"`state_dict` keys must be str names; received int 1"),
    (lambda: interop.load_nnabla({'weight_l0': np.zeros(3), 2: np.zeros(3)}, 'l'), TypeError,
     r"`params` keys must be str names; received int 2"),
    (lambda: interop.load_torch(dict(torch_sd(), bias_ih_l0=np.full(16, np.nan)), 'l'),
     ValueError, r"`state_dict\['bias_ih_l0'\]` holds 16 non-finite values \(NaN or inf\) "
     r"of 16; weights must be finite"),
    (lambda: interop.load_torch(torch_sd(g=3), 'l'), ValueError,
     r"`state_dict\['weight_hh_l0'\]` has shape \(12, 4\); expected \(4H, H\) with H = 4 = "
     r"\(16, 4\)"),
    (lambda: interop.load_torch(dict(torch_sd(), weight_ih_l0=np.zeros((12, D))), 'l'),
     ValueError, r"`state_dict\['weight_ih_l0'\]` has shape \(12, 3\); expected \(4H, D\) "
     r"with H = 4 = \(16, 3\)"),
    (lambda: interop.load_torch(dict(torch_sd(), bias_hh_l0=np.zeros((2, 16))), 'l'),
     ValueError, r"`state_dict\['bias_hh_l0'\]` must have rank 1, \(4H,\); received shape "
     r"\(2, 16\)"),
    (lambda: interop.load_torch({k: v for k, v in torch_sd().items() if k != 'bias_hh_l0'},
                                'l'), ValueError,
     r"`state_dict` must hold both 'bias_ih_l0' and 'bias_hh_l0' or neither; received only "
     r"'bias_ih_l0'"),
    (lambda: interop.load_torch(dict(torch_sd(), weight_hr_l0=np.zeros((H, 2))), 'l'),
     ValueError, r"`state_dict\['weight_hr_l0'\]` has shape \(4, 2\); expected \(P, H\) with "
                 r"H = 4"),
    (lambda: interop.load_torch(dict(torch_sd(), weight_hr_l0=np.zeros((2, H))), 'l',
                                cell='rnn'), ValueError,
     r"`state_dict` has 'weight_hr_l0', a projection, which only an LSTM has"),
    (lambda: interop.load_torch(torch_sd(), ''), TypeError,
     r"`name` must be a non-empty str; received ''"),
    (lambda: interop.save_torch('nothing'), ValueError,
     r"layer `name` 'nothing' holds no lstm parameters \(expected nothing/WaWiWfWo/affine/W"),
    (lambda rng: (with_gru_before(rng), interop.save_torch('g', 'gru')), ValueError,
     r"a reset_after=False GRU has no PyTorch equivalent"),
    (lambda: interop.load_keras(keras_weights()[:2], 'l'), ValueError,
     r"`weights` holds 2 arrays; expected 3 \(kernel, recurrent_kernel, bias\) for cell "
     r"'lstm' with use_bias=True"),
    (lambda: interop.load_keras(keras_weights() * 2, 'l'), ValueError,
     r"a Bidirectional layer lists the forward layer's weights, then the backward layer's"),
    (lambda: interop.load_keras(keras_weights(3), 'l', 'gru'), ValueError,
     r"`weights\[2\] \(bias\)` must have rank 2, \(2, 3H\); received shape \(12,\)"),
    (lambda: interop.load_keras(keras_weights(3, (2, 3 * H)), 'l', 'gru', reset_after=False),
     ValueError, r"`weights\[2\] \(bias\)` must have rank 1, \(3H,\); received shape \(2, 12\)"),
    (lambda: interop.load_keras(keras_weights(4, (4 * H + 1,)), 'l'), ValueError,
     r"`weights\[2\] \(bias\)` has shape \(17,\); expected \(4H,\) with H = 4 = \(16,\)"),
    (lambda: interop.load_keras(keras_weights(3), 'l', 'rnn'), ValueError,
     r"`weights\[0\] \(kernel\)` has shape \(3, 12\); expected \(D, H\) with H = 4 = "
     r"\(3, 4\)"),
    (lambda: interop.load_keras(keras_weights(), 'l', reset_after=True), TypeError,
     r"unexpected `cell_config` reset_after for cell 'lstm'; accepted: use_bias"),
    (lambda: interop.load_keras(keras_weights(), 'l', use_bias=1), TypeError,
     r"`use_bias` must be a bool; received 1"),
    (lambda: interop.load_keras(np.zeros((3, 4)), 'l'), TypeError,
     r"`weights` must be a list, a Keras layer's get_weights\(\); received ndarray"),
    (lambda rng: (with_gru_before(rng), interop.save_keras('g', 'gru')), ValueError,
     r"`reset_after=True` given, but the parameters are those of a reset_after=False GRU"),
    (lambda rng: (build('lstm', {'use_bias': False}, 'l', rng), interop.save_keras('l')),
     ValueError, r"use_bias=True, but `params` has no 'WaWiWfWo/affine/b'; pass use_bias=False"),
    (lambda rng: (build('lstm', {}, 'l', rng), interop.save_keras('l', use_bias=False)),
     ValueError, r"use_bias=False, but `params` has 'WaWiWfWo/affine/b'"),
    (lambda: interop.to_keras({'WaWiWfWo/affine/W': np.zeros((D + H, 4 * H)),
                               'Wh/affine/W': np.zeros((D + H, H))}), ValueError,
     r"`params` has 'Wh/affine/W', not lstm parameters"),
    (lambda: interop.to_torch({'WaWiWfWo/affine/W': np.zeros((D + H, 4 * H)),
                               'WaWiWfWo/affine/b': np.zeros(3 * H)}), ValueError,
     r"`params\['WaWiWfWo/affine/b'\]` has shape \(12,\); expected \(4H,\) with D = 3, H = 4 "
     r"= \(16,\)"),
    (lambda: interop.load_nnabla({'weight_l0': np.zeros((1, 4, H, D + H))}, 'l', 'gru'),
     ValueError, r"NNabla's fused parameters convert for `cell` 'lstm' \(PF.lstm\) only; "
     r"received 'gru'"),
    (lambda: interop.load_nnabla({'weight_l0': np.zeros((1, 4, H, D + H))}, 'l',
                                 reverse=True), ValueError,
     r"`reverse=True` needs bidirectional parameters; `params\['weight_l0'\]` has shape "
     r"\(1, 4, 4, 7\), one direction"),
    (lambda: interop.load_nnabla({'weight_l0': np.zeros((1, 4, H, D + H))}, 'l', layer=1),
     ValueError, r"`params` has no 'weight'; it holds \['weight_l0'\]"),
    (lambda: interop.load_nnabla({'lstm/weight_l0': np.zeros((1, 4, H, D + H))}, 'l'),
     ValueError, r"`params` has 'lstm/weight_l0'; PF.lstm's parameters are weight_l0, weight "
     r"and bias"),
    (lambda: interop.load_nnabla({'weight_l0': np.zeros((1, 3, H, D + H))}, 'l'), ValueError,
     r"`params\['weight_l0'\]` has shape \(1, 3, 4, 7\); expected \(dirs, 4, H, I \+ H\)"),
    (lambda: interop.load_nnabla({'weight_l0': np.zeros((1, 4, H, D + H)),
                                  'bias': np.zeros((1, 2, 4, H))}, 'l'), ValueError,
     r"`params` must hold 1 or 2 directions in each of weight_l0, weight, bias; received "
     r"shapes weight_l0 \(1, 4, 4, 7\), bias \(1, 2, 4, 4\)"),
    (lambda: interop.load_nnabla({'weight_l0': np.zeros((1, 4, H, D + H)),
                                  'bias': np.zeros((1, 1, 4, H + 1))}, 'l'), ValueError,
     r"`params\['bias'\]` has shape \(1, 1, 4, 5\); expected \(L, dirs, 4, H\) = "
     r"\(L, 1, 4, 4\)"),
    (lambda rng: (build('lstm', {}, 'l', rng), interop.save_nnabla('l', layer=1)),
     ValueError, r"layer 1 of a PF.lstm with 1 direction\(s\) reads dirs \* H = 4 inputs; "
     r"`params` read D = 3"),
    (lambda rng: (build('lstm', {}, 'l', rng), interop.save_nnabla(
        'l', into={'weight_l0': np.zeros((1, 4, H, D + H))}, reverse=True)),
     ValueError, r"`reverse=True` needs bidirectional parameters; `into` holds one direction"),
    (lambda rng: (build('lstm', {}, 'l', rng), interop.save_nnabla(
        'l', into={'weight_l0': np.zeros((1, 4, H, D + H + 1))})),
     ValueError, r"`into\['weight_l0'\]` has shape \(1, 4, 4, 8\); this layer needs "
     r"\(dirs, 4, H, I \+ H\) = \(1, 4, 4, 7\)"),
]


class GRU:
    """A stand-in Keras GRU layer: get_weights() and get_config(), its class named GRU."""

    def __init__(self, weights, **config):
        self.weights, self.config = weights, config

    def get_weights(self):
        return self.weights

    def get_config(self):
        return dict(self.config)


class Bidirectional(GRU):
    pass


def serialized_gru(**config):
    return {'module': 'keras.layers', 'class_name': 'GRU', 'registered_name': None,
            'config': dict(dict(name='gru', units=H, activation='tanh', use_bias=True),
                           **config)}


KERAS_CONFIG_ERRORS = [
    (lambda: interop.load_keras(keras_weights(), 'l', use_bais=True), TypeError,
     r"unexpected `cell_config` use_bais for cell 'lstm'; accepted: use_bias, units, "
     r"activation, recurrent_activation, name, .*; did you mean 'use_bias'\?"),
    (lambda: interop.load_keras(keras_weights(1), 'l', 'rnn', recurrent_activation='sigmoid'),
     TypeError, r"unexpected `cell_config` recurrent_activation for cell 'rnn'"),
    (lambda: interop.load_keras(keras_weights(3, (2, 3 * H)), 'l', 'gru',
                                unit_forget_bias=True), TypeError,
     r"unexpected `cell_config` unit_forget_bias for cell 'gru'"),
    (lambda: interop.load_keras(keras_weights(), 'l', activation='selu'), ValueError,
     r"`activation` of the Keras layer is 'selu'; nnlstm builds 'tanh', 'sigmoid', 'relu', "
     r"'linear'"),
    (lambda: interop.load_keras(keras_weights(), 'l', recurrent_activation='hard_sigmoid'),
     ValueError, r"`recurrent_activation` of the Keras layer is 'hard_sigmoid'"),
    (lambda: interop.load_keras(keras_weights(), 'l', activation={
        'class_name': 'Swish', 'config': {}}), ValueError,
     r"`activation` of the Keras layer is \{'class_name': 'Swish', 'config': \{\}\}"),
    (lambda: interop.load_keras(keras_weights(), 'l', units=8), ValueError,
     r"`units` is 8, but `weights` holds the weights of a layer of H = 4 units"),
    (lambda: interop.load_keras(keras_weights(), 'l', units='4'), TypeError,
     r"`units` must be a positive int; received '4'"),
    (lambda: interop.load_keras(GRU(keras_weights(3, (2, 3 * H)), units=H), 'l'), ValueError,
     r"`weights` is a Keras GRU layer, but `cell` is 'lstm'; pass cell='gru'"),
    (lambda: interop.load_keras(GRU(keras_weights(3, (2, 3 * H)), units=H), 'l', 'gru',
                                units=5), ValueError,
     r"`units=5` given, but the Keras layer's config has 4"),
    (lambda: interop.load_keras(keras_weights(), 'l', layer='lstm'), TypeError,
     r"`layer` picks a layer of a .weights.h5 file; `weights` is list"),
    (lambda: interop.load_keras(Bidirectional(
        keras_weights(3, (2, 3 * H)) * 2, layer=serialized_gru(),
        backward_layer=serialized_gru(activation='relu', go_backwards=True)), 'b', 'gru'),
     ValueError, r"nnlstm.Bidirectional builds both directions with the same options; the "
     r"Keras layer's `activation` is 'tanh' forward, 'relu' backward"),
    (lambda: interop.load_keras(Bidirectional(
        keras_weights(3, (2, 3 * H)) * 2, layer=serialized_gru(), merge_mode='max'), 'b',
        'gru'), ValueError,
     r"`merge_mode` of the Keras Bidirectional layer is 'max'; nnlstm.Bidirectional merges "
     r"with 'concat', 'sum', 'mul', 'ave' or None"),
    (lambda: interop.load_keras(Bidirectional(
        keras_weights(3, (2, 3 * H)) * 2, layer=serialized_gru(), wrapped=True), 'b', 'gru'),
     TypeError, r"unexpected Bidirectional config key wrapped for cell 'gru'"),
    (lambda: interop.load_keras(Bidirectional(
        keras_weights(3, (2, 3 * H)) * 2, layer=serialized_gru()), 'b'), ValueError,
     r"the Bidirectional's `layer` is a Keras GRU layer, but `cell` is 'lstm'"),
    (lambda: interop.load_keras(keras_weights(3, (2, 3 * H)) * 2, 'b', 'gru',
                                layer={'class_name': 'GRU'}), TypeError,
     r"`layer` must be a serialized Keras layer"),
    (lambda: interop.load_keras(Bidirectional(keras_weights(3, (2, 3 * H)) * 2 + [
        np.zeros(1)], layer=serialized_gru()), 'b', 'gru'), ValueError,
     r"a Bidirectional layer's weights list the forward layer's, then the backward layer's; "
     r"`weights` holds 7"),
    (lambda: interop.load_keras(GRU(keras_weights(3, (2, 3 * H)), units=H), 5, 'gru'),
     TypeError, r"`name` must be a non-empty str; received 5"),
]


def test_arrays_of_no_variant_are_refused_naming_the_variants():
    arrays = {'WzWrWn/affine/W': np.zeros((D, 3 * H)), 'UzUrUn/affine/W': np.zeros((H, 3 * H)),
              'Un/affine/W': np.zeros((H, H))}
    with pytest.raises(ValueError, match=r"`params` holds \['Un/affine/W', 'UzUrUn/affine/W', "
                       r"'WzWrWn/affine/W'\], the parameters of no gru layer; a layer holds "
                       r"one of: WzWrWn/affine/W, WzWrWn/affine/b, UzUrUn/affine/W, "
                       r"UzUrUn/affine/b \(use_bias=True, reset_after=True\); "):
        interop.to_keras(arrays, 'gru')


@pytest.mark.parametrize('call,error,match', KERAS_CONFIG_ERRORS)
def test_keras_config_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_keras_config_keys_that_do_not_change_the_weights_are_accepted(rng):
    """Keras 2's `implementation` and `time_major`, initializers, call options: ignored;
    the layer's `name` goes into the config, not into nnlstm's scope name."""
    weights = [rng.randn(D, 3 * H), rng.randn(H, 3 * H), rng.randn(2, 3 * H)]
    interop.load_keras(weights, 'g', 'gru', name='keras_gru', implementation=2,
                       time_major=False, go_backwards=True, return_sequences=True,
                       kernel_initializer={'class_name': 'GlorotUniform', 'config': {}},
                       units=H, activation='tanh', recurrent_activation='sigmoid',
                       use_cudnn='auto', dropout=0.5)
    assert_same(scope_params('g'), interop.from_keras(weights, 'gru'))
    layer = GRU(weights, name='dec', units=H, reset_after=True, use_bias=True)
    interop.load_keras(layer, 'h', 'gru')
    assert_same(scope_params('h'), scope_params('g'))
    assert len(interop.save_keras('h', 'gru', **layer.get_config())) == 3


def test_keras_bidirectional_loads_both_directions_or_neither(rng):
    forward = [rng.randn(D, 3 * H), rng.randn(H, 3 * H), rng.randn(2, 3 * H)]
    backward = [rng.randn(D, 3 * H), rng.randn(H, 3 * H), rng.randn(3 * H)]  # a bad bias
    with pytest.raises(ValueError, match=r"`weights\[2\] \(bias\)` must have rank 2"):
        interop.load_keras(Bidirectional(forward + backward, layer=serialized_gru()), 'b',
                           'gru')
    assert nn.get_parameters(grad_only=False) == {}


@pytest.mark.parametrize('call,error,match', ERRORS)
def test_errors_name_the_argument_and_the_expected_and_received(call, error, match, rng):
    with pytest.raises(error, match=match):
        call(rng) if call.__code__.co_argcount else call()
