"""Recurrent layers written as native ONNX LSTM / GRU / RNN nodes (nnlstm.export.native):
exported at (B, T) = (2, 20), run in ONNX Runtime at other batch sizes *and* lengths,
against the NNabla graph built at that length with the same parameters.

Needs the onnx extra, as tests/test_onnx.py."""
import functools
import re
import warnings

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import pytest

import nnlstm
from nnlstm.export.native import UnrolledLayerWarning
from test_onnx import TOLERANCE, max_differences, need, ort_outputs, randomize

onnx = need('onnx')
need('onnxruntime')

B0, T0, D, H = 2, 20, 2, 3       # the export's shapes; tiny H keeps it fast
RUNS = [(1, 7), (5, 33), (3, 20)]  # (B, T) run in ONNX Runtime


def lstm_state(b):
    return {'c0': (b, H), 'h0': (b, H)}


def bi(layer, merge_mode, **kwargs):
    def build(x, extra):
        y = nnlstm.Bidirectional(layer, x, H, merge_mode=merge_mode, return_sequences=True,
                                 name='bi', **kwargs)
        return {'y_f': y[0], 'y_b': y[1]} if merge_mode is None else {'y': y}
    return build


#: name -> (build(x, extra inputs) -> outputs, {extra input: shape at batch b}).
CASES = {
    'LSTM': (lambda x, e: dict(zip('ych', nnlstm.LSTM(
        x, H, return_sequences=True, return_state=True))), {}),
    'LSTM last': (lambda x, e: {'y': nnlstm.LSTM(x, H, use_bias=False)}, {}),
    'LSTM use_peepholes': (lambda x, e: dict(zip('ych', nnlstm.LSTM(
        x, H, return_sequences=True, return_state=True, use_peepholes=True))), {}),
    'Bidirectional peepholes': (bi(nnlstm.LSTM, 'concat', use_peepholes=True), {}),
    'GRU reset_after': (lambda x, e: dict(zip('yh', nnlstm.GRU(
        x, H, return_sequences=True, return_state=True))), {}),
    'GRU reset_before': (lambda x, e: {'y': nnlstm.GRU(
        x, H, return_sequences=True, reset_after=False)}, {}),
    'SimpleRNN tanh': (lambda x, e: {'y': nnlstm.SimpleRNN(x, H, return_sequences=True)}, {}),
    'SimpleRNN relu': (lambda x, e: {'y': nnlstm.SimpleRNN(
        x, H, return_sequences=True, activation='relu')}, {}),
    'LSTM go_backwards': (lambda x, e: dict(zip('ych', nnlstm.LSTM(
        x, H, return_sequences=True, return_state=True, go_backwards=True))), {}),
    'GRU go_backwards last': (lambda x, e: {'y': nnlstm.GRU(x, H, go_backwards=True)}, {}),
    'Bidirectional concat': (bi(nnlstm.LSTM, 'concat'), {}),
    'Bidirectional sum': (bi(nnlstm.GRU, 'sum'), {}),
    'Bidirectional mul': (bi(nnlstm.SimpleRNN, 'mul'), {}),
    'Bidirectional ave': (bi(nnlstm.LSTM, 'ave'), {}),
    'Bidirectional None': (bi(nnlstm.LSTM, None), {}),
    'Bidirectional last': (lambda x, e: dict(zip(['y', 'c_f', 'h_f', 'c_b', 'h_b'],
                                                 nnlstm.Bidirectional(
        nnlstm.LSTM, x, H, return_state=True))), {}),
    'Stacked': (lambda x, e: {'y': nnlstm.Stacked(
        nnlstm.LSTM, x, H, num_layers=3, return_sequences=True)}, {}),
    'Stacked Bidirectional GRU': (lambda x, e: {'y': nnlstm.Stacked(
        functools.partial(nnlstm.Bidirectional, nnlstm.GRU), x, H, num_layers=2)}, {}),
    'LSTM initial_state': (lambda x, e: dict(zip('ych', nnlstm.LSTM(
        x, H, initial_state=(e['c0'], e['h0']), return_sequences=True,
        return_state=True))), lstm_state),
    'GRU initial_state': (lambda x, e: {'y': nnlstm.GRU(
        x, H, initial_state=e['h0'], return_sequences=True)}, lambda b: {'h0': (b, H)}),
    'Bidirectional initial_state': (lambda x, e: {'y': nnlstm.Bidirectional(
        nnlstm.LSTM, x, H, initial_state=(e['c0'], e['h0'], e['c1'], e['h1']),
        return_sequences=True)},
        lambda b: {'c0': (b, H), 'h0': (b, H), 'c1': (b, H), 'h1': (b, H)}),
    'LSTM lengths': (lambda x, e: dict(zip('ych', nnlstm.LSTM(
        x, H, lengths=e['lengths'], return_sequences=True, return_state=True))),
        lambda b: {'lengths': (b,)}),
    'LSTM lengths go_backwards': (lambda x, e: {'y': nnlstm.LSTM(
        x, H, lengths=e['lengths'], return_sequences=True, go_backwards=True)},
        lambda b: {'lengths': (b,)}),
    'Bidirectional lengths': (lambda x, e: {'y': nnlstm.Bidirectional(
        nnlstm.GRU, x, H, lengths=e['lengths'], return_sequences=True)},
        lambda b: {'lengths': (b,)}),
    'elementwise after': (lambda x, e: {'y': F.tanh(nnlstm.LSTM(
        x, H, return_sequences=True))}, {}),
    'per-step head': (lambda x, e: {'y': PF.affine(nnlstm.GRU(
        x, H, return_sequences=True), 2, base_axis=2, name='fc')}, {}),
    'char-LM head': (lambda x, e: {'logits': PF.affine(nnlstm.Stacked(
        nnlstm.LSTM, x, H, num_layers=2, return_sequences=True), 5, base_axis=2,
        name='fc')}, {}),
    'head on the last output': (lambda x, e: {'y': PF.affine(nnlstm.GRU(x, H), 2, name='fc')},
                                {}),
}


