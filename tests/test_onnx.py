"""export_network and export_step, checked numerically on every target: the NNabla graph,
the .nnp through NnpLoader and `nnabla_cli infer`, the .onnx in ONNX Runtime, all at a
batch size other than the exporting one. The .nnb is written, not run (NNabla's C runtime
is not a Python package).

These tests need the onnx extra (NNLSTM_EXTRAS=test,examples,onnx ./run test). Where it
is missing they skip, unless NNLSTM_REQUIRE_ONNX=1 (as in CI) makes that a failure."""
import contextlib
import functools
import importlib
import os
import subprocess
import sys
import zipfile

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
from nnabla.utils.nnp_graph import NnpLoader
import pytest

import nnlstm
from nnlstm.unroll import CHUNK


def need(module):
    if os.environ.get('NNLSTM_REQUIRE_ONNX') == '1':
        return importlib.import_module(module)
    return pytest.importorskip(module, reason='the onnx extra is not installed')


onnx = need('onnx')
ort = need('onnxruntime')
need('nnabla.utils.converter.onnx')

B0, B1, T, D, H = 2, 3, 5, 3, 4  # B0 exports, B1 runs
TOLERANCE = 1e-5
CLI = os.path.join(os.path.dirname(sys.executable), 'nnabla_cli')

LAYERS = {
    'LSTM': lambda x, seq: dict(zip('ych', nnlstm.LSTM(
        x, H, return_sequences=seq, return_state=True, name='lstm'))),
    'GRU': lambda x, seq: {'y': nnlstm.GRU(x, H, return_sequences=seq, name='gru')},
    'SimpleRNN': lambda x, seq: {'y': nnlstm.SimpleRNN(x, H, return_sequences=seq,
                                                       name='rnn')},
    'Bidirectional(LSTM)': lambda x, seq: {'y': nnlstm.Bidirectional(
        nnlstm.LSTM, x, H, return_sequences=seq, name='bi')},
    'Stacked(LSTM, 2)': lambda x, seq: {'y': nnlstm.Stacked(
        nnlstm.LSTM, x, H, num_layers=2, return_sequences=seq, name='stacked')},
}


def randomize(rng, scale=0.6):
    """Random parameters: zeros and the initializers' symmetries hide mistakes."""
    for v in nn.get_parameters(grad_only=False).values():
        v.d = rng.uniform(-scale, scale, v.shape)


def graph_outputs(build, data):
    """The NNabla graph ``build`` at the data's batch size, inference mode."""
    with nn.no_grad():
        x = nn.Variable(data.shape)
        outputs = build(x)
    x.d = data
    nn.forward_all(list(outputs.values()))
    return {k: v.d.copy() for k, v in outputs.items()}


def loader_outputs(path, feeds):
    batch = next(iter(feeds.values())).shape[0]
    net = NnpLoader(path).get_network('inference', batch_size=batch)
    for k, v in feeds.items():
        net.inputs[k].d = v
    nn.forward_all(list(net.outputs.values()))
    return {k: v.d.copy() for k, v in net.outputs.items()}


def ort_outputs(path, feeds, names):
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return dict(zip(names, session.run(names, feeds)))


