"""Recurrent cells: one time step each, nothing else.

Shape legend used in every docstring of nnlstm:
    B batch size, T time steps, D input features, H units (hidden size).

A cell core is created once per layer inside the caller's parameter scope (that is where
its parameters are created or found, exactly as NNabla's ``PF`` functions do) and then
called once per step as ``core(x_t, state, h_mask) -> (y_t, new_state)``, ``state`` a
NamedTuple of (B, H) Variables. ``core.zero_state(x_t)`` computes zeros from the input
itself, so a graph built without an ``initial_state`` reads no state Variable (an exported
``.nnp`` has no extra input and keeps a variable batch size).

Which parameters a core creates, their shapes and initializers, come from its kind's table
in :mod:`nnlstm.kinds` (``Core.create``); the cores here hold the equations only.

Every affine reads its parameters themselves, never a reshaped or sliced view of them:
NNabla's ONNX exporter requires it. Gate blocks come out of one affine as (B, kH), are
reshaped to (B, k, H) and separated by one ``F.split``.
"""
import contextlib
import functools
from typing import NamedTuple

import numpy as np
import nnabla as nn
import nnabla.functions as F
from nnabla.parameter import get_parameter, get_parameter_or_create
import nnabla.parameter

from . import _checks, gates, initializers, mc, process


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
    if not (value is None or isinstance(value, str)):
        raise TypeError("`%s` must be a callable or one of %s; received %s %r"
                        % (arg, ', '.join(repr(k) for k in ACTIVATIONS), type(value).__name__,
                           value))
    if value not in ACTIVATIONS:
        raise ValueError("`%s` must be a callable or one of %s; received %r"
                         % (arg, ', '.join(repr(k) for k in ACTIVATIONS), value))
    fn = ACTIVATIONS[value]
    return fn if fn is not None else (lambda v: v)


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
    """What every cell core shares: options, parameters made from the kind's table, the
    zero state.

    ``kind`` is the core's :class:`nnlstm.kinds.CellKind` (``nnlstm.kinds`` binds it);
    ``params`` the tuple of its parameters in the order of ``kind.params``, None for those
    the options leave out, as the steps read them: with ``weight_dropout`` in a training
    graph, the recurrent weights times their DropConnect mask (:meth:`drop_connect`).
    ``options`` are the kind's cell options (``kind.options``); ``differentiable`` False
    builds the inference-only products (:func:`product`); ``training`` (None: unless built
    under ``nn.no_grad()``, see :func:`nnlstm.mc.dropout_on`) draws the zoneout and
    DropConnect masks, where inference uses zoneout's expectation and no DropConnect.
    """
    kind = None

    def __init__(self, input_size, units, differentiable=True, training=None, **options):
        kind = self.kind
        kind.check_options(type(self).__name__, options)
        options = dict(kind.options, **options)
        for option, default in kind.options.items():
            if isinstance(default, bool):
                _checks.flag(options[option], option)
        self.input_size = _checks.positive_int(input_size, 'input_size')
        self.units = _checks.positive_int(units, 'units')
        self.sizes = kind.dims(self.input_size, self.units, **options)  # D, H, P
        self.state_sizes = kind.state_sizes(self.units, **options)
        self.output_size = self.state_sizes[-1]  # the width of h and the output: P
        self.state_type = kind.state
        self.mul = product(differentiable)
        self.view = differentiable  # see blocks()
        self.act = activation_fn(options['activation'], 'activation')
        if 'recurrent_activation' in options:
            self.ract = activation_fn(options['recurrent_activation'], 'recurrent_activation')
        self.rng = _checks.rng(options['rng'])
        self.zoneout = _checks.rates(options['zoneout'], 'zoneout', kind.state._fields,
                                     kind.layer_name)
        self.weight_dropout = _checks.probability(options['weight_dropout'], 'weight_dropout')
        training = _checks.flag(training, 'training', optional=True)
        self.training = mc.dropout_on() if training is None else training
        if 'norm_epsilon' in options:
            _checks.positive(options['norm_epsilon'], 'norm_epsilon')
        self.options = options
        self.params = self.create()
        if self.training and self.weight_dropout:
            self.params = self.drop_connect(self.params)
        self.named = {spec.name: p for spec, p in zip(kind.params, self.params)}
        self._rows = {}

    def create(self):
        """Get or create every parameter of ``kind.params`` that the options call for, each
        initialized by its role: ``kernel`` (``kernel_initializer``, Glorot uniform),
        ``recurrent`` (``recurrent_initializer``, orthogonal), ``kernel+recurrent`` (rows
        ``[x; h]`` of the two), ``bias`` (``bias_initializer``, zeros; the forget gate's
        block 1 with ``unit_forget_bias``). Initial values are drawn only for parameters
        that do not exist yet."""
        dims = self.sizes
        wholes, offsets, params = {}, {}, []
        for spec in self.kind.params:
            if not spec.exists(self.options):
                params.append(None)
                continue
            shape = _checks.shape_of(spec.legend, **dims)
            init = functools.partial(self.initial, spec.role)
            if spec.whole is not None:  # a column block of one initial matrix
                start = offsets.get(spec.whole, 0)
                offsets[spec.whole] = start + shape[1]
                init = functools.partial(self.cut, wholes, spec, start,
                                         _checks.shape_of(spec.whole, **dims))
            legend = spec.legend if dims['P'] != dims['H'] else spec.legend.replace('P', 'H')
            params.append(parameter(spec.name, shape, legend, init,
                                    self.options['fix_parameters']))
        return tuple(params)

    def initial(self, role, shape):
        """The initial value of a parameter of ``role`` and ``shape``."""
        if role == 'kernel+recurrent':  # rows [x; h]
            d, cols = self.input_size, shape[1]
            return np.concatenate([self.initial('kernel', (d, cols)),
                                   self.initial('recurrent', (shape[0] - d, cols))])
        arg = role + '_initializer'  # the norms' gains and shifts take none: ones, zeros
        value = initializers.initial_value(self.options.get(arg), shape, arg,
                                           initializers.DEFAULTS[role], self.rng)
        if role == 'bias' and self.options.get('unit_forget_bias'):
            h = self.units
            f = gates.index(self.kind.name, 'nnlstm', 'f')
            value[f * h:(f + 1) * h] = 1.0
        return value

    def cut(self, wholes, spec, start, whole_shape, shape):
        """Columns ``start:start + shape[1]`` of the one initial matrix ``spec.whole``,
        drawn once per core."""
        if spec.whole not in wholes:
            wholes[spec.whole] = self.initial(spec.role, whole_shape)
        return wholes[spec.whole][:, start:start + shape[1]]

    def drop_connect(self, params):
        """DropConnect on the recurrent weights (the weight drop of AWD-LSTM, Merity et al.
        2017, "Regularizing and optimizing LSTM language models"): the h rows of each
        parameter read by h (all rows of a ``recurrent`` one, rows D: of a
        ``kernel+recurrent`` [x; h] one) times a mask, 0 with probability ``weight_dropout``
        p, else 1 / (1 - p). One mask per parameter, drawn at each forward pass and shared
        by every time step; the input rows and the biases are not dropped."""
        dropped = []
        for spec, w in zip(self.kind.params, params):
            if w is not None and spec.role in ('recurrent', 'kernel+recurrent'):
                rows, cols = w.shape
                inputs = self.input_size if spec.role == 'kernel+recurrent' else 0
                mask = F.dropout(F.constant(1.0, (rows - inputs, cols)), self.weight_dropout)
                if inputs:
                    mask = F.concatenate(F.constant(1.0, (inputs, cols)), mask, axis=0)
                w = F.mul2(w, mask)
            dropped.append(w)
        return tuple(dropped)

    def zoneout_masks(self, batch, steps=None):
        """Zoneout masks, one per state tensor, (B, width) for one step or (T, B, width)
        for ``steps`` T: 1 where a unit takes its new value (probability 1 - z), 0 where it
        keeps its previous one, drawn per step, per unit and per sample, as Krueger et al.
        and their TensorFlow ``ZoneoutWrapper`` do. None outside training, and for a tensor
        whose rate is 0."""
        if not self.training:
            return None
        lead = (batch,) if steps is None else (steps, batch)
        return tuple(F.greater_equal_scalar(F.rand(shape=lead + (w,)), z) if z else None
                     for z, w in zip(self.zoneout, self.state_sizes))

    def zone(self, old, y, new, masks=None):
        r"""Zoneout (Krueger et al. 2017, arXiv:1606.01305) of one step: each state tensor
        :math:`s` (c and h for an LSTM, h for a GRU or SimpleRNN) with rate :math:`z` becomes

        .. math::
            s_t = d_t \odot s_{t-1} + (1 - d_t) \odot \tilde s_t

        in training, :math:`\tilde s_t` the cell's new value and :math:`1 - d_t` the step's
        mask from :meth:`zoneout_masks`; in inference :math:`s_t = z s_{t-1} + (1 - z)
        \tilde s_t`, the expectation. An LSTM's :math:`\tilde h_t = o_t \odot
        \mathrm{act}(\tilde c_t)` reads the new cell before its zoneout, as in the paper.
        ``old`` is the state the step started from, ``y`` and ``new`` what the core
        returned. Returns ``(y, new)``, with ``y`` the zoned-out h: the state the next step
        and the next layer read, the paper's :math:`h_t` (the paper's ``ZoneoutWrapper``
        outputs the cell's h before its zoneout instead)."""
        if not any(self.zoneout):
            return y, new
        masks = masks or (None,) * len(new)
        mixed = []
        for z, o, n, keep in zip(self.zoneout, old, new, masks):
            if not z:
                mixed.append(n)
            elif self.training:
                mixed.append(F.add2(o, self.mul(keep, sub(n, o))))
            else:
                mixed.append(F.add2(F.mul_scalar(o, z), F.mul_scalar(n, 1.0 - z)))
        new = type(new)(*mixed)
        return new.h, new

    def masked(self, h, mask):
        return h if mask is None else self.mul(h, mask)

    def row(self, name):
        """The (n,) parameter ``name`` (peepholes, the norms' gains and shifts) as a (1, n)
        row that broadcasts over the batch (NNabla's Mul2 needs equal ranks), reshaped once
        per layer rather than at every step."""
        if name not in self._rows:
            p = self.named[name]
            self._rows[name] = F.reshape(p, (1, p.shape[0]))
        return self._rows[name]

    def normalized(self, scope, v):
        """Layer normalization (Ba et al. 2016) of each row of ``v`` (B, n) over its n
        features, with the gain ``{scope}/gamma`` and the shift ``{scope}/beta`` (n,):
        ``gamma * (v - mean) / sqrt(var + norm_epsilon) + beta``."""
        return F.layer_normalization(v, self.row(scope + '/beta'), self.row(scope + '/gamma'),
                                     batch_axis=0, eps=self.options['norm_epsilon'])

    def projection(self, v, kernel, bias, norm):
        """``v W + b`` for ``v`` (B, n) and the parameters named ``kernel`` W (n, kH) and
        ``bias`` b (kH,) (absent with ``use_bias=False``); with ``layer_norm``,
        ``LN(v W) + b``, the normalization of scope ``norm`` (TF-Addons' LayerNormLSTMCell
        adds the bias after its norms)."""
        w, b = self.named[kernel], self.named.get(bias)
        if not self.options.get('layer_norm'):
            return F.affine(v, w, b)
        z = self.normalized(norm, F.affine(v, w))
        return z if b is None else F.add2(z, self.row(bias))

    def zero_state(self, x):
        """Zeros (B, H) (or (B, P)) for every state tensor, computed from ``x`` (B, D) by
        padding and slicing its feature axis, so no state Variable enters the graph."""
        d = x.shape[1]
        padded = F.pad(x, (0, max(self.state_sizes)))
        zeros = {w: F.slice(padded, (d,), (d + w,), (1,)) for w in set(self.state_sizes)}
        return self.state_type(*[zeros[w] for w in self.state_sizes])


