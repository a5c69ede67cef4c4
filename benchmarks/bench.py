#!/usr/bin/env python
"""Speed and memory of nnlstm's layers against NNabla's fused F.lstm, the seed's naive
unroll and PyTorch, on the same shapes and the same data (float32).

    ./run python benchmarks/bench.py                    # every contender, the default shapes
    ./run python benchmarks/bench.py --quick            # tiny sizes: a smoke run
    ./run python benchmarks/bench.py --make-torch-venv  # once: a Python 3.11 venv with torch

Every measurement runs in a fresh subprocess of its own (one per contender, shape and mode),
so the peak RSS it reports (``resource.getrusage`` in the child) is that graph's alone. A
mode is ``train`` (forward with ``clear_no_need_grad=True``, backward with
``clear_buffer=True``, an Adam update: what a user's training loop does) or ``infer`` (a
graph built under ``nn.no_grad()``, forward with ``clear_buffer=True``; PyTorch under
``torch.no_grad()``). Times are medians of up to ``--repeats`` steps after ``--warmup`` steps
(a measurement stops after 3 once ``--budget`` seconds are spent); the table divides them by
F.lstm's time and by PyTorch's one-thread time of the same cell.

The contenders (``--contenders``, comma separated):

  nnlstm-lstm   nnlstm.LSTM(x, H): batch-major (B, T, D) input, last hidden state (B, H);
                the default path (on the CPU the fused kernels of nnlstm.fused)
  nnlstm-gru    nnlstm.GRU(x, H)
  nnlstm-lstm-unrolled, nnlstm-gru-unrolled   the same with fused=False (the unrolled graph)
  fused-lstm    PF.lstm (NNabla's fused F.lstm): time-major (T, B, D), h0/c0 (1, 1, B, H)
  fused-gru     PF.gru (F.gru), time-major
  seed-lstm     the seed's naive unroll (benchmarks/seed.py), the baseline
  torch-lstm    torch.nn.LSTM (time-major, its native layout), 1 thread and all threads
  torch-gru     torch.nn.GRU

Every training loss (``--loss``) is ``last``, the mean squared error of the last hidden
state (B, H) against the same target, or ``sequence``, the mean of the whole output
sequence (B, T, H), whose gradient reaches every step (the last state's fades through long
sequences into denormal numbers, which cost PyTorch and NNabla's own functions about 100
times more per operation). The PyTorch contenders run under another interpreter (NNabla 1.39 has wheels for
CPython <= 3.10, the local torch wheel is for 3.11): ``--torch-python PATH``, or by default
``benchmarks/.torch-venv`` (made by ``--make-torch-venv``) or this interpreter if it can
``import torch``; without one they are skipped, saying why. Input data goes to the children
as .npy files in a temporary folder.

A second table gives the graph build time per step and the peak RSS (over one step) of
nnlstm's LSTM and of F.lstm for long sequences (``--build-steps``, default T = 100, 1000, 5000
at ``--build-size`` B, D, H = 32, 1, 64).

Only nnlstm's public API is used, so this measures whatever nnlstm is installed.
"""
import argparse
import concurrent.futures
import contextlib
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TORCH_VENV = os.path.join(HERE, '.torch-venv')
MARK = 'BENCH-RESULT '

SHAPES = '32,50,1,64;32,100,32,128;64,200,128,256;16,1000,1,32'
QUICK_SHAPES = '4,6,3,8'
BUILD_STEPS = '100,1000,5000'
QUICK_BUILD_STEPS = '12'
BUILD_SIZE = '32,1,64'
QUICK_BUILD_SIZE = '4,1,8'

