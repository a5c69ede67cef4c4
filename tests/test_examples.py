"""The examples run end to end at tiny sizes."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(script, *args):
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'examples', script)] + list(args),
                         check=True, capture_output=True, text=True, timeout=300)
    return out.stdout + out.stderr


def test_sine_example_trains_exports_reloads_and_plots(tmp_path):
    log = run_example('sine.py', '-i', '300', '--val-interval', '100', '--predict-steps', '20',
                      '-o', str(tmp_path))
    for name in ('sine_params.h5', 'sine.nnp', 'sine_prediction.png', 'sine_input.bin',
                 'training-loss.series.txt', 'validation-mse.series.txt'):
        assert (tmp_path / name).exists(), name
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith('.tmp')]
    assert 'iter=300 {validation mse}' in log
    # The signal has variance 0.625; 300 iterations already predict the next value far
    # better than that (the noise floor is 0.0025).
    val = np.loadtxt(str(tmp_path / 'validation-mse.series.txt'))
    assert val[-1, 1] < 0.05, val
    closed = float(log.split('closed-loop prediction')[1].split('MSE')[1].split()[0])
    assert closed < 0.2, log
    inside = float(log.split('inside mean +- 2 sd at')[1].split('%')[0])  # the MC band
    assert 0 < inside <= 100, log
    onnx = all(importlib.util.find_spec(m) is not None
               for m in ('onnx', 'onnxruntime', 'nnabla.utils.converter.onnx'))
    if os.environ.get('NNLSTM_REQUIRE_ONNX') == '1':
        assert onnx, 'NNLSTM_REQUIRE_ONNX=1 but the onnx extra is not installed'
    assert (tmp_path / 'sine.onnx').exists() == onnx
    if onnx:
        diff = float(log.split('from the NNabla graph')[1].split()[0])
        assert diff < 1e-5, log


@pytest.mark.skipif(importlib.util.find_spec('nnabla_ext.cudnn') is not None,
                    reason='NNabla CUDA extension installed here')
@pytest.mark.parametrize('script', ['sine.py', 'char_lm.py'])
def test_cudnn_context_without_the_extension_says_what_to_install(tmp_path, script):
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'examples', script), '-c', 'cudnn',
                          '-i', '1', '-o', str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert "pip install 'nnlstm[cuda]'" in out.stderr and 'Traceback' not in out.stderr
