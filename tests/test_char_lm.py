"""The character language model example: its data windows, its exported one-step network,
and a smoke run of training, resuming and sampling (subprocesses, a few seconds each)."""
import importlib.util
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import nnabla as nn
import nnabla.functions as F
from nnabla.utils.nnp_graph import NnpLoader
import pytest

import nnlstm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, 'examples')


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


char_lm = load_example('char_lm')
SMALL = types.SimpleNamespace(embed=5, units=7, num_layers=2, dropout=0.3,
                              recurrent_dropout=0.3)


def test_windows_continue_each_stream_where_the_last_ended():
    ids = np.arange(1000)
    batch, window, offset = 4, 10, 3
    length, windows = char_lm.stream_length(len(ids), batch, window)
    assert (length, windows) == (247, 24)
    xs, ts = zip(*[char_lm.window_at(ids, batch, window, length, offset, k)
                   for k in range(windows)])
    x, t = np.concatenate(xs, axis=1), np.concatenate(ts, axis=1)[..., 0]
    for b in range(batch):  # stream b: contiguous text from offset + b * length
        start = offset + b * length
        np.testing.assert_array_equal(x[b], ids[start:start + windows * window])
        np.testing.assert_array_equal(t[b], ids[start + 1:start + windows * window + 1])
    assert t.max() < len(ids)
    with pytest.raises(ValueError, match='a text of 40 characters is too short for 4 streams'):
        char_lm.stream_length(40, batch, window)


def test_default_corpus_is_the_sorted_standard_library_up_to_the_cap():
    text, source = char_lm.load_text(None, 5000)
    again, _ = char_lm.load_text(None, 5000)
    assert len(text) == 5000 and text == again
    files = char_lm.stdlib_sources()
    assert files == sorted(files) and len(files) > 50
    with open(files[0], encoding='utf-8') as f:
        assert text.startswith(f.read()[:100])
    assert 'sorted top-level modules of' in source


