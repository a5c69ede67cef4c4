"""Move one recurrent layer's weights between nnlstm and PyTorch, Keras or NNabla's fused
``PF.lstm``.

Shape legend: B batch size, T time steps, D input features, H units; G the cell's gate
blocks (4 for LSTM, 3 for GRU, 1 for SimpleRNN / ``nn.RNN``).

nnlstm keeps a layer's parameters in NNabla's parameter store under the layer's scope
``name`` (see :mod:`nnlstm.cells` for the names, shapes and equations):

===========  ==========================================================================
``cell``     parameters under ``{name}/``
===========  ==========================================================================
``'lstm'``   ``WaWiWfWo/affine/W`` (D + H, 4H), ``WaWiWfWo/affine/b`` (4H,)
``'gru'``    ``WzWrWn/affine/W`` (D, 3H), ``WzWrWn/affine/b`` (3H,); with
             ``reset_after=True`` ``UzUrUn/affine/W`` (H, 3H), ``UzUrUn/affine/b`` (3H,),
             with ``reset_after=False`` ``UzUr/affine/W`` (H, 2H), ``Un/affine/W`` (H, H)
``'rnn'``    ``Wh/affine/W`` (D + H, H), ``Wh/affine/b`` (H,)
===========  ==========================================================================

Each format has a pair of array converters, ``from_<format>`` (the format's arrays to a
dict of nnlstm arrays keyed by the names above) and ``to_<format>`` (back), and a pair of
functions on the parameter store: ``load_<format>`` writes a layer's parameters,
``save_<format>`` reads them. A :func:`nnlstm.Bidirectional` layer keeps its two layers in
``{name}/forward`` and ``{name}/backward``, a :func:`nnlstm.Stacked` one in
``{name}/layer0``, ``{name}/layer1``, ...: convert each of them as one layer.

What does not map one to one:

* PyTorch's LSTM and RNN add two biases, ``b_ih + b_hh``; nnlstm has one. Loading sums
  them; saving returns ``b_ih`` = nnlstm's bias and ``b_hh`` = zeros, the same function.
* PyTorch's GRU is nnlstm's ``reset_after=True`` GRU exactly (``b_ih`` is the input bias,
  ``b_hh`` the recurrent one); a ``reset_after=False`` GRU has no PyTorch equivalent.
* Keras' LSTM has no recurrent bias; Keras' GRU with ``reset_after=True`` keeps its two
  biases as one (2, 3H) array, input bias first.
* ``PF.lstm`` is converted for ``cell='lstm'`` only.

Example:
    >>> sd = {k: v.numpy() for k, v in torch_lstm.state_dict().items()}  # nn.LSTM(D, H)
    >>> nnlstm.interop.load_torch(sd, 'enc')
    >>> y = nnlstm.LSTM(x, H, name='enc', return_sequences=True)        # (B, T, H)
    >>> nnlstm.interop.load_keras(keras_gru.get_weights(), 'dec', cell='gru')
    >>> y = nnlstm.GRU(x, H, name='dec')                                  # (B, H)
    >>> sd = nnlstm.interop.save_torch('enc')   # torch_lstm.load_state_dict(
    ...                                         #     {k: torch.from_numpy(v) ...})
"""
from collections.abc import Mapping
import numbers

import numpy as np
import nnabla as nn
from nnabla.parameter import get_parameter, pop_parameter, set_parameter

from . import gates

#: nnlstm's parameter names in a layer's scope, per cell: every name a core may create.
PARAMETERS = {
    'lstm': ('WaWiWfWo/affine/W', 'WaWiWfWo/affine/b'),
    'gru': ('WzWrWn/affine/W', 'WzWrWn/affine/b', 'UzUrUn/affine/W', 'UzUrUn/affine/b',
            'UzUr/affine/W', 'Un/affine/W'),
    'rnn': ('Wh/affine/W', 'Wh/affine/b'),
}

#: The fused [x; h] kernel and its bias of the LSTM and SimpleRNN cores.
FUSED = {
    'lstm': ('WaWiWfWo/affine/W', 'WaWiWfWo/affine/b'),
    'rnn': ('Wh/affine/W', 'Wh/affine/b'),
}

#: The GRU core's kernels and biases.
GRU_X, GRU_BX = 'WzWrWn/affine/W', 'WzWrWn/affine/b'
GRU_U, GRU_BU = 'UzUrUn/affine/W', 'UzUrUn/affine/b'
GRU_UZR, GRU_UN = 'UzUr/affine/W', 'Un/affine/W'

KERAS_OPTIONS = {'lstm': ('use_bias',), 'gru': ('use_bias', 'reset_after'),
                 'rnn': ('use_bias',)}


