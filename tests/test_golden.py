"""nnlstm against golden outputs of real PyTorch and real Keras (tests/data, copied from
../shared/golden; its README.md gives the format): each case's weights go in through
nnlstm.interop, the layer is built through the public API, and outputs, final states and,
for PyTorch, the gradients of sum(output * g) must match at float32 tolerance."""
import functools
import json
import pathlib

import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
from nnlstm import interop

DATA = pathlib.Path(__file__).parent / 'data'
KERAS = ['keras_bi_ave_last', 'keras_bi_concat', 'keras_bi_mul_gru', 'keras_bi_sum',
         'keras_gru_after', 'keras_gru_before', 'keras_gru_init', 'keras_lstm_backwards',
         'keras_lstm_init', 'keras_lstm_last', 'keras_lstm_nobias', 'keras_lstm_relu',
         'keras_lstm_seq_state', 'keras_simplernn']
TORCH = ['torch_gru_basic', 'torch_gru_state', 'torch_lstm_basic', 'torch_lstm_bi',
         'torch_lstm_bi_packed', 'torch_lstm_long', 'torch_lstm_packed', 'torch_lstm_stack2',
         'torch_lstm_state', 'torch_rnn_basic']
ATOL = 1e-5
#: Gradients: float32 rounding in the golden data grows with the gradient's size (bias
#: gradients near 20 over torch_lstm_long's 120 steps), hence a relative part too.
GRAD_TOL = dict(rtol=1e-5, atol=1e-5)

LAYERS = {'lstm': nnlstm.LSTM, 'gru': nnlstm.GRU, 'rnn': nnlstm.SimpleRNN}
KERAS_CELLS = {'LSTM': 'lstm', 'GRU': 'gru', 'SimpleRNN': 'rnn'}


def load_case(case):
    data = np.load(DATA / (case + '.npz'))
    arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop('meta'))), arrays


def var(a, need_grad=False):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32), need_grad=need_grad)


def test_every_golden_file_is_tested():
    assert sorted(p.stem for p in DATA.glob('*.npz')) == sorted(KERAS + TORCH)


def keras_states(cell, state):
    """nnlstm's final state tuple in Keras' order: LSTM (c, h) -> [h, c]."""
    return list(state[::-1]) if cell == 'lstm' else list(state)


def keras_config(meta, cell, **changes):
    """The ``get_config()`` Keras 3.12 gives the case's layer (every key it writes)."""
    def serialized(class_name, config, module='keras.initializers'):
        return {'module': module, 'class_name': class_name, 'config': config,
                'registered_name': None}

    config = dict(
        name=meta['layer'].lower(), trainable=True,
        dtype=serialized('DTypePolicy', {'name': 'float32'}, 'keras'),
        return_sequences=meta.get('return_sequences', False),
        return_state=meta.get('return_state', False),
        go_backwards=meta.get('go_backwards', False), stateful=False, unroll=False,
        zero_output_for_mask=False, units=meta['H'], activation=meta.get('activation', 'tanh'),
        recurrent_activation='sigmoid', use_bias=meta.get('use_bias', True),
        kernel_initializer=serialized('GlorotUniform', {'seed': None}),
        recurrent_initializer=serialized('Orthogonal', {'seed': None, 'gain': 1.0}),
        bias_initializer=serialized('Zeros', {}), unit_forget_bias=True,
        kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
        activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
        bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
        reset_after=meta.get('reset_after', True))
    if cell != 'lstm':
        del config['unit_forget_bias']
    if cell != 'gru':
        del config['reset_after']
    if cell == 'rnn':
        del config['recurrent_activation']
    config.update(changes)
    if meta['bidirectional']:
        def inner(prefix, **more):
            return dict(serialized(meta['layer'], dict(config, name=prefix + config['name'],
                                                       **more), 'keras.layers'),
                        build_config={'input_shape': [None, meta['T'], meta['D']]})
        return dict(name='bidirectional', trainable=True, dtype=config['dtype'],
                    merge_mode=meta['bidirectional'], layer=inner('forward_'),
                    backward_layer=inner('backward_', go_backwards=True))
    return config


