"""Keras-style recurrent layers: a cell core unrolled by :func:`nnlstm.unroll.unroll`.

Shape legend: B batch size, T time steps, D input features, H units.
"""
import contextlib

import numpy as np
import nnabla as nn
import nnabla.functions as F

from . import _checks, gates, mc
from .cells import GRUCore, LSTMCore, LSTMState, SimpleRNNCore, differentiable
from .unroll import stack_time, unroll


@contextlib.contextmanager
def scope(name):
    """``nn.parameter_scope(name)`` whose ValueErrors name the layer."""
    if not isinstance(name, str) or not name:
        raise TypeError("`name` must be a non-empty str; received %r" % (name,))
    with nn.parameter_scope(name):
        try:
            yield
        except ValueError as e:
            raise ValueError("layer `name` %r: %s" % (name, e)) from None


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

    Example:
        >>> carry = nnlstm.Carry()
        >>> y = nnlstm.LSTM(x, 64, return_sequences=True, stateful=carry)
        >>> for x_window in windows:
        ...     x.d = x_window; loss.forward(); solver.zero_grad(); loss.backward()
        ...     solver.update(); carry.advance()
        >>> carry.reset_state()
    """

    def __init__(self):
        self.slots = []

    def initial(self, state_type, batch, units):
        state = state_type(*[nn.Variable.from_numpy_array(np.zeros((batch, units), np.float32))
                             for _ in state_type._fields])
        self.slots.append([state, None])
        return state

    def track(self, final):
        for v in final:
            v.persistent = True  # survives clear_buffer, for advance()
        self.slots[-1][1] = final

    def advance(self):
        """Copy every layer's final state into its initial state."""
        for initial, final in self.slots:
            for v0, v in zip(initial, final):
                v0.data.copy_from(v.data)

    def reset_state(self):
        """Zero every carried state."""
        for initial, _ in self.slots:
            for v0 in initial:
                v0.data.zero()


def _initial_state(core_type, initial_state, batch, units):
    """Check ``initial_state`` against the core's state fields; None means zeros."""
    if initial_state is None:
        return None
    fields = core_type.state_type._fields
    if len(fields) == 1:  # GRU, SimpleRNN: the one Variable h0
        if isinstance(initial_state, (tuple, list)) and len(initial_state) == 1:
            initial_state = initial_state[0]
        _checks.variable(initial_state, 'initial_state')
        return core_type.state_type(
            _checks.shape(initial_state, 'initial_state (h0)', (batch, units), '(B, units)'))
    names = ', '.join(f + '0' for f in fields)
    if not isinstance(initial_state, (tuple, list)):
        raise TypeError("`initial_state` must be a tuple (%s) of Variables (B, H); received %s"
                        % (names, type(initial_state).__name__))
    if len(initial_state) != len(fields):
        raise ValueError("`initial_state` must hold %d Variables (%s); received %d"
                         % (len(fields), names, len(initial_state)))
    return core_type.state_type(*[
        _checks.shape(v, 'initial_state[%d] (%s0)' % (k, f), (batch, units), '(B, units)')
        for k, (f, v) in enumerate(zip(fields, initial_state))])


def _lengths(lengths, batch, steps):
    """``lengths`` as a (B,) Variable; an array's values are checked to lie in [0, T]."""
    if lengths is None or isinstance(lengths, nn.Variable):
        if lengths is not None and tuple(lengths.shape) != (batch,):
            raise ValueError("`lengths` has shape %s; expected (B,) = (%d,)"
                             % (tuple(lengths.shape), batch))
        return lengths
    values = np.asarray(lengths)
    if values.shape != (batch,) or not np.issubdtype(values.dtype, np.integer):
        raise ValueError("`lengths` must be (B,) = (%d,) ints; received %s %s"
                         % (batch, values.dtype, values.shape))
    if values.min() < 0 or values.max() > steps:
        raise ValueError("`lengths` must lie in [0, T] = [0, %d]; received %s"
                         % (steps, values.tolist()))
    return nn.Variable.from_numpy_array(values.astype(np.float32))


