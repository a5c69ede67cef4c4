"""Argument checks, written once for every public function of nnlstm: each raises a message
naming the argument, what was expected and what was received.

Shape legends spell shapes in the letters B batch, T time steps, D input features, H units:
``'(B, H)'``, ``'(D + H, 4H)'``, ``'(4H,)'``; :func:`rank_of` and :func:`shape_of` read them.
"""
import difflib
import math
import numbers
import os
import re

import numpy as np
import nnabla as nn

_TERM = re.compile(r'^\s*(\d*)\s*([A-Z])\s*$')


def _axes(legend):
    return [a for a in legend.strip().strip('()').split(',') if a.strip()]


def rank_of(legend):
    """The rank a legend spells: ``'(D + H, 4H)'`` 2, ``'(4H,)'`` 1, ``'(B, H)'`` 2."""
    return len(_axes(legend))


def shape_of(legend, **dims):
    """The shape a legend spells for the given dimensions: ``shape_of('(D + H, 4H)', D=3,
    H=5) == (8, 20)``. Each axis is a sum of terms, each an optional integer times one
    letter."""
    shape = []
    for axis in _axes(legend):
        size = 0
        for term in axis.split('+'):
            m = _TERM.match(term)
            if m is None or m.group(2) not in dims:
                raise ValueError("cannot read the shape legend %r" % legend)
            size += int(m.group(1) or 1) * dims[m.group(2)]
        shape.append(size)
    return tuple(shape)


def options(function, given, accepted, owners=None):
    """Refuse every key of ``given`` not in ``accepted``: a TypeError naming ``function``
    (the name the user called, e.g. 'LSTM'), the option, and all accepted names; an option
    that ``owners`` (``{option: 'LSTM, GRU'}``) knows elsewhere says where it applies, any
    other the closest accepted name, as Python's own "did you mean"."""
    accepted = sorted(accepted)
    for option in given:
        if option in accepted:
            continue
        close = difflib.get_close_matches(str(option), accepted, n=1)
        hint = "; did you mean %r?" % close[0] if close else ""
        if owners and option in owners:
            hint = ": it is an option of %s, not of %s()" % (owners[option], function)
        raise TypeError("%s() got an unexpected option %r%s (%s() accepts: %s)"
                        % (function, option, hint, function, ', '.join(accepted)))
    return given


