"""Character language model with nnlstm: stateful truncated BPTT, global-norm clipping.

Trains an embedding, a 2-layer LSTM (variational dropout between the layers and on the
recurrent state) and a softmax over the characters of a text. The text is cut into
``--batch-size`` contiguous streams and each ``--window``-step window continues where the
stream's previous window ended: an ``nnlstm.Carry`` hands the LSTM states over from one
update to the next while gradients stop at the window's start (Chainer's
ParallelSequentialIterator + BPTTUpdater, Keras' ``stateful=True``). Gradients are clipped
by their global norm, validation perplexity is measured on a graph of its own built without
gradients or dropout, the learning rate drops when validation stops improving, and a
checkpoint (parameters, solver state, progress and the files' checksums) is written
atomically at every validation, the last two are kept, and ``--resume`` continues an
interrupted run from the newest one that passes its checks.

``--comm`` trains data-parallel on NNabla's communicator (the CUDA extension, launched with
``mpirun -n N``, as nnabla-examples do): each process takes ``--batch-size / N`` of the
streams, the gradients are averaged over the processes before the global-norm clip, and only
rank 0 writes monitors, checkpoints and the exported network.

At the end the best parameters are exported as ``char_lm.nnp`` whose network is ONE step:
(x_t, c and h of every layer) -> (logits, the next c and h), with the vocabulary in
``vocab.json``; ``examples/sample_text.py`` generates text from those two files with NNabla
alone.

With no ``--text`` the corpus is Python's own standard library: the interpreter's top-level
``*.py`` modules in sorted order, concatenated up to ``--max-chars`` characters.

    ./run python examples/char_lm.py                  # the default run (see the README)
    ./run python examples/char_lm.py -i 300 -o out/quick
    ./run python examples/char_lm.py --resume         # continue an interrupted run
    mpirun -n 4 .venv/bin/python examples/char_lm.py --comm -b 64   # 4 GPUs, 16 streams each
    ./run python examples/sample_text.py --temperature 0.7
"""
import argparse
import glob
import hashlib
import json
import math
import os
import re
import sysconfig
import time
import tokenize

import h5py
import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import nnabla.solvers as S
from nnabla.monitor import Monitor, MonitorSeries, MonitorTimeElapsed

import nnlstm
from nnlstm.export import atomic_write

#: The names every graph shares, so training, validation and the exported step graph use
#: the same parameters: embed/W, lm/layer{k}/WaWiWfWo/affine/{W,b}, fc/affine/{W,b}.
EMBED, LSTM, FC = 'embed', 'lm', 'fc'


def number(kind, low, high=math.inf, low_open=False, high_open=False):
    """An argparse type: ``kind`` (int or float) within [low, high], an end excluded
    where ``*_open``; NaN and infinities are refused."""
    noun = 'an integer' if kind is int else 'a finite number'
    expected = ('%s %s %g' % (noun, '>' if low_open else '>=', low) if high == math.inf else
                '%s in %s%g, %g%s' % (noun, '(' if low_open else '[', low, high,
                                      ')' if high_open else ']'))

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        inside = ((value > low if low_open else value >= low)
                  and (value < high if high_open else value <= high))
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError('expected %s; received %r' % (expected, text))
        return value
    return parse


