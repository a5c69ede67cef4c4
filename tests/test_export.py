"""save_nnp / save_parameters: what NNabla's own loader and CLI read back, and atomic writes."""
import contextlib
import os
import subprocess
import sys
import types
import zipfile

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
from nnabla.utils.nnp_graph import NnpLoader
import pytest

import nnlstm
from nnlstm import export
from nnlstm.export import converter, linear
from nnlstm.unroll import CHUNK


def build(batch, steps, return_sequences, name='lstm'):
    x = nn.Variable((batch, steps, 2))
    y = nnlstm.LSTM(x, 5, return_sequences=return_sequences, name=name)
    if return_sequences:
        # No per-step head here: NNabla's saver rewrites an affine with base_axis=2 to
        # base_axis=1, which breaks reloading at another batch size.
        return x, y
    return x, PF.affine(y, 3, name='fc')


@pytest.mark.parametrize('steps', [1, 7])
@pytest.mark.parametrize('return_sequences', [False, True])
def test_nnp_reloads_at_another_batch_size_with_same_numbers(tmp_path, rng, steps,
                                                             return_sequences):
    x, y = build(2, steps, return_sequences)
    path = nnlstm.save_nnp(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y})
    data = rng.randn(5, steps, 2).astype(np.float32)
    x5, y5 = build(5, steps, return_sequences)  # same parameters, batch 5
    x5.d = data
    y5.forward()
    want = y5.d.copy()

    nn.clear_parameters()  # the file alone must carry the parameters
    net = NnpLoader(path).get_network('inference', batch_size=5)
    assert list(net.inputs) == ['x']  # no state input: the zero state reads nothing
    net.inputs['x'].d = data
    net.outputs['y'].forward()
    np.testing.assert_allclose(net.outputs['y'].d, want, atol=1e-6)


def test_saved_network_has_mul2_not_muln_and_the_same_numbers(tmp_path, rng):
    """An inference graph multiplies with F.mul_n (fast on CPU); the file holds Mul2, which
    the ONNX exporter accepts, and computes the same numbers."""
    with nn.no_grad():
        x, y = build(3, 4, False)
    assert 'MulN' in nnlstm.export.functions_of([y])
    path = nnlstm.save_nnp(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y})
    x.d = rng.randn(*x.shape)
    y.forward()
    nn.clear_parameters()
    net = NnpLoader(path).get_network('inference', batch_size=3)
    types = nnlstm.export.functions_of(net.outputs.values())
    assert 'Mul2' in types and 'MulN' not in types and 'AddN' not in types
    net.inputs['x'].d = x.d
    net.outputs['y'].forward()
    np.testing.assert_allclose(net.outputs['y'].d, y.d, atol=1e-6)


@pytest.mark.parametrize('batch', ['-1', '4'])
def test_nnabla_cli_infer_reads_the_nnp(tmp_path, rng, batch):
    """`nnabla_cli infer -b N` runs N samples (-1: the batch size the file was saved with)
    and writes one output file per sample."""
    x, y = build(3, 4, True)
    path = nnlstm.save_nnp(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y})
    n = 3 if batch == '-1' else int(batch)
    x4, y4 = build(n, 4, True)
    x4.d = rng.randn(*x4.shape)
    y4.forward()
    x4.d.astype(np.float32).tofile(str(tmp_path / 'in.bin'))
    cli = os.path.join(os.path.dirname(sys.executable), 'nnabla_cli')
    subprocess.run([cli, 'infer', '-c', path, '-b', batch, '-o', str(tmp_path / 'out'),
                    str(tmp_path / 'in.bin')], check=True, capture_output=True)
    for k in range(n):
        got = np.fromfile(str(tmp_path / ('out_%d.bin' % k)), np.float32)
        np.testing.assert_allclose(got.reshape(y4.shape[1:]), y4.d[k], atol=1e-6)


