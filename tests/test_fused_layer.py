"""The fused path of the layers (issue 10): which path runs, the two paths against each other
over the layers' options, NNabla's graph semantics for the fused function, and export.

The kernels themselves are checked against the unrolled graph and finite differences in
tests/test_fused.py; the dropout masks' placement on both paths in test_dropout_masks.py.
"""
import functools
import os
import subprocess
import sys

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import pytest

import nnlstm
from nnlstm import fused, layers

B, T, D, H = 3, 6, 2, 4
FUSED = fused.FusedLayer.NAME
LAYERS = {'lstm': nnlstm.LSTM, 'gru': nnlstm.GRU, 'rnn': nnlstm.SimpleRNN}


def var(a, need_grad=False):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32), need_grad=need_grad)


def functions_of(variables):
    names = []
    for v in variables:
        v.visit(lambda f: names.append(f.info.type_name))
    return names


def run_both(rng, build, inputs, grads=True):
    """``build(fused)`` -> the Variables of one graph, for fused None and False on the same
    parameters and ``inputs`` (need_grad Variables): each path's outputs, and with
    ``grads`` the gradients of a weighted sum of them wrt ``inputs`` and every parameter."""
    results, weights = [], None
    for path in (None, False):
        outs = build(path)
        names = functions_of(outs)
        assert (FUSED in names) == (path is None), names
        if weights is None:
            for p in nn.get_parameters().values():
                p.d = rng.randn(*p.shape) * 0.5
            weights = [rng.randn(*o.shape) for o in outs]
        loss = F.add_n(*[F.sum(F.mul2(o, var(w))) for o, w in zip(outs, weights)])
        for v in list(inputs) + list(nn.get_parameters().values()):
            v.grad.zero()
        loss.forward()
        got = [o.d.copy() for o in outs]
        if grads:
            loss.backward()
            got += [v.g.copy() for v in inputs]
            got += [p.g.copy() for p in nn.get_parameters().values()]
        results.append(got)
    return results


def assert_same(results):
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)


OPTIONS = [
    {}, {'go_backwards': True}, {'time_major': True}, {'lengths': np.array([6, 2, 0])},
    {'go_backwards': True, 'lengths': np.array([6, 3, 1])}, {'use_bias': False},
    {'activation': 'relu'}, {'activation': 'linear'}, {'initial_state': True},
    {'go_backwards': True, 'time_major': True, 'initial_state': True},
]


@pytest.mark.parametrize('options', OPTIONS, ids=lambda o: '-'.join(o) or 'plain')
@pytest.mark.parametrize('cell', ['lstm', 'gru', 'gru-before', 'rnn'])
@pytest.mark.parametrize('return_sequences', [True, False])
def test_the_fused_layer_equals_the_unrolled_one(rng, cell, options, return_sequences):
    """Outputs, final states and the gradients wrt x, the initial state and every parameter,
    fused (the CPU default) and unrolled, within 1e-5 relative in float32."""
    options = dict(options)
    kind = cell.split('-')[0]
    if cell == 'gru-before':
        options['reset_after'] = False
    time_major = options.get('time_major', False)
    x = var(rng.randn(T, B, D) if time_major else rng.randn(B, T, D), True)
    fields = nnlstm.kinds.KINDS[kind].state._fields
    state = ([var(rng.randn(B, H), True) for _ in fields] if options.pop('initial_state', None)
             else None)
    if state is not None and len(state) == 1:
        state = state[0]

    def build(path):
        return LAYERS[kind](x, H, state, return_sequences=return_sequences, return_state=True,
                            name='layer', fused=path, **options)

    inputs = [x] + ([] if state is None else list(state) if isinstance(state, list)
                    else [state])
    assert_same(run_both(rng, build, inputs))


@pytest.mark.parametrize('cell', ['lstm', 'gru'])
@pytest.mark.parametrize('merge_mode', ['concat', 'sum'])
def test_wrappers_run_fused_through_their_layers(rng, cell, merge_mode):
    """Bidirectional (both directions fused, the backward one's outputs in input order)
    and Stacked (layer by layer), with lengths, against the unrolled graph."""
    x = var(rng.randn(B, T, D), True)
    lengths = np.array([6, 4, 1])

    def build(path):
        with pytest.MonkeyPatch.context() as m:
            if path is False:  # Bidirectional takes no `fused`: make the predicate refuse
                m.setattr(layers, 'backend', lambda: None)
            bi = nnlstm.Bidirectional(LAYERS[cell], x, H, merge_mode=merge_mode,
                                      return_sequences=True, return_state=True,
                                      lengths=lengths, name='bi')
            st = nnlstm.Stacked(LAYERS[cell], x, H, num_layers=2, return_sequences=True,
                                name='st', fused=path)
        return list(bi) + [st]

    assert_same(run_both(rng, build, [x]))