POSITIVE = number(int, 1)


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--context', '-c', default=None, choices=nnlstm.CONTEXTS,
                   help="'cpu' (the default), or 'cudnn' with nnabla-ext-cuda120 (the "
                        "default with --comm)")
    p.add_argument('--device-id', '-d', default='0', help='the GPU; with --comm, each '
                   "process's local rank")
    p.add_argument('--type-config', '-t', default='float')
    p.add_argument('--comm', action='store_true',
                   help="data-parallel training on NNabla's communicator (CUDA extension, "
                        "MPI): launch with mpirun -n N; the --batch-size streams are shared")
    p.add_argument('--batch-size', '-b', type=POSITIVE, default=32,
                   help='B, the number of parallel streams (over all processes)')
    p.add_argument('--max-iter', '-i', type=POSITIVE, default=1500)
    p.add_argument('--val-interval', type=POSITIVE, default=250)
    p.add_argument('--log-interval', type=POSITIVE, default=50)
    p.add_argument('--window', type=POSITIVE, default=50, help='T, the truncated-BPTT length')
    p.add_argument('--embed', type=POSITIVE, default=64)
    p.add_argument('--units', type=POSITIVE, default=128)
    p.add_argument('--num-layers', type=POSITIVE, default=2)
    p.add_argument('--dropout', type=number(float, 0, 1, high_open=True), default=0.1,
                   help='between the layers and before the softmax')
    p.add_argument('--recurrent-dropout', type=number(float, 0, 1, high_open=True),
                   default=0.1, help='variational dropout of the recurrent state')
    p.add_argument('--weight-dropout', type=number(float, 0, 1, high_open=True),
                   default=0.0, help="DropConnect on the recurrent weights (AWD-LSTM's)")
    p.add_argument('--layer-norm', action='store_true',
                   help="layer-normalized LSTMs (layer_norm=True, TF-Addons' LayerNormLSTMCell)")
    p.add_argument('--learning-rate', type=number(float, 0, low_open=True), default=2e-3,
                   help='Adam')
    p.add_argument('--max-norm', type=number(float, 0, low_open=True), default=5.0,
                   help='global gradient-norm clipping')
    p.add_argument('--lr-decay', type=number(float, 0, 1, low_open=True), default=0.5,
                   help='multiply the learning rate by this on a validation plateau')
    p.add_argument('--patience', type=POSITIVE, default=1,
                   help='validations without improvement before the rate decays')
    p.add_argument('--text', default=None,
                   help="a UTF-8 text file; default: Python's standard-library sources")
    p.add_argument('--max-chars', type=POSITIVE, default=2000000, help='cap on the corpus size')
    p.add_argument('--val-fraction', type=number(float, 0, 1, True, True), default=0.05,
                   help='the end of the text held out for validation')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--resume', action='store_true',
                   help='continue from the newest good checkpoint in --model-save-path')
    p.add_argument('--model-save-path', '-o', default='out/char_lm')
    p.add_argument('--monitor-path', '-m', default=None,
                   help='defaults to --model-save-path')
    args = p.parse_args(argv)
    if args.context is None:
        args.context = 'cudnn' if args.comm else 'cpu'
    elif args.comm and args.context == 'cpu':
        p.error("--comm needs --context cudnn (or cuda): NNabla's communicator runs on NCCL")
    args.monitor_path = args.monitor_path or args.model_save_path
    return args


# --- data ---------------------------------------------------------------------------------

def stdlib_sources():
    """The interpreter's top-level standard-library modules, sorted: a fixed list for a
    given Python version, on every machine that has that Python."""
    return sorted(glob.glob(os.path.join(sysconfig.get_paths()['stdlib'], '*.py')))


def load_text(path, max_chars):
    """The corpus and a description: ``path`` read as UTF-8, or the standard library's
    sources (each read in its declared encoding) concatenated up to ``max_chars``."""
    if path is not None:
        try:
            with open(path, encoding='utf-8') as f:
                return f.read(max_chars), os.path.basename(path)
        except (OSError, UnicodeDecodeError) as e:
            raise SystemExit('--text %s: %s' % (path, e))
    parts, size, files = [], 0, 0
    for source in stdlib_sources():
        with tokenize.open(source) as f:
            text = f.read()
        parts.append(text[:max_chars - size])
        size += len(parts[-1])
        files += 1
        if size >= max_chars:
            break
    return ''.join(parts), ('%d sorted top-level modules of %s'
                            % (files, sysconfig.get_paths()['stdlib']))


def save_json(path, obj):
    """Write ``obj`` as JSON atomically (a temporary file beside ``path``, then renamed)."""
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
    return atomic_write(path, write)