def prepare(core_type, inputs, units, initial_state, name, time_major=False, lengths=None,
            stateful=None, **cell_options):
    """What every path of a layer shares: check the arguments and build the core in scope
    ``name``. Returns ``(core, initial state or None, lengths as a Variable or None)``."""
    batch, steps, dim = _checks.sequence(inputs, 'inputs', time_major)
    units = _checks.positive_int(units, 'units')
    lengths = _lengths(lengths, batch, steps)
    if stateful is not None:
        if not isinstance(stateful, Carry):
            raise TypeError("`stateful` must be an nnlstm.Carry; received %s"
                            % type(stateful).__name__)
        if initial_state is not None:
            raise ValueError("give `initial_state` or `stateful`, not both")
        state = stateful.initial(core_type.state_type, batch, units)
    else:
        state = _initial_state(core_type, initial_state, batch, units)
    with scope(name):
        core = core_type(dim, units, differentiable=differentiable(inputs, *(state or ())),
                         **cell_options)
    return core, state, lengths


def run(core_type, inputs, units, initial_state=None, name='rnn', reverse=False,
        time_major=False, lengths=None, dropout=0.0, recurrent_dropout=0.0, training=None,
        stateful=None, **cell_options):
    """Check the arguments, build the core in scope ``name`` and unroll it.

    Returns ``(outputs, final_state, lengths)``: outputs and final state as
    :func:`nnlstm.unroll.unroll` (outputs aligned with the input steps whatever the
    direction), ``lengths`` as a Variable or None. ``training`` None means "unless built
    under ``nn.no_grad()``, and always under :func:`nnlstm.mc.sampling`"; dropout is only
    built while training.
    """
    core, state, lengths = prepare(core_type, inputs, units, initial_state, name, time_major,
                                   lengths, stateful, **cell_options)
    dropout = _checks.probability(dropout, 'dropout')
    recurrent_dropout = _checks.probability(recurrent_dropout, 'recurrent_dropout')
    if training is None:
        training = mc.dropout_on()
    outputs, final = unroll(core, inputs, state, reverse, time_major, lengths,
                            dropout if training else 0.0,
                            recurrent_dropout if training else 0.0)
    if stateful is not None:
        stateful.track(final)
    return outputs, final, lengths


def stack(outputs, time_major):
    return stack_time(outputs, 0 if time_major else 1)


def reverse_valid(sequence, lengths):
    """Reverse the first ``lengths[b]`` steps of each (B, T, H) row, leaving the padding."""
    batch, steps = sequence.shape[:2]
    lengths = F.reshape(lengths, (batch, 1))
    k = F.reshape(F.arange(0, steps), (1, steps))
    inside = F.less(k, lengths)
    flipped = F.sub2(F.add_scalar(lengths, -1.0), k)
    index = F.add2(F.mul2(inside, flipped), F.mul2(F.r_sub_scalar(inside, 1.0), k))
    return F.gather(sequence, index, axis=1, batch_dims=1)


def fusion_blockers(core_type, go_backwards, time_major, lengths, dropout=0.0,
                    recurrent_dropout=0.0, activation='tanh', recurrent_activation='sigmoid',
                    **_):
    """The options that keep a layer from running as NNabla's fused ``F.lstm``: the one
    predicate behind the fused path (an empty list means it can)."""
    blockers = [] if core_type is LSTMCore else ['a %s layer' % core_type.kind]
    blockers += [arg for arg, unfusable in (
        ('`go_backwards`', go_backwards), ('`time_major`', time_major),
        ('`lengths`', lengths is not None), ('`dropout`', dropout),
        ('`recurrent_dropout`', recurrent_dropout),
        ('`activation`=%r' % (activation,), activation != 'tanh'),
        ('`recurrent_activation`=%r' % (recurrent_activation,),
         recurrent_activation != 'sigmoid')) if unfusable]
    return blockers


