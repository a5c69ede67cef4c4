"""Keras-style recurrent layers LSTM, GRU and SimpleRNN: a cell core (:mod:`nnlstm.cells`),
chosen by its record in :mod:`nnlstm.kinds`, unrolled by :func:`nnlstm.unroll.unroll`.

Shape legend: B batch size, T time steps, D input features, H units.
"""
import contextlib
import inspect

import nnabla as nn
import nnabla.functions as F
import nnabla.parameter

from . import _checks, gates, mc, record
from . import fused as kernels
from .carry import Carry
from .cells import LSTMState, differentiable
from .kinds import KINDS, VARIANTS, owners, parameter_doc
from .process import BUILD_LOCK
from .unroll import stack_time, unroll

#: The options every layer takes besides its cell's (``kind.options``), with defaults.
LAYER_OPTIONS = {
    'dropout': 0.0,
    'recurrent_dropout': 0.0,
    'training': None,
    'stateful': None,
    'resets': None,
    'fused': None,
}


@contextlib.contextmanager
def scope(name):
    """``nn.parameter_scope(name)`` under nnlstm's build lock, whose ValueErrors name the
    layer."""
    _checks.name(name)
    with BUILD_LOCK, nn.parameter_scope(name):
        try:
            yield
        except ValueError as e:
            raise ValueError("layer `name` %r: %s" % (name, e)) from None


def accepted(function, options=()):
    """The names a call of ``function`` may pass: its keyword parameters and ``options``."""
    return {p.name for p in inspect.signature(function).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} | set(options)


def split_options(options):
    """``options`` (checked already) as ``(layer options with defaults, cell options)``."""
    layer = {k: options.get(k, v) for k, v in LAYER_OPTIONS.items()}
    return layer, {k: v for k, v in options.items() if k not in LAYER_OPTIONS}


def prepare(kind, inputs, units, initial_state, name, time_major=False, lengths=None,
            stateful=None, cell_options=None, training=None):
    """What every path of a layer shares: check the arguments and build the core in scope
    ``name`` (``training`` as the core takes it). Returns ``(core, initial state or None,
    lengths as a Variable or None)``."""
    batch, steps, dim = _checks.sequence(inputs, 'inputs', time_major)
    units = _checks.positive_int(units, 'units')
    lengths = _checks.lengths(lengths, batch, steps)
    if stateful is not None:
        if not isinstance(stateful, Carry):
            raise TypeError("`stateful` must be an nnlstm.Carry; received %s"
                            % type(stateful).__name__)
        if initial_state is not None:
            raise ValueError("give `initial_state` or `stateful`, not both")
    sizes = kind.state_sizes(units, **(cell_options or {}))
    state = _checks.state(initial_state, kind.state, batch, sizes)
    with scope(name):
        if stateful is not None:
            state = stateful._initial(nnabla.parameter.get_current_parameter_scope(),
                                      kind.state, batch, sizes)
        core = kind.core(dim, units, differentiable=differentiable(inputs, *(state or ())),
                         training=training, **(cell_options or {}))
    return core, state, lengths


def run(kind, inputs, units, initial_state=None, name='rnn', reverse=False, time_major=False,
        lengths=None, dropout=0.0, recurrent_dropout=0.0, training=None, stateful=None,
        resets=None, cell_options=None, fused=None, order='input'):
    """Check the arguments, build the core in scope ``name`` and run it over the sequence:
    as one fused function where :func:`fused_path` says so, else unrolled.

    Returns ``(sequence, final_state, lengths, direction)``: ``sequence`` the stacked
    outputs, (B, T, H) ((T, B, H) with ``time_major``), in the input's step order
    (``order='input'``) or in processing order (``'processing'``, Keras' ``go_backwards``
    output: with ``lengths``, each sequence's valid steps reversed, then its padding), or
    None (``order=None``); the final state as :func:`nnlstm.unroll.unroll`'s; ``lengths``
    as a Variable or None; ``direction`` the :class:`nnlstm.record.Direction` an export
    reads (None for NNabla's ``F.lstm``, which no export takes). ``training`` None means
    "unless built under ``nn.no_grad()``, and always under :func:`nnlstm.mc.sampling`";
    dropout and the zoneout and weight-dropout masks are only built while training.
    """
    dropout = _checks.probability(dropout, 'dropout')
    recurrent_dropout = _checks.probability(recurrent_dropout, 'recurrent_dropout')
    if _checks.flag(training, 'training', optional=True) is None:
        training = mc.dropout_on()
    options = dict(cell_options or {}, dropout=dropout, recurrent_dropout=recurrent_dropout,
                   resets=resets, training=training)
    path = fused_path(fused, kind, reverse, time_major, lengths, options)
    if path == 'cudnn':
        sequence, final = fused_lstm(kind, inputs, units, initial_state, name, stateful,
                                     cell_options)
        return sequence, final, None, None
    core, state, lengths = prepare(kind, inputs, units, initial_state, name, time_major,
                                   lengths, stateful, cell_options, training)
    rates = (dropout, recurrent_dropout) if training else (0.0, 0.0)
    if path == 'cpu':
        sequence, final = kernels.layer(core, inputs, state, reverse, time_major, lengths,
                                      *rates, order)
    else:
        outputs, final = unroll(core, inputs, state, reverse, time_major, lengths, *rates,
                                resets, carried=stateful is not None)
        sequence = stacked(outputs, order, reverse, lengths, time_major)
    if stateful is not None:
        stateful._track(state, final)
    dropped = bool(training and (dropout or recurrent_dropout or core.weight_dropout))
    return sequence, final, lengths, record.Direction(core, state, reverse, dropped,
                                                      resets is not None)