def start_cli(path, data, folder):
    """`nnabla_cli infer` on raw float32 input, started in the background."""
    data.astype(np.float32).tofile(os.path.join(folder, 'in.bin'))
    return subprocess.Popen([CLI, 'infer', '-c', path, '-b', str(data.shape[0]),
                             '-o', os.path.join(folder, 'out'), os.path.join(folder, 'in.bin')],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def cli_outputs(process, folder, shapes):
    """One file per sample holding the outputs one after another, flattened."""
    log = process.communicate(timeout=120)[0]
    assert process.returncode == 0, log.decode(errors='replace')
    sizes = [int(np.prod(s[1:])) for s in shapes.values()]
    rows = [np.fromfile(os.path.join(folder, 'out_%d.bin' % k), np.float32)
            for k in range(B1)]
    split = [np.split(r, np.cumsum(sizes)[:-1]) for r in rows]
    return {name: np.stack([s[i] for s in split]).reshape(shape)
            for i, (name, shape) in enumerate(shapes.items())}


def max_differences(want, got):
    assert sorted(got) == sorted(want)
    return max(float(np.abs(got[k] - want[k]).max()) for k in want)


@pytest.mark.parametrize('return_sequences', [False, True])
@pytest.mark.parametrize('layer', list(LAYERS))
def test_every_target_computes_the_graph(tmp_path, rng, layer, return_sequences):
    build = functools.partial(LAYERS[layer], seq=return_sequences)
    with nn.no_grad():
        x = nn.Variable((B0, T, D))
        outputs = build(x)
    randomize(rng)
    files = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, outputs, onnx=True)
    assert sorted(os.listdir(str(tmp_path))) == ['m.nnp', 'm.onnx']
    data = rng.randn(B1, T, D).astype(np.float32)
    work = tmp_path / 'cli'
    work.mkdir()
    cli = start_cli(files['nnp'], data, str(work))
    want = graph_outputs(build, data)
    nn.clear_parameters()  # the files alone carry the parameters
    got = {
        'NnpLoader': loader_outputs(files['nnp'], {'x': data}),
        'onnxruntime': ort_outputs(files['onnx'], {'x': data}, list(outputs)),
        'nnabla_cli infer': cli_outputs(cli, str(work), {k: v.shape for k, v in want.items()}),
    }
    diffs = {target: max_differences(want, out) for target, out in got.items()}
    print('%s return_sequences=%s: %s' % (layer, return_sequences, diffs))
    assert max(diffs.values()) < TOLERANCE, diffs


OPTIONS = {
    'LSTM go_backwards': lambda x: {'y': nnlstm.LSTM(x, H, go_backwards=True,
                                                     return_sequences=True)},
    'GRU reset_after=False': lambda x: {'y': nnlstm.GRU(x, H, reset_after=False,
                                                        return_sequences=True)},
    'SimpleRNN relu, no bias': lambda x: {'y': nnlstm.SimpleRNN(
        x, H, activation='relu', use_bias=False, return_sequences=True)},
    'Bidirectional(GRU) merge sum': lambda x: {'y': nnlstm.Bidirectional(
        nnlstm.GRU, x, H, merge_mode='sum', return_sequences=True)},
    'Bidirectional(LSTM) T=1': lambda x: {'y': nnlstm.Bidirectional(
        nnlstm.LSTM, x, H, return_sequences=True)},
    'LSTM + affine head': lambda x: {'y': PF.affine(nnlstm.LSTM(x, H), 2, name='fc')},
    'LSTM zoneout (z_c, z_h)': lambda x: dict(zip('ych', nnlstm.LSTM(
        x, H, zoneout=(0.2, 0.5), return_sequences=True, return_state=True))),
    'GRU zoneout, weight_dropout': lambda x: {'y': nnlstm.GRU(
        x, H, zoneout=0.3, weight_dropout=0.4, return_sequences=True)},
    'Stacked(SimpleRNN) zoneout': lambda x: {'y': nnlstm.Stacked(
        nnlstm.SimpleRNN, x, H, zoneout=0.3, return_sequences=True)},
    'LSTM layer_norm, use_peepholes, proj_size': lambda x: dict(zip('ych', nnlstm.LSTM(
        x, H, layer_norm=True, use_peepholes=True, proj_size=2, return_sequences=True,
        return_state=True))),
    'Bidirectional(GRU) layer_norm': lambda x: {'y': nnlstm.Bidirectional(
        nnlstm.GRU, x, H, layer_norm=True, return_sequences=True)},
}

#: The OPTIONS ONNX's recurrent operators cannot express: those cases export unrolled.
UNROLLED = ('zoneout', 'layer_norm')