def test_parameters_file_round_trip(tmp_path, rng):
    x, y = build(2, 3, False)
    x.d = rng.randn(*x.shape)
    y.forward()
    want = y.d.copy()
    nnlstm.save_parameters(str(tmp_path / 'p.h5'))
    nn.clear_parameters()
    nn.load_parameters(str(tmp_path / 'p.h5'))
    x2, y2 = build(2, 3, False)
    x2.d = x.d
    y2.forward()
    np.testing.assert_array_equal(y2.d, want)


def test_training_only_function_is_refused_and_nothing_written(tmp_path):
    x = nn.Variable((2, 3, 2))
    y = F.dropout(nnlstm.LSTM(x, 4), 0.5)
    with pytest.raises(ValueError, match=r"training-only functions \['Dropout'\]"):
        nnlstm.save_nnp(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y})
    assert os.listdir(str(tmp_path)) == []


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    def broken(tmp):
        with open(tmp, 'wb') as f:
            f.write(b'half a file')
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        export.atomic_write(str(tmp_path / 'm.nnp'), broken)
    assert os.listdir(str(tmp_path)) == []


def test_existing_file_survives_a_failed_export(tmp_path):
    path = tmp_path / 'm.nnp'
    path.write_bytes(b'previous model')
    x = nn.Variable((2, 3, 2))
    y = F.dropout(nnlstm.LSTM(x, 4), 0.5)
    with pytest.raises(ValueError):
        nnlstm.save_nnp(str(path), {'x': x}, {'y': y})
    assert path.read_bytes() == b'previous model'


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(path='m.h5'), ValueError, r"`path` must end with '.nnp'; received '.*m.h5'"),
    (dict(inputs=[]), TypeError, r'`inputs` must be a non-empty dict'),
    (dict(outputs={'y': np.zeros(2)}), TypeError, r"`outputs\['y'\]` must be an nnabla.Variable"),
    (dict(inputs={1: None}), TypeError, r'`inputs` keys must be str names; received 1'),
])
def test_bad_arguments(tmp_path, kwargs, error, match):
    x, y = build(2, 3, False)
    args = dict(path=str(tmp_path / 'm.nnp'), inputs={'x': x}, outputs={'y': y})
    args.update(kwargs)
    if not os.path.isabs(args['path']):
        args['path'] = str(tmp_path / args['path'])
    with pytest.raises(error, match=match):
        nnlstm.save_nnp(**args)
    assert os.listdir(str(tmp_path)) == []


def lstm_y(x, **kwargs):
    with nn.no_grad():
        return nnlstm.LSTM(x, 4, **kwargs)


def refused(tmp_path, inputs, outputs, match, error=ValueError, **kwargs):
    """export_network raises ``error`` matching ``match`` and leaves no file."""
    with pytest.raises(error, match=match):
        nnlstm.export_network(str(tmp_path / 'm.nnp'), inputs, outputs, **kwargs)
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('steps', [3, 2])  # T = 2 = B: the split along axis 0 gives it away
def test_time_major_is_refused(tmp_path, steps):
    x = nn.Variable((steps, 2, 3))
    y = lstm_y(x, time_major=True, return_sequences=True)
    refused(tmp_path, {'x': x}, {'y': y}, r'time_major=True layers cannot be exported')


def test_lengths_array_is_refused_a_lengths_variable_exports(tmp_path, rng):
    x = nn.Variable((2, 3, 2))
    refused(tmp_path, {'x': x}, {'y': lstm_y(x, lengths=np.array([3, 1]))},
            r'reads 1 Variable\(s\) that are neither `inputs` nor registered parameters, of '
            r'shapes \(2,\).*`lengths` given as a Variable')
    lengths = nn.Variable((2,))
    path = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x, 'lengths': lengths},
                                 {'y': lstm_y(x, lengths=lengths, return_sequences=True)})['nnp']
    data, steps = rng.randn(4, 3, 2).astype(np.float32), np.array([3, 0, 1, 2], np.float32)
    want = lstm_y(nn.Variable.from_numpy_array(data), return_sequences=True,
                  lengths=nn.Variable.from_numpy_array(steps))
    want.forward()
    nn.clear_parameters()
    net = NnpLoader(path).get_network('inference', batch_size=4)
    net.inputs['x'].d, net.inputs['lengths'].d = data, steps
    net.outputs['y'].forward()
    np.testing.assert_allclose(net.outputs['y'].d, want.d, atol=1e-6)


