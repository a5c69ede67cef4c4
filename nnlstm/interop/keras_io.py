"""Keras ``LSTM`` / ``GRU`` / ``SimpleRNN`` weights (``get_weights()`` lists) to and from
nnlstm layers.

Shape legend: B batch size, T time steps, D input features, H units; G the cell's gate
blocks. Keras keeps the gate blocks along the columns of ``kernel`` (D, GH) and
``recurrent_kernel`` (H, GH) in the order of ``nnlstm.gates.ORDERS[cell]['keras']`` (LSTM
i, f, c, o; GRU z, r, h); a GRU with ``reset_after=True`` stacks its two biases as one
(2, 3H) array, input bias first.
"""
import numpy as np

from nnlstm import gates
from nnlstm.interop.store import (array, expect, gate_count, gh, join, kind, layout, read,
                                  split, weight_options, write)


def keras_options(cell, cell_config):
    """The weight options (``use_bias`` and, for a GRU, ``reset_after``) of ``cell_config``:
    Keras' defaults (True) where not given."""
    accepted = weight_options(cell)
    unknown = sorted(set(cell_config) - set(accepted))
    if unknown:
        raise TypeError("unexpected `cell_config` %s for cell %r; accepted: %s"
                        % (', '.join(unknown), cell, ', '.join(accepted)))
    options = {k: cell_config.get(k, kind(cell).options[k]) for k in accepted}
    for k, v in options.items():
        if not isinstance(v, bool):
            raise TypeError("`%s` must be a bool; received %r" % (k, v))
    return options


def keras_shapes(cell, d, h, **options):
    """Keras' ``get_weights()`` of one layer: (name, shape, legend) triples."""
    g = gate_count(cell)
    weights = [('kernel', (d, g * h), '(D, %s)' % gh(g)),
               ('recurrent_kernel', (h, g * h), '(H, %s)' % gh(g))]
    lay = layout(cell, **options)
    if lay.recurrent_bias is not None:
        weights.append(('bias', (2, g * h), '(2, %s)' % gh(g)))
    elif lay.bias is not None:
        weights.append(('bias', (g * h,), '(%s,)' % gh(g)))
    return weights


def from_keras(weights, cell='lstm', **cell_config):
    """nnlstm arrays of a Keras ``LSTM`` / ``GRU`` / ``SimpleRNN`` layer's ``get_weights()``.

    Args:
        weights (list): ``[kernel (D, GH), recurrent_kernel (H, GH), bias]``: bias (GH,), or
            (2, 3H) for a GRU with ``reset_after=True`` (input bias, then recurrent bias);
            no bias with ``use_bias=False``.
        cell (str): 'lstm', 'gru' or 'rnn' (SimpleRNN).
        **cell_config: the Keras layer's ``use_bias`` (default True) and, for a GRU,
            ``reset_after`` (default True).

    Returns:
        dict: nnlstm's parameter names (relative to the layer's scope) to arrays.

    Example:
        >>> arrays = nnlstm.interop.from_keras(layer.get_weights(), 'gru', reset_after=False)
        >>> sorted(arrays)
        ['Un/affine/W', 'UzUr/affine/W', 'WzWrWn/affine/W', 'WzWrWn/affine/b']
    """
    gate_count(cell)
    options = keras_options(cell, cell_config)
    if not isinstance(weights, (list, tuple)):
        raise TypeError("`weights` must be a list, a Keras layer's get_weights(); received %s"
                        % type(weights).__name__)
    expected = keras_shapes(cell, 1, 1, **options)
    if len(weights) != len(expected):
        hint = ''
        if len(weights) == 2 * len(expected):
            hint = ("; a Bidirectional layer lists the forward layer's weights, then the "
                    "backward layer's: load weights[:%d] into '{name}/forward' and "
                    "weights[%d:] into '{name}/backward'" % (len(expected), len(expected)))
        raise ValueError("`weights` holds %d arrays; expected %d (%s) for cell %r with %s%s"
                         % (len(weights), len(expected), ', '.join(n for n, _, _ in expected),
                            cell, ', '.join('%s=%s' % kv for kv in options.items()), hint))
    args = ['weights[%d] (%s)' % (k, n) for k, (n, _, _) in enumerate(expected)]
    ws = [array(w, arg, legend) for w, arg, (_, _, legend) in zip(weights, args, expected)]
    h = ws[1].shape[0]
    for w, arg, (_, shape, legend) in zip(ws, args, keras_shapes(cell, ws[0].shape[0], h,
                                                                 **options)):
        expect(w, arg, shape, '%s with H = %d' % (legend, h))

    def ours(a):
        return gates.reorder(a, cell, 'keras', 'nnlstm')

    bias = recurrent_bias = None
    if len(ws) == 3:
        bias, recurrent_bias = (ws[2][0], ws[2][1]) if ws[2].ndim == 2 else (ws[2], None)
    return join(cell, options, ours(ws[0]), ours(ws[1]), bias if bias is None else ours(bias),
                recurrent_bias if recurrent_bias is None else ours(recurrent_bias))


