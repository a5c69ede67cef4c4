#!/usr/bin/env python
"""Inference speed of nnlstm's ONNX files in ONNX Runtime, one thread, against PyTorch.

    ./run python benchmarks/onnx_speed.py            # bench.py's shapes, LSTM and GRU
    ./run python benchmarks/onnx_speed.py --quick    # tiny sizes: a smoke run

For each shape B, T, D, H (bench.py's, ``--shapes``) and cell, the layer ``nnlstm.LSTM(x, H)``
(``GRU``) with its last hidden state (B, H) as output is exported twice at that (B, T): with
the recurrent layer as one native ONNX node (``onnx_rnn='native'``, the default) and unrolled
(``onnx_rnn='unrolled'``). Each file runs in ONNX Runtime's CPU provider with
``intra_op_num_threads=1`` and ``inter_op_num_threads=1``; PyTorch's ``nn.LSTM`` / ``nn.GRU``
runs the same data (time-major, its layout) under ``torch.no_grad()`` with
``torch.set_num_threads(1)``, in the interpreter bench.py finds (``benchmarks/.torch-venv``
or ``--torch-python``; skipped, saying why, without one). Times are medians of up to
``--repeats`` runs after ``--warmup``, stopping after 3 once ``--budget`` seconds are spent;
the table gives milliseconds per batch and the ratios to PyTorch.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import QUICK_SHAPES, SHAPES, find_torch_python, parse_shapes  # noqa: E402

CELLS = ('lstm', 'gru')

TORCH_CHILD = r'''
import json, statistics, sys, time
import numpy as np, torch
torch.set_num_threads(1)
torch.manual_seed(0)
cell, path, warmup, repeats, budget = sys.argv[1:6]
x = torch.from_numpy(np.ascontiguousarray(np.load(path).transpose(1, 0, 2)))  # (T, B, D)
units = int(sys.argv[6])
model = (torch.nn.LSTM if cell == 'lstm' else torch.nn.GRU)(x.shape[2], units).eval()
def step():
    with torch.no_grad():
        model(x)
times, spent = [], 0.0
for k in range(int(warmup) + int(repeats)):
    t = time.perf_counter(); step(); dt = time.perf_counter() - t
    if k >= int(warmup):
        times.append(dt); spent += dt
        if spent > float(budget) and len(times) >= 3:
            break
print(json.dumps(dict(median=statistics.median(times), runs=len(times),
                      torch=torch.__version__)))
'''


def measure(step, warmup, repeats, budget):
    """Median seconds of ``step()`` over up to ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        step()
    times, spent = [], 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        spent += times[-1]
        if spent > budget and len(times) >= 3:
            break
    return statistics.median(times)


def export(folder, cell, shape, onnx_rnn):
    """The .onnx of ``nnlstm.<cell>(x, H)`` at (B, T), random parameters (seed 0), and the
    export's seconds."""
    import nnabla as nn
    import nnlstm
    batch, steps, dim, units = shape
    nn.clear_parameters()
    with nn.no_grad():
        x = nn.Variable((batch, steps, dim))
        layer = nnlstm.LSTM if cell == 'lstm' else nnlstm.GRU
        y = layer(x, units, name=cell)
    rng = np.random.RandomState(0)
    for v in nn.get_parameters(grad_only=False).values():
        v.d = rng.uniform(-0.1, 0.1, v.shape)
    path = os.path.join(folder, '%s-%s.nnp' % (cell, onnx_rnn))
    t = time.perf_counter()
    with warnings.catch_warnings():  # a native export must not fall back to unrolled
        warnings.simplefilter('error', nnlstm.export.UnrolledLayerWarning)
        files = nnlstm.export_network(path, {'x': x}, {'y': y}, onnx=True, onnx_rnn=onnx_rnn)
    return files['onnx'], time.perf_counter() - t


def ort_time(path, data, a):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return measure(lambda: session.run(['y'], {'x': data}), a.warmup, a.repeats, a.budget)


def torch_time(python, cell, data_path, units, a):
    out = subprocess.run([python, '-c', TORCH_CHILD, cell, data_path, str(a.warmup),
                          str(a.repeats), str(a.budget), str(units)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--shapes', default=None, help="'B,T,D,H;...' (default: bench.py's)")
    p.add_argument('--cells', default=','.join(CELLS))
    p.add_argument('--repeats', type=int, default=30)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--budget', type=float, default=5.0)
    p.add_argument('--torch-python', default=None)
    p.add_argument('--quick', action='store_true')
    p.add_argument('--json', default=None, help='also write the results here')
    a = p.parse_args()
    if a.quick:
        a.repeats, a.warmup, a.budget = 3, 1, 1.0
    shapes = parse_shapes(a.shapes or (QUICK_SHAPES if a.quick else SHAPES), 'BTDH')
    python, why = find_torch_python(a.torch_python)
    if python is None:
        print('PyTorch skipped: %s' % why)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for shape in shapes:
            data = np.random.RandomState(1).randn(*shape[:3]).astype(np.float32)
            data_path = os.path.join(folder, 'x.npy')
            np.save(data_path, data)
            for cell in a.cells.split(','):
                row = dict(cell=cell, B=shape[0], T=shape[1], D=shape[2], H=shape[3])
                for mode in ('native', 'unrolled'):
                    path, seconds = export(folder, cell, shape, mode)
                    row[mode + '_export_s'] = seconds
                    row[mode + '_s'] = ort_time(path, data, a)
                if python:
                    torch = torch_time(python, cell, data_path, shape[3], a)
                    row['torch_s'], row['torch'] = torch['median'], torch['torch']
                results.append(row)
                print(line(row), flush=True)
    import onnxruntime
    print('onnxruntime %s, 1 thread; times are ms per batch (median)'
          % onnxruntime.__version__)
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(dict(results=results, onnxruntime=onnxruntime.__version__), f, indent=1)


def line(row):
    text = ('%-4s B=%-3d T=%-5d D=%-4d H=%-4d  ORT native %8.2f ms  ORT unrolled %8.2f ms'
            % (row['cell'], row['B'], row['T'], row['D'], row['H'], 1e3 * row['native_s'],
               1e3 * row['unrolled_s']))
    if 'torch_s' in row:
        text += ('  torch %8.2f ms  native/torch %.2f  unrolled/torch %.2f'
                 % (1e3 * row['torch_s'], row['native_s'] / row['torch_s'],
                    row['unrolled_s'] / row['torch_s']))
    return text


if __name__ == '__main__':
    main()