def load_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def load_vocab(path):
    """The characters of ``vocab.json``, checked: a list of distinct single characters."""
    try:
        chars = load_json(path)['chars']
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit('%s is not a vocabulary written by char_lm.py (%s: %s)'
                         % (path, type(e).__name__, e))
    if (not isinstance(chars, list) or not chars or len(set(chars)) != len(chars)
            or not all(isinstance(ch, str) and len(ch) == 1 for ch in chars)):
        raise SystemExit('%s: "chars" must be a list of distinct single characters' % path)
    return chars


def stream_length(n, batch, window):
    """Split ``n`` ids into ``batch`` streams with room for a start offset < ``window``:
    returns (the length of each stream, the number of windows it holds)."""
    length = (n - window) // batch
    windows = (length - 1) // window
    if windows < 1:
        raise ValueError("a text of %d characters is too short for %d streams of %d-step "
                         "windows; give a longer --text or a smaller --batch-size/--window"
                         % (n, batch, window))
    return length, windows


def split_point(n, val_fraction):
    """Where the validation part of ``n`` characters starts."""
    return int(n * (1 - val_fraction))


def shortest_text(batch, window, val_fraction):
    """The fewest characters whose training and validation parts both give every stream
    one window (the condition of :func:`stream_length`)."""
    need = batch * (window + 1) + window
    # A lower bound: the training part is at most n (1 - f), the validation part n f + 1.
    n = max(int(need / (1 - val_fraction)), int((need - 1) / val_fraction)) - 1
    while split_point(n, val_fraction) < need or n - split_point(n, val_fraction) < need:
        n += 1
    return n


def corpus(args, chars=None):
    """The text as ids: returns (chars, training ids, validation ids, a description).
    ``chars`` is the vocabulary (a resumed run's); default: the text's characters."""
    text, source = load_text(args.text, args.max_chars)
    need = shortest_text(args.batch_size, args.window, args.val_fraction)
    if len(text) < need:
        raise SystemExit(
            'the text (%s) holds %d characters; %d streams (--batch-size) of %d-step windows '
            '(--window) with --val-fraction %g need a text of at least %d characters%s: give '
            'a longer --text, or a smaller --batch-size or --window'
            % (source, len(text), args.batch_size, args.window, args.val_fraction, need,
               ' (--max-chars is %d)' % args.max_chars if args.max_chars < need else ''))
    if chars is None:
        chars = sorted(set(text))
    unknown = sorted(set(text) - set(chars))
    if unknown:
        raise SystemExit("the text holds characters the checkpoint's vocabulary lacks: %r"
                         % ''.join(unknown[:20]))
    index = {ch: k for k, ch in enumerate(chars)}
    ids = np.array([index[ch] for ch in text], dtype=np.int32)
    split = split_point(len(ids), args.val_fraction)
    return chars, ids[:split], ids[split:], source


def shard(batch, comm=None):
    """The streams this process trains on: all ``batch``, or with a communicator of N
    processes its rank's block of ``batch / N`` (every stream in exactly one block)."""
    if comm is None:
        return np.arange(batch)
    if batch % comm.size:
        raise SystemExit('--batch-size %d streams cannot be shared equally among %d '
                         'processes: give a multiple of %d' % (batch, comm.size, comm.size))
    share = batch // comm.size
    return np.arange(comm.rank * share, (comm.rank + 1) * share)


def window_at(ids, streams, window, length, offset, k):
    """Window ``k`` of the streams numbered ``streams`` (S,): stream b is
    ``ids[offset + b * length:]``, and window k of it covers its characters k*T .. k*T +
    T - 1, with the next characters as targets. Returns x (S, T) and t (S, T, 1)."""
    starts = offset + np.asarray(streams) * length + k * window
    chunk = ids[starts[:, None] + np.arange(window + 1)]
    return chunk[:, :-1], chunk[:, 1:, None]


# --- the model ----------------------------------------------------------------------------

def model(x, vocab_size, args, carry, training):
    """x (B, T) character ids -> logits (B, T, V). ``carry`` makes the LSTM stateful."""
    e = PF.embed(x, vocab_size, args.embed, name=EMBED)                       # (B, T, E)
    y = nnlstm.Stacked(nnlstm.LSTM, e, args.units, num_layers=args.num_layers,
                       dropout=args.dropout, recurrent_dropout=args.recurrent_dropout,
                       weight_dropout=args.weight_dropout, layer_norm=args.layer_norm,
                       training=training, return_sequences=True, stateful=carry,
                       name=LSTM)                                             # (B, T, H)
    if training and args.dropout:
        y = F.dropout(y, args.dropout)
    return PF.affine(y, vocab_size, base_axis=2, name=FC)                     # (B, T, V)


