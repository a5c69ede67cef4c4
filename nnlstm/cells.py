"""Recurrent cells: one time step each, nothing else.

Shape legend used in every docstring of nnlstm:
    B batch size, T time steps, D input features, H units (hidden size).

A cell core is created once per layer inside the caller's parameter scope (that is where
its parameters are created or found, exactly as NNabla's ``PF`` functions do) and then
called once per step as ``core(x_t, state, h_mask) -> (y_t, new_state)``, ``state`` a
NamedTuple of (B, H) Variables. ``core.zero_state(x_t)`` computes zeros from the input
itself, so a graph built without an ``initial_state`` reads no state Variable (an exported
``.nnp`` has no extra input and keeps a variable batch size).

Every affine reads its parameters themselves, never a reshaped or sliced view of them:
NNabla's ONNX exporter requires it. Gate blocks come out of one affine as (B, kH), are
reshaped to (B, k, H) and separated by one ``F.split``.
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


class HiddenState(NamedTuple):
    """State of a GRU or SimpleRNN: the hidden ``h``, (B, H)."""
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


def blocks(z, count, units, view=True):
    """Split a (B, count * H) affine output into ``count`` (B, H) gate blocks. ``view``
    reshapes in place; a graph that keeps no buffers for a backward pass wants a copy, as
    an in-place reshape keeps every step's (B, count * H) buffer alive through
    ``forward(clear_buffer=True)``."""
    if count == 1:
        return [z]
    return list(F.split(F.reshape(z, (z.shape[0], count, units), inplace=view), axis=1))


def differentiable(*variables):
    """Whether a graph built now from ``variables`` may be asked for gradients: False only
    under ``nn.no_grad()`` (parameters without gradients) with no input needing one."""
    return not nnabla.parameter.current_no_grad or any(v.need_grad for v in variables)


def product(differentiable):
    """The elementwise product a graph uses. NNabla 1.39's MulN costs about a third of Mul2
    on CPU, but its backward divides the product by each input, so an input that is exactly
    zero (a zero state, a dropout or length mask, a relu output, a saturated sigmoid) gives
    NaN gradients: MulN only where no gradient can be asked for. (``save_nnp`` writes each
    two-input MulN as the Mul2 that ONNX converters accept.)"""
    return F.mul2 if differentiable else F.mul_n


def sub(a, b):
    """``a - b`` as ``a + (-1) * b``: NNabla 1.39's Sub2 is as slow as its Mul2."""
    return F.add2(a, F.mul_scalar(b, -1.0))


class Core:
    """What every cell core shares: options, initializers, parameters, the zero state."""
    kind = None
    state_type = HiddenState

    def __init__(self, input_size, units, activation='tanh', recurrent_activation='sigmoid',
                 use_bias=True, kernel_initializer=None, recurrent_initializer=None,
                 bias_initializer=None, rng=None, fix_parameters=False, differentiable=True):
        self.input_size, self.units = input_size, units
        self.mul = product(differentiable)
        self.view = differentiable  # see blocks()
        self.act = activation_fn(activation, 'activation')
        self.ract = activation_fn(recurrent_activation, 'recurrent_activation')
        self.use_bias = use_bias
        self.inits = (kernel_initializer, recurrent_initializer, bias_initializer)
        self.rng = rng or nnabla.random.prng
        self.fix = fix_parameters

    def kernel(self, shape):
        return initial_value(self.inits[0], shape, 'kernel_initializer', glorot_uniform,
                             self.rng)

    def recurrent(self, shape):
        return initial_value(self.inits[1], shape, 'recurrent_initializer', orthogonal,
                             self.rng)

    def bias(self, shape):
        return initial_value(self.inits[2], shape, 'bias_initializer',
                             lambda shape, rng: np.zeros(shape), self.rng)

    def param(self, name, shape, legend, init):
        return parameter(name, shape, legend, init, self.fix)

    def masked(self, h, mask):
        return h if mask is None else self.mul(h, mask)

    def zero_state(self, x):
        """Zeros (B, H) for every state tensor, computed from ``x`` (B, D) by padding and
        slicing its feature axis, so no state Variable enters the graph."""
        d = x.shape[1]
        zeros = F.slice(F.pad(x, (0, self.units)), (d,), (d + self.units,), (1,))
        return self.state_type(*[zeros] * len(self.state_type._fields))


