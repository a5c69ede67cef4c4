"""nnlstm: Keras-style recurrent layers for NNabla, unrolled into static, exportable graphs.

Shape legend: B batch size, T time steps, D input features, H units.
"""
from .cells import GRUCell, HiddenState, LSTMCell, LSTMState, SimpleRNNCell
from .context import CONTEXTS, context
from .export import save_nnp, save_parameters
from .layers import GRU, LSTM, Bidirectional, Carry, SimpleRNN, Stacked
from .training import clip_grad_by_global_norm
from .unroll import unroll

__version__ = '0.1.0'
__all__ = ['Bidirectional', 'CONTEXTS', 'Carry', 'GRU', 'GRUCell', 'HiddenState', 'LSTM',
           'LSTMCell', 'LSTMState', 'SimpleRNN', 'SimpleRNNCell', 'Stacked', 'context',
           'save_nnp', 'save_parameters', 'unroll']
