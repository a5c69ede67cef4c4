"""The cpu context runs the layer; cudnn runs it where a GPU and the extension exist, and
fails with a message saying what to install where the extension is missing."""
import importlib.util

import numpy as np
import nnabla as nn
from nnabla.ext_utils import get_extension_context
import pytest

import nnlstm
import reference

HAS_CUDA_EXT = importlib.util.find_spec('nnabla_ext') is not None and \
    importlib.util.find_spec('nnabla_ext.cudnn') is not None


def gpu_count():
    if not HAS_CUDA_EXT:
        return 0
    try:
        import nnabla_ext.cuda
        return nnabla_ext.cuda.get_device_count()
    except Exception:
        return 0


def run_layer(ctx, rng):
    x = rng.randn(3, 5, 2)
    with nn.context_scope(ctx):
        y = nnlstm.LSTM(nn.Variable.from_numpy_array(x), 4, return_sequences=True)
        y.forward()
    p = nn.get_parameters()
    want, _, _ = reference.lstm(x, p['lstm/WaWiWfWo/affine/W'].d, p['lstm/WaWiWfWo/affine/b'].d)
    np.testing.assert_allclose(y.d, want, atol=1e-5)


def test_cpu_context_runs_the_layer(rng):
    ctx = nnlstm.context('cpu')
    assert ctx.backend[0].startswith('cpu')
    run_layer(ctx, rng)


@pytest.mark.skipif(HAS_CUDA_EXT, reason='nnabla-ext-cuda120 is installed here')
@pytest.mark.parametrize('name', ['cuda', 'cudnn'])
def test_missing_cuda_extension_says_what_to_install(name):
    with pytest.raises(ImportError, match=r"context '%s' needs NNabla's CUDA extension.*"
                                          r"pip install 'nnlstm\[cuda\]'.*nnabla-ext-cuda120"
                       % name):
        nnlstm.context(name)


@pytest.mark.skipif(gpu_count() == 0, reason='needs an NVIDIA GPU and nnabla-ext-cuda120')
def test_cudnn_context_runs_the_layer(rng):
    run_layer(nnlstm.context('cudnn'), rng)


@pytest.mark.parametrize('kwargs,match', [
    (dict(name='tpu'), r"`context` must be one of 'cpu', 'cuda', 'cudnn'; received 'tpu'"),
    (dict(type_config='double'), r"`type_config` must be one of 'float', 'half'; received 'double'"),
    (dict(device_id=-1), r"`device_id` must be a GPU number >= 0, .*; received int -1"),
    (dict(device_id='x'), r"`device_id` must be a GPU number >= 0, .*; received str 'x'"),
    (dict(device_id=None), r"`device_id` must be a GPU number >= 0, .*; received NoneType None"),
    (dict(device_id=True), r"`device_id` must be a GPU number >= 0, .*; received bool True"),
])
def test_bad_context_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nnlstm.context(**kwargs)


@pytest.mark.parametrize('device_id', [0, 1, '0', '2'])
def test_device_id_as_int_or_digits(device_id):
    expected = get_extension_context('cpu', device_id=str(device_id))
    assert repr(nnlstm.context('cpu', device_id=device_id)) == repr(expected)