@pytest.mark.parametrize('option', list(OPTIONS))
def test_layer_options_export(tmp_path, rng, option):
    steps = 1 if 'T=1' in option else T
    with nn.no_grad():
        x = nn.Variable((B0, steps, D))
        outputs = OPTIONS[option](x)
    randomize(rng)
    onnx_rnn = 'unrolled' if any(o in option for o in UNROLLED) else 'native'
    files = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, outputs, onnx=True,
                                  onnx_rnn=onnx_rnn)
    data = rng.randn(B1, steps, D).astype(np.float32)
    want = graph_outputs(OPTIONS[option], data)
    nn.clear_parameters()
    diffs = {'NnpLoader': max_differences(want, loader_outputs(files['nnp'], {'x': data})),
             'onnxruntime': max_differences(want, ort_outputs(files['onnx'], {'x': data},
                                                              list(outputs)))}
    print('%s: %s' % (option, diffs))
    assert max(diffs.values()) < TOLERANCE, diffs


def test_initial_state_inputs_export(tmp_path, rng):
    """States given as named inputs: every input keeps the variable batch."""
    def build(x, c0, h0):
        return dict(zip('ych', nnlstm.LSTM(x, H, (c0, h0), return_sequences=True,
                                           return_state=True)))
    with nn.no_grad():
        inputs = {'x': nn.Variable((B0, T, D)), 'c0': nn.Variable((B0, H)),
                  'h0': nn.Variable((B0, H))}
        outputs = build(**inputs)
    randomize(rng)
    files = nnlstm.export_network(str(tmp_path / 'm.nnp'), inputs, outputs, onnx=True)
    feeds = {'x': rng.randn(B1, T, D), 'c0': rng.randn(B1, H), 'h0': rng.randn(B1, H)}
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    with nn.no_grad():
        graph_inputs = {k: nn.Variable.from_numpy_array(v) for k, v in feeds.items()}
        want = build(**graph_inputs)
    nn.forward_all(list(want.values()))
    want = {k: v.d.copy() for k, v in want.items()}
    nn.clear_parameters()
    assert max_differences(want, loader_outputs(files['nnp'], feeds)) < TOLERANCE
    assert max_differences(want, ort_outputs(files['onnx'], feeds, list(want))) < TOLERANCE


def export_random(tmp_path, rng, build, opset):
    """``build(x)`` under nn.no_grad() for x (B0, T, D), random parameters, exported with
    an ``.onnx`` of ``opset``; returns the files."""
    with nn.no_grad():
        x = nn.Variable((B0, T, D))
        outputs = build(x)
    randomize(rng)
    return nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, outputs, onnx=True,
                                 opset=opset)


@pytest.mark.parametrize('opset', [7, 9, 10, 11])
def test_other_opsets_run_in_onnxruntime(tmp_path, rng, opset):
    """Every layer in one network, at each other opset the converter writes."""
    def build(x):
        return {name: fn(x, True)['y'] for name, fn in LAYERS.items()}
    files = export_random(tmp_path, rng, build, opset)
    model = onnx.load(files['onnx'])
    assert [o.version for o in model.opset_import] == [opset]
    data = rng.randn(B1, T, D).astype(np.float32)
    got = ort_outputs(files['onnx'], {'x': data}, list(LAYERS))
    diff = max_differences(graph_outputs(build, data), got)
    print('opset %d: %g' % (opset, diff))
    assert diff < TOLERANCE


def test_nnb_is_written_for_every_layer(tmp_path):
    """One network holding every layer, with and without return_sequences: NNabla's .nnb
    converter spends seconds on each call, whatever the network."""
    with nn.no_grad():
        x = nn.Variable((B0, T, D))
        outputs = {}
        for name, fn in LAYERS.items():
            for seq in (False, True):
                with nn.parameter_scope('seq' if seq else 'last'):
                    outputs['%s %s' % (name, seq)] = fn(x, seq)['y']
    files = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, outputs, nnb=True,
                                  nnb_batch_size=1)
    assert sorted(os.listdir(str(tmp_path))) == ['m.nnb', 'm.nnp']
    assert os.path.getsize(files['nnb']) > 1000


