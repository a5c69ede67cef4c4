"""nnlstm: Keras-style recurrent layers for NNabla, unrolled into static, exportable graphs.

Shape legend: B batch size, T time steps, D input features, H units.
"""
import sys

# NNabla 1.39's compiled Function.__call__ runs an implicit relative `import nnabla`, which
# first searches the disk for a module 'nnabla.nnabla', fails, then falls back to the
# absolute import: two failed searches per function call, three quarters of the time an
# unrolled graph takes to build. None in sys.modules makes that first attempt fail at once,
# without a search; the fallback, the real import, is unchanged.
sys.modules.setdefault('nnabla.nnabla', None)

from . import interop
from .cells import GRUCell, HiddenState, LSTMCell, LSTMState, SimpleRNNCell
from .context import CONTEXTS, context
from .export import (ONNX_OPSETS, export_network, export_step, save_nnp, save_parameters,
                     step_network)
from .layers import GRU, LSTM, Bidirectional, Carry, SimpleRNN, Stacked
from .training import clip_grad_by_global_norm
from .unroll import unroll

__version__ = '0.1.0'
__all__ = ['Bidirectional', 'CONTEXTS', 'Carry', 'GRU', 'GRUCell', 'HiddenState', 'LSTM',
           'LSTMCell', 'LSTMState', 'ONNX_OPSETS', 'SimpleRNN', 'SimpleRNNCell', 'Stacked',
           'context', 'export_network', 'export_step', 'interop', 'save_nnp',
           'save_parameters', 'step_network', 'unroll']
