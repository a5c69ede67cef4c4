"""Character language model with nnlstm: stateful truncated BPTT, global-norm clipping.

Trains an embedding, a 2-layer LSTM (variational dropout between the layers and on the
recurrent state) and a softmax over the characters of a text. The text is cut into
``--batch-size`` contiguous streams and each ``--window``-step window continues where the
stream's previous window ended: an ``nnlstm.Carry`` hands the LSTM states over from one
update to the next while gradients stop at the window's start (Chainer's
ParallelSequentialIterator + BPTTUpdater, Keras' ``stateful=True``). Gradients are clipped
by their global norm, validation perplexity is measured on a graph of its own built without
gradients or dropout, the learning rate drops when validation stops improving, and a
checkpoint (parameters, solver state, progress) is written atomically at every validation so
``--resume`` continues an interrupted run.

At the end the best parameters are exported as ``char_lm.nnp`` whose network is ONE step:
(x_t, c and h of every layer) -> (logits, the next c and h), with the vocabulary in
``vocab.json``; ``examples/sample_text.py`` generates text from those two files with NNabla
alone.

With no ``--text`` the corpus is Python's own standard library: the interpreter's top-level
``*.py`` modules in sorted order, concatenated up to ``--max-chars`` characters.

    ./run python examples/char_lm.py                  # the default run (see the README)
    ./run python examples/char_lm.py -i 300 -o out/quick
    ./run python examples/char_lm.py --resume         # continue an interrupted run
    ./run python examples/sample_text.py --temperature 0.7
"""
import argparse
import glob
import json
import math
import os
import sysconfig
import time
import tokenize

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


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--context', '-c', default='cpu', choices=nnlstm.CONTEXTS,
                   help="'cpu', or 'cudnn' with nnabla-ext-cuda120")
    p.add_argument('--device-id', '-d', default='0')
    p.add_argument('--type-config', '-t', default='float')
    p.add_argument('--batch-size', '-b', type=int, default=32,
                   help='B, the number of parallel streams')
    p.add_argument('--max-iter', '-i', type=int, default=1500)
    p.add_argument('--val-interval', type=int, default=250)
    p.add_argument('--log-interval', type=int, default=50)
    p.add_argument('--window', type=int, default=50, help='T, the truncated-BPTT length')
    p.add_argument('--embed', type=int, default=64)
    p.add_argument('--units', type=int, default=128)
    p.add_argument('--num-layers', type=int, default=2)
    p.add_argument('--dropout', type=float, default=0.1,
                   help='between the layers and before the softmax')
    p.add_argument('--recurrent-dropout', type=float, default=0.1,
                   help='variational dropout of the recurrent state')
    p.add_argument('--learning-rate', type=float, default=2e-3, help='Adam')
    p.add_argument('--max-norm', type=float, default=5.0,
                   help='global gradient-norm clipping')
    p.add_argument('--lr-decay', type=float, default=0.5,
                   help='multiply the learning rate by this on a validation plateau')
    p.add_argument('--patience', type=int, default=1,
                   help='validations without improvement before the rate decays')
    p.add_argument('--text', default=None,
                   help="a UTF-8 text file; default: Python's standard-library sources")
    p.add_argument('--max-chars', type=int, default=2000000, help='cap on the corpus size')
    p.add_argument('--val-fraction', type=float, default=0.05,
                   help='the end of the text held out for validation')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--resume', action='store_true',
                   help='continue from the checkpoint in --model-save-path')
    p.add_argument('--model-save-path', '-o', default='out/char_lm')
    p.add_argument('--monitor-path', '-m', default=None,
                   help='defaults to --model-save-path')
    args = p.parse_args(argv)
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
        with open(path, encoding='utf-8') as f:
            return f.read(max_chars), os.path.basename(path)
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


def window_at(ids, batch, window, length, offset, k):
    """Window ``k`` of every stream: stream b is ``ids[offset + b * length:]``, and window
    k of it covers its characters k*T .. k*T + T - 1, with the next characters as targets.
    Returns x (B, T) and t (B, T, 1)."""
    starts = offset + np.arange(batch) * length + k * window
    chunk = ids[starts[:, None] + np.arange(window + 1)]
    return chunk[:, :-1], chunk[:, 1:, None]


# --- the model ----------------------------------------------------------------------------

