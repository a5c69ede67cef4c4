"""Graph building: no module searches per NNabla function call, and inference graphs that
keep no per-step buffers."""
import gc
import importlib
import sys

import nnabla as nn
import numpy as np
import pytest

import nnlstm


class Finder:
    """A meta path finder that records the names searched for, and finds none."""

    def __init__(self):
        self.searched = []

    def find_spec(self, name, path, target=None):
        self.searched.append(name)

    def __enter__(self):
        sys.meta_path.insert(0, self)
        return self

    def __exit__(self, *exc):
        sys.meta_path.remove(self)


def test_building_a_graph_searches_for_no_module():
    """NNabla's compiled functions import nnabla relatively on every call; without the
    module nnlstm registers as 'nnabla.nnabla', each call searches the disk for it twice."""
    nnlstm.GRU(nn.Variable((2, 3, 4)), 5)  # parameters and lazy imports done
    with Finder() as finder:
        nnlstm.LSTM(nn.Variable((2, 50, 4)), 5, return_sequences=True, name='other')
        nnlstm.GRU(nn.Variable((2, 50, 4)), 5, lengths=nn.Variable((2,)))
    assert finder.searched == []


def test_running_a_fused_graph_searches_for_no_module():
    """Every read or write of ``.d``/``.g`` imports nnabla_ext relatively, every forward gc:
    about 0.1 ms each without the aliases."""
    x = nn.Variable.from_numpy_array(np.ones((2, 3, 4), np.float32), need_grad=True)
    y = nnlstm.LSTM(x, 5, return_sequences=True, name='run')
    y.forward()
    y.backward()  # the kernels are compiled or loaded
    with Finder() as finder:
        y.forward(clear_no_need_grad=True)
        y.backward(clear_buffer=True)
        x.d, x.g = x.d + 1, 0
    assert finder.searched == []


def test_the_aliases_forward_to_their_modules_and_are_not_packages():
    alias = sys.modules['nnabla.nnabla']
    assert alias.Variable is nn.Variable and alias.functions is nn.functions
    assert sys.modules['nnabla.gc'].collect is gc.collect
    assert sys.modules['nnabla.nnabla_ext'].cpu is importlib.import_module('nnabla_ext.cpu')
    for name, sub in [('nnabla.nnabla', 'utils'), ('nnabla.nnabla_ext', 'cpu')]:
        with pytest.raises(ModuleNotFoundError, match="'%s' is not a package" % name):
            importlib.import_module(name + '.' + sub)
        assert name + '.' + sub not in sys.modules
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
