"""Stateful runs: a :class:`Carry` hands each layer's final state to its next run."""
import numpy as np
import nnabla as nn


class Carry:
    """Carries the final states of a graph's recurrent layers over to its next run, for
    stateful truncated backpropagation through time (Keras' ``stateful=True``, Chainer's
    ``L.LSTM`` with ``reset_state()``).

    Pass the same ``Carry`` as ``stateful=`` to every layer of one graph (``Stacked`` and
    ``Bidirectional`` pass it on to theirs); each layer then starts from zero-filled state
    Variables the carry owns, instead of ``initial_state``. After each iteration (forward,
    backward, update) call :meth:`advance`: every layer's final state is copied into its
    initial state, on the device, so the next window continues where this one ended while
    gradients stop at the window's start. :meth:`reset_state` zeroes them (a new epoch, or
    new streams). Use one ``Carry`` per graph: a training and a validation graph each want
    their own.

    Each layer holds one slot, keyed by its parameter scope: a graph rebuilt with the same
    ``Carry`` (a new batch size, say) replaces its layers' slots instead of adding to them,
    so the old graph is freed and the carried values continue in the new one when the
    shapes agree (they restart from zeros when they do not).

    Example:
        >>> carry = nnlstm.Carry()
        >>> y = nnlstm.LSTM(x, 64, return_sequences=True, stateful=carry)
        >>> for x_window in windows:
        ...     x.d = x_window; loss.forward(); solver.zero_grad(); loss.backward()
        ...     solver.update(); carry.advance()
        >>> carry.reset_state()
    """

    def __init__(self):
        self._slots = []  # [scope, initial state, final state or None]

    def _initial(self, scope, state_type, batch, sizes):
        """The zero-filled initial state of the layer whose parameter scope is ``scope``
        (the dict NNabla keeps for it), field k (B, ``sizes[k]``); a layer seen before keeps
        its slot, and its values when the shape is the same."""
        state = state_type(*[nn.Variable.from_numpy_array(np.zeros((batch, w), np.float32))
                             for w in sizes])
        for slot in self._slots:
            if slot[0] is scope:
                old = slot[1]
                if len(old) == len(state) and all(o.shape == v.shape for o, v in zip(old, state)):
                    for o, v in zip(old, state):
                        v.data.copy_from(o.data)
                slot[1:] = [state, None]
                return state
        self._slots.append([scope, state, None])
        return state

    def _track(self, initial, final):
        """Record the ``final`` state of the layer that started from ``initial``."""
        for v in final:
            v.persistent = True  # survives clear_buffer, for advance()
        for slot in self._slots:
            if slot[1] is initial:
                slot[2] = final

    def _pairs(self):
        return [(initial, final) for _, initial, final in self._slots if final is not None]

    def advance(self):
        """Copy every layer's final state into its initial state."""
        for initial, final in self._pairs():
            for v0, v in zip(initial, final):
                v0.data.copy_from(v.data)

    def reset_state(self):
        """Zero every carried state."""
        for _, initial, _ in self._slots:
            for v0 in initial:
                v0.data.zero()