def test_carry_runs_fused(rng):
    """stateful=Carry: the fused layer reads the carried state and hands its final state
    on, run after run, as the unrolled one."""
    xs = [rng.randn(B, T, D) for _ in range(3)]
    got = {}
    for path in (None, False):
        nn.clear_parameters()
        carry = nnlstm.Carry()
        x = nn.Variable((B, T, D))
        y, c, h = nnlstm.LSTM(x, H, return_sequences=True, return_state=True,
                              stateful=carry, name='s', fused=path, rng=0)
        assert (FUSED in functions_of([y])) == (path is None)
        outs = []
        for a in xs:
            x.d = a
            F.sink(y, c, h).forward()
            carry.advance()
            outs.append(h.d.copy())
        got[path] = outs
    assert_same([got[None], got[False]])


def test_the_predicate_names_what_keeps_a_layer_unrolled(rng):
    x = var(rng.randn(B, T, D))
    assert FUSED in functions_of([nnlstm.LSTM(x, H)])
    assert FUSED not in functions_of([nnlstm.LSTM(x, H, fused=False)])
    # what the kernels do not compute keeps the unrolled graph, silently with None ...
    for options in ({'activation': F.tanh}, {'zoneout': 0.1}, {'weight_dropout': 0.2},
                    {'use_peepholes': True}, {'proj_size': 2}):
        nn.clear_parameters()
        assert FUSED not in functions_of([nnlstm.LSTM(x, H, **options)]), options
    nn.clear_parameters()
    assert FUSED not in functions_of([nnlstm.GRU(x, H, resets=np.zeros((B, T)))])
    # ... and as a ValueError naming each with fused=True
    with pytest.raises(ValueError, match=r"`fused`=True cannot run this LSTM layer fused on "
                                         r"cpu; these options prevent it: `zoneout`, "
                                         r"`activation`=<function tanh"):
        nnlstm.LSTM(x, H, fused=True, zoneout=0.1, activation=F.tanh, name='z')
    with pytest.raises(TypeError, match=r"`fused` must be None, True or False; received 1"):
        nnlstm.GRU(x, H, fused=1)


def test_half_and_other_contexts_stay_unrolled(rng, monkeypatch):
    """The kernels compute in float32 (NNabla's CPU has no float64): a half context keeps
    the unrolled graph, and fused=True there names the context."""
    monkeypatch.setattr(nn, 'get_current_context',
                        lambda: nn.Context(['cpu:half', 'cpu:float'], 'float'))
    assert layers.backend() is None
    assert layers.fused_path(None, nnlstm.LSTM.cell_kind, False, False, None, {}) is None
    with pytest.raises(ValueError, match=r"the context \['cpu:half', 'cpu:float'\] \(the "
                                         r"fused paths need"):
        layers.fused_path(True, nnlstm.LSTM.cell_kind, False, False, None, {})


def test_cudnn_choice_with_a_faked_backend(rng, monkeypatch):
    """Under cuDNN (its backend faked, so F.lstm runs on this CPU): training graphs run
    NNabla's F.lstm, nn.no_grad() and training=False graphs the unrolled graph (so they
    export), a GRU the unrolled graph; the CPU kernels are never taken there."""
    monkeypatch.setattr(layers, 'backend', lambda: 'cudnn')
    x = var(rng.randn(B, T, D))
    assert 'LSTM' in functions_of([nnlstm.LSTM(x, H, name='a')])
    assert set(functions_of([nnlstm.LSTM(x, H, name='b', training=False)])) & {
        'LSTM', FUSED} == set()
    with nn.no_grad():
        assert set(functions_of([nnlstm.LSTM(x, H, name='c')])) & {'LSTM', FUSED} == set()
    assert FUSED not in functions_of([nnlstm.GRU(x, H, name='d')])
    with pytest.raises(ValueError, match=r"cannot run this GRU layer fused on cudnn; these "
                                         r"options prevent it: a gru layer"):
        nnlstm.GRU(x, H, fused=True, name='e')


def train_graph(rng, need_grad=True, **options):
    x = var(rng.randn(B, T, D), need_grad)
    y, c, h = nnlstm.LSTM(x, H, return_sequences=True, return_state=True, name='l',
                          **options)
    return x, y, c, h