def gate_count(cell):
    """G, the number of gate blocks of ``cell`` (checks ``cell``)."""
    return len(gates.order(cell, 'nnlstm'))


def rank(legend):
    """The rank a shape legend spells: '(D, 4H)' 2, '(4H,)' 1."""
    return len([p for p in legend.strip('()').split(',') if p.strip()])


def array(value, arg, legend):
    """``value`` (an array or an ``nn.Variable``) as float32 of the rank of ``legend``."""
    if isinstance(value, nn.Variable):
        value = value.d
    try:
        value = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TypeError("`%s` must be an array %s; received %s (%s)"
                        % (arg, legend, type(value).__name__, e)) from None
    if value.ndim != rank(legend):
        raise ValueError("`%s` must have rank %d, %s; received shape %s"
                         % (arg, rank(legend), legend, value.shape))
    return value


def expect(value, arg, expected, legend):
    """Check ``value.shape == expected``; ``legend`` spells it, e.g. '(4H, D)'."""
    if value.shape != tuple(expected):
        raise ValueError("`%s` has shape %s; expected %s = %s"
                         % (arg, value.shape, legend, tuple(expected)))
    return value


def layer_index(layer):
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or layer < 0:
        raise TypeError("`layer` must be an int >= 0; received %r" % (layer,))
    return int(layer)


def mapping(value, arg):
    if not isinstance(value, Mapping):
        raise TypeError("`%s` must be a dict of arrays; received %s"
                        % (arg, type(value).__name__))
    return value


def pick(source, key, arg):
    """``source[key]``, or a ValueError naming what ``source`` holds."""
    if key not in source:
        raise ValueError("`%s` has no %r; it holds %s"
                         % (arg, key, sorted(source) or 'nothing'))
    return source[key]


def gh(g):
    """The legend of G * H: '4H', '3H', 'H'."""
    return '%dH' % g if g > 1 else 'H'


def shapes(cell, d, h):
    """Every parameter ``cell``'s core may create for input size ``d`` and ``h`` units:
    name -> (shape, legend)."""
    g = gate_count(cell)
    if cell == 'gru':
        return {GRU_X: ((d, 3 * h), '(D, 3H)'), GRU_BX: ((3 * h,), '(3H,)'),
                GRU_U: ((h, 3 * h), '(H, 3H)'), GRU_BU: ((3 * h,), '(3H,)'),
                GRU_UZR: ((h, 2 * h), '(H, 2H)'), GRU_UN: ((h, h), '(H, H)')}
    w, b = FUSED[cell]
    return {w: ((d + h, g * h), '(D + H, %s)' % gh(g)), b: ((g * h,), '(%s,)' % gh(g))}


def checked(params, cell):
    """nnlstm arrays ``params`` of one ``cell`` layer (arrays or ``nn.Variable``), checked
    against each other; returns ``(arrays, D, H)``."""
    g = gate_count(cell)
    params = mapping(params, 'params')
    unknown = sorted(set(params) - set(PARAMETERS[cell]))
    if unknown:
        raise ValueError("`params` has %s, not %s parameters (%s)"
                         % (', '.join(map(repr, unknown)), cell, ', '.join(PARAMETERS[cell])))
    kernel = GRU_X if cell == 'gru' else FUSED[cell][0]
    legend = shapes(cell, 1, 1)[kernel][1]
    w = array(pick(params, kernel, 'params'), 'params[%r]' % kernel, legend)
    h = w.shape[1] // g
    d = w.shape[0] - (0 if cell == 'gru' else h)
    if w.shape[1] % g or h < 1 or d < 1:
        raise ValueError("`params[%r]` has shape %s; expected %s with D, H >= 1"
                         % (kernel, w.shape, legend))
    arrays = {}
    for key, value in params.items():
        shape, legend = shapes(cell, d, h)[key]
        arrays[key] = expect(array(value, 'params[%r]' % key, legend), 'params[%r]' % key,
                             shape, '%s with D = %d, H = %d' % (legend, d, h))
    return arrays, d, h


def gru_variant(arrays):
    """True for reset_after=True GRU arrays, False for reset_after=False ones."""
    if GRU_U in arrays and GRU_UZR not in arrays and GRU_UN not in arrays:
        return True
    if GRU_UZR in arrays and GRU_UN in arrays and GRU_U not in arrays:
        return False
    raise ValueError("GRU `params` need %r (reset_after=True) or %r and %r "
                     "(reset_after=False); received %s"
                     % (GRU_U, GRU_UZR, GRU_UN, sorted(arrays)))


def both_or_neither(arrays, keys, arg):
    """Whether ``arrays`` holds both or neither of the two ``keys`` (biases)."""
    present = [k in arrays for k in keys]
    if any(present) and not all(present):
        raise ValueError("`%s` must hold both %r and %r or neither; received only %r"
                         % (arg, keys[0], keys[1], keys[present.index(True)]))
    return all(present)


