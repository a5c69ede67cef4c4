"""Wrappers that compose the layers: :func:`Bidirectional` (two unrolls and a merge) and
:func:`Stacked` (a loop over layers).

Shape legend: B batch size, T time steps, D input features, H units.
"""
import functools

import nnabla.functions as F

from . import _checks, record
from .kinds import kind_of, layer_names
from .layers import (accepted, check_flags, check_options, layer_options, run, scope,
                     split_options)

MERGES = {
    'concat': lambda a, b: F.concatenate(a, b, axis=a.ndim - 1),
    'sum': F.add2,
    'mul': F.mul2,
    'ave': lambda a, b: F.mul_scalar(F.add2(a, b), 0.5),
}

#: Layer options a Bidirectional layer does not take: it runs both directions itself, and
#: has no fused path.
NOT_BIDIRECTIONAL = {'go_backwards', 'fused'}


def segment_ends(resets, time_major):
    """The backward direction's resets for a Bidirectional layer given ``resets`` (B, T)
    ((T, B) with ``time_major``), which mark where segments start: 1 at step t where step t
    + 1 starts a segment, so the backward direction starts each segment from its last step;
    None for T = 1 or no resets."""
    if resets is None or resets.shape[0 if time_major else 1] == 1:
        return None
    if time_major:
        return F.pad(F.slice(resets, (1, 0), resets.shape), (0, 1, 0, 0))
    return F.pad(F.slice(resets, (1,), resets.shape[1:], (1,)), (0, 1))  # batch free


def bidirectional_options(kind):
    return layer_options(kind) - NOT_BIDIRECTIONAL


def Bidirectional(layer, inputs, units, merge_mode='concat', name='bidirectional',
                  initial_state=None, return_sequences=False, return_state=False,
                  time_major=False, lengths=None, **layer_kwargs):
    """Run ``layer`` forward and backward over ``inputs`` and merge the two (Keras'
    ``Bidirectional``; PyTorch's ``bidirectional=True``).

    Args:
        layer: :func:`nnlstm.LSTM`, :func:`nnlstm.GRU` or :func:`nnlstm.SimpleRNN`.
        inputs (~nnabla.Variable): (B, T, D).
        merge_mode (str or None): 'concat' (the last axis becomes 2H), 'sum', 'mul', 'ave',
            or None to return both directions' outputs.
        name (str): the two layers live in ``{name}/forward`` and ``{name}/backward``.
        initial_state: the forward layer's state followed by the backward layer's, e.g.
            ``(c0_f, h0_f, c0_b, h0_b)`` for LSTM, ``(h0_f, h0_b)`` for GRU.
        lengths: as for the layer; the backward direction then starts at each sequence's own
            last step (PyTorch's packed sequences).
        resets: as for the layer, (B, T) of 0 and 1 marking where segments start (1 at
            step t: a new segment starts at t): the forward direction starts step t afresh,
            the backward one step t - 1, so each segment's outputs equal a Bidirectional
            run over that segment alone.
        **layer_kwargs: the layer's options, but ``go_backwards`` and ``fused`` (both
            directions run unrolled); anything else is a TypeError naming it.

    Returns:
        ``y`` (merged), or ``(y_f, y_b)`` with ``merge_mode=None``; with ``return_state``,
        the forward then the backward final states follow, e.g.
        ``(y, c_f, h_f, c_b, h_b)``. As in Keras, the backward sequence is returned in input
        order, and without ``return_sequences`` the backward output is its state after
        reading step 0.

    Example:
        >>> y = nnlstm.Bidirectional(nnlstm.LSTM, x, 16, return_sequences=True)  # (B, T, 32)
    """
    kind = kind_of(layer)
    if 'go_backwards' in layer_kwargs:
        raise ValueError("`go_backwards` is not an option of Bidirectional: it runs both "
                         "directions")
    check_options('Bidirectional', layer_kwargs,
                  accepted(Bidirectional, bidirectional_options(kind)))
    check_flags(return_sequences=return_sequences, return_state=return_state,
                time_major=time_major)
    if merge_mode is not None:
        _checks.choice(merge_mode, 'merge_mode', tuple(MERGES) + (None,))
    fields = len(kind.state._fields)
    states = (None, None)
    if initial_state is not None:
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2 * fields:
            raise ValueError("`initial_state` must hold %d Variables, the forward layer's "
                             "state then the backward layer's; received %r"
                             % (2 * fields, initial_state))
        states = (initial_state[:fields], initial_state[fields:])
        if fields == 1:
            states = (states[0][0], states[1][0])
    options, cell_options = split_options(layer_kwargs)
    del options['fused']
    batch, steps, _ = _checks.sequence(inputs, 'inputs', time_major)
    resets = _checks.resets(options.pop('resets'), batch, steps, time_major)
    ys, finals, directions = [], [], []
    with scope(name):
        for direction, state, restart in zip(('forward', 'backward'), states,
                                             (resets, segment_ends(resets, time_major))):
            sequence, final, given, part = run(kind, inputs, units, state, direction,
                                               direction == 'backward', time_major, lengths,
                                               resets=restart, cell_options=cell_options,
                                               order='input' if return_sequences else None,
                                               **options)
            ys.append(sequence if return_sequences else final.h)
            finals.extend(final)
            directions.append(part)
    y = tuple(ys) if merge_mode is None else (MERGES[merge_mode](*ys),)
    returned = y + tuple(finals) if return_state else y
    record.register(record.LayerRecord(name, kind, tuple(directions), merge_mode, inputs,
                                       given, return_sequences, returned))
    return returned if return_state or merge_mode is None else y[0]


