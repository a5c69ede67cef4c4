"""save_nnp / save_parameters: what NNabla's own loader and CLI read back, and atomic writes."""
import os
import subprocess
import sys

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
from nnabla.utils.nnp_graph import NnpLoader
import pytest

import nnlstm
from nnlstm import export


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
