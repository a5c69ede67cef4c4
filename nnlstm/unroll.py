"""The one loop that unrolls every cell over time into a static NNabla graph."""
import threading
import warnings

import nnabla.functions as F

try:
    import resource
except ImportError:  # Windows: the main thread's stack is fixed when the process starts
    resource = None

#: Stack NNabla's recursive graph walks need per unrolled step (forward, backward and the
#: deletion of a graph all recurse along it): measured about 1.5 KiB per LSTM step, so that
#: the default 8 MiB stack segfaults near T = 6000. Four times that, for headroom.
STACK_PER_STEP = 6 * 1024
STACK_BASE = 16 * 1024 * 1024


def ensure_stack(steps):
    """Raise the soft stack limit of the main thread so a graph of ``steps`` unrolled steps
    can run and be deleted. Linux grows the main thread's stack on demand up to the current
    soft limit, so raising it at run time is enough; other threads keep the stack they were
    created with (``threading.stack_size`` sets it)."""
    need = STACK_BASE + steps * STACK_PER_STEP
    if resource is None or need <= 8 * 1024 * 1024:
        return
    if threading.current_thread() is not threading.main_thread():
        warnings.warn("a graph of %d steps built outside the main thread may overflow that "
                      "thread's stack; create the thread after threading.stack_size(%d)"
                      % (steps, need), RuntimeWarning, stacklevel=3)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY:
        need = min(need, hard)
    resource.setrlimit(resource.RLIMIT_STACK, (need, hard))


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
    steps exact. ``lengths`` holds whole numbers."""
    batch = lengths.shape[0]
    lengths = F.reshape(lengths, (batch, 1, 1))
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
        lengths (~nnabla.Variable): (B,) valid steps of each right-padded sequence, or
            None. Steps past a sequence's length leave its state unchanged and output
            zeros, so the reverse direction starts at each sequence's own last step.
        dropout, recurrent_dropout (float): rates of the input and recurrent variational
            dropout masks (0 builds none).

    Returns:
        ``(outputs, final_state)``: ``outputs`` a list of T Variables (B, H), ``outputs[t]``
        the output at input step ``t`` whatever the direction; ``final_state`` the state
        after the last processed step (with ``lengths``, each sequence's own last step).
    """
    xs = split_time(inputs, 0 if time_major else 1)
    ensure_stack(len(xs))
    batch, dim = xs[0].shape
    state = core.zero_state(xs[0]) if initial_state is None else initial_state
    x_mask = dropout_mask((batch, dim), dropout) if dropout else None
    h_mask = dropout_mask((batch, core.units), recurrent_dropout) if recurrent_dropout else None
    valid = [None] * len(xs) if lengths is None else length_masks(lengths, len(xs), core.units)
    mul = core.mul
    outputs = [None] * len(xs)
    for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        x = xs[t] if x_mask is None else mul(xs[t], x_mask)
        y, new = core(x, state, h_mask)
        if valid[t] is not None:  # padded step: keep the state, output zeros
            m, keep = valid[t]
            new = type(new)(*[F.add2(mul(m, v), mul(keep, old)) for v, old in zip(new, state)])
            y = mul(y, m)
        outputs[t], state = y, new
    return outputs, state
