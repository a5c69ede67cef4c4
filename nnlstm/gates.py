"""Every gate order nnlstm reads or writes, written down once.

Frameworks stack the gate blocks of a fused recurrent weight in different orders. nnlstm
names every block with one letter and keeps each layout's order here; nothing else in the
package spells a gate order out.

LSTM blocks: ``a`` the candidate (tanh; PyTorch's ``g``, Keras' ``c``), ``i`` input gate,
``f`` forget gate, ``o`` output gate. GRU blocks: ``z`` update gate, ``r`` reset gate,
``n`` candidate (Keras' ``h``).
"""
import numpy as np

#: Gate block order of each layout, per cell kind.
ORDERS = {
    'lstm': {
        'nnlstm': 'aifo',     # the seed's WaWiWfWo; i, f, o contiguous for one sigmoid
        'torch': 'ifao',      # nn.LSTM weight_ih/hh rows: i, f, g, o
        'keras': 'ifao',      # keras LSTM kernel columns: i, f, c, o
        'nnabla': 'ifao',     # F.lstm / PF.lstm weight_l0 (D, 4, H, I + H): i, f, g, o
        'lstm_cell': 'iofa',  # PF.lstm_cell: i, o, f, g
        'onnx': 'iofa',       # ONNX LSTM W, R, B: i, o, f, c
    },
    'gru': {
        'nnlstm': 'zrn',      # z, r contiguous for one sigmoid
        'torch': 'rzn',       # nn.GRU rows: r, z, n
        'keras': 'zrn',       # keras GRU columns: z, r, h
        'onnx': 'zrn',        # ONNX GRU W, R, B: z, r, h
    },
    'rnn': {
        'nnlstm': 'n',
        'torch': 'n',
        'keras': 'n',
        'onnx': 'n',
    },
}


def order(cell, layout):
    """The gate order string of ``layout`` for ``cell`` ('lstm', 'gru' or 'rnn')."""
    try:
        layouts = ORDERS[cell]
    except KeyError:
        raise ValueError("`cell` must be one of %s; received %r"
                         % (sorted(ORDERS), cell)) from None
    try:
        return layouts[layout]
    except KeyError:
        raise ValueError("%s weights have no layout %r; known layouts: %s"
                         % (cell, layout, sorted(layouts))) from None


def reorder(array, cell, src, dst, axis=-1):
    """Rearrange the gate blocks of ``array`` along ``axis`` from layout ``src`` to ``dst``.

    Args:
        array (numpy.ndarray): a fused weight or bias whose ``axis`` holds the gate blocks
            one after another, each of the same size.
        cell (str): 'lstm', 'gru' or 'rnn'.
        src, dst (str): layout names from :data:`ORDERS`, e.g. 'torch' and 'nnlstm'.
    """
    src_order, dst_order = order(cell, src), order(cell, dst)
    array = np.asarray(array)
    if array.shape[axis] % len(src_order):
        raise ValueError("axis %d of the %s weight has size %d, not a multiple of its %d gates"
                         % (axis, cell, array.shape[axis], len(src_order)))
    blocks = dict(zip(src_order, np.split(array, len(src_order), axis=axis)))
    return np.concatenate([blocks[g] for g in dst_order], axis=axis)


def index(cell, layout, gate):
    """Position of ``gate`` (a letter) in ``layout``'s order."""
    return order(cell, layout).index(gate)
