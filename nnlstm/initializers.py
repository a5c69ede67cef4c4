"""Keras' initializers by name, with Keras' formulas: ``kernel_initializer='glorot_uniform'``.

Each takes ``(shape, rng)`` and returns an array; ``fan_in, fan_out`` are ``shape[0],
shape[1]`` for a matrix, ``shape[0]`` twice for a vector (Keras' ``compute_fans``). The
truncated normals are Keras' too: cut at two standard deviations, redrawn, and scaled by
1 / 0.8796... so that the variance is the intended one.
"""
import numpy as np

#: Standard deviation of a unit normal truncated to [-2, 2] (Keras' VarianceScaling).
TRUNCATED_STD = .87962566103423978


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], int(np.prod(shape[1:]))


def _truncated_normal(shape, rng, stddev):
    values = rng.normal(0.0, 1.0, shape)
    out = np.abs(values) > 2.0
    while out.any():
        values[out] = rng.normal(0.0, 1.0, int(out.sum()))
        out = np.abs(values) > 2.0
    return values * stddev


def _variance_scaling(scale, mode, distribution):
    def init(shape, rng):
        fan_in, fan_out = _fans(shape)
        fan = {'fan_in': fan_in, 'fan_avg': (fan_in + fan_out) / 2.0}[mode]
        s = scale / max(1.0, fan)
        if distribution == 'uniform':
            limit = np.sqrt(3.0 * s)
            return rng.uniform(-limit, limit, shape)
        return _truncated_normal(shape, rng, np.sqrt(s) / TRUNCATED_STD)
    return init


def glorot_uniform(shape, rng):
    """Keras' default kernel initializer: U(-l, l), l = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / sum(_fans(shape)))
    return rng.uniform(-limit, limit, shape)


def orthogonal(shape, rng):
    """Keras' default recurrent initializer: a (H, kH) matrix with orthonormal rows."""
    rows, cols = shape
    a = rng.normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.T if rows < cols else q


def zeros(shape, rng):
    return np.zeros(shape)


def ones(shape, rng):
    return np.ones(shape)


#: Keras' initializer names (``keras.initializers.get``) and their formulas.
NAMED = {
    'glorot_uniform': glorot_uniform,
    'glorot_normal': _variance_scaling(1.0, 'fan_avg', 'truncated_normal'),
    'he_uniform': _variance_scaling(2.0, 'fan_in', 'uniform'),
    'he_normal': _variance_scaling(2.0, 'fan_in', 'truncated_normal'),
    'lecun_uniform': _variance_scaling(1.0, 'fan_in', 'uniform'),
    'lecun_normal': _variance_scaling(1.0, 'fan_in', 'truncated_normal'),
    'orthogonal': orthogonal,
    'zeros': zeros,
    'ones': ones,
    'random_uniform': lambda shape, rng: rng.uniform(-0.05, 0.05, shape),
    'random_normal': lambda shape, rng: rng.normal(0.0, 0.05, shape),
    'truncated_normal': lambda shape, rng: _truncated_normal(shape, rng, 0.05),
}

#: The default initializer of each parameter role (Keras' LSTM/GRU/SimpleRNN defaults; the
#: layer norms' gains and shifts TF-Addons' LayerNormLSTMCell's).
DEFAULTS = {'kernel': glorot_uniform, 'recurrent': orthogonal, 'bias': zeros, 'gain': ones,
            'shift': zeros}


def initial_value(initializer, shape, arg, default, rng):
    """An initializer argument as an array of ``shape``: an array, a callable taking the
    shape (any ``nnabla.initializer``), one of Keras' names in :data:`NAMED`, or None for
    ``default(shape, rng)``."""
    if initializer is None:
        value = default(shape, rng)
    elif isinstance(initializer, str):
        if initializer not in NAMED:
            raise ValueError("`%s` %r is not an initializer nnlstm knows; Keras' names it "
                             "accepts: %s (or give an array or a callable taking the shape)"
                             % (arg, initializer, ', '.join(sorted(NAMED))))
        value = NAMED[initializer](tuple(shape), rng)
    elif callable(initializer):
        value = initializer(shape)
    else:
        value = initializer
    try:
        value = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError("`%s` must be an array, a callable taking the shape, a Keras name or "
                        "None; received %s" % (arg, type(initializer).__name__)) from None
    if value.shape != tuple(shape):
        raise ValueError("`%s` gives shape %s; expected %s" % (arg, value.shape, tuple(shape)))
    return value
