"""nnlstm: Keras-style recurrent layers for NNabla, unrolled into static, exportable graphs.

Shape legend: B batch size, T time steps, D input features, H units.
"""
from .cells import LSTMCell, LSTMState
from .context import CONTEXTS, context
from .export import save_nnp, save_parameters
from .layers import LSTM
from .unroll import unroll

__version__ = '0.1.0'
__all__ = ['CONTEXTS', 'LSTM', 'LSTMCell', 'LSTMState', 'context', 'save_nnp',
           'save_parameters', 'unroll']