def stacked(outputs, order, reverse, lengths, time_major):
    """The T (B, H) ``outputs`` of :func:`nnlstm.unroll.unroll` (input order) stacked in
    ``order`` (see :func:`run`), or None for ``order`` None."""
    if order is None:
        return None
    if order == 'input' or not reverse:
        return stack(outputs, time_major)
    if lengths is None:
        return stack(outputs[::-1], time_major)  # Keras: processing order
    return reverse_valid(stack(outputs, False), lengths)


def stack(outputs, time_major):
    return stack_time(outputs, 0 if time_major else 1)


def reverse_valid(sequence, lengths):
    """Reverse the first ``lengths[b]`` steps of each (B, T, H) row, leaving the padding."""
    batch, steps = sequence.shape[:2]
    lengths = F.reshape(F.floor(lengths), (batch, 1))
    k = F.reshape(F.arange(0, steps), (1, steps))
    inside = F.less(k, lengths)
    flipped = F.sub2(F.add_scalar(lengths, -1.0), k)
    index = F.add2(F.mul2(inside, flipped), F.mul2(F.r_sub_scalar(inside, 1.0), k))
    return F.gather(sequence, index, axis=1, batch_dims=1)


#: What runs a layer fused, by context: NNabla's ``F.lstm`` (cuDNN's) under a ``cudnn``
#: context, :mod:`nnlstm.fused`'s kernels on the CPU.
BACKENDS = ('cudnn', 'cpu')


def backend():
    """The fused backend of the current context (:data:`BACKENDS`), or None (another
    extension, or a half context: the CPU kernels compute in float32, NNabla's CPU has no
    float64)."""
    ctx = nn.get_current_context()
    if any(b.startswith('cudnn') for b in ctx.backend):
        return 'cudnn'
    if ctx.backend and ctx.backend[0] == 'cpu:float':
        return 'cpu'
    return None


def fusion_blockers(kind, go_backwards, time_major, lengths, options, target='cudnn'):
    """The options that keep a layer of ``kind`` from running as one fused function on
    ``target`` (:data:`BACKENDS`): ``'cudnn'``, NNabla's ``F.lstm`` (LSTM only, no
    go_backwards, time_major, lengths, dropout or other activations); ``'cpu'``,
    :mod:`nnlstm.fused`'s kernels (every kind and those options, named activations
    only). On both, zoneout, weight_dropout, resets and the variants of
    :data:`nnlstm.kinds.VARIANTS` need the unrolled graph. The one predicate behind the
    fused path (an empty list means it can). ``options`` are the layer's and cell options
    as given."""
    activation = options.get('activation', 'tanh')
    recurrent_activation = options.get('recurrent_activation', 'sigmoid')
    named = tuple(kernels.ACTIVATION_CODES)
    blockers = [arg for arg, unfusable in (
        ('`zoneout`', any(_checks.rates(options.get('zoneout', 0.0), 'zoneout',
                                        kind.state._fields, kind.layer_name))),
        ('`weight_dropout`', options.get('weight_dropout') and options.get('training', True)),
        ('`resets`', options.get('resets') is not None)) if unfusable]
    blockers += ['`%s`=%r' % (o, options[o]) for o in VARIANTS
                 if options.get(o) not in (None, False, 0)]
    if target == 'cpu':
        return blockers + ['`%s`=%r (only %s)' % (arg, value, ', '.join(map(repr, named[:-1])))
                           for arg, value in (('activation', activation),
                                              ('recurrent_activation', recurrent_activation))
                           if callable(value) or value not in named]
    blockers += [] if kind.fused is not None else ['a %s layer' % kind.name]
    blockers += [arg for arg, unfusable in (
        ('`go_backwards`', go_backwards), ('`time_major`', time_major),
        ('`lengths`', lengths is not None), ('`dropout`', options.get('dropout')),
        ('`recurrent_dropout`', options.get('recurrent_dropout')),
        ('`activation`=%r' % (activation,), activation != 'tanh'),
        ('`recurrent_activation`=%r' % (recurrent_activation,),
         recurrent_activation != 'sigmoid')) if unfusable]
    return blockers