def fused_lstm(inputs, units, initial_state, name, stateful=None, training=None,
               dropout=0.0, recurrent_dropout=0.0, **cell_options):
    """The LSTM layer as one NNabla ``F.lstm`` (cuDNN's on a GPU) reading nnlstm's own
    parameters, the gate blocks reordered in the graph. Only called when
    :func:`fusion_blockers` finds nothing, so ``dropout`` and ``recurrent_dropout`` are 0.
    Returns ``(y_seq (B, T, H), LSTMState)``."""
    core, state, _ = prepare(LSTMCore, inputs, units, initial_state, name, stateful=stateful,
                             **cell_options)
    batch, dim, units = inputs.shape[0], core.input_size, core.units

    def to_fused(v, axis):  # gate blocks from nnlstm's order to F.lstm's, along ``axis``
        blocks = F.split(v, axis=axis)
        src, dst = gates.order('lstm', 'nnlstm'), gates.order('lstm', 'nnabla')
        return F.stack(*[blocks[src.index(g)] for g in dst], axis=0)

    weight = to_fused(F.reshape(core.w, (dim + units, 4, units)), 1)       # (4, D + H, H)
    weight = F.reshape(F.transpose(weight, (0, 2, 1)), (1, 4, units, dim + units))
    bias = None
    if core.b is not None:
        bias = F.reshape(to_fused(F.reshape(core.b, (4, units)), 0), (1, 1, 4, units))
    if state is None:
        h0 = c0 = F.constant(0.0, (1, 1, batch, units))
    else:
        c0, h0 = (F.reshape(v, (1, 1, batch, units)) for v in state)
    y, h, c = F.lstm(F.transpose(inputs, (1, 0, 2)), h0, c0, weight, bias=bias,
                     training=differentiable(inputs, *(state or ())))
    final = LSTMState(F.reshape(c, (batch, units)), F.reshape(h, (batch, units)))
    if stateful is not None:
        stateful.track(final)
    return F.transpose(y, (1, 0, 2)), final


def use_fused(fused, core_type, inputs, go_backwards, time_major, lengths, options):
    """Decide the fused path: ``fused`` True demands it, False refuses it, None takes it for
    LSTM training graphs under a cuDNN context where no option prevents it."""
    if fused is False:
        return False
    blockers = fusion_blockers(core_type, go_backwards, time_major, lengths, **options)
    if fused is True:
        if blockers:
            raise ValueError("`fused`=True needs a plain LSTM; these options prevent it: %s"
                             % ', '.join(blockers))
        return True
    if fused is not None:
        raise TypeError("`fused` must be None, True or False; received %r" % (fused,))
    cudnn = any(b.startswith('cudnn') for b in nn.get_current_context().backend)
    training = options.get('training')
    if training is None:
        training = mc.dropout_on()
    return cudnn and training and not blockers


def _layer(core_type, inputs, units, initial_state, return_sequences, return_state, name,
           go_backwards, time_major, lengths, fused=None, **options):
    if use_fused(fused, core_type, inputs, go_backwards, time_major, lengths, options):
        sequence, final = fused_lstm(inputs, units, initial_state, name, **options)
        y = sequence if return_sequences else final.h
        return (y,) + tuple(final) if return_state else y
    outputs, final, lengths = run(core_type, inputs, units, initial_state, name, go_backwards,
                                  time_major, lengths, **options)
    y = final.h  # every cell outputs its hidden state; with lengths, at each own end
    if return_sequences:
        if not go_backwards:
            y = stack(outputs, time_major)
        elif lengths is None:
            y = stack(outputs[::-1], time_major)  # Keras: processing order
        elif time_major:
            raise ValueError("`go_backwards` with `lengths` and `return_sequences` needs "
                             "batch-major inputs (time_major=False)")
        else:
            y = reverse_valid(stack(outputs, False), lengths)
    return (y,) + tuple(final) if return_state else y


LAYER_ARGS = """
    Args:
        inputs (~nnabla.Variable): (B, T, D), or (T, B, D) with ``time_major=True``.
        units (int): H, the size of the state.
        return_sequences (bool): return every step's output, (B, T, H), instead of the
            last one, (B, H).
        return_state (bool): also return the final state.
        name (str): the parameter scope; the same ``name`` again shares the parameters (a
            training and an inference graph of another batch size, say).
        go_backwards (bool): process the sequence from its last step; as in Keras, a
            returned sequence then comes in processing (reversed) order.
        time_major (bool): ``inputs`` and a returned sequence are (T, B, ...).
        lengths (~nnabla.Variable or array): (B,) valid steps of each right-padded
            sequence (PyTorch's packed-sequence semantics): outputs past a length are zero,
            the final state is each sequence's own last, and ``go_backwards`` reverses only
            the valid part. A Variable lets one graph serve every batch.
        dropout, recurrent_dropout (float): variational dropout rates of the inputs and of
            the recurrent state: one mask per sequence, the same at every step.
        training (bool): build the dropout masks; None means unless built under
            ``nn.no_grad()``, so an inference graph has no dropout function (but always
            inside :func:`nnlstm.mc_dropout`, which samples with them).
        stateful (Carry): carry the final state over to the next run (truncated BPTT).
        fused (bool): LSTM only: run as NNabla's fused ``F.lstm`` (cuDNN's on a GPU) on the
            same parameters. None (default) does so for training graphs under a ``cudnn``
            context when no option needs the unrolled graph (lengths, dropout,
            go_backwards, time_major, other activations); inference graphs stay unrolled,
            so they export. True demands it (a ValueError names what prevents it).
        activation, recurrent_activation (str or callable): Keras' names and defaults,
            'tanh' and 'sigmoid'; 'relu', 'linear' or any callable.
        use_bias (bool), kernel_initializer, recurrent_initializer, bias_initializer:
            an array, a callable taking a shape (any ``nnabla.initializer``), or None for
            Keras' defaults (Glorot uniform, orthogonal, zeros).
        rng (numpy.random.RandomState): for the default initializers.
        fix_parameters (bool): the parameters get ``need_grad=False``.
"""


