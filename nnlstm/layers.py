"""Keras-style recurrent layers: a cell core unrolled by :func:`nnlstm.unroll.unroll`.

Shape legend: B batch size, T time steps, D input features, H units.
"""
import contextlib

import nnabla as nn
import nnabla.functions as F

from . import _checks
from .cells import LSTMCore, LSTMState
from .unroll import unroll


@contextlib.contextmanager
def scope(name):
    """``nn.parameter_scope(name)`` whose ValueErrors name the layer."""
    if not isinstance(name, str) or not name:
        raise TypeError("`name` must be a non-empty str; received %r" % (name,))
    with nn.parameter_scope(name):
        try:
            yield
        except ValueError as e:
            raise ValueError("layer `name` %r: %s" % (name, e)) from None


def _lstm_state(initial_state, batch, units):
    if initial_state is None:
        return None
    if not isinstance(initial_state, (tuple, list)):
        raise TypeError("`initial_state` must be a tuple (c0, h0) of Variables (B, H); "
                        "received %s" % type(initial_state).__name__)
    if len(initial_state) != 2:
        raise ValueError("`initial_state` must hold 2 Variables (c0, h0); received %d"
                         % len(initial_state))
    c0, h0 = initial_state
    expected = (batch, units)
    return LSTMState(_checks.shape(c0, 'initial_state[0] (c0)', expected, '(B, units)'),
                     _checks.shape(h0, 'initial_state[1] (h0)', expected, '(B, units)'))


def LSTM(inputs, units, initial_state=None, return_sequences=False, return_state=False,
         name='lstm', go_backwards=False, time_major=False, activation='tanh',
         recurrent_activation='sigmoid', use_bias=True, kernel_initializer=None,
         recurrent_initializer=None, bias_initializer=None, unit_forget_bias=True, rng=None,
         fix_parameters=False):
    """Long short-term memory layer, unrolled over time (the seed's ``LSTM``).

    Args:
        inputs (~nnabla.Variable): (B, T, D), or (T, B, D) with ``time_major=True``.
        units (int): H, the size of the hidden and cell states.
        initial_state (tuple of ~nnabla.Variable): ``(c0, h0)``, each (B, H); None for
            zeros (then the graph reads no state input at all).
        return_sequences (bool): return the output of every step, (B, T, H), instead of
            the last one, (B, H).
        return_state (bool): also return the final cell and hidden states.
        name (str): the parameter scope; calling the layer again with the same ``name``
            shares its parameters (a training and an inference graph, say).
        go_backwards (bool): process the sequence from the last step to the first; as in
            Keras, a returned sequence then comes in processing (reversed) order.
        time_major (bool): ``inputs`` (and a returned sequence) are (T, B, ...).
        activation, recurrent_activation, use_bias, kernel_initializer,
        recurrent_initializer, bias_initializer, unit_forget_bias, rng, fix_parameters:
            as for :func:`nnlstm.LSTMCell`, whose parameters (``{name}/WaWiWfWo/affine/W``
            (D + H, 4H) and ``.../b`` (4H,)) the layer creates.

    Returns:
        ``y``, or ``(y, c_T, h_T)`` with ``return_state``: ``y`` is (B, T, H) with
        ``return_sequences``, else (B, H); ``c_T``, ``h_T`` are (B, H).

    Example:
        >>> x = nn.Variable((8, 20, 3))                                  # (B, T, D)
        >>> y = nnlstm.LSTM(x, 16)                                       # (8, 16)
        >>> y = nnlstm.LSTM(x, 16, return_sequences=True)                # (8, 20, 16)
        >>> y, c, h = nnlstm.LSTM(x, 16, return_state=True)              # (8, 16) x 3
        >>> y, c, h = nnlstm.LSTM(x, 16, return_sequences=True, return_state=True)
    """
    batch, _, dim = _checks.sequence(inputs, 'inputs', time_major)
    units = _checks.positive_int(units, 'units')
    state = _lstm_state(initial_state, batch, units)
    with scope(name):
        core = LSTMCore(dim, units, activation, recurrent_activation, use_bias,
                        kernel_initializer, recurrent_initializer, bias_initializer,
                        unit_forget_bias, rng, fix_parameters)
    outputs, state = unroll(core, inputs, state, reverse=go_backwards, time_major=time_major)
    if go_backwards:
        outputs = outputs[::-1]  # Keras returns the sequence in processing order
    y = outputs[-1]
    if return_sequences:
        y = F.stack(*outputs, axis=0 if time_major else 1)
    if return_state:
        return (y,) + tuple(state)
    return y