# ---------------------------------------------------------------- the parameter store

def scope_name(name):
    if not isinstance(name, str) or not name:
        raise TypeError("`name` must be a non-empty str; received %r" % (name,))
    return name


def read(name, cell):
    """The nnlstm parameters of ``cell`` under scope ``name``, as a dict of arrays."""
    gate_count(cell)
    name = scope_name(name)
    found = {}
    for key in PARAMETERS[cell]:
        v = get_parameter(name + '/' + key)
        if v is not None:
            found[key] = v.d.copy()
    if not found:
        raise ValueError("layer `name` %r holds no %s parameters (expected %s); build the "
                         "layer or load its weights first"
                         % (name, cell, ', '.join(name + '/' + k for k in PARAMETERS[cell])))
    return found


def write(name, cell, arrays):
    """Make the parameters of ``cell`` under scope ``name`` exactly ``arrays``: an existing
    parameter of the same shape is overwritten in place (graphs already built see the new
    values), another is replaced, and the cell's parameters not in ``arrays`` (a bias, the
    other GRU variant's recurrent kernels) are removed."""
    name = scope_name(name)
    for key in PARAMETERS[cell]:
        full = name + '/' + key
        existing = get_parameter(full)
        if key not in arrays:
            if existing is not None:
                pop_parameter(full)
            continue
        value = np.ascontiguousarray(arrays[key], dtype=np.float32)
        if existing is not None and existing.shape == value.shape:
            existing.d = value
        else:
            set_parameter(full, nn.Variable.from_numpy_array(value, need_grad=True))


# ---------------------------------------------------------------- PyTorch