def model(x, vocab_size, args, carry, training):
    """x (B, T) character ids -> logits (B, T, V). ``carry`` makes the LSTM stateful."""
    e = PF.embed(x, vocab_size, args.embed, name=EMBED)                       # (B, T, E)
    y = nnlstm.Stacked(nnlstm.LSTM, e, args.units, num_layers=args.num_layers,
                       dropout=args.dropout, recurrent_dropout=args.recurrent_dropout,
                       training=training, return_sequences=True, stateful=carry,
                       name=LSTM)                                             # (B, T, H)
    if training and args.dropout:
        y = F.dropout(y, args.dropout)
    return PF.affine(y, vocab_size, base_axis=2, name=FC)                     # (B, T, V)


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
        c, h = nnlstm.LSTMCell(y, c, h, name='%s/layer%d' % (LSTM, k))
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


# --- checkpoints --------------------------------------------------------------------------

def save_checkpoint(folder, solver, progress):
    """Parameters and solver state under names holding the iteration, then the JSON that
    points at them (written last, atomically), then the older files are removed: at every
    moment checkpoint.json names a complete checkpoint."""
    i = progress['iteration']
    progress = dict(progress, params='params_%d.h5' % i, solver='solver_%d.h5' % i)
    nnlstm.save_parameters(os.path.join(folder, progress['params']))
    atomic_write(os.path.join(folder, progress['solver']), solver.save_states)
    save_json(os.path.join(folder, 'checkpoint.json'), progress)
    for old in glob.glob(os.path.join(folder, '*_*.h5')):
        if os.path.basename(old) not in (progress['params'], progress['solver']):
            os.unlink(old)


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