def test_stateful_carry_is_refused(tmp_path):
    x = nn.Variable((2, 3, 2))
    refused(tmp_path, {'x': x}, {'y': lstm_y(x, stateful=nnlstm.Carry())},
            r'reads 2 Variable\(s\) that are neither `inputs`.*no `stateful` Carry')


def test_head_with_base_axis_2_is_refused(tmp_path):
    x = nn.Variable((2, 3, 2))
    with nn.no_grad():
        y = PF.affine(lstm_y(x, return_sequences=True), 1, base_axis=2, name='fc')
    refused(tmp_path, {'x': x}, {'y': y}, r'Affine \(2, 3, 4\).* has base_axis=2')


def test_batch_axis_slice_and_loss_are_refused(tmp_path):
    x = nn.Variable((2, 3, 2))
    refused(tmp_path, {'x': x}, {'y': lstm_y(x[:, 1:])},
            r'Slice \(2, 3, 2\) -> \(2, 2, 2\) slices the batch axis')
    refused(tmp_path, {'x': x}, {'loss': F.mean(lstm_y(x))},
            r'Mean \(2, 4\) -> \(\) computes a \(\) Variable whose first axis is not the batch')


def test_batch_sized_constant_is_refused(tmp_path):
    x = nn.Variable((2, 3, 2))
    y = lstm_y(x)
    with nn.no_grad():
        y = F.add2(y, F.constant(0.5, (2, 4)))
    refused(tmp_path, {'x': x}, {'y': y}, r'combines the batch with a \(2, 4\) Variable that '
                                           r'is not computed from the inputs')


def test_graph_without_affine_keeps_no_variable_batch_and_is_refused(tmp_path):
    x = nn.Variable((2, 3))
    refused(tmp_path, {'x': x}, {'y': F.tanh(x)},
            r"NNabla's saver kept a fixed batch size for the inputs \{'x': \[2, 3\]\}")


def test_inputs_must_be_read_leaves(tmp_path):
    x, z = nn.Variable((2, 3, 2)), nn.Variable((2, 3, 2))
    refused(tmp_path, {'x': x, 'z': z}, {'y': lstm_y(x)},
            r"`inputs\['z'\]` \(2, 3, 2\) is not read by the graph")
    xt = F.tanh(x)
    refused(tmp_path, {'x': xt}, {'y': lstm_y(xt)},
            r"`inputs\['x'\]` is computed by a Tanh function")


def test_every_output_is_listed_by_nnp_loader_even_one_variable_twice(tmp_path, rng):
    """An LSTM's y is its h_T; NnpLoader's outputs are the graph's leaves."""
    x = nn.Variable((2, 3, 2))
    y, c, h = lstm_y(x, return_state=True)
    path = nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x},
                                 {'y': y, 'c': c, 'h': h})['nnp']
    x.d = rng.randn(*x.shape)
    F.sink(y, c).forward()
    want = {'y': y.d.copy(), 'c': c.d.copy(), 'h': y.d.copy()}
    net = NnpLoader(path).get_network('inference', batch_size=2)
    assert sorted(net.outputs) == ['c', 'h', 'y']
    net.inputs['x'].d = x.d
    F.sink(*net.outputs.values()).forward()
    for k, v in want.items():
        np.testing.assert_allclose(net.outputs[k].d, v, atol=1e-6)


def test_onnx_without_the_extra_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnx', None)  # import onnx raises ImportError
    x = nn.Variable((2, 3, 2))
    refused(tmp_path, {'x': x}, {'y': lstm_y(x)},
            r"needs the onnx package and NNabla's converter \(pip install 'nnlstm\[onnx\]' "
            r"&& pip install --no-deps nnabla-converter==1.39.0", ImportError, onnx=True)


