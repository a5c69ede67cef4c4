"""PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` weights (state_dict arrays or
``.safetensors`` files) to and from nnlstm layers.

Shape legend: B batch size, T time steps, D input features, H units; G the cell's gate
blocks (4 for LSTM, 3 for GRU, 1 for RNN). PyTorch stacks the gate blocks along the rows of
``weight_ih_l{k}`` (GH, D) and ``weight_hh_l{k}`` (GH, H) in the order of
``nnlstm.gates.ORDERS[cell]['torch']`` (LSTM i, f, g, o; GRU r, z, n).
"""
import numpy as np

from nnlstm import gates
from nnlstm.interop.store import (PROJECTION, about, array, both_or_neither, expect,
                                  gate_count, gh, join, layer_index, mapping, opened, path_of,
                                  pick, read, split, write, write_affine, write_atomic)


def torch_keys(layer, reverse):
    """PyTorch's state_dict keys of one layer and direction: weight_ih, weight_hh, bias_ih,
    bias_hh, with the suffix ``_l{layer}`` and, for ``reverse``, ``_reverse``."""
    suffix = '_l%d%s' % (layer_index(layer), '_reverse' if reverse else '')
    return tuple(k + suffix for k in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'))


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("reading and writing .safetensors files needs the safetensors "
                          "package: pip install 'nnlstm[files]' (or pip install "
                          "safetensors)") from None
    return safetensors.numpy


def state_dict_of(source, prefix, arg='state_dict'):
    """``source`` (a dict of arrays, or the path of a ``.safetensors`` file) as a dict of
    arrays under PyTorch's parameter names, the module ``prefix`` (e.g. ``'lstm.'``)
    removed: only the keys that start with it. Returns ``(dict, where)``, ``where`` naming
    the file and prefix for error messages ('' for a dict without a prefix)."""
    path = path_of(source)
    where = ''
    if path is not None:
        st = _safetensors()
        try:
            source = opened(st.load_file, path, 'a .safetensors file')
        except OSError:
            raise
        except Exception as e:  # safetensors' own error type for a damaged file
            raise ValueError("`%s` %r is not a readable .safetensors file: %s"
                             % (arg, path, e)) from None
        where = repr(path)
    source = mapping(source, arg)
    if not isinstance(prefix, str):
        raise TypeError("`prefix` must be a str, a module prefix such as 'lstm.'; received %r"
                        % (prefix,))
    if not prefix:
        return source, where
    picked = {k[len(prefix):]: v for k, v in source.items()
              if isinstance(k, str) and k.startswith(prefix)}
    where = '%s (prefix %r)' % (where or '`%s`' % arg, prefix)
    if not picked:
        raise ValueError("%s: no keys start with the prefix; the module prefixes there are "
                         "%s" % (where, prefixes(source) or "none (pass prefix='')"))
    return picked, where


def prefixes(state_dict):
    """The module prefixes of a model's ``state_dict``: ['fc.', 'lstm.']."""
    return sorted({k[:k.rindex('.') + 1] for k in state_dict
                   if isinstance(k, str) and '.' in k})


def from_torch(state_dict, cell='lstm', layer=0, reverse=False, prefix=''):
    """nnlstm arrays of one layer and direction of a PyTorch ``nn.LSTM`` / ``nn.GRU`` /
    ``nn.RNN`` state_dict.

    Args:
        state_dict (dict or path): NumPy arrays under PyTorch's names: ``weight_ih_l{k}``
            (GH, D), ``weight_hh_l{k}`` (GH, H), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (GH,)
            (absent with ``bias=False``); ``..._reverse`` for the backward direction. Or the
            path of a ``.safetensors`` file (``safetensors.torch.save_file(
            model.state_dict(), path)``).
        cell (str): 'lstm', 'gru' or 'rnn'.
        layer (int): k. reverse (bool): the ``_reverse`` direction.
        prefix (str): the recurrent module's prefix in a model's state_dict, e.g.
            ``'lstm.'`` for a model whose ``self.lstm = nn.LSTM(...)``.

    Returns:
        dict: nnlstm's parameter names (relative to the layer's scope) to arrays. LSTM and
        RNN biases are summed; a GRU maps to ``reset_after=True``.

    Example:
        >>> arrays = nnlstm.interop.from_torch(sd, 'gru', layer=1, reverse=True)
        >>> sorted(arrays)
        ['UzUrUn/affine/W', 'UzUrUn/affine/b', 'WzWrWn/affine/W', 'WzWrWn/affine/b']
    """
    gate_count(cell)
    state_dict, where = state_dict_of(state_dict, prefix)
    with about(where):
        return _from_torch(state_dict, cell, layer, reverse, prefix)


def _from_torch(state_dict, cell, layer, reverse, prefix):
    g = gate_count(cell)
    name = 'state_dict'
    k_ih, k_hh, k_bih, k_bhh = torch_keys(layer, reverse)
    k_hr = k_hh.replace('weight_hh', 'weight_hr')
    if k_hr in state_dict and cell != 'lstm':
        raise ValueError("`state_dict` has %r, a projection, which only an LSTM has (cell=%r)"
                         % (k_hr, cell))
    modules = [p for p in prefixes(state_dict) if p + k_hh in state_dict]
    if k_hh not in state_dict and not prefix and modules:
        raise ValueError("`%s` has no %r, but %s: pass the module's prefix, prefix=%r"
                         % (name, k_hh, ', '.join(repr(p + k_hh) for p in modules),
                            modules[0]))
    arg = name + '[%r]'
    whh = array(pick(state_dict, k_hh, name), arg % k_hh, '(%s, H)' % gh(g))
    h = whh.shape[0] // g
    whr = None
    if k_hr in state_dict:  # nn.LSTM(proj_size=P): weight_hh (4H, P), weight_hr (P, H)
        whr = array(state_dict[k_hr], arg % k_hr, '(P, H)')
        expect(whr, arg % k_hr, (whr.shape[0], h), '(P, H) with H = %d' % h)
        expect(whh, arg % k_hh, (g * h, whr.shape[0]), '(4H, P) with H = %d, P = %d'
               % (h, whr.shape[0]))
    else:
        h = whh.shape[1]
        expect(whh, arg % k_hh, (g * h, h), '(%s, H) with H = %d' % (gh(g), h))
    wih = array(pick(state_dict, k_ih, name), arg % k_ih, '(%s, D)' % gh(g))
    expect(wih, arg % k_ih, (g * h, wih.shape[1]), '(%s, D) with H = %d' % (gh(g), h))
    bih = bhh = None
    if both_or_neither(state_dict, (k_bih, k_bhh), name):
        bih, bhh = [expect(array(state_dict[k], arg % k, '(%s,)' % gh(g)), arg % k, (g * h,),
                           '(%s,) with H = %d' % (gh(g), h)) for k in (k_bih, k_bhh)]

    def ours(a):  # torch's gate blocks of rows (GH, ...) as nnlstm's columns (..., GH)
        return None if a is None else gates.reorder(a.T, cell, 'torch', 'nnlstm')

    # nn.GRU is nnlstm's reset_after=True GRU; nn.LSTM and nn.RNN's two biases are summed
    options = {'use_bias': bih is not None}
    if cell == 'gru':
        options['reset_after'] = True
    arrays = join(cell, options, ours(wih), ours(whh), ours(bih), ours(bhh))
    if whr is not None:
        arrays[PROJECTION] = np.ascontiguousarray(whr.T)
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
    gate_count(cell)
    options, kernel, recurrent, bias, recurrent_bias = split(cell, params, ('proj_size',))
    k_ih, k_hh, k_bih, k_bhh = torch_keys(layer, reverse)
    if not options.get('reset_after', True):
        raise ValueError("a reset_after=False GRU has no PyTorch equivalent: nn.GRU "
                         "applies the reset gate after the recurrent product, as "
                         "reset_after=True; received %s" % sorted(params))

    def theirs(a):  # nnlstm's columns (..., GH) as torch's gate blocks of rows (GH, ...)
        return np.ascontiguousarray(gates.reorder(a, cell, 'nnlstm', 'torch').T)

    out = {k_ih: theirs(kernel), k_hh: theirs(recurrent)}
    if PROJECTION in params:  # LSTMP: weight_hr_l{k} (P, H)
        out[k_hh.replace('weight_hh', 'weight_hr')] = np.ascontiguousarray(
            array(params[PROJECTION], 'params[%r]' % PROJECTION, '(H, P)').T)
    if bias is not None:
        out[k_bih] = theirs(bias)
        out[k_bhh] = (theirs(recurrent_bias) if recurrent_bias is not None
                      else np.zeros_like(out[k_bih]))
    return out


def load_torch(state_dict, name, cell='lstm', layer=0, reverse=False, prefix=''):
    """Load one layer and direction of a PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``
    state_dict (or ``.safetensors`` file) into the parameters of the nnlstm layer ``name``.

    Args:
        state_dict (dict or path): NumPy arrays under PyTorch's names (see
            :func:`from_torch`), or the path of a ``.safetensors`` file.
        name (str): the nnlstm layer's scope, e.g. ``'enc'``, ``'bi/backward'``,
            ``'stack/layer1'``.
        cell (str): 'lstm', 'gru' (nnlstm's GRU with ``reset_after=True``, its default) or
            'rnn' (build :func:`nnlstm.SimpleRNN` with the module's ``nonlinearity`` as
            ``activation``).
        layer (int), reverse (bool): which of the module's layers and directions.
        prefix (str): the module's prefix in a model's state_dict (``'lstm.'``); only the
            keys that start with it are read.

    The two biases are summed for LSTM and RNN. Build the layer with ``use_bias=False`` if
    the module has ``bias=False``.

    Example:
        >>> sd = {k: v.numpy() for k, v in torch_lstm.state_dict().items()}  # 2 layers
        >>> nnlstm.interop.load_torch(sd, 'stack/layer0')
        >>> nnlstm.interop.load_torch(sd, 'stack/layer1', layer=1)
        >>> y = nnlstm.Stacked(nnlstm.LSTM, x, H, num_layers=2, name='stack')  # (B, H)
        >>> nnlstm.interop.load_torch('model.safetensors', 'enc', prefix='lstm.')
    """
    write(name, cell, from_torch(state_dict, cell, layer, reverse, prefix))


def save_torch(name, cell='lstm', layer=0, reverse=False, prefix='', into=None, path=None):
    """The nnlstm layer ``name`` as one layer and direction of a PyTorch state_dict: a dict
    of NumPy arrays under PyTorch's names (see :func:`to_torch`: for LSTM and RNN,
    ``bias_ih`` is nnlstm's bias and ``bias_hh`` zeros).

    Args:
        prefix (str): put in front of every key (``'lstm.'``, the module's attribute name
            in the model, as ``model.state_dict()`` spells it).
        into (dict): arrays to add the layer's to (not changed): the other layers,
            directions and modules of the model.
        path (str): also write the dict to this ``.safetensors`` file, all or nothing, for
            ``model.load_state_dict(safetensors.torch.load_file(path))``.

    Example:
        >>> sd = nnlstm.interop.save_torch('bi/forward')
        >>> sd.update(nnlstm.interop.save_torch('bi/backward', reverse=True))
        >>> torch_lstm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        >>> sd = nnlstm.interop.save_torch('s/layer0', prefix='lstm.')
        >>> nnlstm.interop.save_torch('s/layer1', layer=1, prefix='lstm.', into=sd,
        ...                           path='model.safetensors')
    """
    if not isinstance(prefix, str):
        raise TypeError("`prefix` must be a str, a module prefix such as 'lstm.'; received %r"
                        % (prefix,))
    out = {} if into is None else dict(mapping(into, 'into'))
    out.update((prefix + k, v) for k, v in to_torch(read(name, cell), cell, layer,
                                                    reverse).items())
    if path is not None:
        save_safetensors(path, out)
    return out


def save_safetensors(path, state_dict):
    """Write ``state_dict`` (a dict of arrays) to the ``.safetensors`` file ``path``, all or
    nothing, float32, as ``safetensors.torch.load_file`` reads it."""
    st = _safetensors()
    if path_of(path) is None:
        raise TypeError("`path` must be a str or os.PathLike; received %r" % (path,))
    arrays = {}
    for key, value in mapping(state_dict, 'state_dict').items():
        if not isinstance(key, str):
            raise TypeError("`state_dict` keys must be str; received %r" % (key,))
        try:
            arrays[key] = np.ascontiguousarray(value, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TypeError("`state_dict[%r]` must be an array; received %s (%s)"
                            % (key, type(value).__name__, e)) from None
    write_atomic(path, lambda tmp: st.save_file(arrays, tmp))


def load_torch_linear(state_dict, name, prefix='fc.'):
    """Load a PyTorch ``nn.Linear``'s ``weight`` (n, I) and ``bias`` (n,) into the
    parameters of ``PF.affine(h, n, name=name)`` (``{name}/affine/W`` (I, n),
    ``{name}/affine/b``).

    Args:
        state_dict (dict or path): arrays, or a ``.safetensors`` file.
        prefix (str): the Linear module's prefix in the model (``'fc.'``).

    Example:
        >>> nnlstm.interop.load_torch_linear('model.safetensors', 'fc', prefix='fc.')
        >>> out = PF.affine(h, 1, name='fc')                                   # (B, 1)
    """
    sd, where = state_dict_of(state_dict, prefix)
    with about(where):
        w = array(pick(sd, 'weight', 'state_dict'), "state_dict['weight']", '(n, I)')
        write_affine(name, np.ascontiguousarray(w.T), sd.get('bias'),
                     ("state_dict['weight'].T", "state_dict['bias']"))