def main(argv=None):
    args = get_args(argv)
    try:
        nn.set_default_context(nnlstm.context(args.context, args.device_id, args.type_config))
    except ImportError as e:  # cudnn without nnabla-ext-cuda120: say what to install
        raise SystemExit('%s: %s' % (__file__, e))
    os.makedirs(args.model_save_path, exist_ok=True)
    os.makedirs(args.monitor_path, exist_ok=True)
    folder = os.path.join(args.model_save_path, 'checkpoint')
    os.makedirs(folder, exist_ok=True)
    vocab_path = os.path.join(args.model_save_path, 'vocab.json')
    nn.random.seed(args.seed)
    np.random.seed(args.seed)

    text, source = load_text(args.text, args.max_chars)
    shape = {'embed': args.embed, 'units': args.units, 'num_layers': args.num_layers}
    progress = {'iteration': 0, 'learning_rate': args.learning_rate, 'best': math.inf,
                'bad_validations': 0, 'model': shape}
    if args.resume:
        if not os.path.exists(os.path.join(folder, 'checkpoint.json')):
            raise SystemExit("--resume: no checkpoint in %s; run without --resume first" % folder)
        progress = load_json(os.path.join(folder, 'checkpoint.json'))
        if progress['model'] != shape:
            raise SystemExit("--resume: the checkpoint holds a model of %s; this run asks for "
                             "%s" % (progress['model'], shape))
        chars = load_json(vocab_path)['chars']
        unknown = sorted(set(text) - set(chars))
        if unknown:
            raise ValueError("the text holds characters the checkpoint's vocabulary lacks: %r"
                             % ''.join(unknown[:20]))
    else:
        chars = sorted(set(text))
    index = {ch: k for k, ch in enumerate(chars)}
    ids = np.array([index[ch] for ch in text], dtype=np.int32)
    split = int(len(ids) * (1 - args.val_fraction))
    train_ids, val_ids = ids[:split], ids[split:]
    B, T, V = args.batch_size, args.window, len(chars)
    length, windows = stream_length(len(train_ids), B, T)
    val_length, val_windows = stream_length(len(val_ids), B, T)
    print('corpus: %s: %d characters, %d distinct; %d for training (%d streams x %d windows '
          'of %d per epoch), %d for validation'
          % (source, len(text), V, len(train_ids), B, windows, T, len(val_ids)))

    # Training graph: dropout, gradients, its own Carry. Validation graph: built under
    # nn.no_grad() (no dropout, no gradient buffers), the same parameters by name, and a
    # Carry of its own so validating leaves the training streams' states alone.
    carry, val_carry = nnlstm.Carry(), nnlstm.Carry()
    x, t = nn.Variable((B, T)), nn.Variable((B, T, 1))
    loss = F.mean(F.softmax_cross_entropy(model(x, V, args, carry, True), t, axis=2))
    with nn.no_grad():
        vx, vt = nn.Variable((B, T)), nn.Variable((B, T, 1))
        vloss = F.mean(F.softmax_cross_entropy(model(vx, V, args, val_carry, False), vt,
                                               axis=2))
    params = nn.get_parameters()
    solver = S.Adam(progress['learning_rate'])
    solver.set_parameters(params)
    if args.resume:
        nn.load_parameters(os.path.join(folder, progress['params']))
        solver.load_states(os.path.join(folder, progress['solver']))
        solver.set_learning_rate(progress['learning_rate'])
        print('resumed from iteration %d (learning rate %g, best validation perplexity %.3f);'
              ' the carried LSTM states restart from zeros'
              % (progress['iteration'], progress['learning_rate'], progress['best']))
    else:
        save_json(vocab_path, {'chars': chars, 'corpus': source})

    def validate():
        """Perplexity over the validation streams: exp of the mean cross-entropy."""
        val_carry.reset_state()
        total = 0.0
        for k in range(val_windows):
            vx.d, vt.d = window_at(val_ids, B, T, val_length, 0, k)
            vloss.forward(clear_buffer=True)
            val_carry.advance()
            total += float(vloss.d)
        return math.exp(total / val_windows)

    monitor = Monitor(args.monitor_path)
    names = ('training loss', 'gradient norm', 'validation perplexity', 'learning rate')
    kept = keep_history(args.monitor_path, [n.replace(' ', '-') + '.series.txt' for n in names]
                        + ['training-time.timer.txt'], progress['iteration'])
    m_loss, m_norm, m_ppl, m_lr = [
        MonitorSeries(name, monitor, interval=interval, verbose=verbose)
        for name, interval, verbose in zip(names, (args.log_interval, args.log_interval, 1, 1),
                                           (True, False, True, False))]
    m_time = MonitorTimeElapsed('training time', monitor, interval=args.log_interval)
    for m in (m_loss, m_norm, m_time):
        m.flush_at = progress['iteration']  # log at multiples of the interval
    for path, lines in kept.items():
        with open(path, 'a') as f:
            f.writelines(lines)

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
        x.d, t.d = window_at(train_ids, B, T, length, offset, k)
        loss.forward(clear_no_need_grad=True)
        solver.zero_grad()
        loss.backward(clear_buffer=True)
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
                nnlstm.save_parameters(os.path.join(args.model_save_path, 'char_lm_params.h5'))
            else:
                progress['bad_validations'] += 1
                if progress['bad_validations'] >= args.patience:
                    progress['learning_rate'] *= args.lr_decay
                    progress['bad_validations'] = 0
                    solver.set_learning_rate(progress['learning_rate'])
                    print('validation perplexity %.3f did not improve on %.3f: learning rate '
                          '%g' % (ppl, progress['best'], progress['learning_rate']))
            progress['iteration'] = i
            save_checkpoint(folder, solver, progress)
    print('trained iterations %d-%d in %.1f s (%d updates skipped for a non-finite gradient);'
          ' best validation perplexity %.3f at iteration %s'
          % (first, args.max_iter, time.time() - start, skipped, progress['best'],
             progress.get('best_iteration')))

    # Export the best parameters as the one-step network, and the vocabulary with the
    # names the sampler needs.
    best_path = os.path.join(args.model_save_path, 'char_lm_params.h5')
    if os.path.exists(best_path):
        nn.load_parameters(best_path)
    else:  # no validation ever improved on infinity (a NaN perplexity): the last ones
        nnlstm.save_parameters(best_path)
    nnp_path = os.path.join(args.model_save_path, 'char_lm.nnp')
    states = export(nnp_path, V, args)
    save_json(vocab_path, {'chars': chars, 'corpus': source, 'network': 'step',
                           'input': 'x', 'output': 'logits', 'state': states,
                           'validation_perplexity': progress['best']})
    print('saved %s and %s; sample with\n  ./run python examples/sample_text.py --nnp %s'
          % (nnp_path, vocab_path, nnp_path))
    return progress['best']


if __name__ == '__main__':
    main()