def fused_path(fused, kind, go_backwards, time_major, lengths, options):
    """Decide how a layer runs: ``'cudnn'`` (NNabla's ``F.lstm``), ``'cpu'`` (the kernels
    of :mod:`nnlstm.fused`) or None (the unrolled graph). ``fused`` False refuses a fused
    path; True demands it (a ValueError names what prevents it); None takes it where
    :func:`fusion_blockers` finds nothing: on the CPU for every graph, under cuDNN for
    training graphs (an inference graph stays unrolled there, so it exports)."""
    if fused is False:
        return None
    if fused is not None and fused is not True:
        raise TypeError("`fused` must be None, True or False; received %r" % (fused,))
    target = backend()
    if target is None:
        blockers = ['the context %s (the fused paths need a cpu:float or a cudnn context)'
                    % (nn.get_current_context().backend,)]
    else:
        blockers = fusion_blockers(kind, go_backwards, time_major, lengths, options, target)
    if fused is True:
        if blockers:
            raise ValueError("`fused`=True cannot run this %s layer fused on %s; these "
                             "options prevent it: %s"
                             % (kind.layer_name, target or 'this context',
                                ', '.join(blockers)))
        return target
    if blockers:
        return None
    if target == 'cudnn':
        training = options.get('training')
        return 'cudnn' if (mc.dropout_on() if training is None else training) else None
    return target


def fused_lstm(kind, inputs, units, initial_state, name, stateful=None, cell_options=None):
    """The LSTM layer (``kind.fused == 'lstm'``) as one NNabla ``F.lstm`` (cuDNN's on a GPU)
    reading nnlstm's own parameters, the gate blocks reordered in the graph. Only called
    when :func:`fusion_blockers` finds nothing, so there is no dropout. Returns
    ``(y_seq (B, T, H), LSTMState)``."""
    core, state, _ = prepare(kind, inputs, units, initial_state, name, stateful=stateful,
                             cell_options=cell_options)
    batch, dim, units = inputs.shape[0], core.input_size, core.units
    w, b = core.params[:2]  # the variants' parameters are blockers

    def to_fused(v, axis):  # gate blocks from nnlstm's order to F.lstm's, along ``axis``
        blocks = F.split(v, axis=axis)
        src, dst = gates.order(kind.name, 'nnlstm'), gates.order(kind.name, 'nnabla')
        return F.stack(*[blocks[src.index(g)] for g in dst], axis=0)

    weight = to_fused(F.reshape(w, (dim + units, 4, units)), 1)            # (4, D + H, H)
    weight = F.reshape(F.transpose(weight, (0, 2, 1)), (1, 4, units, dim + units))
    bias = None
    if b is not None:
        bias = F.reshape(to_fused(F.reshape(b, (4, units)), 0), (1, 1, 4, units))
    if state is None:
        h0 = c0 = F.constant(0.0, (1, 1, batch, units))
    else:
        c0, h0 = (F.reshape(v, (1, 1, batch, units)) for v in state)
    y, h, c = F.lstm(F.transpose(inputs, (1, 0, 2)), h0, c0, weight, bias=bias,
                     training=differentiable(inputs, *(state or ())))
    final = LSTMState(F.reshape(c, (batch, units)), F.reshape(h, (batch, units)))
    if stateful is not None:
        stateful._track(state, final)
    return F.transpose(y, (1, 0, 2)), final


def check_flags(**flags):
    for arg, value in flags.items():
        _checks.flag(value, arg)


