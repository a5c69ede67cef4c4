"""The one loop that unrolls every cell over time into a static NNabla graph."""
import nnabla.functions as F

from . import _checks
from .cells import Core
from .process import ensure_stack


#: Steps per F.split / F.stack call. One call over all T steps costs time quadratic in T in
#: NNabla 1.39 (Split's backward, Stack's forward): at T = 20000, 5.3 s for one Stack's
#: forward against 0.11 s in chunks. Longer sequences go in chunks of this many steps.
CHUNK = 64


def split_time(inputs, axis):
    """Split ``inputs`` along its time ``axis`` into a list of T (B, D) Variables: one
    ``F.split`` per :data:`CHUNK` steps, each chunk cut by a slice of the trailing axes (no
    batch bound, so an exported file keeps a variable batch). ``F.split`` rejects a single
    output, so one step is a reshape to the concrete (B, D): NNabla's saver turns a
    Reshape's leading batch size into -1, and rejects any other leading value."""
    steps, rows, dim = inputs.shape[axis], inputs.shape[1 - axis], inputs.shape[2]
    if steps == 1:
        return [F.reshape(inputs, (rows, dim))]
    if steps <= CHUNK:
        return list(F.split(inputs, axis=axis))
    parts = []
    for start in range(0, steps, CHUNK):
        stop = min(start + CHUNK, steps)
        if axis == 1:
            chunk = F.slice(inputs, (start, 0), (stop, dim), (1, 1))
        else:
            chunk = F.slice(inputs, (start, 0, 0), (stop, rows, dim), (1, 1, 1))
        parts += split_time(chunk, axis)
    return parts


def stack_time(outputs, axis):
    """Stack T (B, H) Variables along the time ``axis``: one ``F.stack`` per :data:`CHUNK`
    steps, concatenated."""
    if len(outputs) <= CHUNK:
        return F.stack(*outputs, axis=axis)
    return F.concatenate(*[F.stack(*outputs[start:start + CHUNK], axis=axis)
                           for start in range(0, len(outputs), CHUNK)], axis=axis)


def dropout_mask(shape, rate):
    """One variational-dropout mask per sequence: 0 with probability ``rate``, else
    1 / (1 - rate); the same mask multiplies every time step (Gal and Ghahramani)."""
    return F.dropout(F.constant(1.0, shape), rate)


def step_function(d):
    """1 where the integer-valued ``d`` >= 1, else 0, as ``relu(d) - relu(d - 1)``: float
    arithmetic, where a comparison would give ONNX converters a boolean they cannot use."""
    return F.sub2(F.relu(d), F.relu(F.add_scalar(d, -1.0)))


def length_masks(lengths, steps, units):
    """Per step, the (B, H) masks ``(m, 1 - m)``, m = 1 where step t < the sequence's
    length, made for all steps at once; blending ``m * new + (1 - m) * old`` keeps valid
    steps exact. ``lengths`` is floored first: a Variable's values cannot be checked when
    the graph is built, and a fraction would blend part of a step into the state."""
    batch = lengths.shape[0]
    lengths = F.reshape(F.floor(lengths), (batch, 1, 1))
    t = F.reshape(F.arange(0, steps), (1, steps, 1))
    masks = [step_function(F.sub2(lengths, t)),                           # t < length
             step_function(F.sub2(F.add_scalar(t, 1.0), lengths))]        # t >= length
    ones = F.constant(1.0, (1, 1, units))  # broadcasts with no batch-sized shape to export
    masks = [F.mul2(m, ones) for m in masks]
    if steps == 1:
        return [tuple(F.reshape(m, (batch, units)) for m in masks)]
    return list(zip(*[F.split(m, axis=1) for m in masks]))


def unroll(core, inputs, initial_state=None, reverse=False, time_major=False, lengths=None,
           dropout=0.0, recurrent_dropout=0.0):
    """Run ``core`` over the time axis of ``inputs``: the one loop every layer uses.

    Args:
        core: a cell core (see :mod:`nnlstm.cells`): ``core(x_t, state, h_mask) ->
            (y_t, state)``.
        inputs (~nnabla.Variable): (B, T, D), or (T, B, D) with ``time_major``.
        initial_state: the core's state (a NamedTuple of (B, H) Variables), or None for
            zeros.
        reverse (bool): process the steps from T - 1 down to 0.
        lengths (~nnabla.Variable or array): (B,) valid steps of each right-padded sequence, or
            None. Steps past a sequence's length leave its state unchanged and output
            zeros, so the reverse direction starts at each sequence's own last step.
        dropout, recurrent_dropout (float): rates of the input and recurrent variational
            dropout masks (0 builds none).

    Returns:
        ``(outputs, final_state)``: ``outputs`` a list of T Variables (B, H), ``outputs[t]``
        the output at input step ``t`` whatever the direction; ``final_state`` the state
        after the last processed step (with ``lengths``, each sequence's own last step).

    Raises:
        TypeError: ``core`` not a cell core, a non-Variable, a flag that is not a bool.
        ValueError: shapes that disagree with the core or with each other.
    """
    initial_state, lengths = check(core, inputs, initial_state, reverse, time_major, lengths,
                                   dropout, recurrent_dropout)
    xs = split_time(inputs, 0 if time_major else 1)
    ensure_stack(len(xs))
    batch, dim = xs[0].shape
    state = core.zero_state(xs[0]) if initial_state is None else initial_state
    x_mask = dropout_mask((batch, dim), dropout) if dropout else None
    h_mask = (dropout_mask((batch, core.output_size), recurrent_dropout) if recurrent_dropout
              else None)
    widths = core.state_sizes
    masks = {} if lengths is None else {w: length_masks(lengths, len(xs), w) for w in set(widths)}
    mul = core.mul
    outputs = [None] * len(xs)
    for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        x = xs[t] if x_mask is None else mul(xs[t], x_mask)
        y, new = core(x, state, h_mask)
        if masks:  # padded step: keep the state, output zeros
            new = type(new)(*[F.add2(mul(masks[w][t][0], v), mul(masks[w][t][1], old))
                              for v, old, w in zip(new, state, widths)])
            y = mul(y, masks[core.output_size][t][0])
        outputs[t], state = y, new
    return outputs, state


def check(core, inputs, initial_state, reverse, time_major, lengths, dropout,
          recurrent_dropout):
    """What :func:`unroll` checks (the layers' checks, on a core built already). Returns the
    state and lengths as :func:`unroll` uses them."""
    if not isinstance(core, Core):
        raise TypeError("`core` must be a cell core of nnlstm.cells (e.g. "
                        "nnlstm.cells.LSTMCore(D, H)); received %s" % type(core).__name__)
    _checks.flag(reverse, 'reverse')
    _checks.flag(time_major, 'time_major')
    batch, steps, dim = _checks.sequence(inputs, 'inputs', time_major)
    if dim != core.input_size:
        raise ValueError("`inputs` has D = %d features; the core was built for input_size "
                         "D = %d" % (dim, core.input_size))
    _checks.probability(dropout, 'dropout')
    _checks.probability(recurrent_dropout, 'recurrent_dropout')
    return (_checks.state(initial_state, core.state_type, batch, core.state_sizes),
            _checks.lengths(lengths, batch, steps))