class LSTMCore(Core):
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
    state_type = LSTMState

    def __init__(self, input_size, units, unit_forget_bias=True, **options):
        super().__init__(input_size, units, **options)
        d, h = input_size, units
        self.w = self.param('WaWiWfWo/affine/W', (d + h, 4 * h), '(D + H, 4H)', lambda shape: (
            np.concatenate([self.kernel((d, 4 * h)), self.recurrent((h, 4 * h))])))
        self.b = None
        if self.use_bias:
            bias = self.bias((4 * h,))
            if unit_forget_bias:
                f = gates.index('lstm', 'nnlstm', 'f')
                bias[f * h:(f + 1) * h] = 1.0
            self.b = self.param('WaWiWfWo/affine/b', (4 * h,), '(4H,)', bias)

    def __call__(self, x, state, h_mask=None):
        """One step: ``x`` (B, D), ``state`` an :class:`LSTMState`, ``h_mask`` an optional
        (B, H) recurrent-dropout mask. Returns ``(h_t, LSTMState(c_t, h_t))``."""
        z = F.affine(F.concatenate(x, self.masked(state.h, h_mask), axis=1), self.w, self.b)
        a, i, f, o = blocks(z, 4, self.units, self.view)
        mul = self.mul
        c = F.add2(mul(self.ract(f), state.c), mul(self.ract(i), self.act(a)))
        h = mul(self.ract(o), self.act(c))
        return h, LSTMState(c, h)


class GRUCore(Core):
    r"""Parameters of one GRU layer (Keras' GRU), created once; called once per step.

    With ``reset_after=True`` (Keras 3's default, and PyTorch's ``nn.GRU``):

    .. math::
        z_t &= \mathrm{ract}(W_z x_t + b_z + U_z h_{t-1} + c_z) \\
        r_t &= \mathrm{ract}(W_r x_t + b_r + U_r h_{t-1} + c_r) \\
        n_t &= \mathrm{act}(W_n x_t + b_n + r_t \odot (U_n h_{t-1} + c_n)) \\
        h_t &= z_t \odot h_{t-1} + (1 - z_t) \odot n_t

    With ``reset_after=False`` the reset gate applies before the matrix product and there
    is no recurrent bias: :math:`n_t = \mathrm{act}(W_n x_t + b_n + U_n (r_t \odot h_{t-1}))`.

    Parameters, in the current scope:

    * ``WzWrWn/affine/W`` (D, 3H) and ``WzWrWn/affine/b`` (3H,): the input kernel and bias;
    * ``reset_after=True``: ``UzUrUn/affine/W`` (H, 3H), ``UzUrUn/affine/b`` (3H,);
    * ``reset_after=False``: ``UzUr/affine/W`` (H, 2H) and ``Un/affine/W`` (H, H).
    """
    kind = 'gru'

    def __init__(self, input_size, units, reset_after=True, **options):
        super().__init__(input_size, units, **options)
        d, h = input_size, units
        self.reset_after = reset_after
        bias = self.use_bias
        self.wx = self.param('WzWrWn/affine/W', (d, 3 * h), '(D, 3H)', self.kernel)
        self.bx = self.param('WzWrWn/affine/b', (3 * h,), '(3H,)', self.bias) if bias else None
        if reset_after:
            self.u = self.param('UzUrUn/affine/W', (h, 3 * h), '(H, 3H)', self.recurrent)
            self.bu = (self.param('UzUrUn/affine/b', (3 * h,), '(3H,)', self.bias)
                       if bias else None)
        else:
            u = self.recurrent((h, 3 * h))  # Keras' recurrent kernel, kept in two parts
            self.uzr = self.param('UzUr/affine/W', (h, 2 * h), '(H, 2H)', u[:, :2 * h])
            self.un = self.param('Un/affine/W', (h, h), '(H, H)', u[:, 2 * h:])

    def __call__(self, x, state, h_mask=None):
        """One step: ``x`` (B, D), ``state`` a :class:`HiddenState`, ``h_mask`` an optional
        (B, H) recurrent-dropout mask. Returns ``(h_t, HiddenState(h_t))``."""
        h = state.h
        hm = self.masked(h, h_mask)
        xz, xr, xn = blocks(F.affine(x, self.wx, self.bx), 3, self.units, self.view)
        if self.reset_after:
            uz, ur, un = blocks(F.affine(hm, self.u, self.bu), 3, self.units, self.view)
        else:
            uz, ur = blocks(F.affine(hm, self.uzr), 2, self.units, self.view)
        z = self.ract(F.add2(xz, uz))
        r = self.ract(F.add2(xr, ur))
        if self.reset_after:
            n = self.act(F.add2(xn, self.mul(r, un)))
        else:
            n = self.act(F.add2(xn, F.affine(self.mul(r, hm), self.un)))
        h = F.add2(n, self.mul(z, sub(h, n)))
        return h, HiddenState(h)


