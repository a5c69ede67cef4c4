"""The one loop that unrolls every cell over time into a static NNabla graph."""
import nnabla.functions as F


def split_time(inputs, axis):
    """Split ``inputs`` along its time ``axis`` into a list of T (B, D) Variables with one
    ``F.split``. ``F.split`` rejects a single output, so T = 1 is a reshape to the concrete
    (B, D): NNabla's saver turns a Reshape's leading batch size into -1, and rejects any
    other leading value."""
    if inputs.shape[axis] == 1:
        return [F.reshape(inputs, (inputs.shape[1 - axis], inputs.shape[2]))]
    return list(F.split(inputs, axis=axis))


def unroll(core, inputs, initial_state=None, reverse=False, time_major=False):
    """Run ``core`` over the time axis of ``inputs``.

    Args:
        core: a cell core (see :mod:`nnlstm.cells`): ``core(x_t, state) -> (y_t, state)``.
        inputs (~nnabla.Variable): (B, T, D), or (T, B, D) with ``time_major``.
        initial_state: the core's state, or None for zeros.
        reverse (bool): process the steps from T - 1 down to 0.

    Returns:
        ``(outputs, final_state)``: ``outputs`` a list of T Variables (B, H), ``outputs[t]``
        the output at input step ``t`` whatever the direction; ``final_state`` the state
        after the last processed step.
    """
    xs = split_time(inputs, 0 if time_major else 1)
    steps = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    outputs = [None] * len(xs)
    state = initial_state
    for t in steps:
        outputs[t], state = core(xs[t], state)
    return outputs, state
