"""The character language model example: its data windows, its exported one-step network,
and a smoke run of training, resuming and sampling (subprocesses, a few seconds each)."""
import importlib.util
import json
import os
import re
import subprocess
import sys
import shutil
import types

import h5py
import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
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
                              recurrent_dropout=0.3, weight_dropout=0.2, layer_norm=False)
SMALL_NORM = types.SimpleNamespace(**dict(vars(SMALL), layer_norm=True))


def test_windows_continue_each_stream_where_the_last_ended():
    ids = np.arange(1000)
    batch, window, offset = 4, 10, 3
    length, windows = char_lm.stream_length(len(ids), batch, window)
    assert (length, windows) == (247, 24)
    xs, ts = zip(*[char_lm.window_at(ids, np.arange(batch), window, length, offset, k)
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


def unrolled_logits(ids, vocab_size, args=SMALL):
    """Logits of the inference graph (no dropout) over ``ids`` (B, 2T), run as two stateful
    T-step windows with a Carry."""
    batch, steps = ids.shape
    carry = nnlstm.Carry()
    with nn.no_grad():
        x = nn.Variable((batch, steps // 2))
        y = char_lm.model(x, vocab_size, args, carry, False)
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


@pytest.mark.parametrize('batch, args', [(1, SMALL), (3, SMALL), (3, SMALL_NORM)],
                         ids=['1', '3', '3-layer_norm'])
def test_exported_step_network_reproduces_the_stateful_training_model(tmp_path, rng, batch,
                                                                      args):
    """The .nnp's one-step network, reloaded by NNabla's NnpLoader with no nnlstm
    parameters around and fed its own states back, gives the logits of the layered model
    run over two carried windows; and the training graph builds dropout."""
    vocab_size, steps = 11, 6
    ids = rng.randint(vocab_size, size=(batch, 2 * steps))
    x = nn.Variable((2, steps))
    train = char_lm.model(x, vocab_size, args, nnlstm.Carry(), True)
    assert 'Dropout' in nnlstm.export.functions_of([train])
    want = unrolled_logits(ids, vocab_size, args)

    path = str(tmp_path / 'lm.nnp')
    pairs = char_lm.export(path, vocab_size, args)
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

    zeros = {name: np.zeros((batch, args.units)) for name, _ in pairs}
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
    progress = json.loads((out / 'checkpoint' / 'checkpoint_4.json').read_text())
    assert progress['iteration'] == 4

    _, log = run('char_lm.py', '-i', 8, '--resume', *common)
    assert 'resumed from iteration 4' in log
    assert 'trained iterations 5-8' in log
    progress = json.loads((out / 'checkpoint' / 'checkpoint_8.json').read_text())
    assert progress['iteration'] == 8
    assert sorted(os.listdir(str(out / 'checkpoint'))) == [  # the last two checkpoints
        'checkpoint_4.json', 'checkpoint_8.json', 'params_4.h5', 'params_8.h5', 'solver_4.h5',
        'solver_8.h5']
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


# --- damaged checkpoints, bad arguments: in-process runs at tiny sizes ----------------------

sample_text = load_example('sample_text')
TINY = ['-b', 2, '--window', 5, '--embed', 4, '--units', 6, '--val-interval', 4,
        '--log-interval', 4, '--val-fraction', 0.2]


def run_main(module, *argv):
    """``module.main(argv)`` in this process; returns its SystemExit code (None if none)."""
    try:
        module.main([str(a) for a in argv])
    except SystemExit as e:
        return e.code
    return None


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A run of 8 iterations (checkpoints 4 and 8), and a run of another model (units 9)
    whose files are foreign to it."""
    root = tmp_path_factory.mktemp('lm')
    text = root / 'tiny.txt'
    text.write_text('abcdefgh ijk\n' * 120, encoding='utf-8')
    for name, units in (('lm', 6), ('other', 9)):
        nn.clear_parameters()
        assert run_main(char_lm, '--text', text, '-o', root / name, '-i', 8, *TINY,
                        '--units', units) is None
    nn.clear_parameters()
    return root


def checkpoint(out, i):
    folder = out / 'checkpoint'
    return (folder / ('checkpoint_%d.json' % i), folder / ('params_%d.h5' % i),
            folder / ('solver_%d.h5' % i))


def forge_checksums(out, i):
    """Record the files' present checksums, so the checks after the checksum's are tried."""
    record, params, solver = checkpoint(out, i)
    progress = json.loads(record.read_text())
    progress['sha256'] = {'params': char_lm.sha256(str(params)),
                          'solver': char_lm.sha256(str(solver))}
    record.write_text(json.dumps(progress))


def flip_bytes_in(path, name):
    """Flip 8 bytes inside the stored array ``name`` of an .h5 file."""
    with h5py.File(str(path), 'r') as f:
        start = f[name].id.get_offset()
    data = bytearray(path.read_bytes())
    data[start:start + 8] = bytes(b ^ 0xff for b in data[start:start + 8])
    path.write_bytes(bytes(data))


def set_array(path, name, value):
    with h5py.File(str(path), 'r+') as f:
        attrs = dict(f[name].attrs)
        del f[name]
        f[name] = value
        f[name].attrs.update(attrs)


W0 = 'lm/layer0/WaWiWfWo/affine/W'


def damage(case, out, foreign):
    record, params, solver = checkpoint(out, 8)
    if case == 'json truncated':
        record.write_bytes(record.read_bytes()[:40])
    elif case == 'json empty':
        record.write_bytes(b'')
    elif case == 'json field of another type':
        record.write_text(record.read_text().replace('"iteration": 8', '"iteration": "8"'))
    elif case == 'json field missing':
        progress = json.loads(record.read_text())
        del progress['learning_rate']
        record.write_text(json.dumps(progress))
    elif case == 'params missing':
        params.unlink()
    elif case == 'params bytes flipped':
        flip_bytes_in(params, W0)
    elif case == 'params truncated':
        params.write_bytes(params.read_bytes()[:1000])
        forge_checksums(out, 8)
    elif case == 'params foreign':
        params.write_bytes(checkpoint(foreign, 8)[1].read_bytes())
        forge_checksums(out, 8)
    elif case == 'params not finite':
        with h5py.File(str(params), 'r') as f:
            value = f[W0][()]
        value[0, 0] = np.nan
        set_array(params, W0, value)
        forge_checksums(out, 8)
    elif case == 'params of another shape':
        with h5py.File(str(params), 'r') as f:
            value = f['fc/affine/b'][()]
        set_array(params, 'fc/affine/b', value[:-1])
        forge_checksums(out, 8)
    elif case == 'solver truncated':
        solver.write_bytes(solver.read_bytes()[:1000])
        forge_checksums(out, 8)
    elif case == 'solver foreign':
        solver.write_bytes(checkpoint(foreign, 8)[2].read_bytes())
        forge_checksums(out, 8)


DAMAGES = {
    'json truncated': 'not readable JSON', 'json empty': 'not readable JSON',
    'json field of another type': "field 'iteration' is '8'; expected a int",
    'json field missing': "field 'learning_rate' is None",
    'params missing': 'params_8.h5 is missing',
    'params bytes flipped': 'params_8.h5 does not match its checksum',
    'params truncated': 'params_8.h5 is not a readable parameter file',
    'params foreign': r'params_8.h5 has \S+ of shape \(9, ',
    'params not finite': 'params_8.h5 holds non-finite values in ' + W0,
    'params of another shape': r'params_8.h5 has fc/affine/b of shape \(12,\)',
    'solver truncated': 'solver_8.h5 does not load into the solver',
    'solver foreign': 'solver_8.h5 (does not load|has .* of shape)',
}


@pytest.mark.parametrize('case', sorted(DAMAGES))
def test_resume_falls_back_to_the_older_checkpoint_when_the_newest_is_damaged(
        trained, tmp_path, capsys, case):
    out = tmp_path / 'lm'
    shutil.copytree(str(trained / 'lm'), str(out))
    damage(case, out, trained / 'other')
    assert run_main(char_lm, '--text', trained / 'tiny.txt', '-o', out, '-i', 8, *TINY,
                    '--units', 6, '--resume') is None
    log = capsys.readouterr().out
    assert re.search('checkpoint checkpoint_8.json is unusable: %s.*; trying the older one'
                     % DAMAGES[case], log), log
    assert 'resumed from iteration 4' in log and 'trained iterations 5-8' in log
    # The damaged checkpoint was replaced by a good one; the one resumed from stays.
    assert sorted(os.listdir(str(out / 'checkpoint'))) == [
        'checkpoint_4.json', 'checkpoint_8.json', 'params_4.h5', 'params_8.h5',
        'solver_4.h5', 'solver_8.h5']
    record, params, solver = checkpoint(out, 8)
    assert json.loads(record.read_text())['sha256'] == {
        'params': char_lm.sha256(str(params)), 'solver': char_lm.sha256(str(solver))}


def test_resume_stops_and_says_what_to_delete_when_no_checkpoint_is_usable(trained, tmp_path,
                                                                            capsys):
    out = tmp_path / 'lm'
    shutil.copytree(str(trained / 'lm'), str(out))
    flip_bytes_in(checkpoint(out, 8)[1], W0)
    checkpoint(out, 4)[0].write_bytes(b'')
    before = sorted(os.listdir(str(out / 'checkpoint')))
    code = run_main(char_lm, '--text', trained / 'tiny.txt', '-o', out, '-i', 12, *TINY,
                    '--units', 6, '--resume')
    assert re.match(r'--resume: no usable checkpoint in .*checkpoint \(checkpoint_8.json: '
                    r'params_8.h5 does not match its checksum.*; checkpoint_4.json: not '
                    r'readable JSON.*\)\. Delete that folder and run without --resume', code)
    assert sorted(os.listdir(str(out / 'checkpoint'))) == before   # nothing deleted


def test_resume_forgets_a_best_parameter_file_that_does_not_match(trained, tmp_path, capsys):
    out = tmp_path / 'lm'
    shutil.copytree(str(trained / 'lm'), str(out))
    flip_bytes_in(out / 'char_lm_params.h5', W0)
    assert run_main(char_lm, '--text', trained / 'tiny.txt', '-o', out, '-i', 12, *TINY,
                    '--units', 6, '--resume') is None
    log = capsys.readouterr().out
    assert 'char_lm_params.h5 does not match the checkpoint' in log
    assert 'resumed from iteration 8 (learning rate 0.002, best validation perplexity inf)' \
        in log
    # The next validation wrote the best parameters again, and they load.
    record = json.loads(checkpoint(out, 12)[0].read_text())
    assert record['best_sha256'] == char_lm.sha256(str(out / 'char_lm_params.h5'))


def test_a_text_too_short_for_the_streams_says_how_long_it_must_be(tmp_path):
    text = tmp_path / 'short.txt'
    text.write_text('x' * 300, encoding='utf-8')
    need = char_lm.shortest_text(4, 10, 0.2)
    assert need == 266    # 266 - int(0.8 * 266) = 54 = 4 * 11 + 10 for validation
    for n, works in ((need - 1, False), (need, True)):
        split = char_lm.split_point(n, 0.2)
        fits = True
        for part in (split, n - split):
            try:
                char_lm.stream_length(part, 4, 10)
            except ValueError:
                fits = False
        assert fits == works
    code = run_main(char_lm, '--text', text, '-o', tmp_path / 'o', '-b', 32, '--window', 50,
                    '-i', 1)
    assert code == ('the text (short.txt) holds 300 characters; 32 streams (--batch-size) of '
                    '50-step windows (--window) with --val-fraction 0.05 need a text of at '
                    'least %d characters: give a longer --text, or a smaller --batch-size or '
                    '--window' % char_lm.shortest_text(32, 50, 0.05))


@pytest.mark.parametrize('argv,match', [
    (['-b', '0'], "--batch-size/-b: expected an integer >= 1; received '0'"),
    (['--window', '2.5'], "--window: expected an integer >= 1; received '2.5'"),
    (['--dropout', '1'], r'--dropout: expected a finite number in \[0, 1\)'),
    (['--learning-rate', 'nan'], "--learning-rate: expected a finite number > 0; received"),
    (['--max-norm', 'inf'], "--max-norm: expected a finite number > 0; received 'inf'"),
    (['--val-fraction', '0'], r'--val-fraction: expected a finite number in \(0, 1\)'),
    (['--comm', '-c', 'cpu'], '--comm needs --context cudnn'),
])
def test_bad_options_are_argparse_errors(capsys, argv, match):
    assert run_main(char_lm, *argv) == 2
    assert re.search(match, capsys.readouterr().err)


@pytest.fixture(scope='module')
def step_nnp(trained):
    return trained / 'lm' / 'char_lm.nnp'


@pytest.mark.parametrize('argv,match', [
    (['-n', '-5'], '--length/-n must be at least 1; received -5'),
    (['-b', '0'], '--batch-size/-b must be at least 1; received 0'),
    (['--temperature', 'nan'], '--temperature must be a finite number >= 0'),
    (['--temperature', 'inf'], '--temperature must be a finite number >= 0'),
    (['--temperature', '-1'], '--temperature must be a finite number >= 0'),
])
def test_sampler_refuses_bad_numbers(step_nnp, capsys, argv, match):
    assert run_main(sample_text, '--nnp', step_nnp, *argv) == 2
    assert match in capsys.readouterr().err


def test_sampler_without_the_cuda_extension_says_what_to_install(step_nnp):
    if importlib.util.find_spec('nnabla_ext.cudnn') is not None:
        pytest.skip('NNabla CUDA extension installed here')
    assert run_main(sample_text, '--nnp', step_nnp, '-c', 'cudnn').startswith(
        "--context cudnn needs NNabla's CUDA extension")


def test_sampler_names_the_missing_or_wrong_file(step_nnp, tmp_path, capsys):
    code = run_main(sample_text, '--nnp', tmp_path / 'missing.nnp')
    assert code.startswith('--nnp %s: no such file' % (tmp_path / 'missing.nnp'))
    alone = tmp_path / 'alone.nnp'
    shutil.copy(str(step_nnp), str(alone))
    assert run_main(sample_text, '--nnp', alone).startswith(
        '--vocab %s: no such file' % (tmp_path / 'vocab.json'))
    (tmp_path / 'vocab.json').write_text('{"chars": ')
    assert re.match(r'--vocab .*vocab.json is not the vocabulary char_lm.py writes',
                    run_main(sample_text, '--nnp', alone))
    not_nnp = tmp_path / 'text.nnp'
    not_nnp.write_text('hello')
    assert re.match(r'--nnp .*text.nnp is not an .nnp file NNabla can read',
                    run_main(sample_text, '--nnp', not_nnp,
                             '--vocab', step_nnp.parent / 'vocab.json'))


def test_sampler_says_when_the_nnp_lacks_the_step_network(step_nnp, tmp_path):
    x = nn.Variable((1, 3))
    with nn.no_grad():
        y = PF.affine(x, 2, name='other')
    other = str(tmp_path / 'other.nnp')
    nnlstm.save_nnp(other, {'x': x}, {'y': y})
    assert run_main(sample_text, '--nnp', other, '--vocab', step_nnp.parent / 'vocab.json') \
        == ("--nnp %s holds the networks ['inference'], not 'step' (the one-step network "
            "char_lm.py exports)" % other)


def test_sampler_at_a_tiny_temperature_is_the_greedy_one(step_nnp, capsys):
    greedy = sample_text.main(['--nnp', str(step_nnp), '-n', '20', '--temperature', '0'])
    tiny = sample_text.main(['--nnp', str(step_nnp), '-n', '20', '--temperature', '1e-300'])
    assert tiny == greedy


# --- data-parallel training, with a communicator stand-in (tests/commstub.py) --------------

COMMSTUB = os.path.join(ROOT, 'tests', 'commstub.py')


def test_shards_hold_every_stream_exactly_once():
    for size in (1, 2, 3, 6):
        shards = [char_lm.shard(6, types.SimpleNamespace(rank=r, size=size))
                  for r in range(size)]
        assert sorted(np.concatenate(shards).tolist()) == list(range(6))
    np.testing.assert_array_equal(char_lm.shard(6), np.arange(6))
    with pytest.raises(SystemExit, match='--batch-size 6 streams cannot be shared equally '
                                         'among 4 processes: give a multiple of 4'):
        char_lm.shard(6, types.SimpleNamespace(rank=0, size=4))


def run_ranks(tmp_path, argvs):
    """Run examples/char_lm.py as len(argvs) ranks joined by the stand-in communicator;
    returns each rank's output."""
    address = str(tmp_path / 'comm.sock')
    if os.path.exists(address):
        os.unlink(address)
    procs = [subprocess.Popen([sys.executable, COMMSTUB, str(rank), str(len(argvs)), address,
                               str(tmp_path / ('rank%d.npz' % rank))] + [str(a) for a in argv],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank, argv in enumerate(argvs)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log
    return logs


def gradient(args, vocab_size, train_ids, streams):
    """The single-process gradient (and loss) of the first update over ``streams``, from
    the parameters present."""
    (x, t, loss, _), _ = char_lm.losses(vocab_size, args, len(streams))
    length, _ = char_lm.stream_length(len(train_ids), args.batch_size, args.window)
    offset = np.random.RandomState(args.seed).randint(args.window)
    x.d, t.d = char_lm.window_at(train_ids, streams, args.window, length, offset, 0)
    loss.forward()
    for p in nn.get_parameters().values():
        p.grad.zero()
    loss.backward()
    return [p.g.copy() for p in nn.get_parameters().values()] + [loss.d.copy()]


def test_data_parallel_ranks_average_the_gradient_of_all_streams_and_only_rank_0_writes(
        tmp_path):
    text = tmp_path / 'tiny.txt'
    text.write_text(''.join('def f%d(x):\n    return x * %d\n' % (k, k % 7) for k in range(60)),
                    encoding='utf-8')
    common = ['--text', text, '-b', 4, '--window', 6, '--embed', 5, '--units', 7,
              '--val-interval', 2, '--log-interval', 2, '--val-fraction', 0.2,
              '--dropout', 0, '--recurrent-dropout', 0, '--max-norm', 0.05]  # clipping on
    out, elsewhere = tmp_path / 'lm', tmp_path / 'rank1'
    logs = run_ranks(tmp_path, [['-o', out, '-i', 4] + common,
                                ['-o', elsewhere, '-i', 4] + common])
    assert '2 processes, 2 streams each' in logs[0] and 'trained iterations 1-4' in logs[0]
    assert not elsewhere.exists()     # rank 1, given a folder of its own, wrote nothing
    assert sorted(os.listdir(str(out / 'checkpoint'))) == [
        'checkpoint_2.json', 'checkpoint_4.json', 'params_2.h5', 'params_4.h5',
        'solver_2.h5', 'solver_4.h5']
    for name in ('char_lm.nnp', 'vocab.json', 'char_lm_params.h5',
                 'validation-perplexity.series.txt', 'training-loss.series.txt'):
        assert (out / name).exists(), name

    # The first update's gradients: each rank's is the gradient over its own two streams,
    # and after all_reduce both hold the single-process gradient over all four.
    args = char_lm.get_args([str(a) for a in ['-o', tmp_path / 'single', '-i', 4] + common])
    nn.random.seed(args.seed)
    chars, train_ids, _, _ = char_lm.corpus(args)
    want = gradient(args, len(chars), train_ids, np.arange(4))
    ranks = [np.load(str(tmp_path / ('rank%d.npz' % r))) for r in range(2)]
    n = len(want)
    for r, record in enumerate(ranks):
        before = [record['arr_%d' % k] for k in range(n)]
        after = [record['arr_%d' % (n + k)] for k in range(n)]
        for got, expected in zip(before, gradient(args, len(chars), train_ids,
                                                  np.arange(2 * r, 2 * r + 2))):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
        for got, expected in zip(after, want):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(ranks[0]['arr_0'], ranks[1]['arr_0'])   # other streams

    # Two ranks train as one process does (no dropout; the clip sees the global norm):
    # the same gradient norms and validation perplexity.
    nn.clear_parameters()
    single = char_lm.main([str(a) for a in ['-o', tmp_path / 'single', '-i', 4] + common])
    two = json.loads((out / 'vocab.json').read_text(encoding='utf-8'))['validation_perplexity']
    assert two == pytest.approx(single, rel=1e-4)
    norms = [np.loadtxt(str(folder / 'gradient-norm.series.txt'))
             for folder in (out, tmp_path / 'single')]
    assert norms[0][:, 1].min() > 0.05
    np.testing.assert_allclose(norms[0], norms[1], rtol=1e-4)

    # --resume: both ranks read the checkpoint from the shared folder.
    logs = run_ranks(tmp_path, [['-o', out, '-i', 6, '--resume'] + common] * 2)
    assert 'resumed from iteration 4' in logs[0] and 'trained iterations 5-6' in logs[0]
    assert 'resumed' not in logs[1]
    assert json.loads(checkpoint(out, 6)[0].read_text())['iteration'] == 6


def test_comm_without_the_cuda_extension_says_what_to_install(tmp_path):
    if importlib.util.find_spec('nnabla_ext.cudnn') is not None:
        pytest.skip('NNabla CUDA extension installed here')
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, 'char_lm.py'), '--comm',
                          '-i', '1', '-o', str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert "pip install 'nnlstm[cuda]'" in out.stderr and 'Traceback' not in out.stderr