def _layer(function, inputs, units, initial_state, return_sequences, return_state, name,
           go_backwards, time_major, lengths, options):
    """The body of every layer function: ``function`` is the public one the user called."""
    kind = function.cell_kind
    check_options(function.__name__, options, accepted(function, layer_options(kind)))
    check_flags(return_sequences=return_sequences, return_state=return_state,
                go_backwards=go_backwards, time_major=time_major)
    layer, cell_options = split_options(options)
    _checks.flag(layer['training'], 'training', optional=True)
    if go_backwards and return_sequences and lengths is not None and time_major:
        raise ValueError("`go_backwards` with `lengths` and `return_sequences` needs "
                         "batch-major inputs (time_major=False)")
    sequence, final, lengths, direction = run(
        kind, inputs, units, initial_state, name, go_backwards, time_major, lengths,
        cell_options=cell_options, order='processing' if return_sequences else None,
        **layer)
    y = sequence if return_sequences else final.h  # with lengths, at each own end
    returned = (y,) + tuple(final) if return_state else (y,)
    if direction is not None:
        record.register(record.LayerRecord(name, kind, (direction,), None, inputs, lengths,
                                           return_sequences, returned))
    return returned if return_state else y


def layer_options(kind):
    """The ``**options`` a layer of ``kind`` takes: :data:`LAYER_OPTIONS` and its cell's."""
    return set(LAYER_OPTIONS) | set(kind.options)


