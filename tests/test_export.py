"""save_nnp / save_parameters: what NNabla's own loader and CLI read back, and atomic writes."""
import contextlib
import logging
import os
import signal
import stat
import subprocess
import sys
import time
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
    # A per-step head keeps its base_axis=2 in the file (nnlstm.export.heads).
    return x, PF.affine(y, 3, base_axis=1 + return_sequences, name='fc')


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
    """An inference graph runs fused on the CPU, and its unrolled form (what the file holds)
    multiplies with F.mul_n; the file holds Mul2, which the ONNX exporter accepts, and
    computes the same numbers."""
    with nn.no_grad():
        x, y = build(3, 4, False)
    assert nnlstm.fused.FusedLayer.NAME in nnlstm.export.functions_of([y])
    with nnlstm.export.unfuse.unfused([y]):
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
    (dict(inputs={1: None}), TypeError, r'`inputs` keys must be str names; received int 1'),
    (dict(outputs={'y': 'Y', 2: 'Z'}), TypeError,
     r'`outputs` keys must be str names; received int 2'),
    (dict(inputs={'': 'X'}), TypeError, r"`inputs key` must be a non-empty str; received ''"),
    (dict(path=None), TypeError, r'`path` must be a file path, a non-empty str or os.PathLike; '
                                 r'received NoneType None'),
    (dict(path=5), TypeError, r'`path` must be a file path, .*; received int 5'),
    (dict(path=''), TypeError, r"`path` must be a file path, .*; received str ''"),
    (dict(network_name=''), TypeError, r"`network_name` must be a non-empty str; received ''"),
    (dict(network_name=5), TypeError, r"`network_name` must be a non-empty str; received 5"),
    (dict(executor_name=None), TypeError,
     r"`executor_name` must be a non-empty str; received None"),
    (dict(outputs={'x': 'Y'}), ValueError, r"`inputs` and `outputs` share the name\(s\) 'x': "
                                           r"NNabla's saver would rename the input"),
])
def test_bad_arguments(tmp_path, kwargs, error, match):
    x, y = build(2, 3, False)
    args = dict(path=str(tmp_path / 'm.nnp'), inputs={'x': x}, outputs={'y': y})
    args.update(kwargs)
    for arg in ('inputs', 'outputs'):  # 'X', 'Y': the graph's own Variables
        if isinstance(args[arg], dict):
            args[arg] = {k: {'X': x, 'Y': y}.get(v, v) if isinstance(v, str) else v
                         for k, v in args[arg].items()}
    if isinstance(args['path'], str) and args['path'] and not os.path.isabs(args['path']):
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


def test_base_axis_2_but_in_an_affine_is_refused(tmp_path):
    x = nn.Variable((2, 3, 2))
    with nn.no_grad():
        y = F.reshape(lstm_y(x, return_sequences=True), (2, 3, 4, 1))
        y = PF.convolution(y, 1, (1,), base_axis=2, name='conv')
    refused(tmp_path, {'x': x}, {'y': y},
            r'Convolution \(2, 3, 4, 1\).* has base_axis=2.*Only an Affine keeps')


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