def unrolled_logits(ids, vocab_size):
    """Logits of the inference graph (no dropout) over ``ids`` (B, 2T), run as two stateful
    T-step windows with a Carry."""
    batch, steps = ids.shape
    carry = nnlstm.Carry()
    with nn.no_grad():
        x = nn.Variable((batch, steps // 2))
        y = char_lm.model(x, vocab_size, SMALL, carry, False)
    assert 'Dropout' not in nnlstm.export.functions_of([y])
    out = []
    for k in range(2):
        x.d = ids[:, k * steps // 2:(k + 1) * steps // 2]
        y.forward()
        carry.advance()
        out.append(y.d.copy())
    return np.concatenate(out, axis=1)


def stepped(feed, ids, states):
    """Feed ``ids`` (B, steps) one column at a time to ``feed(x, states) -> (logits,
    states)``, starting from zero states."""
    out = []
    for s in range(ids.shape[1]):
        logits, states = feed(ids[:, s], states)
        out.append(logits)
    return np.stack(out, axis=1)


@pytest.mark.parametrize('batch', [1, 3])
def test_exported_step_network_reproduces_the_stateful_training_model(tmp_path, rng, batch):
    """The .nnp's one-step network, reloaded by NNabla's NnpLoader with no nnlstm
    parameters around and fed its own states back, gives the logits of the layered model
    run over two carried windows; and the training graph builds dropout."""
    vocab_size, steps = 11, 6
    ids = rng.randint(vocab_size, size=(batch, 2 * steps))
    x = nn.Variable((2, steps))
    train = char_lm.model(x, vocab_size, SMALL, nnlstm.Carry(), True)
    assert 'Dropout' in nnlstm.export.functions_of([train])
    want = unrolled_logits(ids, vocab_size)

    path = str(tmp_path / 'lm.nnp')
    pairs = char_lm.export(path, vocab_size, SMALL)
    assert pairs == [['c0', 'c0_next'], ['h0', 'h0_next'], ['c1', 'c1_next'],
                     ['h1', 'h1_next']]
    nn.clear_parameters()
    net = NnpLoader(path).get_network('step', batch_size=batch)
    assert sorted(net.inputs) == ['c0', 'c1', 'h0', 'h1', 'x']
    assert sorted(net.outputs) == ['c0_next', 'c1_next', 'h0_next', 'h1_next', 'logits']
    sink = F.sink(*net.outputs.values())

    def feed(x_t, states):
        net.inputs['x'].d = x_t
        for name, value in states.items():
            net.inputs[name].d = value
        sink.forward()
        return (net.outputs['logits'].d.copy(),
                {name: net.outputs[name + '_next'].d.copy() for name in states})

    zeros = {name: np.zeros((batch, SMALL.units)) for name, _ in pairs}
    np.testing.assert_allclose(stepped(feed, ids, zeros), want, rtol=1e-5, atol=1e-6)


def run(script, *args, block_nnlstm=False):
    """Run an example in a subprocess; ``block_nnlstm`` makes ``import nnlstm`` fail."""
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; "
            + ("sys.modules['nnlstm'] = None; " if block_nnlstm else "")
            + "runpy.run_path(sys.argv[0], run_name='__main__')")
    out = subprocess.run([sys.executable, '-c', code, os.path.join(EXAMPLES, script)]
                         + [str(a) for a in args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout, out.stdout + out.stderr


def test_train_resume_export_and_sample(tmp_path):
    text = tmp_path / 'tiny.txt'
    text.write_text(''.join('def f%d(x):\n    return x * %d  # ü\n' % (k, k % 7)
                            for k in range(150)), encoding='utf-8')
    out = tmp_path / 'lm'
    common = ['--text', text, '-o', out, '-b', 4, '--window', 8, '--embed', 8, '--units', 16,
              '--val-interval', 4, '--log-interval', 2, '--val-fraction', 0.2]
    _, log = run('char_lm.py', '-i', 4, *common)
    assert 'iter=4 {validation perplexity}' in log
    progress = json.loads((out / 'checkpoint' / 'checkpoint.json').read_text())
    assert progress['iteration'] == 4

    _, log = run('char_lm.py', '-i', 8, '--resume', *common)
    assert 'resumed from iteration 4' in log
    assert 'trained iterations 5-8' in log
    progress = json.loads((out / 'checkpoint' / 'checkpoint.json').read_text())
    assert progress['iteration'] == 8
    assert sorted(os.listdir(str(out / 'checkpoint'))) == [
        'checkpoint.json', 'params_8.h5', 'solver_8.h5']
    # The series of both runs, one line per logged iteration.
    ppl = np.loadtxt(str(out / 'validation-perplexity.series.txt'))
    assert ppl[:, 0].tolist() == [4, 8]
    assert np.loadtxt(str(out / 'training-loss.series.txt'))[:, 0].tolist() == [2, 4, 6, 8]
    assert ppl[-1, 1] < 40  # 33 distinct characters: uniform guessing is 33
    for name in ('char_lm.nnp', 'char_lm_params.h5', 'vocab.json'):
        assert (out / name).exists(), name
    assert not [n for _, _, files in os.walk(str(out)) for n in files if n.startswith('.tmp')]
    vocab = json.loads((out / 'vocab.json').read_text(encoding='utf-8'))
    assert vocab['chars'] == sorted(set(text.read_text(encoding='utf-8')))
    assert vocab['validation_perplexity'] == pytest.approx(min(ppl[:, 1]), rel=1e-5)

    stdout, _ = run('sample_text.py', '--nnp', out / 'char_lm.nnp', '-b', 2, '-n', 40,
                    '--prime', 'def ', '--temperature', 0.5, block_nnlstm=True)
    samples = stdout.split('-----\n')[1:]
    assert len(samples) == 2
    for s in samples:
        assert s.startswith('def ') and len(s.split('\n-----')[0].rstrip('\n')) >= 44

    # Greedy sampling is deterministic; characters outside the vocabulary are refused.
    a, _ = run('sample_text.py', '--nnp', out / 'char_lm.nnp', '-n', 30, '--temperature', 0,
               '--seed', 1)
    b, _ = run('sample_text.py', '--nnp', out / 'char_lm.nnp', '-n', 30, '--temperature', 0,
               '--seed', 2)
    assert a == b
    bad = subprocess.run([sys.executable, os.path.join(EXAMPLES, 'sample_text.py'),
                          '--nnp', str(out / 'char_lm.nnp'), '--prime', 'Z~'],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "never saw: 'Z~'" in bad.stderr


def test_resume_refuses_another_model_shape_or_a_missing_checkpoint(tmp_path):
    text = tmp_path / 'tiny.txt'
    text.write_text('abcdefgh\n' * 200, encoding='utf-8')
    common = ['--text', str(text), '-o', str(tmp_path / 'lm'), '-b', '2', '--window', '5',
              '--embed', '4', '--val-interval', '2']
    for argv, match in [(['-i', '2', '--units', '8', '--resume'], 'no checkpoint in'),
                        (['-i', '2', '--units', '8'], None),
                        (['-i', '4', '--units', '9', '--resume'],
                         "the checkpoint holds a model of .*'units': 8.*'units': 9")]:
        out = subprocess.run([sys.executable, os.path.join(EXAMPLES, 'char_lm.py')]
                             + common + argv, capture_output=True, text=True, timeout=120)
        if match is None:
            assert out.returncode == 0, out.stderr
        else:
            assert out.returncode != 0
            assert re.search(match, out.stderr), out.stderr