def LSTM(inputs, units, initial_state=None, return_sequences=False, return_state=False,
         name='lstm', go_backwards=False, time_major=False, lengths=None, **options):
    """Long short-term memory layer, unrolled over time (the seed's ``LSTM``).

    ``initial_state`` is ``(c0, h0)``, each (B, H), or None for zeros (the graph then reads
    no state input at all). ``unit_forget_bias=True`` starts the forget-gate bias at 1.
    The parameters, ``{name}/WaWiWfWo/affine/W`` (D + H, 4H) and ``.../b`` (4H,), and the
    equations are those of :class:`nnlstm.cells.LSTMCore`.

    Returns:
        ``y``, or ``(y, c_T, h_T)`` with ``return_state``: ``y`` is (B, T, H) with
        ``return_sequences``, else (B, H); ``c_T``, ``h_T`` are (B, H).

    Example:
        >>> x = nn.Variable((8, 20, 3))                                  # (B, T, D)
        >>> y = nnlstm.LSTM(x, 16)                                       # (8, 16)
        >>> y = nnlstm.LSTM(x, 16, return_sequences=True)                # (8, 20, 16)
        >>> y, c, h = nnlstm.LSTM(x, 16, return_state=True)              # (8, 16) x 3
        >>> y, c, h = nnlstm.LSTM(x, 16, return_sequences=True, return_state=True)
    """
    return _layer(LSTMCore, inputs, units, initial_state, return_sequences, return_state,
                  name, go_backwards, time_major, lengths, **options)


def GRU(inputs, units, initial_state=None, return_sequences=False, return_state=False,
        name='gru', go_backwards=False, time_major=False, lengths=None, **options):
    """Gated recurrent unit layer (Keras' ``GRU``), unrolled over time.

    ``initial_state`` is ``h0`` (B, H) or None for zeros. ``reset_after=True`` (Keras 3's
    default; PyTorch's ``nn.GRU``) applies the reset gate after the recurrent product,
    ``reset_after=False`` before it. Equations and parameters: :class:`nnlstm.cells.GRUCore`.

    Returns:
        ``y``, or ``(y, h_T)`` with ``return_state``; ``y`` (B, T, H) or (B, H).

    Example:
        >>> y, h = nnlstm.GRU(x, 16, return_sequences=True, return_state=True)
    """
    return _layer(GRUCore, inputs, units, initial_state, return_sequences, return_state,
                  name, go_backwards, time_major, lengths, **options)


def SimpleRNN(inputs, units, initial_state=None, return_sequences=False, return_state=False,
              name='simple_rnn', go_backwards=False, time_major=False, lengths=None,
              **options):
    """Fully connected recurrent layer (Keras' ``SimpleRNN``, PyTorch's ``nn.RNN``).

    ``initial_state`` is ``h0`` (B, H) or None for zeros. Equation and parameters:
    :class:`nnlstm.cells.SimpleRNNCore`.

    Returns:
        ``y``, or ``(y, h_T)`` with ``return_state``; ``y`` (B, T, H) or (B, H).

    Example:
        >>> y = nnlstm.SimpleRNN(x, 16, activation='relu')
    """
    return _layer(SimpleRNNCore, inputs, units, initial_state, return_sequences, return_state,
                  name, go_backwards, time_major, lengths, **options)