@pytest.mark.parametrize('onnx_rnn, steps', [('native', 'time'), ('unrolled', T)])
def test_onnx_batch_dimension_is_symbolic(tmp_path, rng, onnx_rnn, steps):
    with nn.no_grad():
        x = nn.Variable((B0, T, D))
        outputs = LAYERS['LSTM'](x, True)
    randomize(rng)
    files = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, outputs, onnx=True,
                                  onnx_rnn=onnx_rnn)
    session = ort.InferenceSession(files['onnx'], providers=['CPUExecutionProvider'])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [('x', ['batch', steps, D])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        ('y', ['batch', steps, H]), ('c', ['batch', H]), ('h', ['batch', H])]
    for batch in (1, 7):
        data = rng.randn(batch, T, D).astype(np.float32)
        y = session.run(['y'], {'x': data})[0]
        assert y.shape == (batch, T, H)


@pytest.mark.parametrize('target,rewritten', [([B0, 3, 4], [-1, 3, 4]),
                                              ([B0, -1, 4], [0, -1, 4]),
                                              ([0, 3, 4], [0, 3, 4])])
def test_batch_sized_reshape_targets_become_symbolic(target, rewritten):
    """NNabla 1.39's saver writes -1 in Reshape targets already, so its own exports never
    reach this rewrite: a hand-built model, x (B0, 12) -> Reshape(target) -> (B0, 3, 4),
    does. A target whose first entry is not the batch (0, "as the input") is left alone."""
    from onnx import helper, numpy_helper
    from nnlstm.export.rewrite import make_batch_symbolic
    shape = numpy_helper.from_array(np.array(target, np.int64), 'shape')
    graph = helper.make_graph(
        [helper.make_node('Constant', [], ['shape'], value=shape),
         helper.make_node('Reshape', ['x', 'shape'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [B0, 12])],
        [helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [B0, 3, 4])])
    model = make_batch_symbolic(helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 13)]), B0, 13)
    written = numpy_helper.to_array(model.graph.node[0].attribute[0].t)
    assert written.tolist() == rewritten
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    data = np.arange(B1 * 12, dtype=np.float32).reshape(B1, 12)
    np.testing.assert_array_equal(session.run(['y'], {'x': data})[0],
                                  data.reshape(B1, 3, 4))


@pytest.mark.parametrize('opset', [7, 13])
def test_batch_sized_scalar_constants_become_broadcasts(tmp_path, rng, opset):
    """The converter writes 1 - y as Sub(a (B, H) constant of ones, y)."""
    def build(x):
        return {'y': F.r_sub_scalar(nnlstm.LSTM(x, H), 1.0)}
    files = export_random(tmp_path, rng, build, opset)
    data = rng.randn(B1, T, D).astype(np.float32)
    got = ort_outputs(files['onnx'], {'x': data}, ['y'])
    assert max_differences(graph_outputs(build, data), got) < TOLERANCE


def test_batch_sized_constant_an_operator_cannot_broadcast_is_refused(tmp_path):
    x = nn.Variable((B0, T, D))
    with nn.no_grad():
        y = F.minimum_scalar(nnlstm.LSTM(x, H), 0.5)
    with pytest.raises(ValueError, match=r"batch-sized constant .* read by Min, which does not "
                                         r"broadcast at opset 7"):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, onnx=True, opset=7)
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('layer,options', [
    (nnlstm.LSTM, {}), (nnlstm.GRU, {}), (nnlstm.SimpleRNN, {}),
    (nnlstm.LSTM, {'zoneout': (0.2, 0.5), 'weight_dropout': 0.3}),
    (nnlstm.GRU, {'zoneout': 0.4}),
    (nnlstm.LSTM, {'layer_norm': True, 'use_peepholes': True}),
    (nnlstm.GRU, {'layer_norm': True})])