def extras(case, batch):
    shapes = CASES[case][1]
    return shapes(batch) if callable(shapes) else shapes


def feeds_for(case, rng, batch, steps):
    feeds = {'x': rng.randn(batch, steps, D).astype(np.float32)}
    for name, shape in extras(case, batch).items():
        if name == 'lengths':  # full, short and empty sequences
            feeds[name] = rng.randint(0, steps + 1, shape).astype(np.float32)
            feeds[name][0] = steps
        else:
            feeds[name] = rng.randn(*shape).astype(np.float32)
    return feeds


def built(case, feeds):
    """The NNabla graph of ``case`` at the feeds' shapes: its inputs and outputs."""
    with nn.no_grad():
        inputs = {k: nn.Variable(v.shape) for k, v in feeds.items()}
        outputs = CASES[case][0](inputs['x'], inputs)
    return inputs, outputs


def nnabla_outputs(case, feeds):
    inputs, outputs = built(case, feeds)
    for k, v in feeds.items():
        inputs[k].d = v
    nn.forward_all(list(outputs.values()))
    return {k: v.d.copy() for k, v in outputs.items()}


def export(tmp_path, rng, case, **kwargs):
    inputs, outputs = built(case, feeds_for(case, rng, B0, T0))
    randomize(rng)
    with warnings.catch_warnings():
        warnings.simplefilter('error', UnrolledLayerWarning)
        return nnlstm.export_network(str(tmp_path / 'm.nnp'), inputs, outputs, onnx=True,
                                     **kwargs)['onnx'], list(outputs)


@pytest.mark.parametrize('case', list(CASES))
def test_native_nodes_run_at_any_batch_and_length(tmp_path, rng, case):
    path, names = export(tmp_path, rng, case)
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert ops & {'LSTM', 'GRU', 'RNN'}
    assert 'Split' not in ops  # nothing unrolled is left
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_param == 'time'
    for batch, steps in RUNS:
        feeds = feeds_for(case, rng, batch, steps)
        got = ort_outputs(path, feeds, names)
        assert max_differences(nnabla_outputs(case, feeds), got) < TOLERANCE, (batch, steps)


def test_per_step_head_unrolled_runs_at_another_batch(tmp_path, rng):
    """onnx_rnn='unrolled': the converter's reshapes to (B * T, H) and back, made
    batch-symbolic."""
    path, names = export(tmp_path, rng, 'char-LM head', onnx_rnn='unrolled')
    feeds = feeds_for('char-LM head', rng, 3, T0)
    got = ort_outputs(path, feeds, names)
    assert max_differences(nnabla_outputs('char-LM head', feeds), got) < TOLERANCE


def test_a_stacked_layer_is_a_chain_of_nodes(tmp_path, rng):
    path, _ = export(tmp_path, rng, 'Stacked')
    assert [n.op_type for n in onnx.load(path).graph.node].count('LSTM') == 3


@pytest.mark.parametrize('opset', [7, 9, 10, 11])
def test_native_nodes_at_other_opsets(tmp_path, rng, opset):
    path, names = export(tmp_path, rng, 'Bidirectional initial_state', opset=opset)
    feeds = feeds_for('Bidirectional initial_state', rng, 3, 9)
    got = ort_outputs(path, feeds, names)
    assert max_differences(nnabla_outputs('Bidirectional initial_state', feeds), got) < TOLERANCE


def unexpressible(x, e):
    return {'y': nnlstm.LSTM(x, H, return_sequences=True, activation=lambda v: F.tanh(v),
                             name='custom')}