def test_step_network_needs_the_layer_parameters(tmp_path):
    with pytest.raises(ValueError, match=r"no parameters under `name` 'enc': build or load"):
        nnlstm.export_step(str(tmp_path / 's.nnp'), nnlstm.LSTM, 2, 4, name='enc')
    lstm_y(nn.Variable((2, 3, 2)), name='enc')
    with pytest.raises(ValueError, match=r"the GRU step under `name` 'enc' needs parameters "
                                         r"the layer does not have, \['enc/UzUrUn/affine/W'"):
        nnlstm.export_step(str(tmp_path / 's.nnp'), nnlstm.GRU, 2, 4, name='enc')
    assert sorted(nn.get_parameters(grad_only=False)) == [
        'enc/WaWiWfWo/affine/W', 'enc/WaWiWfWo/affine/b']  # nothing left behind
    with pytest.raises(ValueError, match=r"parameter 'WaWiWfWo/affine/W' exists with shape "
                                         r"\(6, 16\); expected \(D \+ H, 4H\) = \(7, 16\)"):
        nnlstm.export_step(str(tmp_path / 's.nnp'), nnlstm.LSTM, 3, 4, name='enc')
    with pytest.raises(TypeError, match=r"`layer` must be nnlstm.LSTM, nnlstm.GRU or "
                                        r"nnlstm.SimpleRNN"):
        nnlstm.export_step(str(tmp_path / 's.nnp'), nnlstm.Stacked, 2, 4, name='enc')
    assert os.listdir(str(tmp_path)) == []


def test_inputs_of_other_batch_sizes_and_a_moved_batch_axis_are_refused(tmp_path):
    x, h0 = nn.Variable((2, 3, 2)), nn.Variable((3, 4))
    with nn.no_grad():
        y = nnlstm.GRU(x, 4)
    refused(tmp_path, {'x': x, 'h0': h0}, {'y': y},
            r"`inputs` disagree on the batch size \(first axis\): \{'x': \(2, 3, 2\), "
            r"'h0': \(3, 4\)\}")
    with nn.no_grad():
        y = F.transpose(nnlstm.GRU(x, 4, return_sequences=True), (1, 0, 2))
    refused(tmp_path, {'x': x}, {'y': y}, r'Transpose \(2, 3, 4\) -> \(3, 2, 4\) computes a '
                                           r'\(3, 2, 4\) Variable whose first axis is not')


def random_functions(rng, n):
    """``n`` functions ``(name, type, inputs, outputs)`` of a random DAG, listed in a
    shuffled order: readers of one variable several times, unread outputs, leaves."""
    functions = []
    made = ['x', 'w']
    for k in range(n):
        reads = [made[i] for i in rng.randint(0, len(made), size=rng.randint(1, 4))]
        outs = ['f%d_out%d' % (k, j) for j in range(rng.randint(1, 3))]
        functions.append(('f%d' % k, 'Op', reads, outs))
        made += outs
    return [functions[i] for i in rng.permutation(n)]


@pytest.mark.parametrize('n', [1, 5, 40, 300])
def test_topological_order_is_nnabla_s(rng, n):
    from nnabla.utils.converter.nnabla.expander import _TopologicalSort
    for _ in range(5):
        functions = random_functions(rng, n)
        want = _TopologicalSort(functions).sorted()
        assert linear.topological_order(functions) == want


def test_topological_order_refuses_a_cycle():
    functions = [('a', 'Op', ['x', 'b_out'], ['a_out']), ('b', 'Op', ['a_out'], ['b_out'])]
    with pytest.raises(ValueError, match=r'the network is not a DAG: a reads its own output'):
        linear.topological_order(functions)


def test_linear_converter_restores_nnabla_s_methods():
    from nnabla.core.graph_def import ProtoFunction
    from nnabla.utils.converter.nnabla.expander import NnpExpander
    methods = lambda: (ProtoFunction._proto_call, NnpExpander._sort_functions,
                       NnpExpander._expand_network)
    original = methods()
    with linear.linear_converter():
        with linear.linear_converter():
            assert methods() == (linear._proto_call, linear._sort_functions,
                                 linear._expand_network)
        assert methods()[0] is linear._proto_call  # still inside the outer block
    assert methods() == original
    with pytest.raises(KeyboardInterrupt):
        with linear.linear_converter():
            raise KeyboardInterrupt
    assert methods() == original