def test_step_network_run_T_times_equals_the_layer(tmp_path, rng, layer, options):
    data = rng.randn(B1, T, D).astype(np.float32)
    with nn.no_grad():
        x = nn.Variable.from_numpy_array(data)
        full = layer(x, H, return_sequences=True, return_state=True, name='enc', **options)
    randomize(rng)
    nn.forward_all(full)
    want_y, want_state = full[0].d.copy(), [v.d.copy() for v in full[1:]]
    nnb = layer is nnlstm.LSTM and not options  # each .nnb conversion takes seconds
    files = nnlstm.export_step(str(tmp_path / 'step.nnp'), layer, D, H, name='enc',
                               onnx=True, nnb=nnb, **options)
    written = sorted(os.listdir(str(tmp_path)))
    assert written == ['step.nnb'] * nnb + ['step.nnp', 'step.onnx']
    inputs, outputs = nnlstm.step_network(layer, D, H, name='enc', batch_size=B1, **options)
    fields = [k for k in inputs if k != 'x']
    assert list(outputs) == ['y'] + [f + '_next' for f in fields]

    def graph_step(feeds):
        for k, v in feeds.items():
            inputs[k].d = v
        nn.forward_all(list(outputs.values()))
        return {k: v.d.copy() for k, v in outputs.items()}

    session = ort.InferenceSession(files['onnx'], providers=['CPUExecutionProvider'])
    runners = {'graph': graph_step,
               'onnxruntime': lambda feeds: dict(zip(outputs, session.run(list(outputs),
                                                                          feeds)))}
    nn.clear_parameters()  # the loaded network brings its own
    net = NnpLoader(files['nnp']).get_network('inference', batch_size=B1)

    def loader_step(feeds):
        for k, v in feeds.items():
            net.inputs[k].d = v
        nn.forward_all(list(net.outputs.values()))
        return {k: v.d.copy() for k, v in net.outputs.items()}

    runners['NnpLoader'] = loader_step
    for target, step in runners.items():
        state = {f: np.zeros((B1, H), np.float32) for f in fields}
        ys = []
        for t in range(T):
            out = step(dict(state, x=data[:, t]))
            ys.append(out['y'])
            state = {f: out[f + '_next'] for f in fields}
        diff = max([float(np.abs(np.stack(ys, axis=1) - want_y).max())] +
                   [float(np.abs(state[f] - w).max()) for f, w in zip(fields, want_state)])
        print('%s %s step x %d, %s: %g' % (layer.__name__, options, T, target, diff))
        assert diff < TOLERANCE, target


@pytest.mark.parametrize('fn,name', [(F.mul_n, 'MulN'), (F.add_n, 'AddN')])
def test_function_the_converter_rejects_fails_and_leaves_nothing(tmp_path, fn, name):
    x = nn.Variable((B0, T, D))
    with nn.no_grad():
        y = nnlstm.LSTM(x, H)
        y = fn(y, y, y)
    with pytest.raises(ValueError, match=r"cannot export to ONNX opset 13: NNabla's converter "
                                         r"does not support the function\(s\) %s" % name):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, onnx=True)
    assert os.listdir(str(tmp_path)) == []


def test_dropout_fails_and_leaves_nothing(tmp_path):
    x = nn.Variable((B0, T, D))
    y = nnlstm.LSTM(x, H, dropout=0.5, training=True)
    with pytest.raises(ValueError, match=r"training-only functions \['Dropout'\]"):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, onnx=True,
                              nnb=True)
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('opset', [6, 8, 12, 14, 17, '13', True])
def test_opsets_the_converter_would_change_are_refused(tmp_path, opset):
    x = nn.Variable((B0, T, D))
    with nn.no_grad():
        y = nnlstm.LSTM(x, H)
    with pytest.raises(ValueError, match=r"`opset` must be one of 7, 9, 10, 11, 13; "
                                         r"received %r" % (opset,)):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, onnx=True,
                              opset=opset)
    assert os.listdir(str(tmp_path)) == []


