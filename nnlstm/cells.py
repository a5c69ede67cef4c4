"""Recurrent cells: one time step each, nothing else.

Shape legend used in every docstring of nnlstm:
    B batch size, T time steps, D input features, H units (hidden size).

A cell core is created once per layer inside the caller's parameter scope (that is where
its parameters are created or found, exactly as NNabla's ``PF`` functions do) and then
called once per step as ``core(x_t, state) -> (y_t, new_state)``. ``state`` None means the
zero state: the first step then reads no state Variable at all, so a graph built without an
``initial_state`` has no extra input (an exported ``.nnp`` keeps a variable batch size).
"""
import contextlib
from typing import NamedTuple

import numpy as np
import nnabla as nn
import nnabla.functions as F
from nnabla.parameter import get_parameter, get_parameter_or_create
import nnabla.random

from . import _checks, gates


class LSTMState(NamedTuple):
    """State of an LSTM: the cell ``c`` and the hidden ``h``, each (B, H), in the seed's order."""
    c: nn.Variable
    h: nn.Variable


ACTIVATIONS = {
    'tanh': F.tanh,
    'sigmoid': F.sigmoid,
    'relu': F.relu,
    'linear': None,
    None: None,
}


def activation_fn(value, arg):
    """Resolve a Keras-style activation: a name from :data:`ACTIVATIONS` or a callable."""
    if callable(value):
        return value
    if value not in ACTIVATIONS:
        raise ValueError("`%s` must be a callable or one of %s; received %r"
                         % (arg, ', '.join(repr(k) for k in ACTIVATIONS), value))
    fn = ACTIVATIONS[value]
    return fn if fn is not None else (lambda v: v)


def glorot_uniform(shape, rng):
    """Keras' default kernel initializer: U(-l, l), l = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape)


def orthogonal(shape, rng):
    """Keras' default recurrent initializer: a (H, kH) matrix with orthonormal rows."""
    rows, cols = shape
    a = rng.normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.T if rows < cols else q


def initial_value(initializer, shape, arg, default, rng):
    """An initializer argument as an array of ``shape``: an array, a callable taking the
    shape (any ``nnabla.initializer``), or None for ``default(shape, rng)``."""
    if initializer is None:
        value = default(shape, rng)
    elif callable(initializer):
        value = initializer(shape)
    else:
        value = initializer
    value = np.asarray(value, dtype=np.float32)
    if value.shape != tuple(shape):
        raise ValueError("`%s` gives shape %s; expected %s" % (arg, value.shape, tuple(shape)))
    return value


def parameter(name, shape, legend, init, fix_parameters):
    """Get or create a parameter in the current scope, as NNabla's PF functions do; an
    existing parameter of another shape is a ValueError naming both shapes."""
    existing = get_parameter(name)
    if existing is not None and existing.shape != tuple(shape):
        raise ValueError("parameter '%s' exists with shape %s; expected %s = %s. Reuse a "
                         "layer `name` only with the same input size and units."
                         % (name, existing.shape, legend, tuple(shape)))
    return get_parameter_or_create(name, shape, init, True, not fix_parameters)