def nnp_entries(path):
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


SAME_FILE_GRAPHS = {
    'LSTM, states, T past a chunk': lambda x: dict(zip('ych', nnlstm.LSTM(
        x, 4, return_sequences=True, return_state=True, name='lstm'))),
    'Bidirectional(GRU) + head': lambda x: {'y': PF.affine(nnlstm.Bidirectional(
        nnlstm.GRU, x, 3, name='bi'), 2, name='fc')},
    'Stacked(SimpleRNN)': lambda x: {'y': nnlstm.Stacked(
        nnlstm.SimpleRNN, x, 3, num_layers=2, return_sequences=True, name='st')},
}


@pytest.mark.parametrize('graph', list(SAME_FILE_GRAPHS))
def test_linear_saver_writes_the_file_nnabla_s_saver_writes(tmp_path, monkeypatch, graph):
    """The .nnp written with the linear saver holds byte for byte the network NNabla's own
    saver writes (its text: variable names, function order, shapes)."""
    steps = CHUNK + 3 if 'past a chunk' in graph else 4
    with nn.no_grad():
        x = nn.Variable((2, steps, 2))
        outputs = SAME_FILE_GRAPHS[graph](x)
    linear_path = nnlstm.export_network(str(tmp_path / 'linear.nnp'), {'x': x}, outputs)['nnp']
    monkeypatch.setattr(converter, 'linear_converter', contextlib.nullcontext)
    nnabla_path = nnlstm.export_network(str(tmp_path / 'nnabla.nnp'), {'x': x}, outputs)['nnp']
    linear_files, nnabla_files = nnp_entries(linear_path), nnp_entries(nnabla_path)
    assert sorted(linear_files) == sorted(nnabla_files)
    assert b'Affine' in linear_files['network.nntxt']
    for name in nnabla_files:
        assert linear_files[name] == nnabla_files[name], name


def random_buffer_plan(rng, n):
    """What NNabla's .nnb buffer planner reads (an ``info`` of create_nnabart_info) for a
    random network of ``n`` functions: variables listed in a shuffled order (so buffer
    indices do not follow the functions), parameters among them, random sizes."""
    functions = random_functions(rng, n)
    order = linear.topological_order(functions)
    names = ['x', 'w'] + [o for f in order for o in f[3]]
    names = [names[i] for i in rng.permutation(len(names))]
    variables = [types.SimpleNamespace(name=v, type='Parameter' if v == 'w' else 'Buffer')
                 for v in names]
    buffers = [k for k, v in enumerate(variables) if v.type == 'Buffer']
    consumed = {i for f in order for i in f[2]}
    return types.SimpleNamespace(
        _network=types.SimpleNamespace(
            function=[types.SimpleNamespace(input=f[2], output=f[3]) for f in order],
            variable=variables),
        _variable_buffer_index={b: [k] for b, k in enumerate(buffers)},
        _buffer_ids={k: b for b, k in enumerate(buffers)},
        _variable_buffer_size=[int(s) for s in rng.randint(1, 50, len(buffers))],
        _generator_variables={}, _input_variables=['x'],
        _output_variables=[v for v in names if v not in consumed and v != 'w'])


@pytest.mark.parametrize('n', [1, 8, 60, 150])
def test_nnb_buffer_plan_is_nnabla_s(rng, n):
    from nnabla.utils.converter.nnablart.save_variable_buffer import save_variable_buffer
    for _ in range(5):
        info = random_buffer_plan(rng, n)
        sizes, assigned = linear.save_variable_buffer(info)
        want_sizes, want_assigned = save_variable_buffer(info)
        assert [type(s) for s in sizes] == [type(s) for s in want_sizes]
        assert sizes == want_sizes and assigned == want_assigned
        assert len(assigned) == len(info._variable_buffer_size)