def lengths_model(x, lengths, go_backwards=False):
    return {'y': nnlstm.LSTM(x, H, lengths=lengths, return_sequences=True,
                             go_backwards=go_backwards)}


def test_go_backwards_sequence_with_lengths_to_onnx_fails_clearly_and_leaves_nothing(tmp_path):
    """Unrolled, reversing each sequence's valid part takes a comparison and a Gather, which
    NNabla's ONNX converter cannot write (the native node reverses it: test_onnx_native)."""
    x, lengths = nn.Variable((B0, T, D)), nn.Variable((B0,))
    with nn.no_grad():
        outputs = lengths_model(x, lengths, go_backwards=True)
    with pytest.raises(ValueError, match=r"cannot export to ONNX: the output of Less "
                                         r"reaches .*`go_backwards` with `lengths`"):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x, 'lengths': lengths},
                              outputs, onnx=True, onnx_rnn='unrolled')
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('go_backwards', [False, True])
def test_lengths_export_to_onnx(tmp_path, rng, go_backwards):
    """Length masks are float arithmetic, so a layer given `lengths` (a named input)
    exports; go_backwards too, as long as it returns no reversed sequence."""
    x, lengths = nn.Variable((B0, T, D)), nn.Variable((B0,))
    with nn.no_grad():
        outputs = {'y': nnlstm.LSTM(x, H, lengths=lengths, go_backwards=go_backwards)}
    randomize(rng)
    files = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x, 'lengths': lengths},
                                  outputs, onnx=True)
    feeds = {'x': rng.randn(B1, T, D).astype(np.float32),
             'lengths': np.array([T, 2, 0], np.float32)}
    with nn.no_grad():
        want = {'y': nnlstm.LSTM(nn.Variable.from_numpy_array(feeds['x']), H,
                                 lengths=nn.Variable.from_numpy_array(feeds['lengths']),
                                 go_backwards=go_backwards)}
    want['y'].forward()
    got = ort_outputs(files['onnx'], feeds, ['y'])
    assert max_differences({'y': want['y'].d}, got) < TOLERANCE


def test_sequences_longer_than_a_chunk_export(tmp_path, rng):
    """Past nnlstm.unroll.CHUNK steps the time axis is cut by slices of the trailing axes and
    the sequence is stacked in chunks: both keep the batch variable and convert."""
    steps = 2 * CHUNK + 3
    with nn.no_grad():
        x = nn.Variable((B0, steps, D))
        outputs = LAYERS['LSTM'](x, True)
    randomize(rng)
    files = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, outputs, onnx=True)
    data = rng.randn(B1, steps, D).astype(np.float32)
    want = graph_outputs(lambda v: LAYERS['LSTM'](v, True), data)
    assert max_differences(want, loader_outputs(files['nnp'], {'x': data})) < TOLERANCE
    assert max_differences(want, ort_outputs(files['onnx'], {'x': data}, list(want))) < TOLERANCE


def nnabla_s_import(converter, nnp_path, proto):
    """NNabla's converter reading the .nnp as `nnabla_cli convert` does: the text parsed."""
    return converter.NnpImporter(nnp_path, expand_network=True, executor_index=None).execute()


SAME_FILES = {
    'every layer, with .nnb': (T, lambda x: dict(
        {name: fn(x, True)['y'] for name, fn in LAYERS.items()},
        last=PF.affine(nnlstm.LSTM(x, H, name='last'), 2, name='fc'))),
    'LSTM past a chunk': (CHUNK + 2, lambda x: LAYERS['LSTM'](x, True)),
}