def losses(vocab_size, args, batch):
    """The training loss (dropout, gradients, its own Carry) and the validation loss (built
    under nn.no_grad(): no dropout, no gradient buffers, a Carry of its own so validating
    leaves the training streams' states alone), on the same parameters by name, each over
    ``batch`` streams: returns ``(x, t, loss, carry)`` for each."""
    graphs = []
    for training in (True, False):
        carry = nnlstm.Carry()
        x, t = nn.Variable((batch, args.window)), nn.Variable((batch, args.window, 1))
        with nn.no_grad(not training):
            loss = F.mean(F.softmax_cross_entropy(model(x, vocab_size, args, carry, training),
                                                  t, axis=2))
        graphs.append((x, t, loss, carry))
    return graphs


def step_graph(vocab_size, args, batch=1):
    """The one-step network the .nnp holds: x (B,) ids, c{k}/h{k} (B, H) for each layer k
    -> logits (B, V) and c{k}_next/h{k}_next. ``nnlstm.LSTMCell(..., name='lm/layer{k}')``
    reads exactly the parameters of layer k of ``nnlstm.Stacked(..., name='lm')``."""
    x = nn.Variable((batch,))
    inputs, outputs, states = {'x': x}, {}, []
    y = PF.embed(x, vocab_size, args.embed, name=EMBED)                       # (B, E)
    for k in range(args.num_layers):
        c, h = nn.Variable((batch, args.units)), nn.Variable((batch, args.units))
        inputs['c%d' % k], inputs['h%d' % k] = c, h
        c, h = nnlstm.LSTMCell(y, c, h, name='%s/layer%d' % (LSTM, k),
                               layer_norm=args.layer_norm)
        # NnpLoader lists as outputs only the variables no function reads: an identity
        # makes each next state one (and a named output of `nnabla_cli infer` too).
        outputs['c%d_next' % k], outputs['h%d_next' % k] = F.identity(c), F.identity(h)
        states += [['c%d' % k, 'c%d_next' % k], ['h%d' % k, 'h%d_next' % k]]
        y = h
    logits = PF.affine(y, vocab_size, name=FC)                                # (B, V)
    return inputs, dict(logits=logits, **outputs), states


def export(path, vocab_size, args):
    """Save the one-step network with the current parameters; returns its state pairs."""
    with nn.no_grad():
        inputs, outputs, states = step_graph(vocab_size, args)
    nnlstm.save_nnp(path, inputs, outputs, network_name='step', executor_name='step')
    return states


# --- data parallelism ---------------------------------------------------------------------

def communicator(args):
    """NNabla's data-parallel communicator, set up as nnabla-examples do: one process per
    GPU, started by ``mpirun``; the caller puts each on ``device_id = comm.local_rank``."""
    ctx = nnlstm.context(args.context, args.device_id, args.type_config)
    import nnabla.communicators as C
    try:
        comm = C.MultiProcessDataParalellCommunicator(ctx)
        comm.init()
    except Exception as e:
        raise SystemExit("--comm: NNabla's communicator did not start (%s: %s); it needs "
                         "nnabla-ext-cuda120 with MPI and NCCL, and a launch with mpirun -n N"
                         % (type(e).__name__, str(e).strip().splitlines()[-1]))
    return comm


def all_reduce_mean(comm, arrays):
    """Average the NdArrays ``arrays`` over the processes, in place (a no-op alone)."""
    if comm is not None and comm.size > 1:
        comm.all_reduce(arrays, division=True, inplace=False)


class Silent:
    """A monitor of a process that does not write (ranks > 0)."""
    def add(self, *args):
        pass


# --- checkpoints --------------------------------------------------------------------------

