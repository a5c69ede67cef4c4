"""Generate text from the character language model's exported one-step network.

Reads only ``char_lm.nnp`` (written by examples/char_lm.py) with NNabla's own NnpLoader and
the vocabulary ``vocab.json`` beside it: nnlstm is not imported, so this runs wherever NNabla
does. The network is one step, (x_t, c and h of every layer) -> (logits, the next c and h):
the script feeds the prime text one character at a time, then samples each next character
from softmax(logits / temperature) and feeds it, and the states, back.

    ./run python examples/sample_text.py                          # out/char_lm/char_lm.nnp
    ./run python examples/sample_text.py --prime 'class ' --temperature 0.5 -b 3 -n 400
"""
import argparse
import json
import math
import os

import numpy as np
import nnabla as nn
import nnabla.functions as F
from nnabla.ext_utils import get_extension_context
from nnabla.utils.nnp_graph import NnpLoader


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--context', '-c', default='cpu', choices=('cpu', 'cuda', 'cudnn'),
                   help="'cpu', or 'cudnn' with nnabla-ext-cuda120")
    p.add_argument('--device-id', '-d', default='0')
    p.add_argument('--type-config', '-t', default='float', choices=('float', 'half'))
    p.add_argument('--nnp', default='out/char_lm/char_lm.nnp', help='the exported step network')
    p.add_argument('--vocab', default=None, help="defaults to vocab.json beside --nnp")
    p.add_argument('--batch-size', '-b', type=int, default=1,
                   help='how many samples to generate side by side')
    p.add_argument('--length', '-n', type=int, default=500, help='characters to generate')
    p.add_argument('--prime', default='def ', help='the text the samples start from')
    p.add_argument('--temperature', type=float, default=0.8,
                   help='below 1: safer, above 1: more varied; 0: always the likeliest')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    args.vocab = args.vocab or os.path.join(os.path.dirname(args.nnp), 'vocab.json')
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        p.error('--temperature must be a finite number >= 0 (0: the likeliest); received %g'
                % args.temperature)
    for option, value in (('--batch-size/-b', args.batch_size), ('--length/-n', args.length)):
        if value < 1:
            p.error('%s must be at least 1; received %d' % (option, value))
    if not args.prime:
        p.error('--prime must hold at least one character')
    return args


def next_ids(logits, temperature, rng):
    """One character id per row of ``logits`` (B, V): sampled from softmax(logits / T),
    or the argmax when T = 0."""
    if temperature == 0:
        return logits.argmax(axis=1)
    z = logits.astype(np.float64)
    # Shifted before dividing, so a tiny temperature gives -inf (probability 0), never NaN.
    p = np.exp((z - z.max(axis=1, keepdims=True)) / temperature)
    p /= p.sum(axis=1, keepdims=True)
    return np.array([rng.choice(len(row), p=row) for row in p])


def read_vocab(args):
    """vocab.json: the characters and the names of the network, its input, output and
    state pairs, checked."""
    try:
        with open(args.vocab, encoding='utf-8') as f:
            spec = json.load(f)
        chars, names = spec['chars'], [spec['network'], spec['input'], spec['output']]
        pairs = [(str(a), str(b)) for a, b in spec['state']]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit('--vocab %s is not the vocabulary char_lm.py writes beside its .nnp '
                         '(%s: %s)' % (args.vocab, type(e).__name__, e))
    if not (isinstance(chars, list) and chars and all(isinstance(c, str) for c in chars)):
        raise SystemExit('--vocab %s: "chars" must be a list of characters' % args.vocab)
    return chars, names, pairs


def load_network(args, network, input_name, output_name, pairs):
    """The step network of the .nnp at batch size -b, its variables checked by name."""
    try:
        nnp = NnpLoader(args.nnp)
    except Exception as e:  # NNabla raises what its zip/protobuf readers raise
        raise SystemExit('--nnp %s is not an .nnp file NNabla can read (%s: %s)'
                         % (args.nnp, type(e).__name__, e))
    if network not in nnp.get_network_names():
        raise SystemExit('--nnp %s holds the networks %s, not %r (the one-step network '
                         'char_lm.py exports)' % (args.nnp, nnp.get_network_names(), network))
    net = nnp.get_network(network, batch_size=args.batch_size)
    missing = ([n for n in [input_name] + [a for a, _ in pairs] if n not in net.inputs]
               + [n for n in [output_name] + [b for _, b in pairs] if n not in net.outputs])
    if missing:
        raise SystemExit('--nnp %s: network %r lacks %s, which --vocab %s names'
                         % (args.nnp, network, missing, args.vocab))
    return net


def main(argv=None):
    args = get_args(argv)
    for option, path in (('--nnp', args.nnp), ('--vocab', args.vocab)):
        if not os.path.isfile(path):
            raise SystemExit('%s %s: no such file (examples/char_lm.py writes char_lm.nnp '
                             'and vocab.json)' % (option, path))
    try:
        nn.set_default_context(get_extension_context(args.context, device_id=args.device_id,
                                                     type_config=args.type_config))
    except ImportError as e:
        raise SystemExit("--context %s needs NNabla's CUDA extension (%s): pip install "
                         "nnabla-ext-cuda120 (an NVIDIA GPU with CUDA 12 and cuDNN 8), or use "
                         "--context cpu" % (args.context, e))
    chars, (network, input_name, output_name), pairs = read_vocab(args)
    index = {ch: k for k, ch in enumerate(chars)}
    unknown = sorted(set(args.prime) - set(chars))
    if unknown:
        raise SystemExit('--prime holds characters the model never saw: %r' % ''.join(unknown))

    net = load_network(args, network, input_name, output_name, pairs)
    x, logits = net.inputs[input_name], net.outputs[output_name]
    if logits.shape != (args.batch_size, len(chars)):
        raise SystemExit('--nnp %s: %r has shape %s; the vocabulary needs (B, V) = (%d, %d)'
                         % (args.nnp, output_name, logits.shape, args.batch_size, len(chars)))
    states = [(net.inputs[name], net.outputs[next_name]) for name, next_name in pairs]
    step = F.sink(logits, *[v for _, v in states])  # computes every output in one forward
    for v, _ in states:
        v.d = 0.0

    def feed(ids):
        x.d = ids
        step.forward()
        new = [v.d.copy() for _, v in states]   # read all before writing any
        for (v, _), d in zip(states, new):
            v.d = d
        return logits.d.copy()

    rng = np.random.RandomState(args.seed)
    for ch in args.prime[:-1]:
        feed(np.full(args.batch_size, index[ch]))
    ids = np.full(args.batch_size, index[args.prime[-1]])
    out = [[] for _ in range(args.batch_size)]
    for _ in range(args.length):
        scores = feed(ids)
        if not np.all(np.isfinite(scores)):
            raise SystemExit('--nnp %s computes non-finite logits: the file is damaged'
                             % args.nnp)
        ids = next_ids(scores, args.temperature, rng)
        for row, k in zip(out, ids):
            row.append(chars[k])
    for k, row in enumerate(out):
        if args.batch_size > 1:
            print('----- sample %d (temperature %g) -----' % (k, args.temperature))
        print(args.prime + ''.join(row))
    return [args.prime + ''.join(row) for row in out]


if __name__ == '__main__':
    main()