@pytest.mark.parametrize('graph', list(SAME_FILES))
def test_linear_export_writes_the_files_nnabla_s_converter_writes(tmp_path, rng, monkeypatch,
                                                                 graph):
    """nnlstm's linear saver and converter (nnlstm.export.linear, the network handed over
    in binary) against NNabla's own, unpatched, reading the .nnp's text: the same bytes in
    every file (the unpatched .nnb converter would take minutes past a chunk)."""
    from nnlstm.export import converter
    steps, build = SAME_FILES[graph]
    nnb = 'nnb' in graph
    with nn.no_grad():
        x = nn.Variable((B0, steps, D))
        outputs = build(x)
    randomize(rng)
    kwargs = dict(onnx=True, nnb=nnb, nnb_batch_size=1, onnx_rnn='unrolled')
    # The ONNX converter numbers the names it makes with a counter kept over the process.
    counter = importlib.import_module('nnabla.utils.converter.onnx.exporter')
    monkeypatch.setattr(counter, 'random_seed', 0)
    ours = nnlstm.export_network(str(tmp_path / 'ours.nnp'), {'x': x}, outputs, **kwargs)
    monkeypatch.setattr(counter, 'random_seed', 0)
    monkeypatch.setattr(converter, 'linear_converter', contextlib.nullcontext)
    monkeypatch.setattr(converter, 'import_nnp', nnabla_s_import)
    theirs = nnlstm.export_network(str(tmp_path / 'theirs.nnp'), {'x': x}, outputs, **kwargs)
    assert sorted(ours) == sorted(theirs) == ['nnb'] * nnb + ['nnp', 'onnx']
    assert len(onnx.load(ours['onnx']).graph.node) > 400
    for kind in ours:
        assert contents(ours[kind]) == contents(theirs[kind]), kind


def contents(path):
    """A file's bytes; a .nnp's, a zip stamped with the time, entry by entry."""
    if path.endswith('.nnp'):
        with zipfile.ZipFile(path) as z:
            return {name: z.read(name) for name in z.namelist()}
    with open(path, 'rb') as f:
        return f.read()


def previous_export(tmp_path, rng):
    """An .nnp and an .onnx exported before, and their contents."""
    with nn.no_grad():
        x = nn.Variable((B0, T, D))
        outputs = LAYERS['GRU'](x, False)
    randomize(rng)
    files = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, outputs, onnx=True)
    return {k: contents(v) for k, v in files.items()}


def test_a_failed_onnx_rename_puts_back_the_previous_nnp(tmp_path, rng, monkeypatch):
    """The new .nnp is renamed into place first; when the .onnx's rename then fails (say, a
    directory appeared there), the previous .nnp comes back beside the previous .onnx."""
    before = previous_export(tmp_path, rng)
    with nn.no_grad():
        x = nn.Variable((B0, T, D))
        outputs = LAYERS['LSTM'](x, True)
    replace, renamed = os.replace, []

    def failing(src, dst):
        if dst.endswith('m.onnx') and not src.endswith('.bak'):
            raise IsADirectoryError(21, 'Is a directory', src, None, dst)
        renamed.append(os.path.basename(dst))
        return replace(src, dst)
    monkeypatch.setattr(os, 'replace', failing)
    with pytest.raises(IsADirectoryError, match=r"Is a directory: '%s'$" % (tmp_path / 'm.onnx')):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, outputs, onnx=True)
    assert renamed[0] == 'm.nnp'  # the new .nnp was in place, then put back
    assert sorted(os.listdir(str(tmp_path))) == ['m.nnp', 'm.onnx']
    assert {k: contents(str(tmp_path / ('m.' + k))) for k in before} == before


