"""Smoke test of benchmarks/bench.py: every contender runs at tiny sizes and the tables have
their rows (PyTorch's only where an interpreter with torch is found)."""
import json
import os
import re
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     'benchmarks', 'bench.py')
NNABLA_ROWS = ['nnlstm LSTM', 'nnlstm GRU', 'nnlstm LSTM, fused=False',
               'nnlstm GRU, fused=False', 'F.lstm (PF.lstm)', 'F.gru (PF.gru)',
               'seed LSTM (naive)']
TORCH_ROWS = ['torch nn.LSTM (1 thread)', 'torch nn.GRU (1 thread)']


def bench(*args, timeout=300):
    return subprocess.run([sys.executable, BENCH] + list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def table(text, heading):
    """The body rows of the Markdown table under ``heading``, as lists of cells."""
    lines = [line for line in text.split(heading, 1)[1].split('\n\n###', 1)[0].splitlines()
             if line.startswith('|')]
    return [[c.strip() for c in line.strip('|').split('|')] for line in lines[2:]]


def table_rows(text, heading):
    """First cells of the Markdown table under ``heading``."""
    return [cells[0] for cells in table(text, heading)]


def test_quick_run_has_every_row(tmp_path):
    out = tmp_path / 'bench.json'
    p = bench('--quick', '--jobs', '2', '--json', str(out))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    result = json.loads(out.read_text())
    with_torch = result['environment']['torch_python'] is not None
    if not with_torch:
        assert 'PyTorch skipped: no Python that can `import torch`' in p.stdout

    rows = table_rows(p.stdout, '### B=4 T=6 D=3 H=8')
    assert rows == NNABLA_ROWS + (TORCH_ROWS if with_torch else [])
    for cells in table(p.stdout, '### B=4 T=6 D=3 H=8'):
        train, vs_fused, infer = float(cells[1]), float(cells[2]), float(cells[4])
        assert train > 0 and infer > 0 and vs_fused > 0, cells
    assert re.search(r'\| F\.lstm \(PF\.lstm\) \| [\d.]+ \| 1\.00 \|', p.stdout)

    assert table_rows(p.stdout, '### Graph build time and peak memory') == [
        'nnlstm LSTM training', 'nnlstm LSTM inference', 'F.lstm (PF.lstm) training',
        'F.lstm (PF.lstm) inference']
    for r in result['results'] + result['build']:
        assert 'error' not in r, r
        assert r['median_ms'] > 0 and r['peak_rss_mb'] > r['base_rss_mb'] > 0, r
    assert len(result['results']) == 2 * (len(NNABLA_ROWS) + (2 if with_torch else 0))


def test_the_sequence_loss_runs_every_kind_of_contender(tmp_path):
    """``--loss sequence`` (the mean of the output sequence) builds each kind of graph:
    nnlstm's, F.lstm's and the seed's with their sequences, PyTorch's from its output."""
    out = tmp_path / 'bench.json'
    p = bench('--quick', '--jobs', '2', '--loss', 'sequence', '--build-steps', '',
              '--contenders', 'nnlstm-lstm,fused-lstm,seed-lstm,torch-lstm', '--json', str(out))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    result = json.loads(out.read_text())
    assert '--loss sequence' in result['environment']['argv']
    with_torch = result['environment']['torch_python'] is not None
    want = ['nnlstm LSTM', 'F.lstm (PF.lstm)', 'seed LSTM (naive)']
    assert table_rows(p.stdout, '### B=4 T=6 D=3 H=8') == want + TORCH_ROWS[:1] * with_torch
    for r in result['results']:
        assert 'error' not in r and r['median_ms'] > 0, r


def test_torch_can_be_skipped():
    p = bench('--quick', '--contenders', 'torch-lstm', '--torch-python', 'none',
              '--build-steps', '')
    assert p.returncode == 0, p.stderr
    assert 'PyTorch skipped: --torch-python none' in p.stdout


def test_unknown_contender_is_an_error():
    p = bench('--contenders', 'nnlstm-lstm,keras')
    assert p.returncode == 2
    assert "unknown contender(s) ['keras']" in p.stderr


def test_cudnn_without_extension_skips():
    try:
        import nnabla_ext.cudnn  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("the CUDA extension is here: --context cudnn would run")
    p = bench('--quick', '--context', 'cudnn')
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith('skip: no cudnn context here')


def bad_inputs():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'bad_inputs', os.path.join(os.path.dirname(BENCH), 'bad_inputs.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_inputs_sweep_classifies_each_outcome(tmp_path):
    """A signal is 'killed', a silent return 'accepted', a message without the argument
    'unclear', another error type 'internal'; and a slice of the sweep runs clear."""
    sweep = bad_inputs()
    outcome = [sweep.classify(sweep.run_case(code, str(tmp_path), 60), names, str(tmp_path))
               for names, code in [
                   ('x', 'import os, signal; os.kill(os.getpid(), signal.SIGFPE)'),
                   ('x', 'pass'),
                   ('x', "raise ValueError('`y` is wrong')"),
                   ('x', "raise ValueError('`x` is wrong')"),
                   ('x', "{}['x']")]]
    assert outcome == ['killed', 'accepted', 'unclear', 'clear', 'internal']
    out = subprocess.run([sys.executable, sweep.__file__, '-k', 'context'],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r'^(\d+) cases: \1 clear, 0 unclear, 0 internal, 0 accepted, 0 killed$',
                     out.stdout, re.M), out.stdout


def test_onnx_speed_quick_run_prints_every_row(tmp_path):
    """benchmarks/onnx_speed.py at tiny sizes: both files of both cells run in ONNX
    Runtime (the onnx extra; skipped without it, as tests/test_onnx.py)."""
    from test_onnx import need
    need('onnxruntime')
    need('nnabla.utils.converter.onnx')
    out = tmp_path / 'onnx.json'
    p = subprocess.run([sys.executable, os.path.join(os.path.dirname(BENCH), 'onnx_speed.py'),
                        '--quick', '--json', str(out)], capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rows = json.loads(out.read_text())['results']
    assert [r['cell'] for r in rows] == ['lstm', 'gru']
    assert all(r['native_s'] > 0 and r['unrolled_s'] > 0 for r in rows)
    assert re.search(r'lstm B=4 .*ORT native .* ms  ORT unrolled .* ms', p.stdout)
