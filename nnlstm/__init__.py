"""nnlstm: Keras-style recurrent layers for NNabla, unrolled into static, exportable graphs.

Shape legend: B batch size, T time steps, D input features, H units.

Where things live: ``cells`` the cell equations (one step each), ``kinds`` one record per
cell kind (parameter table, options, state), ``unroll`` the one loop over time, ``layers``
LSTM/GRU/SimpleRNN, ``wrappers`` Bidirectional and Stacked, ``carry`` stateful runs,
``initializers`` Keras' initializers, ``gates`` every gate order, ``process`` what nnlstm
does to the whole process (and how to turn it off), ``export`` and ``interop`` files and
other frameworks.
"""
from . import process  # noqa: F401  (first: the nnabla.nnabla alias speeds every build)
from . import interop
from .carry import Carry
from .cells import GRUCell, HiddenState, LSTMCell, LSTMState, SimpleRNNCell
from .context import CONTEXTS, context
from .export import (ONNX_OPSETS, export_network, export_step, save_nnp, save_parameters,
                     step_network)
from .layers import GRU, LSTM, SimpleRNN
from .mc import mc_dropout
from .training import clip_grad_by_global_norm
from .unroll import unroll
from .wrappers import Bidirectional, Stacked

__version__ = '0.1.0'
__all__ = ['Bidirectional', 'Carry', 'clip_grad_by_global_norm', 'context', 'CONTEXTS',
           'export_network', 'export_step', 'GRU', 'GRUCell', 'HiddenState', 'interop',
           'LSTM', 'LSTMCell', 'LSTMState', 'mc_dropout', 'ONNX_OPSETS', 'save_nnp',
           'save_parameters', 'SimpleRNN', 'SimpleRNNCell', 'Stacked', 'step_network',
           'unroll']
