"""nnlstm against golden outputs of real PyTorch and real Keras (tests/data, copied from
../shared/golden; its README.md gives the format): each case's weights go in through
nnlstm.interop, the layer is built through the public API, and outputs, final states and,
for PyTorch, the gradients of sum(output * g) must match at float32 tolerance."""
import functools
import json
import os
import pathlib

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import pytest

import nnlstm
from nnlstm import interop

DATA = pathlib.Path(__file__).parent / 'data'
KERAS = ['keras_bi_ave_last', 'keras_bi_concat', 'keras_bi_mul_gru', 'keras_bi_sum',
         'keras_gru_after', 'keras_gru_before', 'keras_gru_init', 'keras_lstm_backwards',
         'keras_lstm_init', 'keras_lstm_last', 'keras_lstm_nobias', 'keras_lstm_relu',
         'keras_lstm_seq_state', 'keras_simplernn']
#: Model files written by the frameworks (torch_model_*.safetensors, keras_model.weights.h5),
#: each with the npz of its inputs and outputs.
MODELS = ['keras_model', 'torch_model_bigru', 'torch_model_lstm2']
TORCH = ['torch_gru_basic', 'torch_gru_state', 'torch_lstm_basic', 'torch_lstm_bi',
         'torch_lstm_bi_packed', 'torch_lstm_long', 'torch_lstm_packed', 'torch_lstm_stack2',
         'torch_lstm_state', 'torch_lstmp_basic', 'torch_lstmp_bi', 'torch_lstmp_packed',
         'torch_lstmp_stack2', 'torch_lstmp_state', 'torch_rnn_basic']
ATOL = 1e-5
#: Gradients: float32 rounding in the golden data grows with the gradient's size (bias
#: gradients near 20 over torch_lstm_long's 120 steps), hence a relative part too.
GRAD_TOL = dict(rtol=1e-5, atol=1e-5)

LAYERS = {'lstm': nnlstm.LSTM, 'gru': nnlstm.GRU, 'rnn': nnlstm.SimpleRNN}
KERAS_CELLS = {'LSTM': 'lstm', 'GRU': 'gru', 'SimpleRNN': 'rnn'}


@pytest.fixture(autouse=True, params=['fused', 'unrolled'])
def path(request, monkeypatch):
    """Every golden test runs on both paths: the CPU's fused kernels (the default) and the
    unrolled graph (the predicate then finds no fused backend, for the wrappers too)."""
    if request.param == 'unrolled':
        monkeypatch.setattr(nnlstm.layers, 'backend', lambda: None)
    return request.param


def load_case(case):
    data = np.load(DATA / (case + '.npz'))
    arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop('meta'))), arrays


def var(a, need_grad=False):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32), need_grad=need_grad)


def test_every_golden_file_is_tested():
    assert sorted(p.stem for p in DATA.glob('*.npz')) == sorted(KERAS + TORCH + MODELS)
    assert sorted(p.name for p in DATA.glob('*_model*.*') if p.suffix != '.npz') == [
        'keras_model.weights.h5', 'torch_model_bigru.safetensors',
        'torch_model_lstm2.safetensors']


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
    if meta.get('proj_size'):  # nn.LSTM(proj_size=P)
        kwargs['proj_size'] = meta['proj_size']
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


# ------------------------------------------------------------------ model files

def outputs(*variables):
    F.sink(*variables).forward()
    return [v.d for v in variables]


def test_torch_safetensors_two_layer_lstm_and_linear_head():
    """torch_model_lstm2.safetensors: lstm = nn.LSTM(D, H, num_layers=2), fc = nn.Linear(H,
    1) on the last step; loaded by module prefix, the head into PF.affine."""
    meta, a = load_case('torch_model_lstm2')
    path = DATA / 'torch_model_lstm2.safetensors'
    for k in range(meta['num_layers']):
        interop.load_torch(path, 'lstm/layer%d' % k, layer=k, prefix='lstm.')
    interop.load_torch_linear(path, 'fc', prefix='fc.')
    y, finals = nnlstm.Stacked(nnlstm.LSTM, var(a['x']), meta['H'], num_layers=2,
                               name='lstm', return_sequences=True, return_state=True)
    out = PF.affine(y[:, -1], 1, name='fc')
    got = outputs(y, out, *[v for state in finals for v in state])
    np.testing.assert_allclose(got[0], a['y'], atol=ATOL, rtol=0)
    np.testing.assert_allclose(got[1], a['out'], atol=ATOL, rtol=0)
    for k in range(2):  # nnlstm's LSTM state is (c, h)
        np.testing.assert_allclose(got[2 + 2 * k], a['c_n'][k], atol=ATOL, rtol=0)
        np.testing.assert_allclose(got[3 + 2 * k], a['h_n'][k], atol=ATOL, rtol=0)