@pytest.mark.parametrize('path', [None, False])
def test_nnabla_graph_semantics_hold(rng, path):
    """clear_buffer / clear_no_need_grad, accumulation, need_grad=False, F.sink, forwarding
    twice then backwarding once: the fused graph gives what the unrolled one gives."""
    x, y, c, h = train_graph(rng, fused=path)
    w = nn.get_parameters()['l/WaWiWfWo/affine/W']
    loss = F.add2(F.mean(y), F.sum(h))
    loss.forward(clear_no_need_grad=True)
    x.grad.zero()
    w.grad.zero()
    loss.backward(clear_buffer=True)
    once = (x.g.copy(), w.g.copy())
    loss.forward(clear_buffer=True)
    loss.forward()
    loss.backward()  # accumulates: twice the gradient
    np.testing.assert_allclose(x.g, 2 * once[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w.g, 2 * once[1], rtol=1e-5, atol=1e-7)
    sink = F.sink(y, c, h)
    sink.forward()
    np.testing.assert_allclose(h.d, y.d[:, -1], rtol=1e-6)


def test_need_grad_false_inputs_get_no_gradient(rng):
    """A parameter with need_grad=False keeps its gradient buffer untouched while x gets
    its gradient; a graph with nothing to differentiate backwards without a word."""
    x, y, c, h = train_graph(rng, need_grad=False, fix_parameters=True)
    loss = F.sum(y)
    loss.forward()
    loss.backward()  # nothing needs a gradient: nothing is written, nothing fails
    x, y, c, h = train_graph(rng, need_grad=True, fix_parameters=True)
    w = nn.get_parameters(grad_only=False)['l/WaWiWfWo/affine/W']  # the graph reads a
    w.grad.fill(7.0)                        # need_grad=False view of it, sharing its grad
    loss = F.sum(y)
    loss.forward()
    loss.backward()
    assert np.all(w.g == 7.0)
    assert np.any(x.g != 0)


def test_inference_graphs_keep_no_cache(rng):
    with nn.no_grad():
        x = var(rng.randn(B, T, D))
        y = nnlstm.LSTM(x, H, return_sequences=True, name='l')
    y.forward()
    function = fused.FUNCTIONS[hash(y)]
    assert not function.keep and function.cache is None


MEMORY = r"""
import resource, sys
import numpy as np, nnabla as nn, nnabla.functions as F, nnlstm
mode = sys.argv[1]
x = nn.Variable.from_numpy_array(np.random.randn(8, 20, 3).astype(np.float32), need_grad=True)
def build():
    y = nnlstm.LSTM(x, 16, return_sequences=True, name='l')
    return F.mean(y)
loss = build()
rss = []
for i in range(600):
    if mode == 'rebuild':
        loss = build()
    loss.forward(clear_no_need_grad=True)
    loss.backward(clear_buffer=True)
    if i in (100, 599):
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(rss[1] - rss[0])
"""


@pytest.mark.parametrize('mode', ['train', 'rebuild'])
def test_memory_stays_flat(mode):
    """Peak RSS grows by less than 2 MB between step 100 and 600 of training one graph,
    and of rebuilding it at every step: the cache lives and dies with its graph."""
    out = subprocess.run([sys.executable, '-c', MEMORY, mode], capture_output=True, text=True,
                         check=True)
    assert int(out.stdout.split()[-1]) < 2048, out.stdout


@pytest.mark.parametrize('merge', [False, True])
def test_a_fused_graph_exports_what_the_unrolled_graph_exports(rng, tmp_path, merge):
    """A fused inference graph and an unrolled one (Stacked LSTM and a per-step head; a
    Bidirectional GRU) write .nnp files that run identically in NnpLoader and, where the
    converter is installed, .onnx files that run identically in ONNX Runtime; the fused
    graph still runs fused, with the same values, after the export."""
    from nnabla.utils.nnp_graph import NnpLoader
    data = rng.randn(B, T, D).astype(np.float32)
    onnx = importable('onnx') and importable('onnxruntime')
    got = {}
    for path in (None, False):
        with nn.no_grad():
            x = nn.Variable((B, T, D))
            if merge:
                with pytest.MonkeyPatch.context() as m:
                    if path is False:
                        m.setattr(layers, 'backend', lambda: None)
                    y = nnlstm.Bidirectional(nnlstm.GRU, x, H, return_sequences=True,
                                             name='bi')
            else:
                y = nnlstm.Stacked(nnlstm.LSTM, x, H, return_sequences=True, name='st',
                                   fused=path)
            y = PF.affine(y, 1, base_axis=2, name='fc')
        if path is None:
            nnlstm.initializers  # the same parameters for both paths
            for p in nn.get_parameters().values():
                p.d = rng.randn(*p.shape) * 0.5
        assert (FUSED in functions_of([y])) == (path is None)
        x.d = data
        y.forward()
        graph = y.d.copy()
        files = nnlstm.export_network(str(tmp_path / ('%s.nnp' % path)), {'x': x}, {'y': y},
                                      onnx=onnx)
        assert (FUSED in functions_of([y])) == (path is None)
        y.forward()
        np.testing.assert_array_equal(y.d, graph)
        net = NnpLoader(files['nnp']).get_network('inference', batch_size=B)
        net.inputs['x'].d = data
        net.outputs['y'].forward()
        results = [graph, net.outputs['y'].d.copy()]
        if onnx:
            import onnxruntime
            session = onnxruntime.InferenceSession(files['onnx'])
            results.append(session.run(None, {'x': data})[0])
        got[path] = results
    for a, b in zip(got[None], got[False]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[None][0], got[None][1], rtol=1e-5, atol=1e-6)


def importable(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None