class LSTMCore:
    r"""Parameters of one LSTM layer, created once; called once per step.

    .. math::
        a_t &= \mathrm{act}(W_a [x_t, h_{t-1}] + b_a) \\
        i_t &= \mathrm{ract}(W_i [x_t, h_{t-1}] + b_i) \\
        f_t &= \mathrm{ract}(W_f [x_t, h_{t-1}] + b_f) \\
        o_t &= \mathrm{ract}(W_o [x_t, h_{t-1}] + b_o) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot a_t \\
        h_t &= o_t \odot \mathrm{act}(c_t)

    with act = tanh and ract = sigmoid by default. Parameters, in the current scope (the
    seed's names, so its parameter files load unchanged):

    * ``WaWiWfWo/affine/W``: (D + H, 4H), rows ``[x; h]``, column blocks a, i, f, o;
    * ``WaWiWfWo/affine/b``: (4H,) (absent with ``use_bias=False``).
    """
    kind = 'lstm'
    gates = 4

    def __init__(self, input_size, units, activation='tanh', recurrent_activation='sigmoid',
                 use_bias=True, kernel_initializer=None, recurrent_initializer=None,
                 bias_initializer=None, unit_forget_bias=True, rng=None, fix_parameters=False):
        d, h = input_size, units
        self.units = units
        self.input_size = input_size
        self.act = activation_fn(activation, 'activation')
        self.ract = activation_fn(recurrent_activation, 'recurrent_activation')
        rng = rng or nnabla.random.prng
        k = self.gates

        def w_init(shape):
            kernel = initial_value(kernel_initializer, (d, k * h), 'kernel_initializer',
                                   glorot_uniform, rng)
            recurrent = initial_value(recurrent_initializer, (h, k * h),
                                      'recurrent_initializer', orthogonal, rng)
            return np.concatenate([kernel, recurrent], axis=0)

        w = parameter('WaWiWfWo/affine/W', (d + h, k * h), '(D + H, 4H)', w_init,
                      fix_parameters)
        b = None
        if use_bias:
            bias = initial_value(bias_initializer, (k * h,), 'bias_initializer',
                                 lambda shape, rng: np.zeros(shape), rng)
            if unit_forget_bias:
                f = gates.index('lstm', 'nnlstm', 'f')
                bias[f * h:(f + 1) * h] = 1.0
            b = parameter('WaWiWfWo/affine/b', (k * h,), '(4H,)', bias, fix_parameters)
        self.w, self.b = w, b

    def __call__(self, x, state):
        """One step: ``x`` (B, D), ``state`` an :class:`LSTMState` or None (zeros).
        Returns ``(h_t, LSTMState(c_t, h_t))``."""
        units = self.units
        if state is None:
            xh = F.pad(x, (0, units))  # [x, 0] without reading a state Variable
        else:
            xh = F.concatenate(x, state.h, axis=1)
        # The affine reads the parameters themselves (NNabla's ONNX exporter requires it);
        # the reshape leads with the concrete batch, which NNabla's saver makes variable.
        z = F.reshape(F.affine(xh, self.w, self.b), (x.shape[0], self.gates, units))
        a, i, f, o = F.split(z, axis=1)
        a = self.act(a)
        i, o = self.ract(i), self.ract(o)
        c = F.mul2(i, a)
        if state is not None:
            c = F.add2(F.mul2(self.ract(f), state.c), c)
        h = F.mul2(o, self.act(c))
        return h, LSTMState(c, h)


def LSTMCell(x, c, h, activation='tanh', recurrent_activation='sigmoid', use_bias=True,
             kernel_initializer=None, recurrent_initializer=None, bias_initializer=None,
             unit_forget_bias=True, rng=None, fix_parameters=False, name=None):
    """One LSTM step, the seed's ``LSTMCell(x, c, h) -> (c_t, h_t)``.

    Args:
        x (~nnabla.Variable): (B, D) input at this step.
        c (~nnabla.Variable): (B, H) cell state.
        h (~nnabla.Variable): (B, H) hidden state.
        activation, recurrent_activation: 'tanh', 'sigmoid', 'relu', 'linear' or a callable.
        use_bias (bool): add the bias ``WaWiWfWo/affine/b``.
        kernel_initializer, recurrent_initializer, bias_initializer: an array, a callable
            taking a shape (any ``nnabla.initializer``), or None for Keras' defaults
            (Glorot-uniform (D, 4H), orthogonal (H, 4H), zeros (4H,)).
        unit_forget_bias (bool): start the forget-gate bias at 1, as Keras does.
        rng (numpy.random.RandomState): for the default initializers.
        fix_parameters (bool): the parameters get ``need_grad=False``.
        name (str): parameter scope; None creates ``WaWiWfWo/...`` in the caller's scope,
            as the seed did.

    Returns:
        tuple of ~nnabla.Variable: ``(c_t, h_t)``, each (B, H). See :class:`LSTMCore` for the
        equations and parameter layout.

    Example:
        >>> c, h = nnlstm.LSTMCell(x_t, c, h, name='cell')   # x_t (B, D); c, h (B, H)
    """
    _checks.rank(x, 'x', '(B, D)')
    units = _checks.rank(c, 'c', '(B, H)').shape[1]
    _checks.shape(c, 'c', (x.shape[0], units), '(B, H)')
    _checks.shape(h, 'h', (x.shape[0], units), '(B, H)')
    with nn.parameter_scope(name) if name else contextlib.nullcontext():
        core = LSTMCore(x.shape[1], units, activation, recurrent_activation, use_bias,
                        kernel_initializer, recurrent_initializer, bias_initializer,
                        unit_forget_bias, rng, fix_parameters)
    _, state = core(x, LSTMState(c, h))
    return state.c, state.h

