"""What nnlstm does to the whole process: the build lock for threads, the stack limit and
the nnabla.nnabla alias, each tested where it acts (long graphs in a subprocess with the
default 8 MiB soft limit set), and each switch that turns one off."""
import subprocess
import sys
import threading
import warnings

import numpy as np
import nnabla as nn
import pytest

import nnlstm
from nnlstm import process


def run(code, env=None, timeout=300):
    import os
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=timeout, env=dict(os.environ, **(env or {})))
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def test_four_threads_building_layers_at_once_keep_their_own_scopes():
    """NNabla's parameter scope is process-wide: without nnlstm's build lock, threads
    interleave their scope changes (names like t2/WaWiWfWo/affine/t0/WaWiWfWo/affine/W)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    barrier, errors = threading.Barrier(4), []

    def build(i):
        try:
            barrier.wait()
            x = nn.Variable((2, 3, 3))
            for j in range(4):
                nnlstm.LSTM(x, 4, name='t%d_lstm%d' % (i, j))
                nnlstm.GRU(x, 4, name='t%d_gru%d' % (i, j), reset_after=False)
                nnlstm.Stacked(nnlstm.SimpleRNN, x, 4, name='t%d_st%d' % (i, j))
                nnlstm.Bidirectional(nnlstm.LSTM, x, 4, name='t%d_bi%d' % (i, j))
        except Exception as e:  # reported below, with the thread's number
            errors.append((i, e))

    threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    got = {k: v.shape for k, v in nn.get_parameters(grad_only=False).items()}
    want = {}
    for i in range(4):
        for j in range(4):
            for suffix in ('W', 'b'):
                want['t%d_lstm%d/WaWiWfWo/affine/%s' % (i, j, suffix)] = (
                    (7, 16) if suffix == 'W' else (16,))
                for d in ('forward', 'backward'):
                    want['t%d_bi%d/%s/WaWiWfWo/affine/%s' % (i, j, d, suffix)] = (
                        (7, 16) if suffix == 'W' else (16,))
                for k in range(2):
                    want['t%d_st%d/layer%d/Wh/affine/%s' % (i, j, k, suffix)] = (
                        ((3 if k == 0 else 4) + 4, 4) if suffix == 'W' else (4,))
            want.update({'t%d_gru%d/WzWrWn/affine/W' % (i, j): (3, 12),
                         't%d_gru%d/WzWrWn/affine/b' % (i, j): (12,),
                         't%d_gru%d/UzUr/affine/W' % (i, j): (4, 8),
                         't%d_gru%d/Un/affine/W' % (i, j): (4, 4)})
    assert got == want


def in_thread(fn, stack_size=0):
    """Run ``fn`` in a new thread with ``stack_size`` bytes (0: the default); return what it
    returned."""
    result, old = [], threading.stack_size(stack_size)
    try:
        t = threading.Thread(target=lambda: result.append(fn()))
        t.start()
        t.join()
    finally:
        threading.stack_size(old)
    return result[0]


def test_a_short_graph_in_a_thread_does_not_warn():
    def build():
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            y = nnlstm.LSTM(nn.Variable.from_numpy_array(np.ones((2, 5, 3))), 4)
            y.forward()
            return y.d.shape
    assert in_thread(build) == (2, 4)


def test_a_thread_whose_own_stack_is_too_small_is_warned():
    """The thread's real stack, as pthread reports it (glibc may hand a thread a cached
    stack larger than asked for)."""
    def ensure(steps=None):  # None: as many as this thread's stack holds
        if steps is None:
            steps = (process.thread_stack_size() - process.STACK_BASE) // 6144
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            process.ensure_stack(steps)
        return process.thread_stack_size(), [str(w.message) for w in caught]

    own, caught = in_thread(lambda: ensure(1000), 1 << 20)
    assert 1 << 20 <= own < process.stack_needed(1000) == 7192576
    assert caught == ["a graph of 1000 steps needs about 7192576 bytes of stack, and this "
                      "thread has %d: run it in a thread created after "
                      "threading.stack_size(7192576)" % own]
    own, caught = in_thread(ensure, 1 << 20)
    assert caught == []


LONG = '''
import resource, threading, numpy as np, nnabla as nn, nnabla.functions as F, nnlstm
resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1]))
STEPS = %d
def build():
    global x, loss
    x = nn.Variable.from_numpy_array(np.random.RandomState(0).randn(2, STEPS, 1)
                                     .astype(np.float32), need_grad=True)
    loss = F.mean(nnlstm.LSTM(x, 4, return_sequences=True, fused=False))  # unrolled: deep
    loss.forward(clear_no_need_grad=True)
    loss.backward(clear_buffer=True)
if %r:
    threading.stack_size(nnlstm.process.stack_needed(STEPS) + (16 << 20))
    t = threading.Thread(target=build)
    t.start(); t.join()
else:
    build()
print(resource.getrlimit(resource.RLIMIT_STACK)[0] >> 20, np.isfinite(x.g).all(),
      float(np.abs(x.g[:, 0]).sum()) > 0)
del x, loss  # the main thread frees the whole graph, recursively
print('freed')
'''


@pytest.mark.parametrize('steps,thread', [(10000, False), (9000, True)])
def test_a_long_graph_runs_and_is_freed_with_an_8_mib_soft_limit(steps, thread):
    """With the default 8 MiB soft limit set, a graph past T = 6000 segfaults unless
    nnlstm raises the limit: from the main thread, or from a worker whose graph the main
    thread frees (setrlimit is per process)."""
    mib, finite, nonzero, freed = run(LONG % (steps, thread))
    assert int(mib) >= process.stack_needed(steps) >> 20 > 8
    assert (finite, nonzero, freed) == ('True', 'True', 'freed')


STACK_OFF = '''
import resource, warnings, nnlstm
resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1]))
%s
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter('always')
    nnlstm.process.ensure_stack(10000)
print(resource.getrlimit(resource.RLIMIT_STACK)[0] >> 20, len(w))
'''


@pytest.mark.parametrize('env,code', [({'NNLSTM_NO_STACK_LIMIT': '1'}, ''),
                                      ({}, 'nnlstm.process.raise_stack_limit = False')])
def test_the_stack_limit_can_be_left_alone(env, code):
    assert run(STACK_OFF % code, env) == ['8', '1']  # unchanged, and a warning says so
    assert run(STACK_OFF % '') == [str(process.stack_needed(10000) >> 20), '0']


ALIAS = '''
import sys, nnlstm
names = list(nnlstm.process.ALIASES)
print(all(n in sys.modules for n in names))
nnlstm.process.set_nnabla_alias(True)
print(all(n in sys.modules for n in names))
nnlstm.process.set_nnabla_alias(False)
print(any(n in sys.modules for n in names))
'''


def test_the_nnabla_alias_can_be_turned_off():
    assert run(ALIAS, {'NNLSTM_NO_NNABLA_ALIAS': '1'}) == ['False', 'True', 'False']
    assert run(ALIAS) == ['True', 'True', 'False']


MALLOC = '''
import resource, numpy as np, nnabla as nn, nnlstm
x = nn.Variable.from_numpy_array(np.random.RandomState(0).randn(32, 50, 1).astype(np.float32))
with nn.no_grad():
    y = nnlstm.LSTM(x, 64, return_sequences=True)
y.forward(clear_buffer=True)
y.forward(clear_buffer=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    y.forward(clear_buffer=True)
print(nnlstm.process.tune_malloc(), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 20)
'''


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc only')
def test_malloc_tuning_stops_each_fused_pass_from_faulting_its_memory_in_again():
    """Measured 766 page faults per forward pass here with glibc's default thresholds."""
    tuned, faults = run(MALLOC)
    assert tuned == 'True' and int(faults) < 50, faults
    for env in ({'NNLSTM_NO_MALLOC_TUNING': '1'}, {'MALLOC_TRIM_THRESHOLD_': '131072'}):
        tuned, faults = run(MALLOC, env)
        assert tuned == 'False' and int(faults) > 200, (env, faults)
