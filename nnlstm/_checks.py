"""Argument checks shared by the layers: each raises a message naming the argument,
what was expected and what was received."""
import numbers

import nnabla as nn


def variable(value, arg):
    if not isinstance(value, nn.Variable):
        raise TypeError("`%s` must be an nnabla.Variable; received %s"
                        % (arg, type(value).__name__))
    return value


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


def rank(value, arg, legend):
    """Check that ``value`` is a Variable of the rank of ``legend``, e.g. '(B, H)'."""
    variable(value, arg)
    if value.ndim != legend.count(',') + 1:
        raise ValueError("`%s` must have rank %d, %s; received shape %s"
                         % (arg, legend.count(',') + 1, legend, tuple(value.shape)))
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


def choice(value, arg, choices):
    if value not in choices:
        raise ValueError("`%s` must be one of %s; received %r"
                         % (arg, ', '.join(repr(c) for c in choices), value))
    return value


# ---------------------------------------------------------------- added by branch interop
# (nnlstm.interop's parameter-store functions take a layer's scope name)

def scope_name(value, arg='name'):
    """A layer's parameter scope: a non-empty str."""
    if not isinstance(value, str) or not value:
        raise TypeError("`%s` must be a non-empty str; received %r" % (arg, value))
    return value