@pytest.fixture
def umask():
    """Set the process umask for a test, and restore it after."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


@pytest.mark.parametrize('mask', [0o022, 0o077])
def test_new_files_follow_the_umask_replaced_files_keep_their_mode(tmp_path, umask, mask):
    x, y = build(2, 3, False)
    umask(mask)
    nnp = nnlstm.save_nnp(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y})
    params = nnlstm.save_parameters(str(tmp_path / 'p.h5'))
    assert mode(nnp) == mode(params) == 0o666 & ~mask
    for path, kept in ((nnp, 0o604), (params, 0o640)):
        os.chmod(path, kept)
    nnlstm.save_nnp(nnp, {'x': x}, {'y': y})
    nnlstm.save_parameters(params)
    assert (mode(nnp), mode(params)) == (0o604, 0o640)
    assert sorted(os.listdir(str(tmp_path))) == ['m.nnp', 'p.h5']


def test_errors_name_the_users_path_not_a_temporary(tmp_path, monkeypatch):
    x, y = build(2, 3, False)
    missing = str(tmp_path / 'nodir' / 'm.nnp')
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: '%s'$" % missing):
        nnlstm.save_nnp(missing, {'x': x}, {'y': y})
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: '.*nodir/p.h5'$"):
        nnlstm.save_parameters(str(tmp_path / 'nodir' / 'p.h5'))
    (tmp_path / 'afile').write_bytes(b'')
    with pytest.raises(NotADirectoryError, match=r"Not a directory: '.*afile/m.nnp'$"):
        nnlstm.save_nnp(str(tmp_path / 'afile' / 'm.nnp'), {'x': x}, {'y': y})
    (tmp_path / 'm.nnp').mkdir()
    with pytest.raises(IsADirectoryError, match=r"Is a directory: '.*/m.nnp'$"):
        nnlstm.save_nnp(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y})

    def refused(name, *args, **kwargs):  # as os.open in a folder this user cannot write
        raise PermissionError(13, 'Permission denied', name)
    monkeypatch.setattr(os, 'open', refused)
    with pytest.raises(PermissionError, match=r"Permission denied: '.*/p.h5'$"):
        nnlstm.save_parameters(str(tmp_path / 'p.h5'))
    monkeypatch.undo()
    assert sorted(os.listdir(str(tmp_path))) == ['afile', 'm.nnp']


def fail_renaming_to(monkeypatch, target, error=IsADirectoryError):
    """os.replace fails, as for a directory in the way, when it renames onto ``target``."""
    replace = os.replace

    def failing(src, dst):
        if os.path.basename(dst) == target and '.tmp-' in src and not src.endswith('.bak'):
            raise error(21, 'Is a directory', src, None, dst)
        return replace(src, dst)
    monkeypatch.setattr(os, 'replace', failing)


def test_a_failed_rename_puts_back_the_previous_files(tmp_path, monkeypatch):
    """`b` fails to rename after `a` was renamed: `a` is restored (and `c`, new, removed)."""
    paths = [str(tmp_path / n) for n in ('a.txt', 'c.txt', 'b.txt')]
    (tmp_path / 'a.txt').write_bytes(b'old a')
    (tmp_path / 'b.txt').write_bytes(b'old b')
    fail_renaming_to(monkeypatch, 'b.txt')
    with pytest.raises(IsADirectoryError, match=r"Is a directory: '.*/b.txt'$"):
        with export.staged(paths) as tmps:
            for path, tmp in tmps.items():
                with open(tmp, 'wb') as f:
                    f.write(b'new')
    assert sorted(os.listdir(str(tmp_path))) == ['a.txt', 'b.txt']
    assert (tmp_path / 'a.txt').read_bytes() == b'old a'
    assert (tmp_path / 'b.txt').read_bytes() == b'old b'
    monkeypatch.undo()
    with export.staged(paths) as tmps:  # and the same write succeeds without the fault
        for path, tmp in tmps.items():
            with open(tmp, 'wb') as f:
                f.write(b'new')
    assert [(tmp_path / n).read_bytes() for n in ('a.txt', 'c.txt', 'b.txt')] == [b'new'] * 3
    assert sorted(os.listdir(str(tmp_path))) == ['a.txt', 'b.txt', 'c.txt']


@pytest.mark.parametrize('path,error,match', [
    (None, TypeError, r'`path` must be a file path, .*; received NoneType None'),
    ('', TypeError, r"`path` must be a file path, .*; received str ''"),
    ('p.txt', ValueError, r"`path` must end with '.h5' or '.protobuf'; received 'p.txt'"),
])
def test_save_parameters_bad_path(tmp_path, monkeypatch, path, error, match):
    monkeypatch.chdir(tmp_path)
    build(2, 3, False)
    with pytest.raises(error, match=match):
        nnlstm.save_parameters(path)
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('exception', [RuntimeError, KeyError, MemoryError])
def test_any_exception_in_a_write_removes_the_temporary_and_keeps_the_file(tmp_path,
                                                                          exception):
    path = tmp_path / 'm.h5'
    path.write_bytes(b'previous')

    def broken(tmp):
        with open(tmp, 'wb') as f:
            f.write(b'half a file')
        raise exception('in the middle')
    with pytest.raises(exception, match='in the middle'):
        export.atomic_write(str(path), broken)
    assert os.listdir(str(tmp_path)) == ['m.h5']
    assert path.read_bytes() == b'previous'


def test_nnabla_s_info_lines_are_quiet_in_nnlstm_s_writes_only(tmp_path, caplog):
    from nnabla.logger import logger
    x, y = build(2, 3, False)
    caplog.set_level(logging.INFO, logger='nnabla')
    nnlstm.save_nnp(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y})
    nnlstm.save_parameters(str(tmp_path / 'p.h5'))
    assert caplog.messages == []
    nn.save_parameters(str(tmp_path / 'q.h5'))  # NNabla's own save still says so
    logger.warning('a warning still prints')
    assert caplog.messages == ['Parameter save (.h5): %s' % (tmp_path / 'q.h5'),
                               'a warning still prints']


def nnb_writer(monkeypatch, fail=None):
    """export_network's .nnb step without NNabla's converter: it reads the .nnp the export
    just wrote (so it was written) and writes its bytes, or raises ``fail``."""
    monkeypatch.setattr(converter, '_converter', lambda: None)
    monkeypatch.setattr(converter, 'import_nnp', lambda conv, nnp_path, proto: nnp_path)

    def write_nnb(conv, nnp_path, nnb_path, batch_size):
        assert zipfile.is_zipfile(nnp_path)  # the new .nnp is complete at this point
        if fail is not None:
            raise fail
        with open(nnb_path, 'wb') as f:
            f.write(b'new nnb')
    monkeypatch.setattr(converter, 'write_nnb', write_nnb)


@pytest.mark.parametrize('failure', ['writing the .nnb', 'renaming the .nnb'])
def test_a_failed_export_after_the_nnp_was_written_keeps_the_old_files(tmp_path, monkeypatch,
                                                                       failure):
    (tmp_path / 'm.nnp').write_bytes(b'old nnp')
    (tmp_path / 'm.nnb').write_bytes(b'old nnb')
    x, y = build(2, 3, False)
    if failure == 'writing the .nnb':
        nnb_writer(monkeypatch, fail=RuntimeError('converter failed'))
        expected = pytest.raises(RuntimeError, match='converter failed')
    else:
        nnb_writer(monkeypatch)
        fail_renaming_to(monkeypatch, 'm.nnb')
        expected = pytest.raises(IsADirectoryError, match=r"Is a directory: '.*/m.nnb'$")
    with expected:
        nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, nnb=True)
    assert sorted(os.listdir(str(tmp_path))) == ['m.nnb', 'm.nnp']
    assert (tmp_path / 'm.nnp').read_bytes() == b'old nnp'
    assert (tmp_path / 'm.nnb').read_bytes() == b'old nnb'
    monkeypatch.undo()
    nnb_writer(monkeypatch)  # and without the fault both are replaced
    nnlstm.export_network(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y}, nnb=True)
    assert zipfile.is_zipfile(str(tmp_path / 'm.nnp'))
    assert (tmp_path / 'm.nnb').read_bytes() == b'new nnb'


def dead_pid():
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


def test_stale_temporaries_of_the_target_are_removed_by_the_next_write(tmp_path):
    x, y = build(2, 3, False)
    dead, hour_ago = dead_pid(), time.time() - 3600
    names = {
        '.m.nnp.tmp-%d-0a1b2c3d.nnp' % dead: False,  # a killed run's: removed
        '.m.nnp.tmp-%d-0a1b2c3d.nnp-k2j4h1' % dead: False,  # its converter's folder
        '.m.nnp.tmp-%d-99999999.nnp' % os.getpid(): False,  # this process, no write
        '.m.nnp.tmp-1-0a1b2c3d.nnp': True,  # a running process's (pid 1)
        '.other.nnp.tmp-%d-0a1b2c3d.nnp' % dead: True,  # another target's
    }
    for name in names:
        if name.endswith('h1'):
            (tmp_path / name).mkdir()
            (tmp_path / name / 'network.protobuf').write_bytes(b'')
        else:
            (tmp_path / name).write_bytes(b'half a file')
        os.utime(str(tmp_path / name), (hour_ago, hour_ago))
    newer = '.m.nnp.tmp-%d-fedcba98.nnp' % dead  # newer than the write: left alone
    (tmp_path / newer).write_bytes(b'')
    future = time.time() + 3600
    os.utime(str(tmp_path / newer), (future, future))
    nnlstm.save_nnp(str(tmp_path / 'm.nnp'), {'x': x}, {'y': y})
    kept = sorted(['m.nnp', newer] + [n for n, keep in names.items() if keep])
    assert sorted(os.listdir(str(tmp_path))) == kept


def test_sigterm_handler_is_installed_only_during_a_write(tmp_path):
    seen = []
    export.atomic_write(str(tmp_path / 'a'), lambda tmp: seen.append(
        signal.getsignal(signal.SIGTERM)))
    assert seen[0] not in (signal.SIG_DFL, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def failing(tmp):
        raise ValueError('in the write')
    with pytest.raises(ValueError, match='in the write'):
        export.atomic_write(str(tmp_path / 'a'), failing)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def own(signum, frame):
        pass
    previous = signal.signal(signal.SIGTERM, own)
    try:
        export.atomic_write(str(tmp_path / 'a'), lambda tmp: seen.append(
            signal.getsignal(signal.SIGTERM)))
        assert seen[-1] is own and signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)


SIGTERM_CHILD = r'''
import os, signal, sys, time
from nnlstm.export import files
folder, when = sys.argv[1], sys.argv[2]
paths = [os.path.join(folder, n) for n in ('m.nnp', 'm.onnx')]
replace = os.replace

def replace_then_terminate(src, dst):  # SIGTERM between the renames
    replace(src, dst)
    if dst == paths[0]:
        os.kill(os.getpid(), signal.SIGTERM)
if when == 'between renames':
    os.replace = replace_then_terminate
with files.staged(paths) as tmps:
    for tmp in tmps.values():
        with open(tmp, 'wb') as f:
            f.write(b'new, half written')
    if when == 'while writing':
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
print('the write went on')
'''


@pytest.mark.parametrize('when', ['while writing', 'between renames'])
def test_sigterm_removes_the_temporaries_and_keeps_the_previous_files(tmp_path, when):
    for name in ('m.nnp', 'm.onnx'):
        (tmp_path / name).write_bytes(b'previous ' + name.encode())
    child = subprocess.run([sys.executable, '-c', SIGTERM_CHILD, str(tmp_path), when],
                           capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGTERM, child.stderr.decode()
    assert b'the write went on' not in child.stdout
    assert sorted(os.listdir(str(tmp_path))) == ['m.nnp', 'm.onnx']
    for name in ('m.nnp', 'm.onnx'):
        assert (tmp_path / name).read_bytes() == b'previous ' + name.encode()


@pytest.mark.parametrize('options,error,match', [
    ({'use_bias': False}, ValueError, r"would ignore the layer's parameters \['enc/WaWiWfWo/affine/b'\]"),
    ({'foo': 1}, TypeError, r"step_network\(\) got an unexpected option 'foo'"),
    ({'reset_after': False}, TypeError, r"'reset_after'"),
])
def test_step_network_refuses_options_the_layer_was_not_built_with(options, error, match):
    nnlstm.LSTM(nn.Variable((2, 5, 1)), 4, name='enc')
    with pytest.raises(error, match=match):
        nnlstm.step_network(nnlstm.LSTM, 1, 4, name='enc', **options)