#: checkpoint_{i}.json records the progress at iteration i and names params_{i}.h5 and
#: solver_{i}.h5 with their SHA-256; the fields and types a checkpoint must hold.
CHECKPOINT = re.compile(r'checkpoint_(\d+)\.json$')
FIELDS = {'iteration': int, 'learning_rate': float, 'best': float, 'bad_validations': int,
          'model': dict, 'params': str, 'solver': str, 'sha256': dict, 'vocab_sha256': str}


class Damaged(Exception):
    """A checkpoint that fails its checks."""


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def vocab_digest(chars):
    return hashlib.sha256(json.dumps(chars).encode('utf-8')).hexdigest()


def checkpoints(folder):
    """The iterations of the checkpoints in ``folder``, newest first."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted((int(m.group(1)) for m in map(CHECKPOINT.match, names) if m), reverse=True)


def checkpoint_files(i):
    return ['checkpoint_%d.json' % i, 'params_%d.h5' % i, 'solver_%d.h5' % i]


def save_checkpoint(folder, solver, progress, keep=None):
    """Parameters and solver state under names holding the iteration, then the JSON that
    names them with their checksums (written last, atomically), then every other
    checkpoint but ``keep`` (the one saved or resumed from before) is removed: the newest
    two stay, so a damaged newest checkpoint has a complete one behind it."""
    i = progress['iteration']
    _, params, states = checkpoint_files(i)
    nnlstm.save_parameters(os.path.join(folder, params))
    atomic_write(os.path.join(folder, states), solver.save_states)
    progress = dict(progress, params=params, solver=states,
                    sha256={'params': sha256(os.path.join(folder, params)),
                            'solver': sha256(os.path.join(folder, states))})
    save_json(os.path.join(folder, checkpoint_files(i)[0]), progress)
    kept = set(checkpoint_files(i) + (checkpoint_files(keep) if keep is not None else []))
    stale = [n for n in os.listdir(folder) if n not in kept
             and re.match(r'(checkpoint_\d+\.json|(params|solver)_\d+\.h5)$', n)]
    for name in sorted(stale, key=lambda n: not n.endswith('.json')):  # JSONs first
        os.unlink(os.path.join(folder, name))
    return i


def finite(name, array, what):
    if not np.all(np.isfinite(array)):
        raise Damaged('%s holds non-finite values in %s' % (what, name))


def read_progress(path, i, shape, chars):
    """checkpoint_{i}.json, its fields and types checked."""
    try:
        progress = load_json(path)
    except (OSError, ValueError) as e:
        raise Damaged('not readable JSON (%s)' % e)
    if not isinstance(progress, dict):
        raise Damaged('holds %s, not an object' % type(progress).__name__)
    for field, kind in FIELDS.items():
        value = progress.get(field)
        if (isinstance(value, bool) or not isinstance(value, (int, float) if kind is float
                                                      else kind)):
            raise Damaged('field %r is %r; expected a %s' % (field, value, kind.__name__))
    if (progress['iteration'] != i or progress['bad_validations'] < 0
            or not 0 < progress['learning_rate'] < math.inf or math.isnan(progress['best'])
            or [progress['params'], progress['solver']] != checkpoint_files(i)[1:]
            or sorted(progress['sha256']) != ['params', 'solver']):
        raise Damaged('inconsistent fields: %s' % {k: progress[k] for k in FIELDS})
    if progress['model'] != shape:
        raise SystemExit("--resume: the checkpoint holds a model of %s; this run asks for %s"
                         % (progress['model'], shape))
    if progress['vocab_sha256'] != vocab_digest(chars):
        raise Damaged('it was trained with another vocabulary than vocab.json holds')
    return progress


def read_parameters(path, params):
    """The arrays of a parameter file, checked against the model's ``params``."""
    arrays = {}
    try:
        with h5py.File(path, 'r') as f:
            f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                         if isinstance(obj, h5py.Dataset) else None)
    except OSError as e:
        raise Damaged('%s is not a readable parameter file (%s)' % (os.path.basename(path), e))
    what = os.path.basename(path)
    if sorted(arrays) != sorted(params):
        raise Damaged('%s holds other parameters than the model: lacks %s, has extra %s'
                      % (what, sorted(set(params) - set(arrays))[:3],
                         sorted(set(arrays) - set(params))[:3]))
    for name, array in arrays.items():
        if array.shape != params[name].shape:
            raise Damaged('%s has %s of shape %s; the model has %s'
                          % (what, name, array.shape, params[name].shape))
        finite(name, array, what)
    return arrays


