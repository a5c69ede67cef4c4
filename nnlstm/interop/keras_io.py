"""Keras ``LSTM`` / ``GRU`` / ``SimpleRNN`` weights (``get_weights()`` lists) to and from
nnlstm layers.

Shape legend: B batch size, T time steps, D input features, H units; G the cell's gate
blocks. Keras keeps the gate blocks along the columns of ``kernel`` (D, GH) and
``recurrent_kernel`` (H, GH) in the order of ``nnlstm.gates.ORDERS[cell]['keras']`` (LSTM
i, f, c, o; GRU z, r, h); a GRU with ``reset_after=True`` stacks its two biases as one
(2, 3H) array, input bias first.

A Keras layer's config (``layer.get_config()``, passed as ``**config``, or the layer itself)
is read as follows:

* ``use_bias`` and, for a GRU, ``reset_after`` change which weights there are: they are used.
* ``units`` is checked against the weights' H; ``activation`` and ``recurrent_activation``
  must be ones nnlstm builds (:data:`nnlstm.cells.ACTIVATIONS`): build the nnlstm layer with
  the same.
* These are ignored, since they do not change what the weights mean:
%(ignored)s.
  They are options of training (initializers, ``unit_forget_bias``, regularizers,
  constraints, dropout, seed, ``dtype``: the weights are read as float32), of the Keras
  implementation (``implementation``, ``use_cudnn``, ``unroll``), or of the
  layer call (``return_sequences``, ``return_state``, ``go_backwards``, ``stateful``,
  ``time_major``, ``zero_output_for_mask``): nnlstm's layer functions take those when the
  layer is built (``nnlstm.LSTM(x, H, go_backwards=True, ...)``), loading does not see them.
* Any other key is refused (TypeError): it might change the weights' meaning.

Keras 3 ``.weights.h5`` files (``model.save_weights``) store each layer under a path made
from its class, ``layers/lstm/cell/vars/0..2`` (``'lstm'``, ``'lstm_1'``, ``'gru'``,
``'simple_rnn'``, ``'bidirectional'``: both directions), not under its name: ``layer`` picks
one by that path or by the name the layer was given.
"""
from collections.abc import Mapping
import difflib
import numbers
import re
import textwrap

import numpy as np

from nnlstm import _checks, cells, gates, wrappers
from nnlstm.interop.store import (about, array, expect, gate_count, gh, join, kind, layout,
                                  opened, path_of, read, split, weight_options, write,
                                  write_affine)
from nnlstm.kinds import KINDS

#: Keras config keys of every recurrent layer that do not change the weights' meaning.
IGNORED = ('name', 'trainable', 'dtype', 'kernel_initializer', 'recurrent_initializer',
           'bias_initializer', 'kernel_regularizer', 'recurrent_regularizer',
           'bias_regularizer', 'activity_regularizer', 'kernel_constraint',
           'recurrent_constraint', 'bias_constraint', 'dropout', 'recurrent_dropout', 'seed',
           'return_sequences', 'return_state', 'go_backwards', 'stateful', 'unroll',
           'zero_output_for_mask', 'time_major', 'implementation', 'use_cudnn')
#: Keras options that only some kinds have; each kind's record lists those it accepts.
KIND_SPECIFIC = {'recurrent_activation': 'checked', 'unit_forget_bias': 'ignored'}
#: Keras' class name of each kind: nnlstm's layer functions are named after them.
CLASSES = {k.layer_name: cell for cell, k in KINDS.items()}
#: A Bidirectional layer's own config keys.
BIDIRECTIONAL = ('layer', 'backward_layer', 'merge_mode', 'name', 'trainable', 'dtype')

if __doc__:  # None under python -OO
    __doc__ = __doc__ % {'ignored': textwrap.fill(
        ', '.join('``%s``' % k for k in IGNORED + ('unit_forget_bias',)), 90,
        initial_indent='  ', subsequent_indent='  ')}