def torch_keys(layer, reverse):
    """PyTorch's state_dict keys of one layer and direction: weight_ih, weight_hh, bias_ih,
    bias_hh, with the suffix ``_l{layer}`` and, for ``reverse``, ``_reverse``."""
    suffix = '_l%d%s' % (layer_index(layer), '_reverse' if reverse else '')
    return tuple(k + suffix for k in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'))


def from_torch(state_dict, cell='lstm', layer=0, reverse=False):
    """nnlstm arrays of one layer and direction of a PyTorch ``nn.LSTM`` / ``nn.GRU`` /
    ``nn.RNN`` state_dict.

    Args:
        state_dict (dict): NumPy arrays under PyTorch's names: ``weight_ih_l{k}`` (GH, D),
            ``weight_hh_l{k}`` (GH, H), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (GH,) (absent
            with ``bias=False``); ``..._reverse`` for the backward direction.
        cell (str): 'lstm', 'gru' or 'rnn'.
        layer (int): k. reverse (bool): the ``_reverse`` direction.

    Returns:
        dict: nnlstm's parameter names (relative to the layer's scope) to arrays. LSTM and
        RNN biases are summed; a GRU maps to ``reset_after=True``.

    Example:
        >>> arrays = nnlstm.interop.from_torch(sd, 'gru', layer=1, reverse=True)
        >>> sorted(arrays)
        ['UzUrUn/affine/W', 'UzUrUn/affine/b', 'WzWrWn/affine/W', 'WzWrWn/affine/b']
    """
    g = gate_count(cell)
    state_dict = mapping(state_dict, 'state_dict')
    k_ih, k_hh, k_bih, k_bhh = torch_keys(layer, reverse)
    proj = k_hh.replace('weight_hh', 'weight_hr')
    if proj in state_dict:
        raise ValueError("`state_dict` has %r: an nn.LSTM with proj_size has no nnlstm "
                         "equivalent" % proj)
    arg = 'state_dict[%r]'
    whh = array(pick(state_dict, k_hh, 'state_dict'), arg % k_hh, '(%s, H)' % gh(g))
    h = whh.shape[1]
    expect(whh, arg % k_hh, (g * h, h), '(%s, H) with H = %d' % (gh(g), h))
    wih = array(pick(state_dict, k_ih, 'state_dict'), arg % k_ih, '(%s, D)' % gh(g))
    expect(wih, arg % k_ih, (g * h, wih.shape[1]), '(%s, D) with H = %d' % (gh(g), h))
    bih = bhh = None
    if both_or_neither(state_dict, (k_bih, k_bhh), 'state_dict'):
        bih, bhh = [expect(array(state_dict[k], arg % k, '(%s,)' % gh(g)), arg % k, (g * h,),
                           '(%s,) with H = %d' % (gh(g), h)) for k in (k_bih, k_bhh)]

    def ours(a):  # torch's gate blocks of rows (GH, ...) as nnlstm's columns (..., GH)
        return gates.reorder(a.T, cell, 'torch', 'nnlstm')

    if cell == 'gru':
        arrays = {GRU_X: ours(wih), GRU_U: ours(whh)}
        if bih is not None:
            arrays.update({GRU_BX: ours(bih), GRU_BU: ours(bhh)})
        return arrays
    w, b = FUSED[cell]
    arrays = {w: np.concatenate([ours(wih), ours(whh)], axis=0)}
    if bih is not None:
        arrays[b] = ours(bih + bhh)
    return arrays


def to_torch(params, cell='lstm', layer=0, reverse=False):
    """PyTorch state_dict arrays of one layer and direction from nnlstm arrays ``params``
    (a dict as :func:`from_torch` returns; parameter gradients convert the same way).

    Returns:
        dict: ``weight_ih_l{k}`` (GH, D), ``weight_hh_l{k}`` (GH, H) and, with a bias,
        ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (GH,); ``_reverse`` names with ``reverse``.
        For LSTM and RNN, ``bias_ih`` is nnlstm's bias and ``bias_hh`` zeros: the same
        function (and the gradient of a loss with respect to ``bias_hh`` is that with
        respect to ``bias_ih``). A GRU needs ``reset_after=True`` parameters.

    Example:
        >>> with nn.parameter_scope('lstm'):
        ...     grads = {k: v.g for k, v in nn.get_parameters(grad_only=False).items()}
        >>> torch_grads = nnlstm.interop.to_torch(grads)
    """
    arrays, d, h = checked(params, cell)
    k_ih, k_hh, k_bih, k_bhh = torch_keys(layer, reverse)

    def theirs(a):  # nnlstm's columns (..., GH) as torch's gate blocks of rows (GH, ...)
        return np.ascontiguousarray(gates.reorder(a, cell, 'nnlstm', 'torch').T)

    if cell == 'gru':
        if not gru_variant(arrays):
            raise ValueError("a reset_after=False GRU has no PyTorch equivalent: nn.GRU "
                             "applies the reset gate after the recurrent product, as "
                             "reset_after=True; received %s" % sorted(arrays))
        out = {k_ih: theirs(arrays[GRU_X]), k_hh: theirs(arrays[GRU_U])}
        if both_or_neither(arrays, (GRU_BX, GRU_BU), 'params'):
            out[k_bih], out[k_bhh] = theirs(arrays[GRU_BX]), theirs(arrays[GRU_BU])
        return out
    w, b = FUSED[cell]
    out = {k_ih: theirs(arrays[w][:d]), k_hh: theirs(arrays[w][d:])}
    if b in arrays:
        out[k_bih] = theirs(arrays[b])
        out[k_bhh] = np.zeros_like(out[k_bih])
    return out


def load_torch(state_dict, name, cell='lstm', layer=0, reverse=False):
    """Load one layer and direction of a PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``
    state_dict into the parameters of the nnlstm layer ``name``.

    Args:
        state_dict (dict): NumPy arrays under PyTorch's names (see :func:`from_torch`).
        name (str): the nnlstm layer's scope, e.g. ``'enc'``, ``'bi/backward'``,
            ``'stack/layer1'``.
        cell (str): 'lstm', 'gru' (nnlstm's GRU with ``reset_after=True``, its default) or
            'rnn' (build :func:`nnlstm.SimpleRNN` with the module's ``nonlinearity`` as
            ``activation``).
        layer (int), reverse (bool): which of the module's layers and directions.

    The two biases are summed for LSTM and RNN. Build the layer with ``use_bias=False`` if
    the module has ``bias=False``.

    Example:
        >>> sd = {k: v.numpy() for k, v in torch_lstm.state_dict().items()}  # 2 layers
        >>> nnlstm.interop.load_torch(sd, 'stack/layer0')
        >>> nnlstm.interop.load_torch(sd, 'stack/layer1', layer=1)
        >>> y = nnlstm.Stacked(nnlstm.LSTM, x, H, num_layers=2, name='stack')  # (B, H)
    """
    write(name, cell, from_torch(state_dict, cell, layer, reverse))


def save_torch(name, cell='lstm', layer=0, reverse=False):
    """The nnlstm layer ``name`` as one layer and direction of a PyTorch state_dict: a dict
    of NumPy arrays under PyTorch's names (see :func:`to_torch`: for LSTM and RNN,
    ``bias_ih`` is nnlstm's bias and ``bias_hh`` zeros). Merge several layers' and
    directions' dicts with ``dict.update``.

    Example:
        >>> sd = nnlstm.interop.save_torch('bi/forward')
        >>> sd.update(nnlstm.interop.save_torch('bi/backward', reverse=True))
        >>> torch_lstm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    """
    return to_torch(read(name, cell), cell, layer, reverse)


# ---------------------------------------------------------------- Keras

def keras_options(cell, cell_config):
    """``use_bias`` and, for a GRU, ``reset_after``: Keras' defaults (True) where not given."""
    gate_count(cell)
    unknown = sorted(set(cell_config) - set(KERAS_OPTIONS[cell]))
    if unknown:
        raise TypeError("unexpected `cell_config` %s for cell %r; accepted: %s"
                        % (', '.join(unknown), cell, ', '.join(KERAS_OPTIONS[cell])))
    options = {k: cell_config.get(k, True) for k in KERAS_OPTIONS[cell]}
    for k, v in options.items():
        if not isinstance(v, bool):
            raise TypeError("`%s` must be a bool; received %r" % (k, v))
    return options


def keras_shapes(cell, d, h, use_bias=True, reset_after=True):
    """Keras' ``get_weights()`` of one layer: (name, shape, legend) triples."""
    g = gate_count(cell)
    weights = [('kernel', (d, g * h), '(D, %s)' % gh(g)),
               ('recurrent_kernel', (h, g * h), '(H, %s)' % gh(g))]
    if use_bias and cell == 'gru' and reset_after:
        weights.append(('bias', (2, 3 * h), '(2, 3H)'))
    elif use_bias:
        weights.append(('bias', (g * h,), '(%s,)' % gh(g)))
    return weights


def from_keras(weights, cell='lstm', **cell_config):
    """nnlstm arrays of a Keras ``LSTM`` / ``GRU`` / ``SimpleRNN`` layer's ``get_weights()``.

    Args:
        weights (list): ``[kernel (D, GH), recurrent_kernel (H, GH), bias]``: bias (GH,), or
            (2, 3H) for a GRU with ``reset_after=True`` (input bias, then recurrent bias);
            no bias with ``use_bias=False``.
        cell (str): 'lstm', 'gru' or 'rnn' (SimpleRNN).
        **cell_config: the Keras layer's ``use_bias`` (default True) and, for a GRU,
            ``reset_after`` (default True).

    Returns:
        dict: nnlstm's parameter names (relative to the layer's scope) to arrays.

    Example:
        >>> arrays = nnlstm.interop.from_keras(layer.get_weights(), 'gru', reset_after=False)
        >>> sorted(arrays)
        ['Un/affine/W', 'UzUr/affine/W', 'WzWrWn/affine/W', 'WzWrWn/affine/b']
    """
    g = gate_count(cell)
    options = keras_options(cell, cell_config)
    if not isinstance(weights, (list, tuple)):
        raise TypeError("`weights` must be a list, a Keras layer's get_weights(); received %s"
                        % type(weights).__name__)
    expected = keras_shapes(cell, 1, 1, **options)
    if len(weights) != len(expected):
        hint = ''
        if len(weights) == 2 * len(expected):
            hint = ("; a Bidirectional layer lists the forward layer's weights, then the "
                    "backward layer's: load weights[:%d] into '{name}/forward' and "
                    "weights[%d:] into '{name}/backward'" % (len(expected), len(expected)))
        raise ValueError("`weights` holds %d arrays; expected %d (%s) for cell %r with %s%s"
                         % (len(weights), len(expected), ', '.join(n for n, _, _ in expected),
                            cell, ', '.join('%s=%s' % kv for kv in options.items()), hint))
    args = ['weights[%d] (%s)' % (k, n) for k, (n, _, _) in enumerate(expected)]
    ws = [array(w, arg, legend) for w, arg, (_, _, legend) in zip(weights, args, expected)]
    h = ws[1].shape[0]
    for w, arg, (_, shape, legend) in zip(ws, args, keras_shapes(cell, ws[0].shape[0], h,
                                                                 **options)):
        expect(w, arg, shape, '%s with H = %d' % (legend, h))

    def ours(a):
        return gates.reorder(a, cell, 'keras', 'nnlstm')

    kernel, recurrent = ws[:2]
    if cell != 'gru':
        w, b = FUSED[cell]
        arrays = {w: np.concatenate([ours(kernel), ours(recurrent)], axis=0)}
        if options['use_bias']:
            arrays[b] = ours(ws[2])
        return arrays
    arrays = {GRU_X: ours(kernel)}
    if options['reset_after']:
        arrays[GRU_U] = ours(recurrent)
        if options['use_bias']:
            arrays[GRU_BX], arrays[GRU_BU] = ours(ws[2][0]), ours(ws[2][1])
        return arrays
    n = gates.index('gru', 'nnlstm', 'n')  # Un is the candidate's block, UzUr the others
    blocks = np.split(ours(recurrent), g, axis=1)
    arrays[GRU_UN] = blocks.pop(n)
    arrays[GRU_UZR] = np.concatenate(blocks, axis=1)
    if options['use_bias']:
        arrays[GRU_BX] = ours(ws[2])
    return arrays


def to_keras(params, cell='lstm', **cell_config):
    """A Keras ``get_weights()`` list from nnlstm arrays ``params`` (see :func:`from_keras`
    for the list and ``cell_config``, which must match the arrays)."""
    g = gate_count(cell)
    options = keras_options(cell, cell_config)
    arrays, d, h = checked(params, cell)

    def theirs(a):
        return np.ascontiguousarray(gates.reorder(a, cell, 'nnlstm', 'keras'))

    biases = (GRU_BX, GRU_BU) if cell == 'gru' else FUSED[cell][1:]
    if cell == 'gru' and gru_variant(arrays) != options['reset_after']:
        raise ValueError("`reset_after=%s` given, but the parameters are those of a "
                         "reset_after=%s GRU (%s)"
                         % (options['reset_after'], not options['reset_after'],
                            ', '.join(sorted(arrays))))
    if cell == 'gru' and not options['reset_after']:
        biases = (GRU_BX,)
    present = [b in arrays for b in biases]
    if options['use_bias'] and not all(present):
        raise ValueError("use_bias=True, but `params` has no %s; pass use_bias=False for a "
                         "layer built without a bias"
                         % ', '.join(repr(b) for b, p in zip(biases, present) if not p))
    if not options['use_bias'] and any(present):
        raise ValueError("use_bias=False, but `params` has %s"
                         % ', '.join(repr(b) for b, p in zip(biases, present) if p))
    if cell != 'gru':
        w, b = FUSED[cell]
        out = [theirs(arrays[w][:d]), theirs(arrays[w][d:])]
        return out + [theirs(arrays[b])] if options['use_bias'] else out
    if options['reset_after']:
        out = [theirs(arrays[GRU_X]), theirs(arrays[GRU_U])]
        if options['use_bias']:
            out.append(np.stack([theirs(arrays[GRU_BX]), theirs(arrays[GRU_BU])]))
        return out
    n = gates.index('gru', 'nnlstm', 'n')
    blocks = np.split(arrays[GRU_UZR], g - 1, axis=1)
    blocks.insert(n, arrays[GRU_UN])
    out = [theirs(arrays[GRU_X]), theirs(np.concatenate(blocks, axis=1))]
    return out + [theirs(arrays[GRU_BX])] if options['use_bias'] else out


def load_keras(weights, name, cell='lstm', **cell_config):
    """Load a Keras ``LSTM`` / ``GRU`` / ``SimpleRNN`` layer's ``get_weights()`` into the
    parameters of the nnlstm layer ``name``.

    Args:
        weights (list): as in :func:`from_keras`.
        name (str): the nnlstm layer's scope.
        cell (str): 'lstm', 'gru' or 'rnn'.
        **cell_config: ``use_bias`` (default True) and, for a GRU, ``reset_after`` (default
            True): the Keras layer's options. Build the nnlstm layer with the same.

    Example:
        >>> nnlstm.interop.load_keras(keras_gru.get_weights(), 'gru', cell='gru',
        ...                           reset_after=False)
        >>> y, h = nnlstm.GRU(x, H, name='gru', reset_after=False, return_state=True)
        >>> ws = keras_bi.get_weights()  # Bidirectional(LSTM): forward's 3, backward's 3
        >>> nnlstm.interop.load_keras(ws[:3], 'bi/forward')
        >>> nnlstm.interop.load_keras(ws[3:], 'bi/backward')
        >>> y = nnlstm.Bidirectional(nnlstm.LSTM, x, H, name='bi')            # (B, 2H)
    """
    write(name, cell, from_keras(weights, cell, **cell_config))


def save_keras(name, cell='lstm', **cell_config):
    """The nnlstm layer ``name`` as a Keras ``get_weights()`` list, for
    ``keras_layer.set_weights``; ``cell_config`` (``use_bias``, ``reset_after``) as the
    layer was built.

    Example:
        >>> keras_gru.set_weights(nnlstm.interop.save_keras('gru', cell='gru'))
    """
    keras_options(cell, cell_config)
    return to_keras(read(name, cell), cell, **cell_config)


# ---------------------------------------------------------------- NNabla's PF.lstm

#: ``PF.lstm``'s parameters (the names in its scope) and their shapes.
NNABLA_LEGENDS = {
    'weight_l0': '(dirs, 4, H, I + H)',
    'weight': '(L - 1, dirs, 4, H, dirs * H + H)',
    'bias': '(L, dirs, 4, H)',
}
NNABLA_DIRS_AXIS = {'weight_l0': 0, 'weight': 1, 'bias': 1}


def nnabla_cell(cell):
    gate_count(cell)
    if cell != 'lstm':
        raise ValueError("NNabla's fused parameters convert for `cell` 'lstm' (PF.lstm) only; "
                         "received %r" % (cell,))


def nnabla_arrays(params, arg):
    """``PF.lstm``'s arrays in ``params`` (arrays or ``nn.Variable``), checked for rank and
    for one number of directions; returns ``(arrays, dirs)``, dirs None if empty."""
    params = mapping(params, arg)
    unknown = sorted(set(params) - set(NNABLA_LEGENDS))
    if unknown:
        raise ValueError("`%s` has %s; PF.lstm's parameters are weight_l0, weight and bias, "
                         "in the scope 'lstm' (under its `name`, if given): take them with "
                         "nn.get_parameters(grad_only=False) inside that scope"
                         % (arg, ', '.join(map(repr, unknown))))
    arrays = {k: array(v, '%s[%r]' % (arg, k), NNABLA_LEGENDS[k]) for k, v in params.items()}
    dirs = {k: v.shape[NNABLA_DIRS_AXIS[k]] for k, v in arrays.items()}
    if len(set(dirs.values())) > 1 or not set(dirs.values()) <= {1, 2}:
        raise ValueError("`%s` must hold 1 or 2 directions in each of %s; received shapes %s"
                         % (arg, ', '.join(NNABLA_LEGENDS),
                            ', '.join('%s %s' % (k, v.shape) for k, v in arrays.items())))
    return arrays, (next(iter(dirs.values())) if dirs else None)


def from_nnabla(params, cell='lstm', layer=0, reverse=False):
    """nnlstm arrays of one layer and direction of NNabla's fused ``PF.lstm`` / ``F.lstm``.

    Args:
        params (dict): ``weight_l0`` (dirs, 4, H, I + H), ``weight``
            (L - 1, dirs, 4, H, dirs * H + H) (for ``layer`` >= 1) and ``bias``
            (L, dirs, 4, H) (absent with ``with_bias=False``): arrays or ``nn.Variable``.
            Gate blocks i, f, g, o; the last axis reads ``[x; h]``.
        cell (str): 'lstm'.
        layer (int), reverse (bool): which layer and direction (``reverse`` needs dirs = 2).

    Example:
        >>> y, hn, cn = PF.lstm(x_tbd, h0, c0)          # parameters in scope 'lstm'
        >>> with nn.parameter_scope('lstm'):
        ...     fused = nn.get_parameters(grad_only=False)
        >>> arrays = nnlstm.interop.from_nnabla(fused)
    """
    nnabla_cell(cell)
    layer = layer_index(layer)
    arrays, dirs = nnabla_arrays(params, 'params')
    key = 'weight_l0' if layer == 0 else 'weight'
    w = pick(arrays, key, 'params')
    if layer and w.shape[0] < layer:
        raise ValueError("`params['weight']` has shape %s, for layers 1 to %d; expected %s "
                         "with L - 1 >= layer = %d"
                         % (w.shape, w.shape[0], NNABLA_LEGENDS['weight'], layer))
    w = w[layer - 1] if layer else w
    h = w.shape[2]
    inputs = w.shape[3] - h
    if w.shape[1] != 4 or inputs < 1 or (layer and inputs != dirs * h):
        raise ValueError("`params[%r]` has shape %s; expected %s"
                         % (key, arrays[key].shape, NNABLA_LEGENDS[key]))
    if reverse and dirs != 2:
        raise ValueError("`reverse=True` needs bidirectional parameters; `params[%r]` has "
                         "shape %s, one direction" % (key, arrays[key].shape))
    d = int(bool(reverse))
    kernel = w[d].transpose(2, 0, 1).reshape(inputs + h, 4 * h)  # rows [x; h], 4 gate blocks
    out = {FUSED['lstm'][0]: gates.reorder(kernel, 'lstm', 'nnabla', 'nnlstm')}
    if 'bias' in arrays:
        b = arrays['bias']
        if b.shape[0] <= layer or b.shape[1:] != (dirs, 4, h):
            raise ValueError("`params['bias']` has shape %s; expected %s = (L, %d, 4, %d) "
                             "with L > layer = %d"
                             % (b.shape, NNABLA_LEGENDS['bias'], dirs, h, layer))
        out[FUSED['lstm'][1]] = gates.reorder(b[layer, d].reshape(4 * h), 'lstm', 'nnabla',
                                              'nnlstm')
    return out


def to_nnabla(params, cell='lstm', layer=0, reverse=False, into=None):
    """NNabla ``PF.lstm`` arrays holding nnlstm arrays ``params`` as one layer and direction.

    Args:
        params (dict): nnlstm arrays, as :func:`from_nnabla` returns.
        cell (str): 'lstm'.
        layer (int), reverse (bool): the slot to fill.
        into (dict): ``PF.lstm`` arrays to fill in (copied, not changed): the other slots
            keep their values, ``weight`` and ``bias`` grow to hold ``layer``, a missing key
            is made of zeros. None starts from nothing: two directions if ``reverse``, else
            one (a layer >= 1 takes its directions from its input size, dirs * H).

    Returns:
        dict: ``weight_l0`` (layer 0) or ``weight`` (layer >= 1), ``bias`` if the layer has
        one, and whatever else ``into`` held.

    Example:
        >>> fused = nnlstm.interop.to_nnabla(backward, reverse=True)  # room for 2 directions
        >>> fused = nnlstm.interop.to_nnabla(forward, into=fused)
    """
    nnabla_cell(cell)
    layer = layer_index(layer)
    arrays, d_in, h = checked(params, cell)
    out, dirs = ({}, None) if into is None else nnabla_arrays(into, 'into')
    out = {k: v.copy() for k, v in out.items()}
    if dirs is None:
        dirs = (d_in // h if d_in in (h, 2 * h) else 1) if layer else 1 + bool(reverse)
    if reverse and dirs != 2:
        raise ValueError("`reverse=True` needs bidirectional parameters; `into` holds one "
                         "direction")
    if layer and d_in != dirs * h:
        raise ValueError("layer %d of a PF.lstm with %d direction(s) reads dirs * H = %d "
                         "inputs; `params` read D = %d" % (layer, dirs, dirs * h, d_in))
    w_key, b_key = FUSED['lstm']
    w = gates.reorder(arrays[w_key], 'lstm', 'nnlstm', 'nnabla')
    w = w.reshape(d_in + h, 4, h).transpose(1, 2, 0)  # (4, H, I + H)

    def put(key, shape, index, value):
        """``out[key][index] = value``, making ``out[key]`` of ``shape`` or growing it along
        its first axis to ``shape[0]``."""
        current = out.get(key, np.zeros(shape, np.float32))
        grows = key != 'weight_l0'
        if current.shape[grows:] != shape[grows:]:
            raise ValueError("`into[%r]` has shape %s; this layer needs %s = %s"
                             % (key, current.shape, NNABLA_LEGENDS[key],
                                current.shape[:grows] + shape[grows:]))
        if current.shape[0] < shape[0]:
            pad = [(0, shape[0] - current.shape[0])] + [(0, 0)] * (current.ndim - 1)
            current = np.pad(current, pad)
        current[index] = value
        out[key] = current

    d = int(bool(reverse))
    if layer == 0:
        put('weight_l0', (dirs, 4, h, d_in + h), d, w)
    else:
        put('weight', (layer, dirs, 4, h, dirs * h + h), (layer - 1, d), w)
    if b_key in arrays:
        b = gates.reorder(arrays[b_key], 'lstm', 'nnlstm', 'nnabla').reshape(4, h)
        put('bias', (layer + 1, dirs, 4, h), (layer, d), b)
    return out


def load_nnabla(params, name, cell='lstm', layer=0, reverse=False):
    """Load one layer and direction of NNabla's fused ``PF.lstm`` parameters into the
    nnlstm layer ``name`` (see :func:`from_nnabla` for ``params``).

    Example:
        >>> y, hn, cn = PF.lstm(x_tbd, h0, c0, bidirectional=True, name='fused')
        >>> with nn.parameter_scope('fused/lstm'):      # PF.lstm's scope, under `name`
        ...     fused = nn.get_parameters(grad_only=False)
        >>> nnlstm.interop.load_nnabla(fused, 'bi/forward')
        >>> nnlstm.interop.load_nnabla(fused, 'bi/backward', reverse=True)
        >>> y = nnlstm.Bidirectional(nnlstm.LSTM, x, H, name='bi', return_sequences=True)
    """
    write(name, cell, from_nnabla(params, cell, layer, reverse))


def save_nnabla(name, cell='lstm', layer=0, reverse=False, into=None):
    """The nnlstm layer ``name`` as one layer and direction of NNabla's fused ``PF.lstm``
    parameters: a dict of NumPy arrays (see :func:`to_nnabla` for ``into``). Set them with
    ``nn.parameter.set_parameter`` inside the ``PF.lstm``'s scope.

    Example:
        >>> fused = nnlstm.interop.save_nnabla('bi/backward', reverse=True)
        >>> fused = nnlstm.interop.save_nnabla('bi/forward', into=fused)
        >>> fused['weight_l0'].shape, fused['bias'].shape     # (2, 4, H, D + H), (1, 2, 4, H)
    """
    nnabla_cell(cell)
    return to_nnabla(read(name, cell), cell, layer, reverse, into)