def read_solver(path, params, learning_rate):
    """A new Adam solver over ``params`` with the states of ``path``, checked."""
    solver = S.Adam(learning_rate)
    solver.set_parameters(params)
    what = os.path.basename(path)
    try:
        solver.load_states(path)
    except Exception as e:  # h5py's OSError, NNabla's RuntimeError for foreign names
        raise Damaged('%s does not load into the solver (%s)'
                      % (what, str(e).strip().splitlines()[-1]))
    states = solver.get_states()
    if sorted(states) != sorted(params):
        raise Damaged('%s holds states of other parameters than the model' % what)
    for name, state in states.items():
        for key, value in state.pstate.items():
            if value.shape != params[name].shape:
                raise Damaged('%s has %s/%s of shape %s; the model has %s'
                              % (what, name, key, value.shape, params[name].shape))
            finite('%s/%s' % (name, key), value.d, what)
    return solver


def read_checkpoint(folder, i, shape, chars, params):
    """Checkpoint ``i`` fully checked, before anything of it is used: returns (progress,
    parameter arrays, solver), or raises Damaged saying what is wrong."""
    progress = read_progress(os.path.join(folder, checkpoint_files(i)[0]), i, shape, chars)
    for key in ('params', 'solver'):
        path = os.path.join(folder, progress[key])
        if not os.path.exists(path):
            raise Damaged('%s is missing' % progress[key])
        if sha256(path) != progress['sha256'][key]:
            raise Damaged('%s does not match its checksum (damaged or replaced)'
                          % progress[key])
    arrays = read_parameters(os.path.join(folder, progress['params']), params)
    solver = read_solver(os.path.join(folder, progress['solver']), params,
                         progress['learning_rate'])
    return progress, arrays, solver


def resume(folder, shape, chars, params, say=print):
    """The newest checkpoint in ``folder`` that passes every check, loaded into ``params``:
    returns (progress, solver). A damaged one is reported and the older one tried; with
    none left, the run stops and says what to delete."""
    found = checkpoints(folder)
    problems = []
    for i in found:
        try:
            progress, arrays, solver = read_checkpoint(folder, i, shape, chars, params)
        except Damaged as e:
            problems.append('%s: %s' % (checkpoint_files(i)[0], e))
            say('--resume: checkpoint %s is unusable: %s%s'
                % (checkpoint_files(i)[0], e, '; trying the older one' if i != found[-1]
                   else ''))
            continue
        for name, array in arrays.items():
            params[name].d = array
        return progress, solver
    raise SystemExit('--resume: no usable checkpoint in %s (%s). Delete that folder and run '
                     'without --resume to start afresh' % (folder, '; '.join(problems)))


def keep_history(monitor_path, files, upto):
    """NNabla's monitors empty their files when created: read what a resumed run logged up
    to iteration ``upto``, to be written back once the monitors exist."""
    kept = {}
    for name in files:
        path = os.path.join(monitor_path, name)
        if os.path.exists(path):
            with open(path) as f:
                kept[path] = [line for line in f if line.split() and
                              int(line.split()[0]) <= upto]
    return kept


# --- training -----------------------------------------------------------------------------