#: What Stacked passes to each of its layers itself.
STACKED_SETS = {'inputs', 'units', 'layer', 'name', 'initial_state', 'return_sequences',
                'return_state', 'dropout'}


def stacked_layer(layer):
    """The options ``layer`` takes inside :func:`Stacked`: ``layer`` is a layer function or
    a ``functools.partial`` of one or of ``Bidirectional`` with one; anything else is a
    TypeError. A bidirectional layer without a ``merge_mode`` is a ValueError (the next
    layer needs one sequence)."""
    func, args, preset = layer, (), {}
    if isinstance(layer, functools.partial):
        func, args, preset = layer.func, layer.args, layer.keywords
    try:
        if func is Bidirectional and len(args) == 1:
            kind = kind_of(args[0])
            if preset.get('merge_mode', 'concat') is None:
                raise ValueError("a stacked Bidirectional layer needs a `merge_mode`; "
                                 "received None in %r" % (layer,))
            return accepted(Bidirectional, bidirectional_options(kind)) - STACKED_SETS
        if not args:
            return accepted(func, layer_options(kind_of(func))) - STACKED_SETS
    except TypeError:
        pass
    raise TypeError("`layer` must be %s, or functools.partial(nnlstm.Bidirectional, one of "
                    "them); received %r" % (layer_names(), layer))


def Stacked(layer, inputs, units, num_layers=2, dropout=0.0, name='stacked',
            initial_state=None, return_sequences=False, return_state=False, **layer_kwargs):
    """``num_layers`` recurrent layers, each reading the previous one's output sequence
    (PyTorch's and ``PF.lstm``'s ``num_layers``).

    Args:
        layer: :func:`nnlstm.LSTM`, ``GRU``, ``SimpleRNN``, or a bidirectional layer such as
            ``functools.partial(nnlstm.Bidirectional, nnlstm.LSTM)`` (with a ``merge_mode``).
        inputs (~nnabla.Variable): (B, T, D).
        num_layers (int): how many layers.
        dropout (float): dropout on the inputs of every layer but the first, as PyTorch's
            ``dropout``, but variational: one mask per sequence, the same at every step;
            with ``num_layers=1`` (no such layer) a ValueError.
        name (str): the layers live in ``{name}/layer0``, ``{name}/layer1``, ...
        initial_state (list): one entry per layer, each as that layer takes it.
        **layer_kwargs: passed to every layer (``units``-independent options; ``resets``
            restarts every layer at the same steps); an option the layer does not take is a
            TypeError naming it.

    Returns:
        ``y``: the last layer's output, or ``(y, states)`` with ``return_state``:
        ``states`` a list with each layer's final state tuple, e.g. ``[(c, h), (c, h)]``.

    Example:
        >>> y = nnlstm.Stacked(nnlstm.LSTM, x, 64, num_layers=2, dropout=0.3)
    """
    inner = stacked_layer(layer)
    check_options('Stacked', layer_kwargs, accepted(Stacked, inner))
    num_layers = _checks.positive_int(num_layers, 'num_layers')
    _checks.probability(dropout, 'dropout')
    if dropout and num_layers == 1:
        raise ValueError("`dropout` = %r acts on the inputs of every layer but the first, and "
                         "num_layers=1 has none (PyTorch warns the same): use num_layers >= 2 "
                         "or dropout=0" % dropout)
    check_flags(return_sequences=return_sequences, return_state=return_state)
    if initial_state is not None and not isinstance(initial_state, (list, tuple)):
        raise TypeError("`initial_state` must be a list with one state per layer; received %s"
                        % type(initial_state).__name__)
    if initial_state is not None and len(initial_state) != num_layers:
        raise ValueError("`initial_state` must hold one state per layer, %d; received %d"
                         % (num_layers, len(initial_state)))
    if 'merge_mode' in layer_kwargs and layer_kwargs['merge_mode'] is None:
        raise ValueError("a stacked Bidirectional layer needs a `merge_mode`; received None")
    y, states = inputs, []
    with scope(name):
        for k in range(num_layers):
            out = layer(y, units, name='layer%d' % k,
                        initial_state=None if initial_state is None else initial_state[k],
                        return_sequences=return_sequences or k < num_layers - 1,
                        return_state=True, dropout=dropout if k else 0.0, **layer_kwargs)
            y = out[0]
            states.append(tuple(out[1:]))
    return (y, states) if return_state else y