#: name -> (label, cell, runner). Table rows come in this order.
CONTENDERS = {
    'nnlstm-lstm': ('nnlstm LSTM', 'lstm', 'nnabla'),
    'nnlstm-gru': ('nnlstm GRU', 'gru', 'nnabla'),
    'nnlstm-lstm-unrolled': ('nnlstm LSTM, fused=False', 'lstm', 'nnabla'),
    'nnlstm-gru-unrolled': ('nnlstm GRU, fused=False', 'gru', 'nnabla'),
    'fused-lstm': ('F.lstm (PF.lstm)', 'lstm', 'nnabla'),
    'fused-gru': ('F.gru (PF.gru)', 'gru', 'nnabla'),
    'seed-lstm': ('seed LSTM (naive)', 'lstm', 'nnabla'),
    'torch-lstm': ('torch nn.LSTM', 'lstm', 'torch'),
    'torch-gru': ('torch nn.GRU', 'gru', 'torch'),
}
MODES = ('train', 'infer')


# ----------------------------------------------------------------------------- children

def rss_mb():
    """The current resident set size, MB (Linux)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except OSError:
        return None


def peak_rss_mb():
    import resource
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != 'darwin' else kb / 2 ** 20


def measure(step, warmup, repeats, budget):
    """``warmup`` untimed steps, then up to ``repeats`` timed ones (seconds each); at least 3
    are taken, then the run stops early once ``budget`` seconds are spent."""
    for _ in range(warmup):
        step()
    times, start = [], time.perf_counter()
    while len(times) < repeats:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        if len(times) >= min(3, repeats) and time.perf_counter() - start > budget:
            break
    return times


def nnabla_graph(name, x_np, units, training, sequence=False):
    """Build contender ``name``'s graph on the data; returns (input Variable, output): the
    last hidden state (B, H), or with ``sequence`` the output sequence (B, T, H) (T, B, H
    for F.lstm)."""
    import numpy as np
    import nnabla as nn
    import nnabla.functions as F
    import nnabla.parametric_functions as PF
    batch = x_np.shape[0]
    if name.startswith('fused'):
        x = nn.Variable.from_numpy_array(np.ascontiguousarray(x_np.transpose(1, 0, 2)))
        zeros = np.zeros((1, 1, batch, units), np.float32)
        h0 = nn.Variable.from_numpy_array(zeros)
        if name == 'fused-lstm':
            c0 = nn.Variable.from_numpy_array(zeros)
            y, hn, _ = PF.lstm(x, h0, c0, training=training, name='lstm')
        else:
            y, hn = PF.gru(x, h0, training=training, name='gru')
        return x, (y if sequence else F.reshape(hn, (batch, units)))
    x = nn.Variable.from_numpy_array(x_np)
    if name.startswith('nnlstm-'):
        import nnlstm
        layer = nnlstm.LSTM if name.startswith('nnlstm-lstm') else nnlstm.GRU
        fused = False if name.endswith('-unrolled') else None
        return x, layer(x, units, return_sequences=sequence, name='layer', fused=fused)
    if name == 'seed-lstm':
        sys.path.insert(0, HERE)
        from seed import seed_lstm
        return x, seed_lstm(x, units, return_sequences=sequence)
    raise ValueError("unknown NNabla contender %r" % name)


def child_nnabla(a):
    import numpy as np
    if a.child == 'seed-lstm':
        # the seed's code does not raise the stack limit itself: give its recursive graph
        # walks room (nnlstm raises it itself, so its contenders run as users get them)
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
        want = 1 << 30 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_STACK, (want, hard))
    import nnabla as nn
    import nnabla.functions as F
    import nnabla.solvers as S
    sync = lambda: None  # noqa: E731
    if a.context != 'cpu':
        import nnlstm
        from nnabla.ext_utils import import_extension_module
        nn.set_default_context(nnlstm.context(a.context))
        ext = import_extension_module(a.context)
        sync = lambda: ext.synchronize(device_id='0')  # noqa: E731
    x_np = np.load(os.path.join(a.data, 'x.npy'))
    y_np = np.load(os.path.join(a.data, 'y.npy'))
    units = y_np.shape[1]
    base = rss_mb()
    training = a.mode == 'train'
    t = time.perf_counter()
    with contextlib.nullcontext() if training else nn.no_grad():
        _, h = nnabla_graph(a.child, x_np, units, training, a.loss == 'sequence')
    build = time.perf_counter() - t
    if training:
        if a.loss == 'sequence':
            loss = F.mean(h)
        else:
            loss = F.mean(F.squared_error(h, nn.Variable.from_numpy_array(y_np)))
        solver = S.Adam(1e-3)
        solver.set_parameters(nn.get_parameters())

        def step():
            solver.zero_grad()
            loss.forward(clear_no_need_grad=True)
            loss.backward(clear_buffer=True)
            solver.update()
            sync()
    else:
        def step():
            h.forward(clear_buffer=True)
            sync()
    times = measure(step, a.warmup, a.repeats, a.budget)
    peak = peak_rss_mb()
    import nnlstm
    return dict(build_s=build, times=times, base_rss_mb=base, peak_rss_mb=peak,
                versions=dict(nnabla=nn.__version__, nnlstm=nnlstm.__version__,
                              nnlstm_file=os.path.dirname(nnlstm.__file__)),
                parameters=int(sum(p.size for p in nn.get_parameters().values())))


def child_torch(a):
    import numpy as np
    import torch
    threads = os.cpu_count() if a.threads == 'all' else int(a.threads)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = 'cpu' if a.context == 'cpu' else 'cuda'
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    x = torch.from_numpy(np.ascontiguousarray(np.load(os.path.join(a.data, 'x.npy'))
                                              .transpose(1, 0, 2))).to(device)  # (T, B, D)
    y = torch.from_numpy(np.load(os.path.join(a.data, 'y.npy'))).to(device)
    dim, units = x.shape[2], y.shape[1]
    base = rss_mb()
    t = time.perf_counter()
    model = (torch.nn.LSTM if a.child == 'torch-lstm' else torch.nn.GRU)(dim, units).to(device)
    build = time.perf_counter() - t
    if a.mode == 'train':
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            out, state = model(x)
            if a.loss == 'sequence':
                loss = out.mean()
            else:
                h = state[0] if isinstance(state, tuple) else state  # (1, B, H)
                loss = ((h[-1] - y) ** 2).mean()
            loss.backward()
            opt.step()
            sync()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
            sync()
    times = measure(step, a.warmup, a.repeats, a.budget)
    return dict(build_s=build, times=times, base_rss_mb=base, peak_rss_mb=peak_rss_mb(),
                threads=threads, versions=dict(torch=torch.__version__),
                parameters=int(sum(p.numel() for p in model.parameters())))


def child_main(a):
    result = (child_torch if CONTENDERS[a.child][2] == 'torch' else child_nnabla)(a)
    result.update(python=platform.python_version())
    sys.stdout.write(MARK + json.dumps(result) + '\n')
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown: deleting a graph of thousands of steps takes seconds
    # and is not what is measured here.
    os._exit(0)


# ----------------------------------------------------------------------------- parent

def parse_shapes(text, fields):
    shapes = []
    for part in text.replace(' ', '').split(';'):
        if not part:
            continue
        values = tuple(int(v) for v in part.split(','))
        if len(values) != len(fields) or min(values) < 1:
            raise argparse.ArgumentTypeError("a shape is %s, positive ints; received %r"
                                             % (','.join(fields), part))
        shapes.append(values)
    return shapes


def find_torch_python(arg):
    """(python, None) for an interpreter that imports torch and numpy, else (None, why)."""
    if arg == 'none':
        return None, '--torch-python none'
    candidates = [arg] if arg else [os.path.join(TORCH_VENV, 'bin', 'python'), sys.executable]
    for py in candidates:
        if py and shutil.which(py) and subprocess.run(
                [py, '-c', 'import torch, numpy'], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0:
            return shutil.which(py), None
    if arg:
        raise SystemExit("--torch-python %s cannot `import torch, numpy`" % arg)
    return None, ("no Python that can `import torch` (looked at %s); make one with "
                  "`python benchmarks/bench.py --make-torch-venv` or pass --torch-python"
                  % ' and '.join(candidates))


def make_torch_venv(a):
    """Make benchmarks/.torch-venv with torch and numpy, using the first CPython 3.11 (the
    local torch wheel's), else 3.12 or 3.10, that exists."""
    root = os.environ.get('PYENV_ROOT', os.path.expanduser('~/.pyenv'))
    candidates = [a.venv_python] if a.venv_python else []
    for v in ('3.11', '3.12', '3.10'):
        candidates += sorted(glob.glob(os.path.join(root, 'versions', v + '*', 'bin', 'python')))
        candidates.append('python' + v)
    py = next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)
    if py is None:
        raise SystemExit("no CPython 3.10-3.12 found for the torch venv (looked at %s)"
                         % ', '.join(candidates))
    vpy = os.path.join(TORCH_VENV, 'bin', 'python')
    if not os.path.exists(vpy):
        print("making %s with %s" % (TORCH_VENV, py), flush=True)
        subprocess.run([py, '-m', 'venv', TORCH_VENV], check=True)
    print("installing %s numpy into %s" % (a.torch_spec, TORCH_VENV), flush=True)
    subprocess.run([vpy, '-m', 'pip', 'install', '-q', '--disable-pip-version-check',
                    a.torch_spec, 'numpy'], check=True)
    out = subprocess.run([vpy, '-c', 'import torch; print(torch.__version__)'],
                         check=True, capture_output=True, text=True).stdout.strip()
    print("torch %s ready: %s" % (out, vpy))