for _layer_fn in (LSTM, GRU, SimpleRNN):
    _layer_fn.__doc__ += LAYER_ARGS

#: The core each public layer unrolls, for the wrappers.
CORES = {LSTM: LSTMCore, GRU: GRUCore, SimpleRNN: SimpleRNNCore}

MERGES = {
    'concat': lambda a, b: F.concatenate(a, b, axis=a.ndim - 1),
    'sum': F.add2,
    'mul': F.mul2,
    'ave': lambda a, b: F.mul_scalar(F.add2(a, b), 0.5),
}


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
        **layer_kwargs: the layer's options (``go_backwards`` excepted).

    Returns:
        ``y`` (merged), or ``(y_f, y_b)`` with ``merge_mode=None``; with ``return_state``,
        the forward then the backward final states follow, e.g.
        ``(y, c_f, h_f, c_b, h_b)``. As in Keras, the backward sequence is returned in input
        order, and without ``return_sequences`` the backward output is its state after
        reading step 0.

    Example:
        >>> y = nnlstm.Bidirectional(nnlstm.LSTM, x, 16, return_sequences=True)  # (B, T, 32)
    """
    if layer not in CORES:
        raise TypeError("`layer` must be nnlstm.LSTM, nnlstm.GRU or nnlstm.SimpleRNN; "
                        "received %r" % (layer,))
    if 'go_backwards' in layer_kwargs:
        raise ValueError("`go_backwards` is not an option of Bidirectional: it runs both "
                         "directions")
    if merge_mode is not None:
        _checks.choice(merge_mode, 'merge_mode', tuple(MERGES) + (None,))
    core_type = CORES[layer]
    fields = len(core_type.state_type._fields)
    states = (None, None)
    if initial_state is not None:
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2 * fields:
            raise ValueError("`initial_state` must hold %d Variables, the forward layer's "
                             "state then the backward layer's; received %r"
                             % (2 * fields, initial_state))
        states = (initial_state[:fields], initial_state[fields:])
        if fields == 1:
            states = (states[0][0], states[1][0])
    ys, finals = [], []
    with scope(name):
        for direction, state in zip(('forward', 'backward'), states):
            outputs, final, _ = run(core_type, inputs, units, state, direction,
                                    direction == 'backward', time_major, lengths,
                                    **layer_kwargs)
            ys.append(stack(outputs, time_major) if return_sequences else final.h)
            finals.extend(final)
    y = tuple(ys) if merge_mode is None else (MERGES[merge_mode](*ys),)
    return y + tuple(finals) if return_state else (y if merge_mode is None else y[0])


def Stacked(layer, inputs, units, num_layers=2, dropout=0.0, name='stacked',
            initial_state=None, return_sequences=False, return_state=False, **layer_kwargs):
    """``num_layers`` recurrent layers, each reading the previous one's output sequence
    (PyTorch's and ``PF.lstm``'s ``num_layers``).

    Args:
        layer: :func:`nnlstm.LSTM`, ``GRU``, ``SimpleRNN``, or a bidirectional layer such as
            ``functools.partial(nnlstm.Bidirectional, nnlstm.LSTM)``.
        inputs (~nnabla.Variable): (B, T, D).
        num_layers (int): how many layers.
        dropout (float): dropout on the inputs of every layer but the first, as PyTorch's
            ``dropout``, but variational: one mask per sequence, the same at every step.
        name (str): the layers live in ``{name}/layer0``, ``{name}/layer1``, ...
        initial_state (list): one entry per layer, each as that layer takes it.
        **layer_kwargs: passed to every layer (``units``-independent options).

    Returns:
        ``y``: the last layer's output, or ``(y, states)`` with ``return_state``:
        ``states`` a list with each layer's final state tuple, e.g. ``[(c, h), (c, h)]``.

    Example:
        >>> y = nnlstm.Stacked(nnlstm.LSTM, x, 64, num_layers=2, dropout=0.3)
    """
    num_layers = _checks.positive_int(num_layers, 'num_layers')
    _checks.probability(dropout, 'dropout')
    if initial_state is not None and len(initial_state) != num_layers:
        raise ValueError("`initial_state` must hold one state per layer, %d; received %d"
                         % (num_layers, len(initial_state)))
    if layer_kwargs.get('merge_mode', 'concat') is None:
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