class LSTMCore(Core):
    r"""Parameters of one LSTM layer, created once; called once per step.

    .. math::
        a_t &= \mathrm{act}(W_a [x_t, h_{t-1}] + b_a) \\
        i_t &= \mathrm{ract}(W_i [x_t, h_{t-1}] + b_i + w_{ci} \odot c_{t-1}) \\
        f_t &= \mathrm{ract}(W_f [x_t, h_{t-1}] + b_f + w_{cf} \odot c_{t-1}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot a_t \\
        o_t &= \mathrm{ract}(W_o [x_t, h_{t-1}] + b_o + w_{co} \odot c_t) \\
        h_t &= W_{hr} (o_t \odot \mathrm{act}(c_t))

    with act = tanh and ract = sigmoid by default. ``W``'s column blocks are a, i, f, o (the
    seed's names and layout, so its parameter files load unchanged). The peephole terms
    (Gers and Schmidhuber 2000; TensorFlow's ``LSTMCell(use_peepholes=True)``: diagonal
    weights, the output gate reading the new cell) exist only with ``use_peepholes=True``;
    the projection :math:`W_{hr}` (H, P) only with ``proj_size`` P (PyTorch's LSTMP, Sak et
    al. 2014: ``h_t = W_hr(o_t * tanh(c_t))``), which makes h and the output (B, P) and the
    recurrent rows of ``W`` P; without them the terms drop out.

    ``layer_norm=True`` (Ba et al. 2016, "Layer normalization", section 3.1) is TF-Addons'
    ``LayerNormLSTMCell`` (tensorflow_addons/rnn/layer_norm_lstm_cell.py, ``call``): the
    kernel is two, :math:`W_x` (D, 4H) and :math:`W_h` (P, 4H), the input and the
    recurrent projections are normalized each over all its 4H features (not per gate
    block), the bias added after them, and the new cell is normalized over its H:

    .. math::
        [a_t, i_t, f_t, o_t]_{\mathrm{pre}} &= \mathrm{LN}_k(x_t W_x)
            + \mathrm{LN}_r(h_{t-1} W_h) + b \\
        c_t &= \mathrm{LN}_s(f_t \odot c_{t-1} + i_t \odot a_t)

    :math:`\mathrm{LN}(v) = \gamma \odot (v - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta`,
    :math:`\mu`, :math:`\sigma^2` the mean and (biased) variance of each row's features,
    :math:`\gamma` (``{kernel,recurrent,state}_norm/gamma``, ones at first) and
    :math:`\beta` (``.../beta``, zeros) learned, :math:`\epsilon` = ``norm_epsilon``
    (1e-3, TF-Addons' default). As in TF-Addons, the normalized :math:`c_t` is both what
    :math:`h_t = o_t \odot \mathrm{act}(c_t)` reads and the state carried on (and
    returned); with peepholes, :math:`w_{co}` reads it too, and :math:`w_{ci}`,
    :math:`w_{cf}` the normalized :math:`c_{t-1}` (TF-Addons has no peepholes).
    """

    def __call__(self, x, state, h_mask=None):
        """One step: ``x`` (B, D), ``state`` an :class:`LSTMState` (c (B, H), h (B, P)),
        ``h_mask`` an optional (B, P) recurrent-dropout mask. Returns
        ``(h_t, LSTMState(c_t, h_t))``."""
        p, mul = self.named, self.mul
        h = self.masked(state.h, h_mask)
        if self.options['layer_norm']:
            z = F.add2(self.projection(x, 'WaWiWfWo/x/affine/W', None, 'kernel_norm'),
                       self.projection(h, 'WaWiWfWo/h/affine/W', 'WaWiWfWo/affine/b',
                                       'recurrent_norm'))
        else:
            z = F.affine(F.concatenate(x, h, axis=1), p['WaWiWfWo/affine/W'],
                         p['WaWiWfWo/affine/b'])
        a, i, f, o = blocks(z, 4, self.units, self.view)
        peepholes = self.options['use_peepholes']
        if peepholes:  # diagonal, so a broadcast product per gate
            i = F.add2(i, F.mul2(state.c, self.row('peephole/w_ci')))
            f = F.add2(f, F.mul2(state.c, self.row('peephole/w_cf')))
        c = F.add2(mul(self.ract(f), state.c), mul(self.ract(i), self.act(a)))
        if self.options['layer_norm']:
            c = self.normalized('state_norm', c)
        if peepholes:
            o = F.add2(o, F.mul2(c, self.row('peephole/w_co')))
        h = mul(self.ract(o), self.act(c))
        if p['Whr/affine/W'] is not None:
            h = F.affine(h, p['Whr/affine/W'])
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

    ``layer_norm=True`` normalizes the input and the recurrent projections as
    :class:`LSTMCore` does (TF-Addons' ``LayerNormLSTMCell``; Ba et al. 2016), each over
    all its 3H features, the biases added after:

    .. math::
        [x^z_t, x^r_t, x^n_t] &= \mathrm{LN}_k(x_t W) + b \\
        [h^z_t, h^r_t, h^n_t] &= \mathrm{LN}_r(h_{t-1} U) + c

    and :math:`z_t = \mathrm{ract}(x^z_t + h^z_t)`, :math:`r_t = \mathrm{ract}(x^r_t +
    h^r_t)`, :math:`n_t = \mathrm{act}(x^n_t + r_t \odot h^n_t)`. A GRU has no cell, so
    no third norm. It needs ``reset_after=True``: with False the recurrent product reads
    :math:`r_t \odot h_{t-1}`, so there is no one recurrent projection to normalize (a
    ValueError). LN, its parameters and ``norm_epsilon`` as for :class:`LSTMCore`.
    """

    def __init__(self, input_size, units, differentiable=True, training=None, **options):
        if options.get('layer_norm') is True and options.get('reset_after') is False:
            raise ValueError("`layer_norm`=True needs `reset_after`=True: with "
                             "reset_after=False the GRU's recurrent product reads r * h, so "
                             "there is no one recurrent projection to normalize")
        super().__init__(input_size, units, differentiable, training, **options)

    def __call__(self, x, state, h_mask=None):
        """One step: ``x`` (B, D), ``state`` a :class:`HiddenState`, ``h_mask`` an optional
        (B, H) recurrent-dropout mask. Returns ``(h_t, HiddenState(h_t))``."""
        u, uzr, un = (self.named[k] for k in ('UzUrUn/affine/W', 'UzUr/affine/W',
                                              'Un/affine/W'))
        h = state.h
        hm = self.masked(h, h_mask)
        xz, xr, xn = blocks(self.projection(x, 'WzWrWn/affine/W', 'WzWrWn/affine/b',
                                            'kernel_norm'), 3, self.units, self.view)
        if u is not None:  # reset_after
            uz, ur, un = blocks(self.projection(hm, 'UzUrUn/affine/W', 'UzUrUn/affine/b',
                                                'recurrent_norm'), 3, self.units, self.view)
        else:
            uz, ur = blocks(F.affine(hm, uzr), 2, self.units, self.view)
        z = self.ract(F.add2(xz, uz))
        r = self.ract(F.add2(xr, ur))
        if u is not None:
            n = self.act(F.add2(xn, self.mul(r, un)))
        else:
            n = self.act(F.add2(xn, F.affine(self.mul(r, hm), un)))
        h = F.add2(n, self.mul(z, sub(h, n)))
        return h, HiddenState(h)


class SimpleRNNCore(Core):
    r"""Parameters of one fully connected recurrent layer (Keras' SimpleRNN, PyTorch's
    ``nn.RNN``), created once; called once per step.

    .. math::
        h_t = \mathrm{act}(W [x_t, h_{t-1}] + b)
    """

    def __call__(self, x, state, h_mask=None):
        """One step: ``x`` (B, D), ``state`` a :class:`HiddenState`. Returns
        ``(h_t, HiddenState(h_t))``."""
        w, b = self.params
        xh = F.concatenate(x, self.masked(state.h, h_mask), axis=1)
        h = self.act(F.affine(xh, w, b))
        return h, HiddenState(h)


def _step(core_type, function, x, states, name, training, options):
    """Check one step's arguments, build the core in scope ``name``, run one step (with its
    zoneout)."""
    core_type.kind.check_options(function, options)
    _checks.nonempty(x, 'x', '(B, D)')
    fields = core_type.kind.state._fields
    units = _checks.nonempty(states[0], fields[0], '(B, H)').shape[1]
    for field, value, width in zip(fields, states, core_type.kind.state_sizes(units, **options)):
        _checks.shape(value, field, (x.shape[0], width), '(B, H)' if width == units else '(B, P)')
    _checks.name(name, optional=True)
    with process.BUILD_LOCK, nn.parameter_scope(name) if name else contextlib.nullcontext():
        core = core_type(x.shape[1], units, differentiable=differentiable(x, *states),
                         training=training, **options)
        state = core.state_type(*states)
        y, new = core(x, state)
        return core.zone(state, y, new, core.zoneout_masks(x.shape[0]))[1]


def LSTMCell(x, c, h, name=None, training=None, **options):
    """One LSTM step, the seed's ``LSTMCell(x, c, h) -> (c_t, h_t)``.

    Args:
        x (~nnabla.Variable): (B, D) input at this step.
        c, h (~nnabla.Variable): (B, H) cell and hidden states.
        name (str): parameter scope; None creates ``WaWiWfWo/affine/{W,b}`` in the caller's
            scope, as the seed did.
        training (bool): draw the zoneout and weight-dropout masks; None means unless built
            under ``nn.no_grad()`` (as for the layer), where zoneout blends by its
            expectation and the weights are not dropped.
        **options: ``activation``, ``recurrent_activation``, ``use_bias``,
            ``kernel_initializer``, ``recurrent_initializer``, ``bias_initializer``,
            ``unit_forget_bias``, ``zoneout`` (z or (z_c, z_h)), ``weight_dropout``,
            ``rng``, ``fix_parameters``, ``proj_size``, ``use_peepholes``, ``layer_norm``,
            ``norm_epsilon``, as for :func:`nnlstm.LSTM` (the layer's ``name`` and options
            use the layer's parameters).

    Returns:
        ``(c_t, h_t)``, each (B, H). See :class:`LSTMCore` for the equations.

    Raises:
        TypeError: an option LSTM cells do not take, a non-Variable, a bad ``name``.
        ValueError: shapes that disagree, or an empty axis (D or H = 0).

    Example:
        >>> c, h = nnlstm.LSTMCell(x_t, c, h, name='cell')   # x_t (B, D); c, h (B, H)
    """
    state = _step(LSTMCore, 'LSTMCell', x, (c, h), name, training, options)
    return state.c, state.h


def GRUCell(x, h, name=None, training=None, **options):
    """One GRU step: ``x`` (B, D), ``h`` (B, H) -> ``h_t`` (B, H).

    ``name`` is the parameter scope (None: the caller's); ``training`` and ``**options`` as
    for :func:`LSTMCell` and :func:`nnlstm.GRU`, among them ``reset_after`` and
    ``layer_norm``. See
    :class:`GRUCore` for the equations. Errors as for :func:`LSTMCell`.

    Example:
        >>> h = nnlstm.GRUCell(x_t, h, name='cell')
    """
    return _step(GRUCore, 'GRUCell', x, (h,), name, training, options).h


def SimpleRNNCell(x, h, name=None, training=None, **options):
    """One fully connected recurrent step: ``x`` (B, D), ``h`` (B, H) -> ``h_t`` (B, H).

    ``name`` is the parameter scope (None: the caller's); ``training`` and ``**options`` as
    for :func:`LSTMCell` and :func:`nnlstm.SimpleRNN`. See :class:`SimpleRNNCore` for the
    equation. Errors as for :func:`LSTMCell`.

    Example:
        >>> h = nnlstm.SimpleRNNCell(x_t, h, name='cell')
    """
    return _step(SimpleRNNCore, 'SimpleRNNCell', x, (h,), name, training, options).h