class FakeKerasLayer:
    """What nnlstm.interop reads of a Keras layer: get_weights() and get_config(); its class
    name is the Keras class's."""

    def __init__(self, weights, config):
        self._weights, self._config = weights, config

    def get_weights(self):
        return list(self._weights)

    def get_config(self):
        return dict(self._config)


def fake_layer(meta, weights, cell):
    cls = type('Bidirectional' if meta['bidirectional'] else meta['layer'], (FakeKerasLayer,),
               {})
    return cls(weights, keras_config(meta, cell))


def load_arrays(weights, meta, cell, name, config):
    if meta['bidirectional']:
        half = len(weights) // 2
        interop.load_keras(weights[:half], name + '/forward', cell, **config)
        interop.load_keras(weights[half:], name + '/backward', cell, **config)
    else:
        interop.load_keras(weights, name, cell, **config)


def load_layer(weights, meta, cell, name, config):
    interop.load_keras(fake_layer(meta, weights, cell), name, cell=cell)


def load_config(weights, meta, cell, name, config):
    interop.load_keras(weights, name, cell=cell, **keras_config(meta, cell))


@pytest.mark.parametrize('case', KERAS)
@pytest.mark.parametrize('load', [load_arrays, load_layer, load_config],
                         ids=['get_weights', 'layer', 'get_config'])
def test_keras(case, load):
    """Each Keras case, its weights loaded as arrays with the options that change them, as
    the Keras layer itself, or as arrays with ``**layer.get_config()``."""
    meta, a = load_case(case)
    cell = KERAS_CELLS[meta['layer']]
    config = {'use_bias': meta.get('use_bias', True)}
    if cell == 'gru':
        config['reset_after'] = meta.get('reset_after', True)
    options = dict(config, activation=meta.get('activation', 'tanh'))
    flags = dict(return_sequences=meta.get('return_sequences', False),
                 return_state=meta.get('return_state', False))
    weights = [a['w%d' % k] for k in range(sum(k.startswith('w') for k in a))]
    x = var(a['x'])
    units = meta['H']
    if meta['bidirectional']:
        load(weights, meta, cell, 'bi', config)
        out = nnlstm.Bidirectional(LAYERS[cell], x, units, merge_mode=meta['bidirectional'],
                                   name='bi', **flags, **options)
        fields = 2 if cell == 'lstm' else 1
        if flags['return_state']:
            out = [out[0]] + keras_states(cell, out[1:1 + fields]) + keras_states(
                cell, out[1 + fields:])
    else:
        load(weights, meta, cell, 'k', config)
        state = None
        if meta['init_state']:  # Keras: [h, c]; nnlstm: (c0, h0)
            state = (var(a['s1']), var(a['s0'])) if cell == 'lstm' else var(a['s0'])
        out = LAYERS[cell](x, units, state, name='k', go_backwards=meta.get('go_backwards',
                                                                            False),
                           **flags, **options)
        if flags['return_state']:
            out = [out[0]] + keras_states(cell, out[1:])
    out = list(out) if isinstance(out, (list, tuple)) else [out]
    F.sink(*out).forward()
    want = [a['y%d' % k] for k in range(sum(k.startswith('y') for k in a))]
    assert len(out) == len(want)
    for k, (got, y) in enumerate(zip(out, want)):
        np.testing.assert_allclose(got.d, y, atol=ATOL, rtol=0, err_msg='y%d' % k)


def torch_scope(layer, direction, num_layers, bidirectional):
    """Where the layer of PyTorch's ``layer`` and ``direction`` lives in the nnlstm model."""
    parts = ['t'] + (['layer%d' % layer] if num_layers > 1 else [])
    return '/'.join(parts + ([('forward', 'backward')[direction]] if bidirectional else []))


