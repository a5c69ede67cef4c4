#!/usr/bin/env python
"""Export time against T: an LSTM (D = 1, H = 32) and an affine head, to .nnp, .onnx, .nnb.

    ./run python benchmarks/export_time.py [--steps 100,250,500,1000,2000] [--nnb]
        [--unpatched-up-to 500]

Needs the onnx extra (NNLSTM_EXTRAS=test,examples,onnx). Each T runs in a fresh process,
which builds the graph under nn.no_grad() (`build`), then times three calls of
nnlstm.export_network on it: `.nnp` alone, `.nnp + .onnx` and, with --nnb, `.nnp + .nnb`.
Up to T = --unpatched-up-to it also times `.nnp + .onnx` through NNabla's converter as
published (nnlstm.export.linear's replacements off, the .nnp's text parsed by the
importer): the export as it was before. Prints a Markdown table.
"""
import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

BATCH, INPUTS, UNITS = 1, 1, 32


def measure(steps, nnb, unpatched):
    """Build the graph at ``steps`` and time the exports, in this process."""
    import nnabla as nn
    import nnabla.parametric_functions as PF
    import nnlstm
    from nnlstm.export import converter

    t = time.perf_counter()
    with nn.no_grad():
        x = nn.Variable((BATCH, steps, INPUTS))
        y = PF.affine(nnlstm.LSTM(x, UNITS, name='lstm'), 1, name='fc')
    result = {'T': steps, 'build': time.perf_counter() - t}
    runs = {'nnp': {}, 'nnp+onnx': {'onnx': True}}
    if nnb:
        runs['nnp+nnb'] = {'nnb': True}
    with tempfile.TemporaryDirectory() as folder:
        for name, kwargs in runs.items():
            t = time.perf_counter()
            nnlstm.export_network(os.path.join(folder, 'm.nnp'), {'x': x}, {'y': y}, **kwargs)
            result[name] = time.perf_counter() - t
        result['functions'] = len(converter.check_graph({'x': x}, {'y': y})[1].functions)
        if unpatched:
            converter.linear_converter = contextlib.nullcontext
            converter.import_nnp = lambda c, path, proto: c.NnpImporter(
                path, expand_network=True, executor_index=None).execute()
            t = time.perf_counter()
            nnlstm.export_network(os.path.join(folder, 'm.nnp'), {'x': x}, {'y': y},
                                  onnx=True)
            result['unpatched nnp+onnx'] = time.perf_counter() - t
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', default='100,250,500,1000,2000',
                   help='comma-separated values of T')
    p.add_argument('--nnb', action='store_true', help='also time .nnp + .nnb')
    p.add_argument('--unpatched-up-to', type=int, default=500,
                   help="time NNabla's converter as published up to this T (0: never)")
    p.add_argument('--one', type=int, help=argparse.SUPPRESS)  # a child process's T
    args = p.parse_args()
    if args.one is not None:
        result = measure(args.one, args.nnb, args.one <= args.unpatched_up_to)
        print(json.dumps(result))
        return

    import nnabla
    print('nnlstm export time, LSTM (D = %d, H = %d) + affine head, B = %d; NNabla %s, '
          'Python %s, %d cores, load average %s'
          % (INPUTS, UNITS, BATCH, nnabla.__version__, platform.python_version(),
             os.cpu_count(), ' '.join('%.2f' % a for a in os.getloadavg())))
    columns = ['T', 'functions', 'build', 'nnp', 'nnp+onnx', 'ms per step (nnp+onnx)']
    if args.nnb:
        columns.append('nnp+nnb')
    columns.append('unpatched nnp+onnx')
    print('\n| %s |' % ' | '.join(c if c in ('T', 'functions') or c.startswith('ms')
                                   else c + ' (s)' for c in columns))
    print('|%s|' % '|'.join('---' for _ in columns))
    for steps in [int(s) for s in args.steps.split(',')]:
        command = [sys.executable, __file__, '--one', str(steps),
                   '--unpatched-up-to', str(args.unpatched_up_to)] + ['--nnb'] * args.nnb
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout.decode()
        r = json.loads(out.strip().splitlines()[-1])
        r['ms per step (nnp+onnx)'] = r['nnp+onnx'] / steps * 1e3
        cells = []
        for c in columns:
            value = r.get(c)
            cells.append('-' if value is None else str(value) if isinstance(value, int)
                         else '%.2f' % value)
        print('| %s |' % ' | '.join(cells), flush=True)
    print('\nload average at the end: %s' % ' '.join('%.2f' % a for a in os.getloadavg()))


if __name__ == '__main__':
    main()
