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
    1 / (1 - rate); the same mask multiplies every time step (Gal and Ghahramani). The one
    place the input and recurrent masks are drawn, on every path: tests/test_dropout_masks.py
    replaces it with known masks to check where each mask goes."""
    return F.dropout(F.constant(1.0, shape), rate)


def step_function(d):
    """1 where the integer-valued ``d`` >= 1, else 0, as ``relu(d) - relu(d - 1)``: float
    arithmetic, where a comparison would give ONNX converters a boolean they cannot use."""
    return F.sub2(F.relu(d), F.relu(F.add_scalar(d, -1.0)))


def per_step(masks, units, axis):
    """(B, T, 1) masks (time on ``axis``; (T, B, 1) for axis 0) as, per step, a tuple of
    their (B, H) masks; they are broadcast to H units by a (1, 1, H) constant, with no
    batch-sized shape to export."""
    ones = F.constant(1.0, (1, 1, units))
    return list(zip(*[split_time(F.mul2(m, ones), axis) for m in masks]))


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
    return per_step(masks, units, 1)


def reset_masks(resets, units, time_major=False):
    """Per step, the (B, H) masks ``(r, 1 - r)`` of ``resets`` (B, T) ((T, B) with
    ``time_major``), r = 1 where a value is >= 1, else 0 (float arithmetic, as
    :func:`step_function`, so the masks export)."""
    r = step_function(F.reshape(resets, tuple(resets.shape) + (1,)))
    return per_step([r, F.add_scalar(F.mul_scalar(r, -1.0), 1.0)], units,
                    0 if time_major else 1)


def zoneout_masks(core, steps, batch):
    """Per step, the tuple of the core's zoneout masks, one per state tensor (None outside
    training), drawn for all steps at once (:meth:`nnlstm.cells.Core.zoneout_masks`)."""
    masks = core.zoneout_masks(batch, steps)
    if masks is None:
        return [None] * steps
    return list(zip(*[[None] * steps if m is None else split_time(m, 0) for m in masks]))


def reset(state, masks, target, mul):
    """The state a step starts from, given each state tensor's reset masks ``(r, 1 - r)``:
    ``target`` where r is 1 (zeros for None), ``state`` where it is 0."""
    if target is None:
        return type(state)(*[mul(keep, s) for s, (_, keep) in zip(state, masks)])
    return type(state)(*[F.add2(mul(keep, s), mul(r, s0))
                         for s, s0, (r, keep) in zip(state, target, masks)])


def unroll(core, inputs, initial_state=None, reverse=False, time_major=False, lengths=None,
           dropout=0.0, recurrent_dropout=0.0, resets=None, carried=False):
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
        resets (~nnabla.Variable or array): (B, T) ((T, B) with ``time_major``) of 0 and 1,
            or None: where ``resets[b, t]`` is 1, sequence b starts step t (the input's time
            index, in either direction) from ``initial_state`` (zeros without one), as
            Haiku's ``ResetCore``. A padded step (past ``lengths``) ignores its reset.
        carried (bool): ``initial_state`` is a carried state (a :class:`nnlstm.Carry`'s):
            the run starts from it, but resets start from zeros.

    The core's zoneout (:meth:`nnlstm.cells.Core.zone`) applies to every step, its masks
    drawn per step in training graphs.

    Returns:
        ``(outputs, final_state)``: ``outputs`` a list of T Variables (B, H), ``outputs[t]``
        the output at input step ``t`` whatever the direction; ``final_state`` the state
        after the last processed step (with ``lengths``, each sequence's own last step).

    Raises:
        TypeError: ``core`` not a cell core, a non-Variable, a flag that is not a bool.
        ValueError: shapes that disagree with the core or with each other.
    """
    initial_state, lengths, resets = check(core, inputs, initial_state, reverse, time_major,
                                           lengths, dropout, recurrent_dropout, resets,
                                           carried)
    xs = split_time(inputs, 0 if time_major else 1)
    ensure_stack(len(xs))
    batch, dim = xs[0].shape
    state = core.zero_state(xs[0]) if initial_state is None else initial_state
    x_mask = dropout_mask((batch, dim), dropout) if dropout else None
    h_mask = (dropout_mask((batch, core.output_size), recurrent_dropout) if recurrent_dropout
              else None)
    widths = core.state_sizes  # each state tensor's width: H, or P for a projected h
    valid = {} if lengths is None else {w: length_masks(lengths, len(xs), w) for w in set(widths)}
    restart = ({} if resets is None
               else {w: reset_masks(resets, w, time_major) for w in set(widths)})
    target = None if carried else initial_state  # what a reset starts from; None: zeros
    zone = zoneout_masks(core, len(xs), batch)
    mul = core.mul
    outputs = [None] * len(xs)
    for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        x = xs[t] if x_mask is None else mul(xs[t], x_mask)
        start = (state if not restart
                 else reset(state, [restart[w][t] for w in widths], target, mul))
        y, new = core(x, start, h_mask)
        y, new = core.zone(start, y, new, zone[t])
        if valid:  # padded step: keep the state (before a reset), output zeros
            new = type(new)(*[F.add2(mul(valid[w][t][0], v), mul(valid[w][t][1], old))
                              for v, old, w in zip(new, state, widths)])
            y = mul(y, valid[core.output_size][t][0])
        outputs[t], state = y, new
    return outputs, state


def check(core, inputs, initial_state, reverse, time_major, lengths, dropout,
          recurrent_dropout, resets=None, carried=False):
    """What :func:`unroll` checks (the layers' checks, on a core built already). Returns the
    state, lengths and resets as :func:`unroll` uses them."""
    if not isinstance(core, Core):
        raise TypeError("`core` must be a cell core of nnlstm.cells (e.g. "
                        "nnlstm.cells.LSTMCore(D, H)); received %s" % type(core).__name__)
    _checks.flag(reverse, 'reverse')
    _checks.flag(time_major, 'time_major')
    _checks.flag(carried, 'carried')
    batch, steps, dim = _checks.sequence(inputs, 'inputs', time_major)
    if dim != core.input_size:
        raise ValueError("`inputs` has D = %d features; the core was built for input_size "
                         "D = %d" % (dim, core.input_size))
    _checks.probability(dropout, 'dropout')
    _checks.probability(recurrent_dropout, 'recurrent_dropout')
    return (_checks.state(initial_state, core.state_type, batch, core.state_sizes),
            _checks.lengths(lengths, batch, steps),
            _checks.resets(resets, batch, steps, time_major))
