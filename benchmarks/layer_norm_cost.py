#!/usr/bin/env python
"""What ``layer_norm=True`` costs per training iteration of the character LM.

    ./run python benchmarks/layer_norm_cost.py [--blocks 3 --iterations 10]

Builds the char-LM example's training graph at its defaults (B 32, T 50, embedding 64, two
LSTM layers of 128 units, dropout 0.1, no recurrent dropout) twice, plain and with
``layer_norm=True``, on random ids, and runs them in alternating blocks of iterations so
that the load of a shared machine falls on both alike. Prints the median CPU time (process
time) per iteration of each and their ratio.
"""
import argparse
import os
import sys
import time
import types

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'examples'))
import char_lm  # noqa: E402  (the example's model)
import nnlstm  # noqa: E402

VOCAB, BATCH, WINDOW = 101, 32, 50


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--blocks', type=int, default=3)
    p.add_argument('--iterations', type=int, default=10, help='per block')
    args = p.parse_args()
    rng = np.random.RandomState(0)
    graphs = {}
    for layer_norm in (False, True):
        model = types.SimpleNamespace(embed=64, units=128, num_layers=2, dropout=0.1,
                                      recurrent_dropout=0.0, weight_dropout=0.0,
                                      layer_norm=layer_norm)
        x, t = nn.Variable((BATCH, WINDOW)), nn.Variable((BATCH, WINDOW, 1))
        with nn.parameter_scope('layer_norm%d' % layer_norm):
            logits = char_lm.model(x, VOCAB, model, nnlstm.Carry(), True)
            loss = F.mean(F.softmax_cross_entropy(logits, t, axis=2))
            solver = S.Adam(2e-3)
            solver.set_parameters(nn.get_parameters())
        graphs[layer_norm] = (x, t, loss, solver, [])
    for _ in range(args.blocks):
        for x, t, loss, solver, times in graphs.values():
            start = time.process_time()
            for _ in range(args.iterations):
                x.d, t.d = rng.randint(VOCAB, size=x.shape), rng.randint(VOCAB, size=t.shape)
                loss.forward(clear_no_need_grad=True)
                solver.zero_grad()
                loss.backward(clear_buffer=True)
                solver.update()
            times.append((time.process_time() - start) / args.iterations * 1e3)
    median = {k: np.median(g[4]) for k, g in graphs.items()}
    for layer_norm, ms in median.items():
        print('layer_norm=%s: %.0f ms CPU per iteration (median of %d blocks of %d)'
              % (layer_norm, ms, args.blocks, args.iterations))
    print('ratio %.2f' % (median[True] / median[False]))


if __name__ == '__main__':
    main()