def to_keras(params, cell='lstm', **cell_config):
    """A Keras ``get_weights()`` list from nnlstm arrays ``params`` (see :func:`from_keras`
    for the list and ``cell_config``, which must match the arrays)."""
    gate_count(cell)
    options = keras_options(cell, cell_config)
    built, kernel, recurrent, bias, recurrent_bias = split(cell, params)

    def theirs(a):
        return np.ascontiguousarray(gates.reorder(a, cell, 'nnlstm', 'keras'))

    for option in options:
        if option != 'use_bias' and built[option] != options[option]:
            raise ValueError("`%s=%s` given, but the parameters are those of a %s=%s %s "
                             "layer (%s)" % (option, options[option], option, built[option],
                                             kind(cell).layer_name,
                                             ', '.join(sorted(params))))
    biases = [b for b in layout(cell, **options)[3:] if b is not None]
    if options['use_bias'] and not built['use_bias']:
        raise ValueError("use_bias=True, but `params` has no %s; pass use_bias=False for a "
                         "layer built without a bias" % ', '.join(map(repr, biases)))
    if not options['use_bias'] and built['use_bias']:
        raise ValueError("use_bias=False, but `params` has %s"
                         % ', '.join(repr(b) for b in layout(cell, **built)[3:]
                                     if b is not None))
    out = [theirs(kernel), theirs(recurrent)]
    if bias is not None:
        out.append(theirs(bias) if recurrent_bias is None
                   else np.stack([theirs(bias), theirs(recurrent_bias)]))
    return out


def load_keras(weights, name, cell='lstm', **cell_config):
    """Load a Keras ``LSTM`` / ``GRU`` / ``SimpleRNN`` layer's ``get_weights()`` into the
    parameters of the nnlstm layer ``name``.

    Args:
        weights (list): as in :func:`from_keras`.
        name (str): the nnlstm layer's scope.
        cell (str): 'lstm', 'gru' or 'rnn'.
        **cell_config: ``use_bias`` (default True) and, for a GRU, ``reset_after`` (default
            True): the Keras layer's options. Build the nnlstm layer with the same.

    Example:
        >>> nnlstm.interop.load_keras(keras_gru.get_weights(), 'gru', cell='gru',
        ...                           reset_after=False)
        >>> y, h = nnlstm.GRU(x, H, name='gru', reset_after=False, return_state=True)
        >>> ws = keras_bi.get_weights()  # Bidirectional(LSTM): forward's 3, backward's 3
        >>> nnlstm.interop.load_keras(ws[:3], 'bi/forward')
        >>> nnlstm.interop.load_keras(ws[3:], 'bi/backward')
        >>> y = nnlstm.Bidirectional(nnlstm.LSTM, x, H, name='bi')            # (B, 2H)
    """
    write(name, cell, from_keras(weights, cell, **cell_config))


def save_keras(name, cell='lstm', **cell_config):
    """The nnlstm layer ``name`` as a Keras ``get_weights()`` list, for
    ``keras_layer.set_weights``; ``cell_config`` (``use_bias``, ``reset_after``) as the
    layer was built.

    Example:
        >>> keras_gru.set_weights(nnlstm.interop.save_keras('gru', cell='gru'))
    """
    keras_options(cell, cell_config)
    return to_keras(read(name, cell), cell, **cell_config)
