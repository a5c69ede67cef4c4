"""nnlstm: Keras-style recurrent layers for NNabla, unrolled into static, exportable graphs.

Shape legend: B batch size, T time steps, D input features, H units.
"""
from .cells import GRUCell, HiddenState, LSTMCell, LSTMState, SimpleRNNCell
from .context import CONTEXTS, context
from .export import (ONNX_OPSETS, export_network, export_step, save_nnp, save_parameters,
                     step_network)
from .layers import GRU, LSTM, Bidirectional, Carry, SimpleRNN, Stacked
from .unroll import unroll

__version__ = '0.1.0'
__all__ = ['Bidirectional', 'CONTEXTS', 'Carry', 'GRU', 'GRUCell', 'HiddenState', 'LSTM',
           'LSTMCell', 'LSTMState', 'ONNX_OPSETS', 'SimpleRNN', 'SimpleRNNCell', 'Stacked',
           'context', 'export_network', 'export_step', 'save_nnp', 'save_parameters',
           'step_network', 'unroll']