def run_child(python, a, name, mode, data, threads=None, repeats=None, warmup=None):
    cmd = [python, os.path.abspath(__file__), '--child', name, '--mode', mode, '--data', data,
           '--repeats', str(a.repeats if repeats is None else repeats),
           '--warmup', str(a.warmup if warmup is None else warmup),
           '--budget', str(a.budget), '--context', a.context, '--loss', a.loss]
    if threads:
        cmd += ['--threads', threads]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return dict(error="timed out after %d s" % a.timeout)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = (p.stderr.strip().splitlines() or ['(no output)'])[-1]
    return dict(error="exit code %d: %s" % (p.returncode, tail))


def summarize(r):
    if 'times' in r:
        import statistics
        ms = sorted(t * 1e3 for t in r['times'])
        r['median_ms'] = statistics.median(ms)
        r['min_ms'] = ms[0]
        r['n'] = len(ms)
    return r


def write_data(folder, batch, steps, dim, units):
    import numpy as np
    rng = np.random.RandomState(0)
    np.save(os.path.join(folder, 'x.npy'), rng.randn(batch, steps, dim).astype(np.float32))
    np.save(os.path.join(folder, 'y.npy'), (0.1 * rng.randn(batch, units)).astype(np.float32))


def fmt(value, digits=1):
    if value is None:
        return '–'
    if value >= 100:
        return '%.0f' % value
    return '%.*f' % (digits if value >= 1 else max(digits, 2), value)