def build_torch(meta, a):
    """The nnlstm model of a PyTorch case, the PyTorch weights loaded. Returns the output
    Variable, the final states [(h, c or None)] in PyTorch's layer * dirs + dir order, and
    the input Variable."""
    cell, units, num_layers = meta['kind'], meta['H'], meta['num_layers']
    dirs = 2 if meta['bidirectional'] else 1
    sd = {k[len('sd/'):]: v for k, v in a.items() if k.startswith('sd/')}
    for layer in range(num_layers):
        for d in range(dirs):
            interop.load_torch(sd, torch_scope(layer, d, num_layers, dirs == 2), cell, layer,
                               reverse=d == 1)
    x = var(a['x'], need_grad=True)

    def state(k):  # torch's h0/c0 entry k as the nnlstm layer's initial state
        if not meta['init_state']:
            return None
        return (var(a['c0'][k]), var(a['h0'][k])) if cell == 'lstm' else (var(a['h0'][k]),)

    layer_fn = LAYERS[cell]
    if dirs == 2:
        layer_fn = functools.partial(nnlstm.Bidirectional, layer_fn, merge_mode='concat')
    states = None
    if meta['init_state']:
        states = [sum((state(k * dirs + d) for d in range(dirs)), ())
                  for k in range(num_layers)]
        if cell != 'lstm' and dirs == 1:
            states = [s[0] for s in states]
    kwargs = dict(return_sequences=True, return_state=True, lengths=a.get('lengths'))
    if num_layers > 1:
        y, finals = nnlstm.Stacked(layer_fn, x, units, num_layers=num_layers, name='t',
                                   initial_state=states, **kwargs)
    else:
        out = layer_fn(x, units, initial_state=states and states[0], name='t', **kwargs)
        y, finals = out[0], [out[1:]]
    fields = 2 if cell == 'lstm' else 1
    flat = [f[d * fields:(d + 1) * fields] for f in finals for d in range(dirs)]
    return y, [(s[-1], s[0] if cell == 'lstm' else None) for s in flat], x


@pytest.mark.parametrize('case', TORCH)
def test_torch(case):
    meta, a = load_case(case)
    cell = meta['kind']
    y, finals, x = build_torch(meta, a)
    loss = F.sum(F.mul2(y, var(a['g'])))
    F.sink(loss, *[v for hc in finals for v in hc if v is not None]).forward()
    np.testing.assert_allclose(y.d, a['output'], atol=ATOL, rtol=0)
    for k, (h, c) in enumerate(finals):
        np.testing.assert_allclose(h.d, a['h_n'][k], atol=ATOL, rtol=0, err_msg='h_n[%d]' % k)
        if c is not None:
            np.testing.assert_allclose(c.d, a['c_n'][k], atol=ATOL, rtol=0,
                                       err_msg='c_n[%d]' % k)

    params = nn.get_parameters(grad_only=False)
    for p in list(params.values()) + [x]:
        p.grad.zero()
    loss.backward()
    np.testing.assert_allclose(x.g, a['grad/x'], **GRAD_TOL, err_msg='grad/x')
    dirs = 2 if meta['bidirectional'] else 1
    checked = set()
    for layer in range(meta['num_layers']):
        for d in range(dirs):
            with nn.parameter_scope(torch_scope(layer, d, meta['num_layers'], dirs == 2)):
                grads = {k: v.g for k, v in nn.get_parameters(grad_only=False).items()}
            got = interop.to_torch(grads, cell, layer, reverse=d == 1)
            w_ih, w_hh, b_ih, b_hh = interop.torch_keys(layer, d == 1)
            if cell != 'gru':  # one bias: torch's two biases have the same gradient
                got[b_hh] = got[b_ih]
            for key, value in got.items():
                np.testing.assert_allclose(value, a['grad/sd/' + key], **GRAD_TOL,
                                           err_msg='grad/sd/' + key)
                checked.add('grad/sd/' + key)
    assert checked == {k for k in a if k.startswith('grad/sd/')}