def test_torch_safetensors_bidirectional_gru():
    meta, a = load_case('torch_model_bigru')
    path = str(DATA / 'torch_model_bigru.safetensors')
    interop.load_torch(path, 'bi/forward', 'gru', prefix='rnn.')
    interop.load_torch(path, 'bi/backward', 'gru', reverse=True, prefix='rnn.')
    got = outputs(*nnlstm.Bidirectional(nnlstm.GRU, var(a['x']), meta['H'], name='bi',
                                        return_sequences=True, return_state=True))
    np.testing.assert_allclose(got[0], a['y'], atol=ATOL, rtol=0)
    np.testing.assert_allclose(got[1], a['h_n'][0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(got[2], a['h_n'][1], atol=ATOL, rtol=0)


def test_keras_weights_h5_lstm_gru_dense():
    """keras_model.weights.h5: LSTM(H, return_sequences=True, name='enc') -> GRU(H2,
    name='dec') -> Dense(1, name='head'), picked by Keras 3's class paths and by name."""
    meta, a = load_case('keras_model')
    path = DATA / 'keras_model.weights.h5'
    interop.load_keras(path, 'enc', layer='lstm')
    interop.load_keras(str(path), 'dec', cell='gru', layer='dec')  # by the layer's name
    interop.load_keras_dense(path, 'head', layer='dense')
    x = var(a['x'])
    enc = nnlstm.LSTM(x, meta['H'], name='enc', return_sequences=True)
    dec = nnlstm.GRU(enc, meta['H2'], name='dec')
    out = PF.affine(dec, 1, name='head')
    for got, want in zip(outputs(enc, dec, out), [a['enc'], a['dec'], a['out']]):
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_save_torch_writes_a_safetensors_file_pytorch_loads(tmp_path):
    """The bidirectional GRU and the two-layer LSTM + head saved back: the same keys,
    shapes and dtypes as the files PyTorch wrote (what load_state_dict(strict=True)
    checks), GRU values exactly, LSTM biases as one function (b_ih + b_hh)."""
    import safetensors.numpy as st
    source = DATA / 'torch_model_bigru.safetensors'
    interop.load_torch(source, 'bi/forward', 'gru', prefix='rnn.')
    interop.load_torch(source, 'bi/backward', 'gru', reverse=True, prefix='rnn.')
    target = tmp_path / 'bigru.safetensors'
    sd = interop.save_torch('bi/forward', 'gru', prefix='rnn.')
    returned = interop.save_torch('bi/backward', 'gru', reverse=True, prefix='rnn.', into=sd,
                                  path=target)
    written, original = st.load_file(str(target)), st.load_file(str(source))
    assert sorted(written) == sorted(original) == sorted(returned)
    for key in original:
        assert written[key].dtype == original[key].dtype == np.float32
        np.testing.assert_array_equal(written[key], original[key], err_msg=key)

    source = DATA / 'torch_model_lstm2.safetensors'
    original = st.load_file(str(source))
    sd = {k: v for k, v in original.items() if k.startswith('fc.')}
    for k in range(2):
        interop.load_torch(source, 'lstm/layer%d' % k, layer=k, prefix='lstm.')
        sd = interop.save_torch('lstm/layer%d' % k, layer=k, prefix='lstm.', into=sd,
                                path=tmp_path / 'lstm2.safetensors')
    written = st.load_file(str(tmp_path / 'lstm2.safetensors'))
    assert ({k: v.shape for k, v in written.items()}
            == {k: v.shape for k, v in original.items()})
    for k in range(2):
        for name in ('weight_ih_l%d', 'weight_hh_l%d'):
            key = 'lstm.' + name % k
            np.testing.assert_array_equal(written[key], original[key])
        bias = 'lstm.bias_ih_l%d' % k, 'lstm.bias_hh_l%d' % k
        np.testing.assert_allclose(written[bias[0]] + written[bias[1]],
                                   original[bias[0]] + original[bias[1]], atol=1e-6)


def test_safetensors_write_is_all_or_nothing_and_keeps_the_mode(tmp_path, monkeypatch, rng):
    import safetensors.numpy as st
    nnlstm.LSTM(var(rng.randn(2, 3, 4)), 5, name='l')
    target = tmp_path / 'm.safetensors'
    target.write_bytes(b'old')
    target.chmod(0o640)

    def broken(arrays, path):
        with open(path, 'wb') as f:
            f.write(b'half')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(st, 'save_file', broken)
    with pytest.raises(OSError, match=r"No space left on device: '%s'" % target):
        interop.save_torch('l', path=target)
    assert target.read_bytes() == b'old'
    assert [p.name for p in tmp_path.iterdir()] == ['m.safetensors']
    monkeypatch.undo()
    interop.save_torch('l', path=target)
    assert sorted(st.load_file(str(target))) == sorted(interop.save_torch('l'))
    assert target.stat().st_mode & 0o777 == 0o640       # an existing file keeps its mode
    target.unlink()
    umask = os.umask(0o027)
    try:
        interop.save_torch('l', path=target)
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o640       # a new one: 0o666 & ~umask


def keras3_file(path, layers):
    """A .weights.h5 laid out as Keras 3's model.save_weights lays it out (see
    keras_model.weights.h5): {class path: (name, cell vars name, weights)}, a
    Bidirectional's weights under 'forward_layer' and 'backward_layer'."""
    import h5py
    with h5py.File(path, 'w') as f:
        f.create_group('vars').attrs['name'] = 'sequential'
        for key, (name, cell_name, weights) in layers.items():
            f.create_group('layers/%s/vars' % key).attrs['name'] = name
            parts = weights if isinstance(weights, dict) else {'': weights}
            for part, ws in parts.items():
                group = f.create_group('/'.join(p for p in ('layers', key, part, 'cell/vars')
                                                if p))
                group.attrs['name'] = cell_name
                for k, w in enumerate(ws):
                    group[str(k)] = w


def test_keras_weights_h5_bidirectional_and_numbered_layers(tmp_path):
    """Two LSTMs ('lstm', 'lstm_1') and a Bidirectional(GRU) in one file, written the way
    Keras 3 does; the Bidirectional loads into {name}/forward and {name}/backward."""
    _, a = load_case('keras_bi_mul_gru')
    ws = [a['w%d' % k] for k in range(6)]
    _, b = load_case('keras_lstm_init')
    lstm = [b['w%d' % k] for k in range(3)]
    path = tmp_path / 'model.weights.h5'
    keras3_file(path, {'lstm': ('first', 'lstm_cell', lstm),
                       'lstm_1': ('second', 'lstm_cell', lstm),
                       'bidirectional': ('bi', 'gru_cell', {'forward_layer': ws[:3],
                                                            'backward_layer': ws[3:]})})
    interop.load_keras(path, 'bi', 'gru', layer='bidirectional')
    interop.load_keras(ws[:3], 'f', 'gru')
    interop.load_keras(ws[3:], 'b', 'gru')
    with nn.parameter_scope('bi'):
        loaded = {k: v.d for k, v in nn.get_parameters(grad_only=False).items()}
    for direction, scope in (('forward', 'f'), ('backward', 'b')):
        with nn.parameter_scope(scope):
            for k, v in nn.get_parameters(grad_only=False).items():
                np.testing.assert_array_equal(loaded[direction + '/' + k], v.d)
    interop.load_keras(path, 'second', layer='lstm_1')
    with pytest.raises(ValueError, match=r"`layer` must name one of the recurrent layers of "
                       r"'.*model.weights.h5': 'bidirectional' \(Bidirectional GRU named "
                       r"'bi'\), 'lstm' \(LSTM named 'first'\), 'lstm_1' \(LSTM named "
                       r"'second'\)"):
        interop.load_keras(path, 'x')


FILE_ERRORS = [
    (lambda d: interop.load_keras(d / 'keras_model.weights.h5', 'x', layer='lstm_1'),
     ValueError, r"'.*keras_model.weights.h5' has no recurrent layer 'lstm_1'; it has 'gru' "
     r"\(GRU named 'dec'\), 'lstm' \(LSTM named 'enc'\)"),
    (lambda d: interop.load_keras(d / 'keras_model.weights.h5', 'x', layer='gru'), ValueError,
     r"'gru' of '.*keras_model.weights.h5' is a Keras GRU layer, but `cell` is 'lstm'; pass "
     r"cell='gru'"),
    (lambda d: interop.load_keras(d / 'keras_model.weights.h5', 'x', layer='lstm',
                                  units=6), ValueError,
     r"layer 'lstm' of '.*keras_model.weights.h5': `units` is 6, but `weights` holds the "
     r"weights of a layer of H = 5 units"),
    (lambda d: interop.load_keras(d / 'keras_model.weights.h5', 'x', 'gru', layer='gru',
                                  reset_after=False), ValueError,
     r"layer 'gru' of '.*keras_model.weights.h5': `weights\[2\] \(bias\)` must have rank 1"),
    (lambda d: interop.load_keras(d / 'missing.weights.h5', 'x'), FileNotFoundError,
     r"missing.weights.h5"),
    (lambda d: interop.load_keras(d / 'keras_model.npz', 'x'), OSError,
     r"cannot read '.*keras_model.npz' as a Keras 3 .weights.h5 file"),
    (lambda d: interop.load_keras_dense(d / 'keras_model.weights.h5', 'h', layer='head_1'),
     ValueError, r"has no Dense layer 'head_1'; it has 'dense' \(named 'head'\)"),
    (lambda d: interop.load_torch(d / 'torch_model_lstm2.safetensors', 'x'), ValueError,
     r"`state_dict` has no 'weight_hh_l0', but 'lstm.weight_hh_l0': pass the module's "
     r"prefix, prefix='lstm.'"),
    (lambda d: interop.load_torch(d / 'torch_model_lstm2.safetensors', 'x', prefix='rnn.'),
     ValueError, r"'.*torch_model_lstm2.safetensors' \(prefix 'rnn.'\): no keys start with "
     r"the prefix; the module prefixes there are \['fc.', 'lstm.'\]"),
    (lambda d: interop.load_torch(d / 'torch_model_lstm2.safetensors', 'x', layer=2,
                                  prefix='lstm.'), ValueError,
     r"'.*torch_model_lstm2.safetensors' \(prefix 'lstm.'\): `state_dict` has no "
     r"'weight_hh_l2'"),
    (lambda d: interop.load_torch(d / 'torch_model_bigru.safetensors', 'x', prefix='rnn.'),
     ValueError, r"'.*torch_model_bigru.safetensors' \(prefix 'rnn.'\): "
     r"`state_dict\['weight_hh_l0'\]` has shape \(15, 5\); expected \(4H, H\)"),
    (lambda d: interop.load_torch(d / 'missing.safetensors', 'x'), FileNotFoundError,
     r"cannot read '.*missing.safetensors' as a .safetensors file"),
    (lambda d: interop.load_torch(d / 'keras_model.weights.h5', 'x'), ValueError,
     r"`state_dict` '.*keras_model.weights.h5' is not a readable .safetensors file"),
    (lambda d: interop.load_torch_linear(d / 'torch_model_lstm2.safetensors', 'fc',
                                         prefix='head.'), ValueError,
     r"no keys start with the prefix; the module prefixes there are \['fc.', 'lstm.'\]"),
]


@pytest.mark.parametrize('call,error,match', FILE_ERRORS)
def test_file_errors_name_the_users_path(call, error, match):
    with pytest.raises(error, match=match):
        call(DATA)


def test_save_torch_to_a_missing_folder_names_the_users_path(rng, tmp_path):
    nnlstm.LSTM(var(rng.randn(2, 3, 4)), 5, name='l')
    with pytest.raises(FileNotFoundError, match=r"'%s'" % (tmp_path / 'nodir' / 'm.st')):
        interop.save_torch('l', path=tmp_path / 'nodir' / 'm.st')
