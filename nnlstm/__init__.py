"""nnlstm: Keras-style recurrent layers for NNabla, unrolled into static, exportable graphs.

Shape legend: B batch size, T time steps, D input features, H units.
"""
import sys
import types

import nnabla


class _NnablaAlias(types.ModuleType):
    """``nnabla`` under the name 'nnabla.nnabla'. NNabla 1.39's compiled Function.__call__
    runs an implicit relative ``import nnabla``, which first looks for a module
    'nnabla.nnabla': without one, two failed searches of the disk per function call, three
    quarters of the time an unrolled graph takes to build (None in sys.modules still costs
    importlib's locks, about 15 % of the build). This module is found at once and forwards
    every attribute to ``nnabla``. It is not a package (no ``__path__``), so a relative import
    of a submodule through it fails at once and falls back to the real one instead of
    loading a second copy."""

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return getattr(nnabla, name)


sys.modules.setdefault('nnabla.nnabla', _NnablaAlias('nnabla.nnabla'))

from . import interop
from .cells import GRUCell, HiddenState, LSTMCell, LSTMState, SimpleRNNCell
from .context import CONTEXTS, context
from .export import (ONNX_OPSETS, export_network, export_step, save_nnp, save_parameters,
                     step_network)
from .layers import GRU, LSTM, Bidirectional, Carry, SimpleRNN, Stacked
from .mc import mc_dropout
from .training import clip_grad_by_global_norm
from .unroll import unroll

__version__ = '0.1.0'
__all__ = ['Bidirectional', 'Carry', 'clip_grad_by_global_norm', 'context', 'CONTEXTS',
           'export_network', 'export_step', 'GRU', 'GRUCell', 'HiddenState', 'interop',
           'LSTM', 'LSTMCell', 'LSTMState', 'mc_dropout', 'ONNX_OPSETS', 'save_nnp',
           'save_parameters', 'SimpleRNN', 'SimpleRNNCell', 'Stacked', 'step_network',
           'unroll']