def ratio(value, reference):
    if value is None or not reference:
        return '–'
    return '%.2f' % (value / reference)


def row_label(r):
    label = CONTENDERS[r['contender']][0]
    if 'threads' in r:
        label += ' (%d thread%s)' % (r['threads'], 's' if r['threads'] > 1 else '')
    return label


def rss(r):
    """Peak RSS, MB, and in parentheses what the process grew by after its imports."""
    if r.get('peak_rss_mb') is None:
        return '–'
    grown = '' if r.get('base_rss_mb') is None else ' (+%.0f)' % (r['peak_rss_mb']
                                                                  - r['base_rss_mb'])
    return '%.0f%s' % (r['peak_rss_mb'], grown)


def main_table(rows, shape):
    """Markdown table of one shape's results."""
    at = [r for r in rows if r['shape'] == list(shape)]

    def get(contender, mode, threads=None):
        for r in at:
            if (r['contender'], r['mode']) == (contender, mode) and r.get('threads_arg') == threads:
                return r.get('median_ms')
        return None

    out = ['| contender | train step ms | ÷ F.lstm | ÷ torch 1 thread | inference ms | ÷ F.lstm '
           '| ÷ torch 1 thread | build ms/step | peak RSS MB (over import) train / infer | n |',
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    keys = []
    for r in at:
        key = (r['contender'], r.get('threads_arg'))
        if key not in keys:
            keys.append(key)
    for contender, threads in keys:
        cell = CONTENDERS[contender][1]
        torch1 = 'torch-' + cell
        by_mode = {r['mode']: r for r in at if (r['contender'], r.get('threads_arg'))
                   == (contender, threads)}
        first = next(iter(by_mode.values()))
        cells = [row_label(first)]
        for mode in MODES:
            r = by_mode.get(mode, {})
            t = r.get('median_ms')
            cells += [fmt(t) if 'error' not in r else 'error', ratio(t, get('fused-lstm', mode)),
                      ratio(t, get(torch1, mode, '1'))]
        train = by_mode.get('train', {})
        steps = shape[1]
        build = train.get('build_s')
        cells.append(fmt(build * 1e3 / steps, 2) if build is not None and
                     CONTENDERS[contender][2] == 'nnabla' else '–')
        cells.append(' / '.join(rss(by_mode.get(m, {})) for m in MODES))
        cells.append('/'.join(str(by_mode.get(m, {}).get('n', '–')) for m in MODES))
        out.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(out)


def build_table(rows):
    out = ['| graph | T | build ms/step | build s | first step ms | peak RSS MB '
           '| RSS over import MB |',
           '|---|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        label = '%s %s' % (CONTENDERS[r['contender']][0],
                           'training' if r['mode'] == 'train' else 'inference')
        if 'error' in r:
            out.append('| %s | %d | error | | | | |' % (label, r['shape'][1]))
            continue
        steps = r['shape'][1]
        grown = (r['peak_rss_mb'] - r['base_rss_mb']) if r.get('base_rss_mb') else None
        out.append('| %s | %d | %s | %s | %s | %s | %s |' % (
            label, steps, fmt(r['build_s'] * 1e3 / steps, 2), fmt(r['build_s'], 2),
            fmt(r['median_ms']), fmt(r['peak_rss_mb'], 0), fmt(grown, 0)))
    return '\n'.join(out)


def environment(torch_python):
    env = dict(argv=' '.join(sys.argv[1:]), date=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
               nproc=os.cpu_count(), machine=platform.machine(),
               python=platform.python_version(), torch_python=torch_python)
    try:
        env['loadavg'] = open('/proc/loadavg').read().split()[:3]
    except OSError:
        pass
    try:
        env['cpu'] = next(line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                          if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    git = lambda *args: subprocess.run(['git', '-C', ROOT] + list(args),  # noqa: E731
                                       capture_output=True, text=True).stdout.strip()
    env['nnlstm_commit'] = git('rev-parse', '--short', 'HEAD')
    env['nnlstm_dirty'] = bool(git('status', '--porcelain', '--', 'nnlstm'))
    return env


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--shapes', default=None,
                   help="B,T,D,H shapes separated by ';' (default %s)" % SHAPES)
    p.add_argument('--contenders', default=','.join(CONTENDERS),
                   help='comma-separated, from: %s' % ', '.join(CONTENDERS))
    p.add_argument('--repeats', type=int, default=10,
                   help='timed steps per measurement, at most (default 10)')
    p.add_argument('--warmup', type=int, default=1, help='untimed steps before them (1)')
    p.add_argument('--budget', type=float, default=3.0,
                   help='seconds of timed steps after which a measurement stops, once it has '
                        '3 steps (default 3)')
    p.add_argument('--timeout', type=int, default=900, help='seconds per subprocess')
    p.add_argument('--jobs', '-j', type=int, default=1,
                   help='measurements run at once: only for smoke runs, as they disturb '
                        'each other (default 1)')
    p.add_argument('--context', '-c', default='cpu', choices=('cpu', 'cudnn'))
    p.add_argument('--loss', default='last', choices=('last', 'sequence'),
                   help="the training loss: MSE of the last hidden state ('last', default) "
                        "or the mean of the output sequence ('sequence')")
    p.add_argument('--torch-python', default=None,
                   help="a Python that imports torch ('none': skip PyTorch; default: "
                        "benchmarks/.torch-venv, then this Python)")
    p.add_argument('--torch-threads', default='1,all',
                   help="PyTorch thread counts, comma separated ('all' = nproc)")
    p.add_argument('--build-steps', default=None,
                   help='sequence lengths T of the build-time table (default %s; '
                        "'' for none)" % BUILD_STEPS)
    p.add_argument('--build-size', default=None,
                   help='B,D,H of the build-time table (default %s)' % BUILD_SIZE)
    p.add_argument('--json', default=None, help='also write every result to this file')
    p.add_argument('--quick', action='store_true',
                   help='tiny sizes and few repeats: a smoke run of every code path')
    p.add_argument('--make-torch-venv', action='store_true',
                   help='make benchmarks/.torch-venv with torch, then exit')
    p.add_argument('--torch-spec', default='torch==2.13.0', help='for --make-torch-venv')
    p.add_argument('--venv-python', default=None,
                   help='the interpreter for --make-torch-venv (default: a CPython 3.11)')
    # internal: one measurement in a fresh process
    p.add_argument('--child', default=None, help=argparse.SUPPRESS)
    p.add_argument('--mode', default='train', choices=MODES, help=argparse.SUPPRESS)
    p.add_argument('--data', default=None, help=argparse.SUPPRESS)
    p.add_argument('--threads', default='1', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.shapes = a.shapes or QUICK_SHAPES
        a.build_steps = QUICK_BUILD_STEPS if a.build_steps is None else a.build_steps
        a.build_size = a.build_size or QUICK_BUILD_SIZE
        a.repeats, a.warmup, a.timeout = min(a.repeats, 2), 1, min(a.timeout, 180)
        if '--torch-threads' not in (argv or sys.argv):
            a.torch_threads = '1'
    a.shapes = parse_shapes(a.shapes or SHAPES, 'BTDH')
    steps = BUILD_STEPS if a.build_steps is None else a.build_steps
    a.build_steps = [int(v) for v in steps.split(',') if v.strip()]
    a.build_size = parse_shapes(a.build_size or BUILD_SIZE, 'BDH')[0]
    a.contenders = [c.strip() for c in a.contenders.split(',') if c.strip()]
    unknown = [c for c in a.contenders if c not in CONTENDERS]
    if unknown:
        p.error("unknown contender(s) %s; choose from %s" % (unknown, ', '.join(CONTENDERS)))
    if a.repeats < 1 or a.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    return a


def main(argv=None):
    a = get_args(argv)
    if a.child:
        return child_main(a)
    if a.make_torch_venv:
        return make_torch_venv(a)
    if a.context != 'cpu':
        try:
            import nnlstm
            nnlstm.context(a.context)
        except ImportError as e:
            print("skip: no %s context here: %s" % (a.context, e))
            return 0
    started = time.time()
    torch_python, why = (None, None)
    if any(CONTENDERS[c][2] == 'torch' for c in a.contenders):
        torch_python, why = find_torch_python(a.torch_python)
        if torch_python and a.context != 'cpu' and subprocess.run(
                [torch_python, '-c', 'import torch, sys; sys.exit(not torch.cuda.is_available())']
        ).returncode != 0:
            torch_python, why = None, 'torch has no CUDA device here'
        if torch_python is None:
            print("PyTorch skipped: %s" % why, flush=True)
    env = environment(torch_python)
    print("# nnlstm benchmark: %s, %s cores (%s), load %s, Python %s, nnlstm %s%s" % (
        env['date'], env['nproc'], env.get('cpu', '?'), ' '.join(env.get('loadavg', [])),
        env['python'], env['nnlstm_commit'], ' (nnlstm/ modified)' if env['nnlstm_dirty'] else ''),
        flush=True)
    threads = [t.strip() for t in a.torch_threads.split(',') if t.strip()]
    tmp = tempfile.mkdtemp(prefix='nnlstm-bench-')
    tasks = []  # (table, python, contender, mode, data folder, shape, threads, repeats, warmup)
    for k, shape in enumerate(a.shapes):
        data = os.path.join(tmp, 'shape%d' % k)
        os.mkdir(data)
        write_data(data, *shape)
        for name in a.contenders:
            runner = CONTENDERS[name][2]
            if runner == 'torch' and torch_python is None:
                continue
            py = torch_python if runner == 'torch' else sys.executable
            for t in (threads if runner == 'torch' else [None]):
                for mode in MODES:
                    tasks.append(('main', py, name, mode, data, shape, t, a.repeats, a.warmup))
    batch, dim, units = a.build_size
    for steps in a.build_steps:
        data = os.path.join(tmp, 'build%d' % steps)
        os.mkdir(data)
        write_data(data, batch, steps, dim, units)
        for name in ('nnlstm-lstm', 'fused-lstm'):
            for mode in MODES:
                # one step (the first, untimed by warm-up) is enough for the peak memory
                tasks.append(('build', sys.executable, name, mode, data,
                              (batch, steps, dim, units), None, 1, 0))

    def run(task):
        table, py, name, mode, data, shape, t, repeats, warmup = task
        r = summarize(run_child(py, a, name, mode, data, t, repeats, warmup))
        r.update(contender=name, mode=mode, shape=list(shape), threads_arg=t)
        print("  %-5s B=%d T=%d D=%d H=%d  %-30s %-5s %s" % (
            (table,) + tuple(shape) + (row_label(r), mode, fmt(r.get('median_ms'))
                                       if 'error' not in r else r['error'])), flush=True)
        return r

    try:
        if a.jobs > 1:
            print("(%d measurements at a time: the times are not comparable)" % a.jobs)
            with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
                results = list(pool.map(run, tasks))
        else:
            results = [run(task) for task in tasks]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [r for task, r in zip(tasks, results) if task[0] == 'main']
    build_rows = [r for task, r in zip(tasks, results) if task[0] == 'build']
    failed = [r for r in results if 'error' in r]
    env['seconds'] = round(time.time() - started, 1)

    try:
        env['loadavg_end'] = open('/proc/loadavg').read().split()[:3]
    except OSError:
        pass
    versions = {}
    for r in results:
        versions.update(r.get('versions', {}))
    env['versions'] = versions
    text = ["", "# Results", "",
            "`%s`: %s cores (%s), load average %s at the start, %s at the end; %s s in all. "
            "NNabla %s, nnlstm %s at %s%s; PyTorch: %s." % (
                ' '.join(['benchmarks/bench.py'] + (argv or sys.argv[1:])), env['nproc'],
                env.get('cpu', '?'), ' '.join(env.get('loadavg', [])),
                ' '.join(env.get('loadavg_end', [])), env['seconds'],
                versions.get('nnabla', '?'), versions.get('nnlstm', '?'), env['nnlstm_commit'],
                ' (nnlstm/ modified)' if env['nnlstm_dirty'] else '',
                '%s under %s' % (versions.get('torch', '?'), torch_python) if torch_python
                else 'skipped (%s)' % why),
            "",
            "Medians in ms; ÷ F.lstm = time / F.lstm's time (same mode and shape); "
            "÷ torch 1 thread = time / PyTorch's time with the same cell on 1 thread; "
            "n = timed steps train/infer; peak RSS per process (its growth after the imports)."]
    for shape in a.shapes:
        text += ["", "### B=%d T=%d D=%d H=%d" % shape, "", main_table(rows, shape)]
    if build_rows:
        text += ["", "### Graph build time and peak memory, B=%d D=%d H=%d" % a.build_size, "",
                 build_table(build_rows)]
    for r in failed:
        text.append("\nFAILED: %s %s %s: %s" % (r['contender'], r['mode'], r['shape'], r['error']))
    print('\n'.join(text), flush=True)
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(dict(environment=env, results=rows, build=build_rows), f, indent=1)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
