#!/usr/bin/env python
"""One very long sequence end to end: build, forward, backward, delete, exit.

    ./run python benchmarks/long_sequence.py [--steps 20000]

NNabla walks (forward) and frees (deletion) a graph recursively, about 1.5 KB of stack per
unrolled LSTM step, so with the default 8 MB stack this segfaulted near T = 6000 before
nnlstm raised the main thread's stack limit. Prints the time of each phase; the exit code is
the verdict (139 is a segfault).
"""
import argparse
import time

import numpy as np
import nnabla as nn
import nnabla.functions as F

import nnlstm


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', '-T', type=int, default=20000)
    p.add_argument('--batch-size', '-b', type=int, default=2)
    p.add_argument('--units', type=int, default=8)
    args = p.parse_args()
    x = nn.Variable.from_numpy_array(
        np.random.RandomState(0).randn(args.batch_size, args.steps, 1).astype(np.float32),
        need_grad=True)
    t0 = time.perf_counter()
    loss = F.mean(nnlstm.LSTM(x, args.units, return_sequences=True))
    t1 = time.perf_counter()
    loss.forward(clear_no_need_grad=True)
    t2 = time.perf_counter()
    loss.backward(clear_buffer=True)
    t3 = time.perf_counter()
    finite = bool(np.isfinite(x.g).all())
    del loss, x
    t4 = time.perf_counter()
    print('T=%d: build %.1f s (%.3f ms/step), forward %.1f s, backward %.1f s, delete %.1f s; '
          'input gradient finite: %s' % (args.steps, t1 - t0, (t1 - t0) / args.steps * 1e3,
                                         t2 - t1, t3 - t2, t4 - t3, finite))


if __name__ == '__main__':
    main()