def accepted(cell):
    """The Keras config keys of a ``cell`` layer: (used, checked, ignored)."""
    specific = [k for k in KIND_SPECIFIC if k in kind(cell).options]
    return (weight_options(cell),
            ('units', 'activation') + tuple(k for k in specific
                                            if KIND_SPECIFIC[k] == 'checked'),
            IGNORED + tuple(k for k in specific if KIND_SPECIFIC[k] == 'ignored'))


def unexpected(keys, cell, choices, what='`cell_config`'):
    """The TypeError for config ``keys`` a ``cell`` layer does not have."""
    close = difflib.get_close_matches(keys[0], choices, n=1)
    return TypeError("unexpected %s %s for cell %r; accepted: %s%s"
                     % (what, ', '.join(keys), cell, ', '.join(choices),
                        "; did you mean %r?" % close[0] if close else ''))


def keras_options(cell, cell_config):
    """The weight options (``use_bias`` and, for a GRU, ``reset_after``) of ``cell_config``,
    Keras' defaults (True) where not given; the config's other keys checked (see the
    module's docstring)."""
    used, checks, ignored = accepted(cell)
    unknown = sorted(set(cell_config) - set(used + checks + ignored))
    if unknown:
        raise unexpected(unknown, cell, used + checks + ignored)
    options = {k: cell_config.get(k, kind(cell).options[k]) for k in used}
    for k, v in options.items():
        if not isinstance(v, bool):
            raise TypeError("`%s` must be a bool; received %r" % (k, v))
    for k in checks[1:]:  # Keras writes activations by name ('linear' for None)
        value = cell_config.get(k)
        if k in cell_config and not (value is None or isinstance(value, str)
                                     and value in cells.ACTIVATIONS):
            raise ValueError("`%s` of the Keras layer is %r; nnlstm builds %s"
                             % (k, cell_config[k], ', '.join(
                                 repr(a) for a in cells.ACTIVATIONS if a is not None)))
    units = cell_config.get('units')
    if units is not None and (isinstance(units, bool)
                              or not isinstance(units, numbers.Integral) or units < 1):
        raise TypeError("`units` must be a positive int; received %r" % (units,))
    return options


def check_units(cell_config, h, arg):
    units = cell_config.get('units')
    if units is not None and units != h:
        raise ValueError("`units` is %d, but %s holds the weights of a layer of H = %d units"
                         % (units, arg, h))