def test_an_export_failing_after_the_nnp_was_written_keeps_the_previous_files(
        tmp_path, rng, monkeypatch):
    from nnlstm.export import converter
    before = previous_export(tmp_path, rng)
    written = []
    write_nnp = converter.write_nnp
    monkeypatch.setattr(converter, 'write_nnp', lambda path, proto: written.append(
        (path, write_nnp(path, proto), os.path.getsize(path))))
    x = nn.Variable((B0, T, D))
    with nn.no_grad():
        y = F.mul_n(*[nnlstm.LSTM(x, H)] * 3)
    with pytest.raises(ValueError, match=r"NNabla's converter does not support the "
                                         r"function\(s\) MulN"):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, onnx=True)
    assert len(written) == 1 and written[0][2] > 1000  # a complete new .nnp was written
    assert sorted(os.listdir(str(tmp_path))) == ['m.nnp', 'm.onnx']
    assert {k: contents(str(tmp_path / ('m.' + k))) for k in before} == before


SIGTERM_EXPORT = r'''
import sys
import nnabla as nn
import nnlstm
with nn.no_grad():
    x = nn.Variable((2, 300, 3))
    y = nnlstm.LSTM(x, 8, return_sequences=True)
print('exporting', flush=True)
nnlstm.export_network(sys.argv[1], {'x': x}, {'y': y}, onnx=True, nnb=True)
print('exported', flush=True)
'''


def test_sigterm_during_an_export_removes_its_temporaries(tmp_path, rng):
    """A real export (.nnp, .onnx, .nnb, seconds long) terminated while its temporaries
    exist: they are gone, the previous files are as they were, and the process ended by
    SIGTERM."""
    import signal
    import time
    before = previous_export(tmp_path, rng)
    child = subprocess.Popen([sys.executable, '-c', SIGTERM_EXPORT, str(tmp_path / 'm.nnp')],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not any('.tmp-' in n for n in os.listdir(str(tmp_path))):
        assert child.poll() is None and time.time() < deadline, child.communicate()
        time.sleep(0.005)
    time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGTERM, err.decode()
    assert b'exported' not in out
    assert sorted(os.listdir(str(tmp_path))) == ['m.nnp', 'm.onnx']
    assert {k: contents(str(tmp_path / ('m.' + k))) for k in before} == before


RESETS = {
    'LSTM': lambda x, r: {'y': nnlstm.LSTM(x, H, resets=r, return_sequences=True)},
    'LSTM go_backwards, zoneout': lambda x, r: {'y': nnlstm.LSTM(
        x, H, resets=r, go_backwards=True, zoneout=0.2, return_sequences=True)},
    'Bidirectional(GRU)': lambda x, r: {'y': nnlstm.Bidirectional(
        nnlstm.GRU, x, H, resets=r, return_sequences=True)},
}


@pytest.mark.parametrize('model', list(RESETS))
def test_resets_as_a_named_input_export(tmp_path, rng, model):
    """Reset masks are float arithmetic on a (B, T) input: the files keep a variable batch
    and compute the graph."""
    x, resets = nn.Variable((B0, T, D)), nn.Variable((B0, T))
    with nn.no_grad():
        outputs = RESETS[model](x, resets)
    randomize(rng)
    files = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x, 'resets': resets},
                                  outputs, onnx=True, onnx_rnn='unrolled')  # no native resets
    feeds = {'x': rng.randn(B1, T, D).astype(np.float32),
             'resets': (rng.rand(B1, T) < 0.3).astype(np.float32)}
    with nn.no_grad():
        want = RESETS[model](*[nn.Variable.from_numpy_array(feeds[k])
                               for k in ('x', 'resets')])
    want['y'].forward()
    want = {'y': want['y'].d.copy()}
    nn.clear_parameters()
    diffs = {'NnpLoader': max_differences(want, loader_outputs(files['nnp'], feeds)),
             'onnxruntime': max_differences(want, ort_outputs(files['onnx'], feeds, ['y']))}
    print('%s: %s' % (model, diffs))
    assert max(diffs.values()) < TOLERANCE, diffs