def check_options(function, given, names):
    """Refuse the options of ``given`` not in ``names``, naming ``function`` and, for a
    cell or layer option, the layers that take it."""
    every = ', '.join(k.layer_name for k in KINDS.values())
    _checks.options(function, given, names, dict(owners(), **dict.fromkeys(LAYER_OPTIONS,
                                                                           every)))


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
        zoneout (float, or a pair (z_c, z_h) for LSTM): zoneout (Krueger et al. 2017) of
            the state: in training each unit of c and h (h for GRU and SimpleRNN) keeps its
            previous value with probability z, drawn per step, per unit and per sample; in
            inference the expectation z * old + (1 - z) * new. The output is the zoned-out
            h (the state's h). Equations: :meth:`nnlstm.cells.Core.zone`.
        weight_dropout (float): DropConnect on the recurrent weights (AWD-LSTM): in
            training, the h rows of the recurrent kernel times one mask per forward pass (0
            with probability p, else 1 / (1 - p)), the same at every step; inference
            graphs read the weights as they are. See :meth:`nnlstm.cells.Core.drop_connect`.
        resets (~nnabla.Variable or array): (B, T), or (T, B) with ``time_major``, of 0
            and 1 (Haiku's ``ResetCore``): where ``resets[b, t]`` is 1, sequence b starts
            step t from ``initial_state`` (zeros without one, and with ``stateful``), so it
            continues exactly as a fresh run over its steps t, t + 1, .... ``t`` is the
            input's time index: with ``go_backwards`` the fresh run covers steps t, t - 1,
            ..., 0. Steps past ``lengths`` ignore it. A Variable's values are read as 1
            where >= 1, else 0 (float arithmetic, so the graph exports); an array must hold
            only 0 and 1.
        training (bool): build the dropout, zoneout and weight-dropout masks; None means
            unless built under ``nn.no_grad()``, so an inference graph has no random
            function (but always inside :func:`nnlstm.mc_dropout`, which samples with them).
        stateful (Carry): carry the final state over to the next run (truncated BPTT).
        fused (bool): run the layer as one fused NNabla function on the same
            parameters. None (default): on the CPU (a ``cpu:float`` context) always, as
            :mod:`nnlstm.fused`'s kernels, every option here but a callable activation,
            zoneout, training-time weight_dropout, resets and the variants proj_size,
            use_peepholes, layer_norm; under a ``cudnn`` context training LSTM graphs as
            NNabla's ``F.lstm`` (cuDNN's), without go_backwards, time_major, lengths,
            dropout or other activations. Elsewhere the unrolled graph runs; exports
            write the unrolled graph whatever ran (:mod:`nnlstm.export.unfuse`). False
            forces the unrolled graph; True demands a fused path (a ValueError names
            what prevents it).
        activation, recurrent_activation (str or callable): Keras' names and defaults,
            'tanh' and 'sigmoid'; 'relu', 'linear' or any callable.
        use_bias (bool), kernel_initializer, recurrent_initializer, bias_initializer:
            an array, a callable taking a shape (any ``nnabla.initializer``), one of Keras'
            names (``'glorot_uniform'``, ``'orthogonal'``, ``'zeros'``, ``'he_normal'``, ...:
            :data:`nnlstm.initializers.NAMED`), or None for Keras' defaults (Glorot
            uniform, orthogonal, zeros).
        rng (numpy.random.RandomState or int): for the initializers; an int seeds a new
            ``numpy.random.RandomState`` (Keras' ``seed``); None uses NNabla's
            ``nnabla.random.prng``.
        fix_parameters (bool): the parameters get ``need_grad=False``.
        proj_size (int), use_peepholes (bool): LSTM only: PyTorch's LSTMP projection of h
            to P features, peephole connections (:class:`nnlstm.cells.LSTMCore`).
        layer_norm (bool), norm_epsilon (float): LSTM and GRU: layer normalization (Ba et
            al. 2016) as TF-Addons' ``LayerNormLSTMCell``: the input and the recurrent
            projections normalized each over all its gate features before the bias, and an
            LSTM's new cell over its H, with learned gains and shifts, epsilon
            ``norm_epsilon`` (1e-3). A GRU needs ``reset_after=True``. Equations:
            :class:`nnlstm.cells.LSTMCore`, :class:`nnlstm.cells.GRUCore`.

    Raises:
        TypeError: an option this layer does not take (named, with the closest one), a flag
            that is not a bool, a non-Variable input.
        ValueError: shapes or values out of range, naming the argument.
"""


def LSTM(inputs, units, initial_state=None, return_sequences=False, return_state=False,
         name='lstm', go_backwards=False, time_major=False, lengths=None, **options):
    """Long short-term memory layer, unrolled over time (the seed's ``LSTM``).

    ``initial_state`` is ``(c0, h0)``, each (B, H), or None for zeros (the graph then reads
    no state input at all). ``unit_forget_bias=True`` starts the forget-gate bias at 1.
    Equations: :class:`nnlstm.cells.LSTMCore`.

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
    return _layer(LSTM, inputs, units, initial_state, return_sequences, return_state, name,
                  go_backwards, time_major, lengths, options)


def GRU(inputs, units, initial_state=None, return_sequences=False, return_state=False,
        name='gru', go_backwards=False, time_major=False, lengths=None, **options):
    """Gated recurrent unit layer (Keras' ``GRU``), unrolled over time.

    ``initial_state`` is ``h0`` (B, H) or None for zeros. ``reset_after=True`` (Keras 3's
    default; PyTorch's ``nn.GRU``) applies the reset gate after the recurrent product,
    ``reset_after=False`` before it. Equations: :class:`nnlstm.cells.GRUCore`.

    Returns:
        ``y``, or ``(y, h_T)`` with ``return_state``; ``y`` (B, T, H) or (B, H).

    Example:
        >>> y, h = nnlstm.GRU(x, 16, return_sequences=True, return_state=True)
    """
    return _layer(GRU, inputs, units, initial_state, return_sequences, return_state, name,
                  go_backwards, time_major, lengths, options)


def SimpleRNN(inputs, units, initial_state=None, return_sequences=False, return_state=False,
              name='simple_rnn', go_backwards=False, time_major=False, lengths=None,
              **options):
    """Fully connected recurrent layer (Keras' ``SimpleRNN``, PyTorch's ``nn.RNN``).

    ``initial_state`` is ``h0`` (B, H) or None for zeros. Equation:
    :class:`nnlstm.cells.SimpleRNNCore`. It has no ``recurrent_activation`` (nor
    ``unit_forget_bias``, ``reset_after``): passing one is a TypeError.

    Returns:
        ``y``, or ``(y, h_T)`` with ``return_state``; ``y`` (B, T, H) or (B, H).

    Example:
        >>> y = nnlstm.SimpleRNN(x, 16, activation='relu')
    """
    return _layer(SimpleRNN, inputs, units, initial_state, return_sequences, return_state,
                  name, go_backwards, time_major, lengths, options)


for _layer_fn in (LSTM, GRU, SimpleRNN):
    _layer_fn.cell_kind = next(k for k in KINDS.values() if k.layer_name == _layer_fn.__name__)
    if _layer_fn.__doc__:
        _layer_fn.__doc__ += LAYER_ARGS + parameter_doc(_layer_fn.cell_kind,
                                                        scope='the scope ``{name}/``')