def keras_shapes(cell, d, h, **options):
    """Keras' ``get_weights()`` of one layer: (name, shape, legend) triples."""
    g = gate_count(cell)
    weights = [('kernel', (d, g * h), '(D, %s)' % gh(g)),
               ('recurrent_kernel', (h, g * h), '(H, %s)' % gh(g))]
    lay = layout(cell, **options)
    if lay.recurrent_bias is not None:
        weights.append(('bias', (2, g * h), '(2, %s)' % gh(g)))
    elif lay.bias is not None:
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
            ``reset_after`` (default True); or its whole ``get_config()`` (see the module's
            docstring for how each key is read).

    Returns:
        dict: nnlstm's parameter names (relative to the layer's scope) to arrays.

    Example:
        >>> arrays = nnlstm.interop.from_keras(layer.get_weights(), 'gru', reset_after=False)
        >>> sorted(arrays)
        ['Un/affine/W', 'UzUr/affine/W', 'WzWrWn/affine/W', 'WzWrWn/affine/b']
    """
    gate_count(cell)
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
    check_units(cell_config, h, '`weights`')

    def ours(a):
        return None if a is None else gates.reorder(a, cell, 'keras', 'nnlstm')

    bias = recurrent_bias = None
    if len(ws) == 3:  # (GH,), or (2, GH): the input bias, then the recurrent one
        bias, recurrent_bias = (ws[2][0], ws[2][1]) if ws[2].ndim == 2 else (ws[2], None)
    return join(cell, options, ours(ws[0]), ours(ws[1]), ours(bias), ours(recurrent_bias))


def to_keras(params, cell='lstm', **cell_config):
    """A Keras ``get_weights()`` list from nnlstm arrays ``params`` (see :func:`from_keras`
    for the list and ``cell_config``, which must match the arrays)."""
    gate_count(cell)
    options = keras_options(cell, cell_config)
    built, kernel, recurrent, bias, recurrent_bias = split(cell, params)

    def theirs(a):
        return np.ascontiguousarray(gates.reorder(a, cell, 'nnlstm', 'keras'))

    for option in options:
        if option != 'use_bias' and built[option] != options[option]:
            raise ValueError("`%s=%s` given, but the parameters are those of a %s=%s %s "
                             "layer (%s)" % (option, options[option], option, built[option],
                                             kind(cell).layer_name,
                                             ', '.join(sorted(params))))
    def biases(**options):
        lay = layout(cell, **options)
        return ', '.join(repr(b) for b in (lay.bias, lay.recurrent_bias) if b is not None)

    if options['use_bias'] and not built['use_bias']:
        raise ValueError("use_bias=True, but `params` has no %s; pass use_bias=False for a "
                         "layer built without a bias" % biases(**options))
    if not options['use_bias'] and built['use_bias']:
        raise ValueError("use_bias=False, but `params` has %s" % biases(**built))
    check_units(cell_config, recurrent.shape[0], '`params`')
    out = [theirs(kernel), theirs(recurrent)]
    if bias is not None:
        out.append(theirs(bias) if recurrent_bias is None
                   else np.stack([theirs(bias), theirs(recurrent_bias)]))
    return out


def snake(class_name):
    """Keras 3's path name of a layer class (``keras.src.utils.naming.to_snake_case``):
    'LSTM' -> 'lstm', 'SimpleRNN' -> 'simple_rnn'."""
    name = re.sub(r'\W+', '', class_name)
    name = re.sub('(.)([A-Z][a-z]+)', r'\1_\2', name)
    return re.sub('([a-z])([A-Z])', r'\1_\2', name).lower()


def cell_of_class(class_name):
    """The nnlstm cell of a Keras class name ('LSTM', 'gru_1', 'simple_rnn_cell'), or None."""
    for cls, cell in CLASSES.items():
        if re.fullmatch(r'(forward_|backward_)?%s(_cell)?(_\d+)?' % snake(cls),
                        snake(class_name)):
            return cell
    return None


def same_cell(cell, found, what):
    if found is not None and found != cell:
        raise ValueError("%s is a Keras %s layer, but `cell` is %r; pass cell=%r"
                         % (what, KINDS[found].layer_name, cell, found))


def inner_config(config, arg):
    """A serialized Keras layer (``{'class_name': 'LSTM', 'config': {...}}``, as a
    Bidirectional's config holds them): (class_name, config)."""
    if not isinstance(config, Mapping) or not isinstance(config.get('config'), Mapping):
        raise TypeError("`%s` must be a serialized Keras layer, {'class_name': ..., "
                        "'config': {...}}, as Bidirectional.get_config() holds it; "
                        "received %r" % (arg, config))
    return config.get('class_name'), dict(config['config'])


def directions(cell, config):
    """The forward and backward layer configs of a Bidirectional layer's ``config``, checked
    against what :func:`nnlstm.Bidirectional` builds (one set of options for both)."""
    unknown = sorted(set(config) - set(BIDIRECTIONAL))
    if unknown:
        raise unexpected(unknown, cell, BIDIRECTIONAL, 'Bidirectional config key')
    merge_mode = config.get('merge_mode', 'concat')
    if merge_mode is not None and merge_mode not in wrappers.MERGES:
        raise ValueError("`merge_mode` of the Keras Bidirectional layer is %r; "
                         "nnlstm.Bidirectional merges with %s or None"
                         % (merge_mode, ', '.join(map(repr, wrappers.MERGES))))
    found = []
    for arg in ('layer', 'backward_layer'):
        if arg not in config and arg == 'backward_layer':
            found.append(found[0])
            continue
        class_name, inner = inner_config(config.get(arg), arg)
        same_cell(cell, cell_of_class(class_name or ''), "the Bidirectional's `%s`" % arg)
        found.append(inner)
    used, checks, _ = accepted(cell)
    for key in used + checks:
        forward, backward = (c.get(key, kind(cell).options.get(key)) for c in found)
        if forward != backward:
            raise ValueError("nnlstm.Bidirectional builds both directions with the same "
                             "options; the Keras layer's `%s` is %r forward, %r backward"
                             % (key, forward, backward))
    return found


def h5_layers(f):
    """The recurrent layers of an open Keras 3 .weights.h5 file, by their path relative to
    'layers/' ('lstm', 'bidirectional', 'functional/layers/gru'): ``{path: (groups, name,
    cell)}``, groups ``{'': vars group}`` or ``{'forward_layer': ..., 'backward_layer':
    ...}``, name the layer's given name, cell the kind its class path or cell tells (or
    None)."""
    cell_vars = []
    f.visit(lambda p: cell_vars.append(p) if p.startswith('layers/')
            and p.endswith('/cell/vars') else None)
    found = {}
    for group in cell_vars:
        owner = group[:-len('/cell/vars')]  # layers/lstm, layers/bidirectional/forward_layer
        parent, last = owner.rsplit('/', 1)
        path, direction = ((parent, last) if last in ('forward_layer', 'backward_layer')
                           else (owner, ''))
        name = f[path + '/vars'].attrs.get('name') if path + '/vars' in f else None
        groups, _, cell = found.get(path[len('layers/'):], ({}, None, None))
        groups[direction] = group
        cell = (cell or cell_of_class(last)
                or cell_of_class(str(f[group].attrs.get('name', ''))))
        found[path[len('layers/'):]] = (groups, name, cell)
    return found


def describe(found):
    """The recurrent layers :func:`h5_layers` found, for an error message."""
    out = []
    for path, (groups, name, cell) in sorted(found.items()):
        what = ('Bidirectional ' if '' not in groups else '') + (
            KINDS[cell].layer_name if cell else 'recurrent layer')
        out.append('%r (%s%s)' % (path, what, ' named %r' % name if name else ''))
    return ', '.join(out) or 'none'


def read_h5(path, cell, layer, arg):
    """The weights of one recurrent layer of a Keras 3 ``.weights.h5`` file:
    ``{'': weights}`` or, for a Bidirectional layer, ``{'forward_layer': ...,
    'backward_layer': ...}``."""
    import h5py
    with opened(lambda p: h5py.File(p, 'r'), path, 'a Keras 3 .weights.h5 file') as f:
        if 'layers' not in f:
            raise ValueError("`%s` %r has no 'layers' group: not a Keras 3 .weights.h5 file "
                             "(model.save_weights('model.weights.h5'))" % (arg, path))
        found = h5_layers(f)
        if layer is None:
            if len(found) != 1:
                raise ValueError("`layer` must name one of the recurrent layers of %r: %s"
                                 % (path, describe(found)))
            layer = next(iter(found))
        if not isinstance(layer, str):
            raise TypeError("`layer` must be a str, a layer's path in the file such as "
                            "'lstm' or 'gru_1', or its name; received %r" % (layer,))
        key = layer[len('layers/'):] if layer.startswith('layers/') else layer
        if key not in found:
            named = [p for p, (_, n, _) in found.items() if n == layer]
            if len(named) != 1:
                raise ValueError("%r has no recurrent layer %r; it has %s"
                                 % (path, layer, describe(found)))
            key = named[0]
        groups, _, found_cell = found[key]
        same_cell(cell, found_cell, "%r of %r" % (key, path))
        weights = {}
        for direction, group in groups.items():
            g = f[group]
            weights[direction] = [g[k][()] for k in sorted(g, key=int)]
        return weights, key


def load_keras(weights, name, /, cell='lstm', layer=None, **cell_config):
    """Load a Keras ``LSTM`` / ``GRU`` / ``SimpleRNN`` (or ``Bidirectional``) layer's
    weights into the parameters of the nnlstm layer ``name``.

    Args:
        weights: the layer's ``get_weights()`` list (see :func:`from_keras`); or the Keras
            layer itself (anything with ``get_weights()`` and ``get_config()``: its config
            is read as ``cell_config``); or the path of a Keras 3 ``.weights.h5`` file
            (``model.save_weights``), with ``layer`` picking the layer.
        name (str): the nnlstm layer's scope. A Bidirectional layer loads into
            ``{name}/forward`` and ``{name}/backward``, as :func:`nnlstm.Bidirectional`
            keeps them.
        cell (str): 'lstm', 'gru' or 'rnn'; a Keras layer or file path naming another kind
            is refused.
        layer (str): for a file: the layer's path in it (``'lstm'``, ``'lstm_1'``,
            ``'gru'``, ``'bidirectional'``: Keras 3 names them after their class) or the
            name it was given (``'enc'``); optional when the file has one recurrent layer.
        **cell_config: the Keras layer's config, ``**keras_layer.get_config()`` as it is, or
            only ``use_bias`` (default True) and, for a GRU, ``reset_after`` (default True);
            see the module's docstring for how each key is read. Build the nnlstm layer with
            the same options.

    Raises:
        TypeError: an unknown config key, a non-bool ``use_bias`` / ``reset_after``.
        ValueError: weights of the wrong number or shapes, ``units`` that are not the
            weights' H, an activation nnlstm does not build, a file without ``layer``
            (the error lists the file's recurrent layers).

    Example:
        >>> nnlstm.interop.load_keras(keras_gru.get_weights(), 'gru', cell='gru',
        ...                           reset_after=False)
        >>> y, h = nnlstm.GRU(x, H, name='gru', reset_after=False, return_state=True)
        >>> nnlstm.interop.load_keras(keras_gru, 'gru', cell='gru')   # the layer itself
        >>> nnlstm.interop.load_keras(keras_bi, 'bi')   # Bidirectional(LSTM): both layers
        >>> y = nnlstm.Bidirectional(nnlstm.LSTM, x, H, name='bi')            # (B, 2H)
        >>> nnlstm.interop.load_keras('model.weights.h5', 'enc', layer='lstm')
    """
    kind(cell)
    _checks.name(name)
    path = path_of(weights)
    config = dict(cell_config)
    if isinstance(layer, Mapping):
        config['layer'] = layer  # **Bidirectional.get_config(): its wrapped layer
        layer = None
    if path is None and layer is not None:
        raise TypeError("`layer` picks a layer of a .weights.h5 file; `weights` is %s"
                        % type(weights).__name__)
    bidirectional = 'backward_layer' in config or 'layer' in config
    if hasattr(weights, 'get_weights') and hasattr(weights, 'get_config'):
        class_name = type(weights).__name__
        layer_config = dict(weights.get_config())
        for key, value in config.items():
            if key in layer_config and layer_config[key] != value:
                raise ValueError("`%s=%r` given, but the Keras layer's config has %r"
                                 % (key, value, layer_config[key]))
        config = dict(layer_config, **config)
        bidirectional = class_name == 'Bidirectional' or 'backward_layer' in config
        if not bidirectional:
            same_cell(cell, CLASSES.get(class_name), '`weights`')
        weights = list(weights.get_weights())
    if path is not None:
        found, key = read_h5(path, cell, layer, 'weights')
        if '' not in found:
            weights, bidirectional = found['forward_layer'] + found['backward_layer'], True
        else:
            weights = found['']
        where = "layer %r of %r" % (key, path)
    else:
        where = ''
    if bidirectional:
        configs = directions(cell, config) if 'layer' in config else [config, config]
        if not isinstance(weights, (list, tuple)) or len(weights) % 2:
            raise ValueError("a Bidirectional layer's weights list the forward layer's, then "
                             "the backward layer's; %s holds %s"
                             % (where or '`weights`', len(weights) if isinstance(
                                 weights, (list, tuple)) else type(weights).__name__))
        half = len(weights) // 2
        with about(where):  # both directions converted before either is written
            loaded = {name + '/forward': from_keras(weights[:half], cell, **configs[0]),
                      name + '/backward': from_keras(weights[half:], cell, **configs[1])}
    else:
        with about(where):
            loaded = {name: from_keras(weights, cell, **config)}
    for scope, arrays in loaded.items():
        write(scope, cell, arrays)


def save_keras(name, /, cell='lstm', **cell_config):
    """The nnlstm layer ``name`` as a Keras ``get_weights()`` list, for
    ``keras_layer.set_weights``; ``cell_config`` (``use_bias``, ``reset_after``, or the Keras
    layer's whole ``get_config()``) as the layer was built.

    Example:
        >>> keras_gru.set_weights(nnlstm.interop.save_keras('gru', cell='gru'))
    """
    keras_options(cell, cell_config)
    return to_keras(read(name, cell), cell, **cell_config)


def load_keras_dense(weights, name, layer='dense'):
    """Load a Keras ``Dense`` layer's ``kernel`` (I, n) and ``bias`` (n,) into the
    parameters of ``PF.affine(h, n, name=name)`` (``{name}/affine/W``, ``{name}/affine/b``).

    Args:
        weights: the Dense layer's ``get_weights()``, the layer itself, or the path of a
            Keras 3 ``.weights.h5`` file with ``layer`` its path there (``'dense'``,
            ``'dense_1'``) or its name.

    Example:
        >>> nnlstm.interop.load_keras_dense('model.weights.h5', 'head', layer='dense')
        >>> out = PF.affine(h, 1, name='head')                                 # (B, 1)
    """
    path = path_of(weights)
    where = ''
    if path is not None:
        import h5py
        with opened(lambda p: h5py.File(p, 'r'), path, 'a Keras 3 .weights.h5 file') as f:
            dense = {}  # path under layers/ -> its vars group: a 2-D kernel, maybe a bias
            f.visititems(lambda p, g: dense.__setitem__(p[len('layers/'):-len('/vars')], g)
                         if p.startswith('layers/') and p.endswith('/vars')
                         and not p.endswith('/cell/vars') and '0' in g and len(g) <= 2
                         and g['0'].ndim == 2 else None)
            key = layer if layer in dense else next(
                (k for k, g in dense.items() if g.attrs.get('name') == layer), None)
            if key is None:
                raise ValueError("%r has no Dense layer %r; it has %s"
                                 % (path, layer, ', '.join("%r (named %r)" % (
                                     k, g.attrs.get('name')) for k, g in sorted(
                                         dense.items())) or 'none'))
            weights = [dense[key][k][()] for k in sorted(dense[key], key=int)]
            where = "layer %r of %r" % (key, path)
    elif hasattr(weights, 'get_weights'):
        weights = weights.get_weights()
    with about(where):
        if not isinstance(weights, (list, tuple)) or len(weights) not in (1, 2):
            raise ValueError("`weights` must be a Dense layer's [kernel, bias] (or [kernel]); "
                             "received %s" % ('%d arrays' % len(weights) if isinstance(
                                 weights, (list, tuple)) else type(weights).__name__))
        write_affine(name, weights[0], weights[1] if len(weights) == 2 else None,
                     ('weights[0] (kernel)', 'weights[1] (bias)'))