def path(value, arg='path', suffixes=None):
    """A file path: a non-empty str or ``os.PathLike``, returned as a str; with
    ``suffixes`` (``('.h5', '.protobuf')``), one that ends with one of them."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError("`%s` must be a file path, a non-empty str or os.PathLike; received %s %r"
                        % (arg, type(value).__name__, value))
    if suffixes and not value.endswith(tuple(suffixes)):
        raise ValueError("`%s` must end with %s; received %r"
                         % (arg, ' or '.join(map(repr, suffixes)), value))
    return value


def non_negative(value, arg):
    """A finite real number >= 0 (an ``eps``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("`%s` must be a finite number >= 0; received %s %r"
                        % (arg, type(value).__name__, value))
    if not (math.isfinite(value) and value >= 0):
        raise ValueError("`%s` must be a finite number >= 0; received %r" % (arg, value))
    return float(value)


def keys(value, arg):
    """Refuse a dict key that is not a str (names of parameters, inputs, outputs) before
    anything sorts or joins them."""
    for key in value:
        if not isinstance(key, str):
            raise TypeError("`%s` keys must be str names; received %s %r"
                            % (arg, type(key).__name__, key))
    return value


def variable(value, arg):
    if not isinstance(value, nn.Variable):
        raise TypeError("`%s` must be an nnabla.Variable; received %s"
                        % (arg, type(value).__name__))
    return value


def name(value, arg='name', optional=False):
    """A parameter-scope name: a non-empty str (or None when ``optional``)."""
    if value is None and optional:
        return value
    if not isinstance(value, str) or not value:
        raise TypeError("`%s` must be a non-empty str%s; received %r"
                        % (arg, ' or None' if optional else '', value))
    return value


def flag(value, arg, optional=False):
    """A bool (or None when ``optional``): a string such as 'False' is refused, not read as
    true."""
    if (value is None and optional) or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    raise TypeError("`%s` must be True or False%s; received %s %r"
                    % (arg, ' (or None)' if optional else '', type(value).__name__, value))


def positive(value, arg):
    """A finite real number > 0 (a ``norm_epsilon``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("`%s` must be a finite number > 0; received %s %r"
                        % (arg, type(value).__name__, value))
    if not (math.isfinite(value) and value > 0):
        raise ValueError("`%s` must be a finite number > 0; received %r" % (arg, value))
    return float(value)


def positive_int(value, arg):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError("`%s` must be a positive int; received %s %r"
                        % (arg, type(value).__name__, value))
    if value <= 0:
        raise ValueError("`%s` must be a positive int; received %r" % (arg, value))
    return int(value)


def probability(value, arg):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("`%s` must be a float in [0, 1); received %s %r"
                        % (arg, type(value).__name__, value))
    if not 0.0 <= value < 1.0:
        raise ValueError("`%s` must be in [0, 1); received %r" % (arg, value))
    return float(value)


def rates(value, arg, fields, layer):
    """One probability per state tensor of ``fields`` (``('c', 'h')`` for an LSTM): a float
    for all of them, or, for a state of several tensors, a tuple with one per tensor in that
    order. ``layer`` names the layer in messages ('GRU')."""
    if not isinstance(value, (tuple, list)):
        return (probability(value, arg),) * len(fields)
    if len(fields) == 1:
        raise ValueError("`%s` of a %s is one rate (its state is %s alone); received %r"
                         % (arg, layer, fields[0], value))
    if len(value) != len(fields):
        raise ValueError("`%s` of a %s is one rate or %d, (%s); received %r"
                         % (arg, layer, len(fields), ', '.join('z_' + f for f in fields),
                            value))
    return tuple(probability(v, '%s (z_%s)' % (arg, f)) for v, f in zip(value, fields))


def rank(value, arg, legend):
    """Check that ``value`` is a Variable of the rank of ``legend``, e.g. '(B, H)'."""
    variable(value, arg)
    if value.ndim != rank_of(legend):
        raise ValueError("`%s` must have rank %d, %s; received shape %s"
                         % (arg, rank_of(legend), legend, tuple(value.shape)))
    return value


def nonempty(value, arg, legend):
    """Check a Variable of the rank of ``legend`` with no axis of size 0."""
    rank(value, arg, legend)
    if 0 in value.shape:
        raise ValueError("`%s` has an empty axis: shape %s, expected %s with every size >= 1"
                         % (arg, tuple(value.shape), legend))
    return value


def shape(value, arg, expected, legend):
    """Check ``value.shape == expected``; ``legend`` spells the expected shape, e.g. '(B, H)'."""
    variable(value, arg)
    if tuple(value.shape) != tuple(expected):
        raise ValueError("`%s` has shape %s; expected %s = %s"
                         % (arg, tuple(value.shape), legend, tuple(expected)))
    return value


def sequence(inputs, arg, time_major=False):
    """Check a (B, T, D) (or (T, B, D)) sequence; return (B, T, D)."""
    variable(inputs, arg)
    legend = '(T, B, D)' if time_major else '(B, T, D)'
    if inputs.ndim != 3:
        raise ValueError("`%s` must have rank 3, %s; received shape %s"
                         % (arg, legend, tuple(inputs.shape)))
    t, b, d = inputs.shape if time_major else (inputs.shape[1], inputs.shape[0],
                                                inputs.shape[2])
    if t == 0:
        raise ValueError("`%s` has no time steps: shape %s, expected %s with T >= 1"
                         % (arg, tuple(inputs.shape), legend))
    if b == 0 or d == 0:
        raise ValueError("`%s` has an empty axis: shape %s, expected %s with B, D >= 1"
                         % (arg, tuple(inputs.shape), legend))
    return b, t, d


def state(value, state_type, batch, units, arg='initial_state'):
    """Check a recurrent state against ``state_type``'s fields, each (B, H) (or (B, width)
    for ``units`` a tuple of each field's width: an LSTM with ``proj_size`` P has c (B, H)
    and h (B, P)); None stays None. A one-field state is the Variable itself (or a 1-tuple
    of it)."""
    if value is None:
        return None
    fields = state_type._fields
    widths = tuple(units) if isinstance(units, tuple) else (units,) * len(fields)
    legends = ['(B, units)' if w == widths[0] else '(B, proj_size)' for w in widths]
    if len(fields) == 1:  # GRU, SimpleRNN: the one Variable h0
        if isinstance(value, (tuple, list)) and len(value) == 1:
            value = value[0]
        variable(value, arg)
        return state_type(shape(value, '%s (%s0)' % (arg, fields[0]), (batch, widths[0]),
                                legends[0]))
    names = ', '.join(f + '0' for f in fields)
    if not isinstance(value, (tuple, list)):
        raise TypeError("`%s` must be a tuple (%s) of Variables (B, H); received %s"
                        % (arg, names, type(value).__name__))
    if len(value) != len(fields):
        raise ValueError("`%s` must hold %d Variables (%s); received %d"
                         % (arg, len(fields), names, len(value)))
    return state_type(*[
        shape(v, '%s[%d] (%s0)' % (arg, k, f), (batch, w), legend)
        for k, (f, v, w, legend) in enumerate(zip(fields, value, widths, legends))])


def projection(value, units):
    """``proj_size`` (PyTorch's LSTMP): None or 0 for none, else an int P with
    0 < P < H = ``units``, as PyTorch requires ("proj_size has to be smaller than
    hidden_size"). Returns None or P."""
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                         and value == 0):
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError("`proj_size` must be None or an int; received %s %r"
                        % (type(value).__name__, value))
    if not 0 < value < units:
        raise ValueError("`proj_size` must satisfy 0 < P < H = units = %d (PyTorch's rule); "
                         "received %r" % (units, value))
    return int(value)


def lengths(value, batch, steps):
    """``lengths`` as a (B,) Variable or None; an array's values are checked to be whole
    numbers in [0, T] (a Variable's are floored in the graph, see
    :func:`nnlstm.unroll.length_masks`)."""
    if value is None or isinstance(value, nn.Variable):
        if value is not None and tuple(value.shape) != (batch,):
            raise ValueError("`lengths` has shape %s; expected (B,) = (%d,)"
                             % (tuple(value.shape), batch))
        return value
    values = np.asarray(value)
    if values.shape != (batch,) or not np.issubdtype(values.dtype, np.integer):
        raise ValueError("`lengths` must be (B,) = (%d,) ints; received %s %s"
                         % (batch, values.dtype, values.shape))
    if values.min() < 0 or values.max() > steps:
        raise ValueError("`lengths` must lie in [0, T] = [0, %d]; received %s"
                         % (steps, values.tolist()))
    return nn.Variable.from_numpy_array(values.astype(np.float32))


def resets(value, batch, steps, time_major=False):
    """``resets`` as a (B, T) ((T, B) with ``time_major``) Variable or None; an array must
    hold only 0 and 1 (bool, int or float), and becomes a float32 Variable (a Variable's
    values are read as 1 where >= 1, else 0, see :func:`nnlstm.unroll.reset_masks`)."""
    if value is None:
        return None
    legend, shape = ('(T, B)', (steps, batch)) if time_major else ('(B, T)', (batch, steps))
    if isinstance(value, nn.Variable):
        if tuple(value.shape) != shape:
            raise ValueError("`resets` has shape %s; expected %s = %s"
                             % (tuple(value.shape), legend, shape))
        return value
    values = np.asarray(value)
    if values.dtype.kind not in 'biuf':
        raise TypeError("`resets` must be an nnabla.Variable or an array of 0 and 1 (bool, "
                        "int or float); received %s of dtype %s" % (type(value).__name__,
                                                                     values.dtype))
    if values.shape != shape:
        raise ValueError("`resets` has shape %s; expected %s = %s"
                         % (values.shape, legend, shape))
    if not np.isin(values, (0, 1)).all():
        raise ValueError("`resets` must hold only 0 and 1; received the values %s"
                         % np.unique(values).tolist())
    return nn.Variable.from_numpy_array(values.astype(np.float32))


def rng(value, arg='rng'):
    """A random generator for initializers: None (NNabla's ``nnabla.random.prng``, read
    now), an int seed (a new ``numpy.random.RandomState(seed)``, as Keras' ``seed``) or a
    ``numpy.random.RandomState``/``Generator``."""
    if value is None:
        return nn.random.prng
    if isinstance(value, (np.random.RandomState, np.random.Generator)):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("`%s` as a seed must be >= 0; received %r" % (arg, value))
        return np.random.RandomState(int(value))
    raise TypeError("`%s` must be None, an int seed or a numpy.random.RandomState; "
                    "received %s %r" % (arg, type(value).__name__, value))


def choice(value, arg, choices):
    try:
        known = value in choices
    except TypeError:  # unhashable
        known = False
    if not known:
        raise ValueError("`%s` must be one of %s; received %r"
                         % (arg, ', '.join(repr(c) for c in choices), value))
    return value

