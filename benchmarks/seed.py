"""The seed's LSTM, the baseline of the benchmark: copied from the project's starting code
(concatenate + one affine + four slices + Python operators, zero state from nn.Variable),
kept as it was written. Not part of nnlstm."""
import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF


def seed_lstm_cell(x, c, h):
    units = c.shape[1]
    z = PF.affine(F.concatenate(x, h, axis=1), 4 * units, name='WaWiWfWo')
    a = F.tanh(z[:, units * 0:units * 1])
    i = F.sigmoid(z[:, units * 1:units * 2])
    f = F.sigmoid(z[:, units * 2:units * 3])
    o = F.sigmoid(z[:, units * 3:units * 4])
    c = a * i + f * c
    h = o * F.tanh(c)
    return c, h


def seed_lstm(inputs, units, initial_state=None, return_sequences=False, return_state=False,
              name='lstm'):
    batch = inputs.shape[0]
    if initial_state is None:
        c0 = nn.Variable.from_numpy_array(np.zeros((batch, units), np.float32))
        h0 = nn.Variable.from_numpy_array(np.zeros((batch, units), np.float32))
    else:
        c0, h0 = initial_state
    c, h = c0, h0
    hs = []
    with nn.parameter_scope(name):
        for x in F.split(inputs, axis=1):
            c, h = seed_lstm_cell(x, c, h)
            hs.append(h)
    y = F.stack(*hs, axis=1) if return_sequences else hs[-1]
    return (y, c, h) if return_state else y
