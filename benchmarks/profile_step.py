#!/usr/bin/env python
"""Where the time of one nnlstm LSTM training step goes, per NNabla function type.

    ./run python benchmarks/profile_step.py [--shapes '32,50,1,64;32,100,32,128']

The step is the benchmark's (benchmarks/bench.py): ``loss.forward(clear_no_need_grad=True)``,
``loss.backward(clear_buffer=True)``, ``Adam.update()``, the loss the mean squared error of
``nnlstm.LSTM(x, H)``. Each function's time is taken inside the real graph run, with NNabla's
``function_pre_hook`` / ``function_post_hook`` (the hooks are called immediately before and
after each function executes), summed per function type over ``--repeats`` steps. The time
not spent inside any function (walking the graph, allocating and clearing buffers, Python)
is the step time measured without hooks minus that sum. A chain of tiny functions gives the
per-call cost that no array size explains.

(NNabla's ``nnabla.utils.profiler.GraphProfiler`` times each function on its own, outside the
graph run and with a Python call each: it misses the graph engine's own cost, so it is not
used here.)
"""
import argparse
import collections
import statistics
import sys
import time

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S
import nnlstm


def median_time(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Hooks:
    """Per function type: calls and seconds spent between the pre and the post hook."""

    def __init__(self):
        self.calls = collections.Counter()
        self.seconds = collections.Counter()
        self.start = None

    def pre(self, f):
        self.start = time.perf_counter()

    def post(self, f):
        self.seconds[f.info.type_name] += time.perf_counter() - self.start
        self.calls[f.info.type_name] += 1


def profile(batch, steps, dim, units, repeats):
    nn.clear_parameters()
    rng = np.random.RandomState(0)
    x = nn.Variable.from_numpy_array(rng.randn(batch, steps, dim).astype(np.float32))
    target = nn.Variable.from_numpy_array((0.1 * rng.randn(batch, units)).astype(np.float32))
    loss = F.mean(F.squared_error(nnlstm.LSTM(x, units, name='lstm'), target))
    solver = S.Adam(1e-3)
    solver.set_parameters(nn.get_parameters())

    def fwd():
        loss.forward(clear_no_need_grad=True)

    def bwd():
        solver.zero_grad()
        loss.backward(clear_buffer=True)

    def step():
        fwd()
        bwd()
        solver.update()

    total = median_time(step, repeats)
    update = median_time(solver.update, repeats)

    # the hooked runs: per step, each function type's time and each phase's wall time
    per_step = []
    for _ in range(repeats + 2):
        hooks, wall = {'forward': Hooks(), 'backward': Hooks()}, {}
        t = time.perf_counter()
        loss.forward(clear_no_need_grad=True, function_pre_hook=hooks['forward'].pre,
                     function_post_hook=hooks['forward'].post)
        wall['forward'] = time.perf_counter() - t
        solver.zero_grad()
        t = time.perf_counter()
        loss.backward(clear_buffer=True, function_pre_hook=hooks['backward'].pre,
                      function_post_hook=hooks['backward'].post)
        wall['backward'] = time.perf_counter() - t
        per_step.append((hooks, wall))
    per_step = per_step[2:]  # warm-up

    def med(values):
        return statistics.median(list(values))

    types = set()
    for hooks, _ in per_step:
        for h in hooks.values():
            types |= set(h.calls)
    rows = []
    for k in types:
        row = dict(type=k)
        for p in ('forward', 'backward'):
            calls = per_step[0][0][p].calls[k]
            seconds = med(h[p].seconds[k] for h, _ in per_step)
            row.update({p + '_calls': calls, p + '_ms': seconds * 1e3,
                        p + '_us_per_call': seconds / max(calls, 1) * 1e6})
        rows.append(row)
    rows.sort(key=lambda r: -(r['forward_ms'] + r['backward_ms']))
    phase = {p: med(w[p] for _, w in per_step) for p in ('forward', 'backward')}
    phase['update'] = update
    inside = {p: med(sum(h[p].seconds.values()) for h, _ in per_step)
              for p in ('forward', 'backward')}
    affine = {p: med(h[p].seconds['Affine'] for h, _ in per_step) for p in ('forward', 'backward')}
    flops = 2 * batch * (dim + units) * 4 * units * steps  # the per-step affines, forward
    return dict(shape=(batch, steps, dim, units), total=total, phase=phase, inside=inside,
                hooked=phase['forward'] + phase['backward'] + update, rows=rows,
                affine_gflops=dict(forward=flops / max(affine['forward'], 1e-12) / 1e9,
                                   backward=2 * flops / max(affine['backward'], 1e-12) / 1e9))


def call_floor(count=2000, repeats=5):
    """Per-call cost of a function whose array work is nil: a chain of ``count`` AddScalar
    on a (1, 1) Variable, forward and backward, with the step's clear flags."""
    nn.clear_parameters()
    x = nn.Variable.from_numpy_array(np.ones((1, 1), np.float32), need_grad=True)
    y = x
    for _ in range(count):
        y = F.add_scalar(y, 0.0)
    fwd, bwd = [], []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        y.forward(clear_no_need_grad=True)
        fwd.append(time.perf_counter() - t)
        t = time.perf_counter()
        y.backward(clear_buffer=True)
        bwd.append(time.perf_counter() - t)
    fwd, bwd = statistics.median(fwd[1:]), statistics.median(bwd[1:])
    return dict(forward_us=fwd / count * 1e6, backward_us=bwd / count * 1e6)


def share(value, total):
    return '%.0f%%' % (100 * value / total)


def report(p):
    b, t, d, h = p['shape']
    step = p['hooked']
    lines = ['#### nnlstm LSTM training step, B=%d T=%d D=%d H=%d' % (b, t, d, h), '',
             'Step %.1f ms without hooks; with them: forward %.1f ms, backward %.1f ms, Adam '
             'update %.2f ms, %.1f ms in all (the shares below are of this). Affine throughput '
             '%.1f GFLOP/s forward, %.1f backward.' % (
                 p['total'] * 1e3, p['phase']['forward'] * 1e3, p['phase']['backward'] * 1e3,
                 p['phase']['update'] * 1e3, step * 1e3, p['affine_gflops']['forward'],
                 p['affine_gflops']['backward']),
             '',
             '| function | calls/step fwd | fwd ms | µs/call fwd | calls/step bwd | bwd ms '
             '| µs/call bwd | share of step |',
             '|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in p['rows']:
        lines.append('| %s | %d | %.2f | %.1f | %d | %.2f | %.1f | %s |' % (
            r['type'], r['forward_calls'], r['forward_ms'], r['forward_us_per_call'],
            r['backward_calls'], r['backward_ms'], r['backward_us_per_call'],
            share((r['forward_ms'] + r['backward_ms']) / 1e3, step)))
    rest = {k: p['phase'][k] - p['inside'][k] for k in ('forward', 'backward')}
    lines.append('| *outside functions* (graph walk, buffers, hooks) | | %.2f | | | %.2f | | %s |'
                 % (rest['forward'] * 1e3, rest['backward'] * 1e3,
                    share(rest['forward'] + rest['backward'], step)))
    lines.append('| *Adam update* | | | | | | | %s |' % share(p['phase']['update'], step))
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--shapes', default='32,50,1,64;32,100,32,128',
                    help="B,T,D,H shapes separated by ';'")
    ap.add_argument('--repeats', type=int, default=7)
    a = ap.parse_args(argv)
    for part in a.shapes.split(';'):
        print(report(profile(*[int(v) for v in part.split(',')], a.repeats)) + '\n', flush=True)
    floor = call_floor()
    print('Per-call floor (a chain of AddScalar on a (1, 1) array, in-graph): '
          '%.1f µs forward, %.1f µs backward.' % (floor['forward_us'], floor['backward_us']))


if __name__ == '__main__':
    sys.exit(main())
