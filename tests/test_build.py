"""Graph building: no module searches per NNabla function call, and inference graphs that
keep no per-step buffers."""
import importlib
import sys

import nnabla as nn
import numpy as np
import pytest

import nnlstm


def test_building_a_graph_searches_for_no_module():
    """NNabla's compiled functions import nnabla relatively on every call; without the
    module nnlstm registers as 'nnabla.nnabla', each call searches the disk for it twice."""
    nnlstm.GRU(nn.Variable((2, 3, 4)), 5)  # parameters and lazy imports done

    class Finder:
        searched = []

        def find_spec(self, name, path, target=None):
            self.searched.append(name)

    sys.meta_path.insert(0, Finder())
    try:
        nnlstm.LSTM(nn.Variable((2, 50, 4)), 5, return_sequences=True, name='other')
        nnlstm.GRU(nn.Variable((2, 50, 4)), 5, lengths=nn.Variable((2,)))
    finally:
        sys.meta_path.pop(0)
    assert 'nnabla.nnabla' not in Finder.searched


def test_the_alias_forwards_to_nnabla_and_is_not_a_package():
    alias = sys.modules['nnabla.nnabla']
    assert alias.Variable is nn.Variable and alias.functions is nn.functions
    with pytest.raises(ModuleNotFoundError, match="'nnabla.nnabla' is not a package"):
        importlib.import_module('nnabla.nnabla.utils')
    assert 'nnabla.nnabla.utils' not in sys.modules
    with nn.auto_forward():  # dynamic mode imports through the same path
        y = nnlstm.LSTM(nn.Variable.from_numpy_array(np.ones((2, 3, 4))), 5, name='dyn')
    assert y.d.shape == (2, 5) and np.isfinite(y.d).all()


INFERENCE_MEMORY = '''
import resource, numpy as np, nnabla as nn, nnlstm
x = nn.Variable.from_numpy_array(np.random.randn(32, 3000, 4).astype(np.float32))
with nn.no_grad():
    y = nnlstm.LSTM(x, 64, fused=False)  # the unrolled graph's buffers
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y.forward(clear_buffer=True)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
'''


def test_inference_forward_frees_each_steps_buffers():
    """An inference graph keeps no per-step buffers through forward(clear_buffer=True):
    with an in-place gate reshape, every step's (B, 4H) affine output stayed alive, about
    100 MB here; freed, the peak grows by about 12 MB."""
    import subprocess
    out = subprocess.run([sys.executable, '-c', INFERENCE_MEMORY], capture_output=True,
                         text=True, timeout=240, check=True)
    assert float(out.stdout.split()[-1]) < 40
