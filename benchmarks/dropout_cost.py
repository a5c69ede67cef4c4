#!/usr/bin/env python
"""What the sine example's recurrent dropout costs per training iteration.

    ./run python benchmarks/dropout_cost.py [--rate 0.03]

Builds the example's training graph (B 32, T 32, 32 units) twice, without and with the
variational recurrent dropout, and runs them in alternating blocks of iterations so that the
load of a shared machine falls on both alike. Prints the median CPU time (process time) per
iteration of each and their ratio.
"""
import argparse
import os
import sys
import time

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'examples'))
import sine  # noqa: E402  (the example's model)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rate', type=float, default=0.03)
    p.add_argument('--blocks', type=int, default=6)
    p.add_argument('--iterations', type=int, default=200, help='per block')
    args = p.parse_args()
    rng = np.random.RandomState(0)
    graphs = {}
    for rate in (0.0, args.rate):
        x, t = nn.Variable((32, 32, 1)), nn.Variable((32, 1))
        with nn.parameter_scope('rate%g' % rate):
            loss = F.mean(F.squared_error(sine.model(x, 32, rate), t))
            solver = S.Adam(3e-3)
            solver.set_parameters(nn.get_parameters())
        graphs[rate] = (x, t, loss, solver, [])
    for _ in range(args.blocks):
        for x, t, loss, solver, times in graphs.values():
            start = time.process_time()
            for _ in range(args.iterations):
                x.d, t.d = rng.randn(32, 32, 1), rng.randn(32, 1)
                loss.forward(clear_no_need_grad=True)
                solver.zero_grad()
                loss.backward(clear_buffer=True)
                solver.update()
            times.append((time.process_time() - start) / args.iterations * 1e3)
    median = {rate: np.median(g[4]) for rate, g in graphs.items()}
    for rate, ms in median.items():
        print('recurrent_dropout=%g: %.2f ms CPU per iteration (median of %d blocks of %d)'
              % (rate, ms, args.blocks, args.iterations))
    print('ratio %.2f' % (median[args.rate] / median[0.0]))


if __name__ == '__main__':
    main()