def main(argv=None, comm=None):
    """Train, checkpoint, export. ``comm``: a communicator (``--comm`` makes NNabla's;
    the tests pass a stand-in)."""
    args = get_args(argv)
    try:
        if args.comm and comm is None:
            comm = communicator(args)
        device = args.device_id if comm is None else comm.local_rank
        nn.set_default_context(nnlstm.context(args.context, device, args.type_config))
    except ImportError as e:  # cudnn without nnabla-ext-cuda120: say what to install
        raise SystemExit('%s: %s' % (__file__, e))
    writer = comm is None or comm.rank == 0   # only rank 0 writes files
    say = print if writer else (lambda *a: None)
    folder = os.path.join(args.model_save_path, 'checkpoint')
    best_path = os.path.join(args.model_save_path, 'char_lm_params.h5')
    vocab_path = os.path.join(args.model_save_path, 'vocab.json')
    if writer:
        for path in (args.model_save_path, args.monitor_path, folder):
            os.makedirs(path, exist_ok=True)
    nn.random.seed(args.seed)
    np.random.seed(args.seed)

    shape = {'embed': args.embed, 'units': args.units, 'num_layers': args.num_layers}
    if args.layer_norm:  # (absent otherwise: checkpoints of plain runs stay resumable)
        shape['layer_norm'] = True
    if args.resume and not checkpoints(folder):
        older = os.path.exists(os.path.join(folder, 'checkpoint.json'))
        raise SystemExit("--resume: no checkpoint in %s%s; run without --resume first"
                         % (folder, ' (its checkpoint.json is the layout of an older '
                            'char_lm.py, without checksums)' if older else ''))
    chars, train_ids, val_ids, source = corpus(
        args, load_vocab(vocab_path) if args.resume else None)
    streams = shard(args.batch_size, comm)
    B, T, V = args.batch_size, args.window, len(chars)
    length, windows = stream_length(len(train_ids), B, T)
    val_length, val_windows = stream_length(len(val_ids), B, T)
    say('corpus: %s: %d characters, %d distinct; %d for training (%d streams x %d windows '
        'of %d per epoch), %d for validation%s'
        % (source, len(train_ids) + len(val_ids), V, len(train_ids), B, windows, T,
           len(val_ids), '' if comm is None else '; %d processes, %d streams each'
           % (comm.size, len(streams))))

    (x, t, loss, carry), (vx, vt, vloss, val_carry) = losses(V, args, len(streams))
    params = nn.get_parameters()
    if comm is not None and comm.rank:   # the same initial parameters, other dropout masks
        nn.random.seed(args.seed + comm.rank)
    progress = {'iteration': 0, 'learning_rate': args.learning_rate, 'best': math.inf,
                'bad_validations': 0, 'model': shape, 'vocab_sha256': vocab_digest(chars)}
    if args.resume:
        progress, solver = resume(folder, shape, chars, params, say)
        if progress.get('best_sha256') and (not os.path.exists(best_path)
                                            or sha256(best_path) != progress['best_sha256']):
            say('--resume: %s does not match the checkpoint (damaged or newer): the best '
                'perplexity so far is forgotten, and the next validation writes the file '
                'again' % best_path)
            progress.update(best=math.inf, best_iteration=None, best_sha256=None)
        say('resumed from iteration %d (learning rate %g, best validation perplexity %.3f);'
            ' the carried LSTM states restart from zeros'
            % (progress['iteration'], progress['learning_rate'], progress['best']))
    else:
        solver = S.Adam(progress['learning_rate'])
        solver.set_parameters(params)
        if writer:
            save_json(vocab_path, {'chars': chars, 'corpus': source})
    last_checkpoint = progress['iteration'] or None

    def validate():
        """Perplexity over the validation streams: exp of the mean cross-entropy."""
        val_carry.reset_state()
        total = 0.0
        for k in range(val_windows):
            vx.d, vt.d = window_at(val_ids, streams, T, val_length, 0, k)
            vloss.forward(clear_buffer=True)
            val_carry.advance()
            total += float(vloss.d)
        mean = nn.NdArray.from_numpy_array(np.array(total / val_windows, np.float32))
        all_reduce_mean(comm, [mean])   # over the processes' streams
        return math.exp(float(mean.data) if comm is not None else total / val_windows)

    names = ('training loss', 'gradient norm', 'validation perplexity', 'learning rate')
    if writer:
        monitor = Monitor(args.monitor_path)
        kept = keep_history(args.monitor_path,
                            [n.replace(' ', '-') + '.series.txt' for n in names]
                            + ['training-time.timer.txt'], progress['iteration'])
        m_loss, m_norm, m_ppl, m_lr = [
            MonitorSeries(name, monitor, interval=interval, verbose=verbose)
            for name, interval, verbose in zip(
                names, (args.log_interval, args.log_interval, 1, 1), (True, False, True, False))]
        m_time = MonitorTimeElapsed('training time', monitor, interval=args.log_interval)
        for m in (m_loss, m_norm, m_time):
            m.flush_at = progress['iteration']  # log at multiples of the interval
        for path, lines in kept.items():
            with open(path, 'a') as f:
                f.writelines(lines)
    else:
        m_loss = m_norm = m_ppl = m_lr = m_time = Silent()

    start = time.time()
    skipped = 0
    first = progress['iteration'] + 1
    for i in range(first, args.max_iter + 1):
        epoch, k = divmod(i - 1, windows)
        if k == 0 or i == first:
            # A new epoch: zero states, and windows shifted by a random offset < T so
            # each epoch cuts the text at other places.
            carry.reset_state()
            offset = np.random.RandomState(args.seed + epoch).randint(T)
        x.d, t.d = window_at(train_ids, streams, T, length, offset, k)
        loss.forward(clear_no_need_grad=True)
        solver.zero_grad()
        loss.backward(clear_buffer=True)
        # Data-parallel: the mean gradient over all streams, before the clip, so the
        # clipped norm is the global one (and the logged loss the mean over all streams).
        all_reduce_mean(comm, [p.grad for p in params.values()] + [loss.data])
        norm = nnlstm.clip_grad_by_global_norm(params, args.max_norm)
        if math.isfinite(norm):
            solver.update()
        else:
            skipped += 1
        carry.advance()
        m_loss.add(i, float(loss.d))
        m_norm.add(i, norm)
        m_time.add(i)
        if i % args.val_interval == 0 or i == args.max_iter:
            ppl = validate()
            m_ppl.add(i, ppl)
            m_lr.add(i, progress['learning_rate'])
            if ppl < progress['best']:
                progress.update(best=ppl, best_iteration=i, bad_validations=0)
                if writer:
                    nnlstm.save_parameters(best_path)
                    progress['best_sha256'] = sha256(best_path)
            else:
                progress['bad_validations'] += 1
                if progress['bad_validations'] >= args.patience:
                    progress['learning_rate'] *= args.lr_decay
                    progress['bad_validations'] = 0
                    solver.set_learning_rate(progress['learning_rate'])
                    say('validation perplexity %.3f did not improve on %.3f: learning rate '
                        '%g' % (ppl, progress['best'], progress['learning_rate']))
            progress['iteration'] = i
            if writer:
                last_checkpoint = save_checkpoint(folder, solver, progress, last_checkpoint)
    if first > args.max_iter:
        say('nothing to train: the checkpoint is at iteration %d, --max-iter is %d'
            % (first - 1, args.max_iter))
    else:
        say('trained iterations %d-%d in %.1f s (%d updates skipped for a non-finite '
            'gradient); best validation perplexity %.3f at iteration %s'
            % (first, args.max_iter, time.time() - start, skipped, progress['best'],
               progress.get('best_iteration')))
    if not writer:
        return progress['best']

    # Export the best parameters as the one-step network, and the vocabulary with the
    # names the sampler needs.
    if os.path.exists(best_path) and progress.get('best_sha256'):
        nn.load_parameters(best_path)
    else:  # no validation ever improved on infinity (a NaN perplexity): the last ones
        nnlstm.save_parameters(best_path)
    nnp_path = os.path.join(args.model_save_path, 'char_lm.nnp')
    states = export(nnp_path, V, args)
    save_json(vocab_path, {'chars': chars, 'corpus': source, 'network': 'step',
                           'input': 'x', 'output': 'logits', 'state': states,
                           'validation_perplexity': progress['best']})
    say('saved %s and %s; sample with\n  ./run python examples/sample_text.py --nnp %s'
        % (nnp_path, vocab_path, nnp_path))
    return progress['best']


if __name__ == '__main__':
    main()