class SimpleRNNCore(Core):
    r"""Parameters of one fully connected recurrent layer (Keras' SimpleRNN, PyTorch's
    ``nn.RNN``), created once; called once per step.

    .. math::
        h_t = \mathrm{act}(W [x_t, h_{t-1}] + b)

    Parameters, in the current scope: ``Wh/affine/W`` (D + H, H), rows ``[x; h]``, and
    ``Wh/affine/b`` (H,).
    """
    kind = 'rnn'

    def __init__(self, input_size, units, **options):
        options.pop('recurrent_activation', None)
        super().__init__(input_size, units, **options)
        d, h = input_size, units
        self.w = self.param('Wh/affine/W', (d + h, h), '(D + H, H)', lambda shape: (
            np.concatenate([self.kernel((d, h)), self.recurrent((h, h))])))
        self.b = self.param('Wh/affine/b', (h,), '(H,)', self.bias) if self.use_bias else None

    def __call__(self, x, state, h_mask=None):
        """One step: ``x`` (B, D), ``state`` a :class:`HiddenState`. Returns
        ``(h_t, HiddenState(h_t))``."""
        xh = F.concatenate(x, self.masked(state.h, h_mask), axis=1)
        h = self.act(F.affine(xh, self.w, self.b))
        return h, HiddenState(h)


def _step(core_type, x, states, name, options):
    """Check one step's Variables, build the core in scope ``name``, run one step."""
    _checks.rank(x, 'x', '(B, D)')
    arg = core_type.state_type._fields[0]
    units = _checks.rank(states[0], arg, '(B, H)').shape[1]
    for field, value in zip(core_type.state_type._fields, states):
        _checks.shape(value, field, (x.shape[0], units), '(B, H)')
    with nn.parameter_scope(name) if name else contextlib.nullcontext():
        core = core_type(x.shape[1], units, differentiable=differentiable(x, *states),
                         **options)
    return core(x, core_type.state_type(*states))[1]


def LSTMCell(x, c, h, name=None, **options):
    """One LSTM step, the seed's ``LSTMCell(x, c, h) -> (c_t, h_t)``.

    Args:
        x (~nnabla.Variable): (B, D) input at this step.
        c, h (~nnabla.Variable): (B, H) cell and hidden states.
        name (str): parameter scope; None creates ``WaWiWfWo/affine/{W,b}`` in the caller's
            scope, as the seed did.
        **options: ``activation``, ``recurrent_activation``, ``use_bias``,
            ``kernel_initializer``, ``recurrent_initializer``, ``bias_initializer``,
            ``unit_forget_bias``, ``rng``, ``fix_parameters``, as for :func:`nnlstm.LSTM`.

    Returns:
        ``(c_t, h_t)``, each (B, H). See :class:`LSTMCore` for the equations.

    Example:
        >>> c, h = nnlstm.LSTMCell(x_t, c, h, name='cell')   # x_t (B, D); c, h (B, H)
    """
    state = _step(LSTMCore, x, (c, h), name, options)
    return state.c, state.h


def GRUCell(x, h, name=None, **options):
    """One GRU step: ``x`` (B, D), ``h`` (B, H) -> ``h_t`` (B, H).

    ``name`` is the parameter scope (None: the caller's); ``**options`` as for
    :func:`nnlstm.GRU`, among them ``reset_after``. See :class:`GRUCore` for the equations.

    Example:
        >>> h = nnlstm.GRUCell(x_t, h, name='cell')
    """
    return _step(GRUCore, x, (h,), name, options).h


def SimpleRNNCell(x, h, name=None, **options):
    """One fully connected recurrent step: ``x`` (B, D), ``h`` (B, H) -> ``h_t`` (B, H).

    ``name`` is the parameter scope (None: the caller's); ``**options`` as for
    :func:`nnlstm.SimpleRNN`. See :class:`SimpleRNNCore` for the equation.

    Example:
        >>> h = nnlstm.SimpleRNNCell(x_t, h, name='cell')
    """
    return _step(SimpleRNNCore, x, (h,), name, options).h
