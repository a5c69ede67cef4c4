"""Write tests/data/legacy/parameters.h5 and outputs.npz with the code checked out.

Run once, at b4646b0's behaviour (before the cell-kind registry changed how cores create their
parameters), and committed: tests/test_parameters.py then checks that today's layers load that
file unchanged and reproduce its outputs. Rerunning it on later code would test nothing.

    ./run python tests/write_legacy_parameters.py
"""
import os

import numpy as np
import nnabla as nn
import nnabla.functions as F

import nnlstm

HERE = os.path.dirname(os.path.abspath(__file__))
B, T, D, H = 2, 4, 3, 5

#: name -> (builder, kwargs); each builds its own layer from the same input
LAYERS = {
    'lstm': (nnlstm.LSTM, {}),
    'lstm_nobias': (nnlstm.LSTM, {'use_bias': False}),
    'gru': (nnlstm.GRU, {}),
    'gru_before': (nnlstm.GRU, {'reset_after': False}),
    'rnn': (nnlstm.SimpleRNN, {}),
}


def build(x):
    """Every layer of the legacy file on input ``x``: {name: output sequence}."""
    out = {name: fn(x, H, name=name, return_sequences=True, **kw)
           for name, (fn, kw) in LAYERS.items()}
    out['bi'] = nnlstm.Bidirectional(nnlstm.LSTM, x, H, name='bi', return_sequences=True)
    out['stacked'] = nnlstm.Stacked(nnlstm.GRU, x, H, num_layers=2, name='stacked',
                                    return_sequences=True)
    return out


def inputs():
    return np.random.RandomState(7).randn(B, T, D).astype(np.float32)


def main():
    nn.clear_parameters()
    np.random.seed(3)
    nn.random.seed(3)
    x = nn.Variable.from_numpy_array(inputs())
    out = build(x)
    F.sink(*out.values()).forward()
    nnlstm.save_parameters(os.path.join(HERE, 'data', 'legacy', 'parameters.h5'))
    np.savez(os.path.join(HERE, 'data', 'legacy', 'outputs.npz'),
             x=x.d, **{k: v.d for k, v in out.items()})


if __name__ == '__main__':
    main()