def test_a_layer_onnx_cannot_express_is_written_unrolled_with_a_warning(tmp_path, rng):
    CASES['custom'] = (unexpressible, {})
    try:
        inputs, outputs = built('custom', feeds_for('custom', rng, B0, T0))
        # Not pytest.warns: it would raise again NNabla's deprecation warnings it caught.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', UnrolledLayerWarning)
            path = nnlstm.export_network(str(tmp_path / 'm.nnp'), inputs, outputs,
                                         onnx=True)['onnx']
        messages = [str(w.message) for w in caught if w.category is UnrolledLayerWarning]
        assert len(messages) == 1
        assert re.match(r"layer 'custom' is written to ONNX unrolled, with T = 20 fixed in "
                        r"the file: ONNX's LSTM operator cannot express `activation`=<function",
                        messages[0])
        model = onnx.load(path)
        assert 'LSTM' not in {n.op_type for n in model.graph.node}
        assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == T0
        feeds = feeds_for('custom', rng, 3, T0)
        got = ort_outputs(path, feeds, ['y'])
        assert max_differences(nnabla_outputs('custom', feeds), got) < TOLERANCE
        with pytest.raises(ValueError, match=r"strict=True: layer 'custom' cannot be written as a "
                           r"native ONNX node: ONNX's LSTM operator cannot express `activation`"):
            nnlstm.export_network(str(tmp_path / 'n.nnp'), inputs, outputs, onnx=True,
                                  strict=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == ['m.nnp', 'm.onnx']
    finally:
        del CASES['custom']


def test_an_lstm_with_a_projection_is_written_unrolled(tmp_path, rng):
    with nn.no_grad():
        x = nn.Variable((B0, T0, D))
        y = nnlstm.LSTM(x, H, proj_size=2, return_sequences=True, name='lstmp')
    randomize(rng)
    with pytest.raises(ValueError, match=r"layer 'lstmp' cannot be written as a native ONNX "
                                         r"node: .*`proj_size`=2"):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, onnx=True,
                              strict=True)


RESETS = nn.Variable((B0, T0))


@pytest.mark.parametrize('build, reason', [
    (lambda x: nnlstm.LSTM(x, H, zoneout=0.2, return_sequences=True, name='m'),
     r'`zoneout`=0.2'),
    (lambda x: nnlstm.GRU(x, H, resets=RESETS, return_sequences=True, name='m'), r'`resets`'),
    (lambda x: nnlstm.LSTM(x, H, layer_norm=True, return_sequences=True, name='m'),
     r'`layer_norm`=True \(layer normalization'),
    (lambda x: nnlstm.GRU(x, H, layer_norm=True, return_sequences=True, name='m'),
     r'`layer_norm`=True'),
])
def test_zoneout_resets_and_layer_norm_are_never_native_nodes(tmp_path, rng, build, reason):
    """ONNX's LSTM/GRU have no zoneout blend, no per-step reset and no normalization: a
    native node would silently compute another function."""
    with nn.no_grad():
        x = nn.Variable((B0, T0, D))
        y = build(x)
    randomize(rng)
    inputs = {'x': x, 'resets': RESETS} if 'resets' in reason else {'x': x}
    with pytest.raises(ValueError, match=r"layer 'm' cannot be written as a native ONNX "
                                         r"node: .*" + reason):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), inputs, {'y': y}, onnx=True,
                              strict=True)


def test_onnx_rnn_unrolled_keeps_the_unrolled_graph(tmp_path, rng):
    path, _ = export(tmp_path, rng, 'GRU reset_after', onnx_rnn='unrolled')
    model = onnx.load(path)
    assert 'GRU' not in {n.op_type for n in model.graph.node}
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == T0


def test_bad_onnx_rnn_and_strict_are_refused(tmp_path):
    x = nn.Variable((B0, T0, D))
    with nn.no_grad():
        y = nnlstm.LSTM(x, H)
    with pytest.raises(ValueError, match=r"`onnx_rnn` must be one of 'native', 'unrolled'; "
                                         r"received 'fused'"):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, onnx=True,
                              onnx_rnn='fused')
    with pytest.raises(TypeError, match=r"`strict`"):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, onnx=True,
                              strict='yes')
    assert list(tmp_path.iterdir()) == []


def test_a_graph_that_reads_t_keeps_a_fixed_time_axis(tmp_path, rng):
    """A head over the flattened sequence (B, T * H) needs T: the layer is still one node,
    the batch stays symbolic, the time axis does not."""
    def flat(x, e):
        y = nnlstm.LSTM(x, H, return_sequences=True)
        return {'y': PF.affine(F.reshape(y, (x.shape[0], x.shape[1] * H)), 2, name='fc')}
    CASES['flat'] = (flat, {})
    try:
        path, names = export(tmp_path, rng, 'flat')
        model = onnx.load(path)
        assert 'LSTM' in {n.op_type for n in model.graph.node}
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert (dims[0].dim_param, dims[1].dim_value) == ('batch', T0)
        feeds = feeds_for('flat', rng, 3, T0)
        assert max_differences(nnabla_outputs('flat', feeds),
                               ort_outputs(path, feeds, names)) < TOLERANCE
    finally:
        del CASES['flat']
