"""NNabla's fused ``PF.lstm`` / ``F.lstm`` parameters to and from nnlstm LSTM layers.

Shape legend: B batch size, T time steps, D input features, H units. ``PF.lstm`` keeps
``weight_l0`` (dirs, 4, H, I + H), ``weight`` (L - 1, dirs, 4, H, dirs * H + H) and ``bias``
(L, dirs, 4, H), gate blocks in the order of ``nnlstm.gates.ORDERS['lstm']['nnabla']``
(i, f, g, o), the last axis reading ``[x; h]``.
"""
import numpy as np

from nnlstm import gates
from nnlstm.interop.store import (array, join, kind, layer_index, mapping, pick, read, split,
                                  write)

#: ``PF.lstm``'s parameters (the names in its scope) and their shapes.
NNABLA_LEGENDS = {
    'weight_l0': '(dirs, 4, H, I + H)',
    'weight': '(L - 1, dirs, 4, H, dirs * H + H)',
    'bias': '(L, dirs, 4, H)',
}
NNABLA_DIRS_AXIS = {'weight_l0': 0, 'weight': 1, 'bias': 1}


def nnabla_cell(cell):
    kind(cell)
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
    kernel = gates.reorder(kernel, 'lstm', 'nnabla', 'nnlstm')
    bias = None
    if 'bias' in arrays:
        b = arrays['bias']
        if b.shape[0] <= layer or b.shape[1:] != (dirs, 4, h):
            raise ValueError("`params['bias']` has shape %s; expected %s = (L, %d, 4, %d) "
                             "with L > layer = %d"
                             % (b.shape, NNABLA_LEGENDS['bias'], dirs, h, layer))
        bias = gates.reorder(b[layer, d].reshape(4 * h), 'lstm', 'nnabla', 'nnlstm')
    return join(cell, {'use_bias': bias is not None}, kernel[:inputs], kernel[inputs:], bias)


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
    _, kernel, recurrent, bias, _ = split(cell, params)
    d_in, h = kernel.shape[0], recurrent.shape[0]
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
    w = gates.reorder(np.concatenate([kernel, recurrent]), 'lstm', 'nnlstm', 'nnabla')
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
    if bias is not None:
        b = gates.reorder(bias, 'lstm', 'nnlstm', 'nnabla').reshape(4, h)
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
