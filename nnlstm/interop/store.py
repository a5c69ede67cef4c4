"""What every framework converter shares: a layer's nnlstm parameters as read from the cell
kind's record (:mod:`nnlstm.kinds`), checked arrays, the layer's parameters in NNabla's
parameter store, and files written all or nothing.

Shape legend: B batch size, T time steps, D input features, H units; G the cell's gate
blocks (4 for LSTM, 3 for GRU, 1 for SimpleRNN).

Every converter sees a layer as four arrays in nnlstm's gate order (see :func:`split`):
the input kernel (D, GH), the recurrent kernel (H, GH), the input bias and the recurrent
bias (GH,) (None where the layer has none). :func:`join` turns them into the parameters the
layer's record names, so no converter spells a parameter name.
"""
from collections.abc import Mapping
import contextlib
import itertools
import numbers
import os
import tempfile
from typing import NamedTuple, Optional, Tuple

import numpy as np
import nnabla as nn
from nnabla.parameter import get_parameter, pop_parameter, set_parameter

from nnlstm import _checks, gates
from nnlstm.kinds import KINDS, VARIANTS, rank_of, shape_of


# ---------------------------------------------------------------- the cell kinds' records

def kind(cell):
    """The :class:`nnlstm.kinds.CellKind` of ``cell`` ('lstm', 'gru' or 'rnn')."""
    if not isinstance(cell, str) or cell not in KINDS:
        raise ValueError("`cell` must be one of %s; received %r" % (sorted(KINDS), cell))
    return KINDS[cell]


def gate_count(cell):
    """G, the number of gate blocks of ``cell`` (checks ``cell``)."""
    kind(cell)
    return len(gates.order(cell, 'nnlstm'))


#: Every parameter name a core of each kind may create, from the records.
PARAMETERS = {cell: tuple(p.name for p in k.params) for cell, k in KINDS.items()}


def shapes(cell, d, h, p=None):
    """Every parameter ``cell``'s core may create for input size ``d``, ``h`` units and
    projection size ``p`` (None: H): name -> (shape, legend), from the kind's record."""
    return {s.name: (shape_of(s.legend, D=d, H=h, P=h if p is None else p), s.legend)
            for s in kind(cell).params}


#: The LSTM projection's parameter (PyTorch's ``weight_hr_l{k}``, transposed).
PROJECTION = next(p.name for p in KINDS['lstm'].params if p.variant() == 'proj_size')


def _bool_options(cell):
    """The bool weight options of ``cell`` but the variants (which converters map only
    where they say so)."""
    return [o for o, v in kind(cell).options.items()
            if isinstance(v, bool) and o not in VARIANTS]


def weight_options(cell):
    """The options of ``cell`` that change which parameters a layer has (``use_bias``, GRU's
    ``reset_after``): the others (``fix_parameters``, ``unit_forget_bias``) do not."""
    k = kind(cell)
    names = set(k.parameters(1, 1))
    return tuple(o for o in _bool_options(cell)
                 if set(k.parameters(1, 1, **{o: not k.options[o]})) != names)


def variants(cell):
    """Every combination of :func:`weight_options` with the parameter names it gives."""
    k, options = kind(cell), weight_options(cell)
    for values in itertools.product([True, False], repeat=len(options)):
        chosen = dict(zip(options, values))
        yield chosen, tuple(p.name for p in k.params
                            if p.variant() is None and p.exists(dict(k.options, **chosen)))


def condition(cell, spec):
    """When ``spec`` (a ParamSpec of ``cell``) exists, in words: '' (always),
    'use_bias=True', 'reset_after=False', 'reset_after=True and use_bias=True'."""
    if spec.variant() is not None:
        return str(spec.when)
    found = [o for o, names in variants(cell) if spec.name in names]
    every = list(variants(cell))
    if len(found) == len(every):
        return ''
    fixed = {o: found[0][o] for o in found[0] if all(f[o] == found[0][o] for f in found)}
    if len(found) != sum(all(o[k] == v for k, v in fixed.items()) for o, _ in every):
        raise RuntimeError("%s's %s exists under no conjunction of options"
                           % (cell, spec.name))
    return ' and '.join('%s=%s' % kv for kv in sorted(fixed.items()))


class Layout(NamedTuple):
    """Where a layer's four arrays live among its parameters (names from the record)."""
    kernel: str                 # the parameter holding the input rows
    fused: bool                 # True: `kernel` holds rows [x; h] (LSTM, SimpleRNN)
    recurrent: Tuple[str, ...]  # the parameters holding the h rows, columns in gate order
    bias: Optional[str]         # the input bias (the only one of a fused kernel)
    recurrent_bias: Optional[str]


def layout(cell, **options):
    """The :class:`Layout` of a ``cell`` layer built with ``options``."""
    k = kind(cell)
    specs = [p for p in k.params if p.exists(dict(k.options, **options))]
    affine = {p.name.rsplit('/', 1)[0]: p for p in specs if p.role != 'bias'}
    bias_of = {p.name.rsplit('/', 1)[0]: p.name for p in specs if p.role == 'bias'}
    kernel = next(p for p in affine.values() if p.role in ('kernel', 'kernel+recurrent'))
    scope = kernel.name.rsplit('/', 1)[0]
    recurrent = tuple(p.name for p in affine.values() if p.role == 'recurrent')
    recurrent_biases = [bias_of[n.rsplit('/', 1)[0]] for n in recurrent
                        if n.rsplit('/', 1)[0] in bias_of]
    return Layout(kernel.name, kernel.role == 'kernel+recurrent', recurrent,
                  bias_of.get(scope), recurrent_biases[0] if recurrent_biases else None)


def variant_of(cell, arrays, arg='params'):
    """The weight options of the ``cell`` layer whose parameters are ``arrays``' keys."""
    for options, names in variants(cell):
        if set(names) == set(arrays):
            return options
    choices = ['%s (%s)' % (', '.join(names), ', '.join('%s=%s' % kv for kv in o.items()))
               for o, names in variants(cell)]
    raise ValueError("`%s` holds %s, the parameters of no %s layer; a layer holds one of: %s"
                     % (arg, sorted(arrays), cell, '; '.join(choices)))


# ---------------------------------------------------------------- arrays and their checks

def array(value, arg, legend):
    """``value`` (an array or an ``nn.Variable``) as float32 of the rank of ``legend``, every
    value finite (a NaN or inf weight is a diverged or damaged model, refused by name)."""
    if isinstance(value, nn.Variable):
        value = value.d
    try:
        value = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TypeError("`%s` must be an array %s; received %s (%s)"
                        % (arg, legend, type(value).__name__, e)) from None
    if value.ndim != rank_of(legend):
        raise ValueError("`%s` must have rank %d, %s; received shape %s"
                         % (arg, rank_of(legend), legend, value.shape))
    bad = value.size - int(np.isfinite(value).sum())
    if bad:
        raise ValueError("`%s` holds %d non-finite values (NaN or inf) of %d; weights must be "
                         "finite" % (arg, bad, value.size))
    return value


def expect(value, arg, expected, legend):
    """Check ``value.shape == expected``; ``legend`` spells it, e.g. '(4H, D)'."""
    if value.shape != tuple(expected):
        raise ValueError("`%s` has shape %s; expected %s = %s"
                         % (arg, value.shape, legend, tuple(expected)))
    return value


def layer_index(layer):
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise TypeError("`layer` must be an int >= 0; received %s %r"
                        % (type(layer).__name__, layer))
    if layer < 0:
        raise ValueError("`layer` must be an int >= 0; received %r" % (layer,))
    return int(layer)


def mapping(value, arg):
    if not isinstance(value, Mapping):
        raise TypeError("`%s` must be a dict of arrays; received %s"
                        % (arg, type(value).__name__))
    return _checks.keys(value, arg)


def pick(source, key, arg):
    """``source[key]``, or a ValueError naming what ``source`` holds."""
    if key not in source:
        raise ValueError("`%s` has no %r; it holds %s"
                         % (arg, key, sorted(source) or 'nothing'))
    return source[key]


def both_or_neither(arrays, keys, arg):
    """Whether ``arrays`` holds both or neither of the two ``keys`` (biases)."""
    present = [k in arrays for k in keys]
    if any(present) and not all(present):
        raise ValueError("`%s` must hold both %r and %r or neither; received only %r"
                         % (arg, keys[0], keys[1], keys[present.index(True)]))
    return all(present)


def gh(g):
    """The legend of G * H: '4H', '3H', 'H'."""
    return '%dH' % g if g > 1 else 'H'


def checked(params, cell, variants=()):
    """nnlstm arrays ``params`` of one ``cell`` layer (arrays or ``nn.Variable``), checked
    against each other; returns ``(arrays, D, H)``. A parameter of a variant (issue 13's
    ``proj_size``, ``use_peepholes``) not named in ``variants`` is a ValueError naming it:
    the converter has no mapping for it."""
    params = mapping(params, 'params')
    unknown = sorted(set(params) - set(PARAMETERS[cell]))
    if unknown:
        raise ValueError("`params` has %s, not %s parameters (%s)"
                         % (', '.join(map(repr, unknown)), cell, ', '.join(PARAMETERS[cell])))
    specs = {spec.name: spec for spec in kind(cell).params}
    for key in sorted(params):
        if specs[key].variant() not in (None,) + tuple(variants):
            raise ValueError("`params` has %r, a parameter of the %s variant (%s), which this "
                             "converter does not map" % (key, specs[key].variant(),
                                                         VARIANTS[specs[key].variant()]))
    kernel = layout(cell).kernel
    legend = shapes(cell, 1, 1)[kernel][1]
    # the kernel's legend is (a D + b P, c H) (P = H but for a projection): H from its
    # columns, then D from its rows
    (b, c), (a, _) = shape_of(legend, D=0, H=1, P=1), shape_of(legend, D=1, H=0, P=0)
    w = array(pick(params, kernel, 'params'), 'params[%r]' % kernel, legend)
    h = w.shape[1] // c
    p = None
    if PROJECTION in params:
        p = array(params[PROJECTION], 'params[%r]' % PROJECTION, '(H, P)').shape[1]
    d = (w.shape[0] - b * (h if p is None else p)) // a
    if w.shape[1] % c or h < 1 or d < 1:
        raise ValueError("`params[%r]` has shape %s; expected %s with D, H >= 1"
                         % (kernel, w.shape, legend))
    arrays = {}
    for key, value in params.items():
        shape, legend = shapes(cell, d, h, p)[key]
        arrays[key] = expect(array(value, 'params[%r]' % key, legend), 'params[%r]' % key,
                             shape, '%s with D = %d, H = %d%s'
                             % (legend, d, h, '' if p is None else ', P = %d' % p))
    return arrays, d, h


def split(cell, params, variants=()):
    """nnlstm arrays ``params`` of one layer as ``(options, kernel (D, GH), recurrent
    (H, GH), bias (GH,) or None, recurrent bias (GH,) or None)``, gate blocks in nnlstm's
    order; ``options`` the weight options the parameters were built with. The parameters
    of the ``variants`` a converter maps itself (``'proj_size'``: the recurrent rows are
    then P) are checked and left out."""
    arrays, d, _ = checked(params, cell, variants)
    arrays = {k: v for k, v in arrays.items() if k != PROJECTION}
    options = variant_of(cell, arrays)
    lay = layout(cell, **options)
    if lay.fused:
        kernel, recurrent = arrays[lay.kernel][:d], arrays[lay.kernel][d:]
    else:
        kernel = arrays[lay.kernel]
        recurrent = np.concatenate([arrays[n] for n in lay.recurrent], axis=1)
    return (options, kernel, recurrent, arrays.get(lay.bias) if lay.bias else None,
            arrays.get(lay.recurrent_bias) if lay.recurrent_bias else None)


def join(cell, options, kernel, recurrent, bias=None, recurrent_bias=None):
    """The nnlstm parameters of a ``cell`` layer with weight ``options`` from its four
    arrays (nnlstm's gate order; see :func:`split`). A layer with one bias gets the sum of
    the two (the same function: PyTorch's LSTM and RNN add b_ih + b_hh)."""
    lay = layout(cell, **options)
    if lay.fused:
        arrays = {lay.kernel: np.concatenate([kernel, recurrent], axis=0)}
    else:
        arrays = {lay.kernel: kernel}
        widths = np.cumsum([shape_of(shapes(cell, 1, 1)[n][1], D=1, H=1)[1]
                            for n in lay.recurrent])[:-1]
        h = recurrent.shape[0]
        arrays.update(zip(lay.recurrent, np.split(recurrent, widths * h, axis=1)))
    if lay.bias is not None:
        if lay.recurrent_bias is not None:
            arrays[lay.bias], arrays[lay.recurrent_bias] = bias, recurrent_bias
        else:
            arrays[lay.bias] = bias if recurrent_bias is None else bias + recurrent_bias
    return arrays


# ---------------------------------------------------------------- the parameter store

def read(name, cell):
    """The nnlstm parameters of ``cell`` under scope ``name``, as a dict of arrays."""
    kind(cell)
    name = _checks.name(name)
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


def write(name, cell, arrays, keys=None):
    """Make the parameters under scope ``name`` exactly ``arrays``: an existing parameter
    of the same shape is overwritten in place (graphs already built see the new values),
    another is replaced, and the parameters of ``keys`` (default: every one the ``cell``
    kind may create) not in ``arrays`` (a bias, the other GRU variant's recurrent kernels)
    are removed."""
    name = _checks.name(name)
    for key in PARAMETERS[cell] if keys is None else keys:
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


def write_affine(name, weight, bias, args):
    """Make ``weight`` (I, n) and ``bias`` (n,) (or None) the parameters of
    ``PF.affine(x, n, name=name)``: ``{name}/affine/W`` and ``{name}/affine/b``. ``args``
    name the two arrays for error messages."""
    w = array(weight, args[0], '(I, n)')
    arrays = {'affine/W': w}
    if bias is not None:
        arrays['affine/b'] = expect(array(bias, args[1], '(n,)'), args[1], (w.shape[1],),
                                    '(n,) with n = %d' % w.shape[1])
    write(name, None, arrays, keys=('affine/W', 'affine/b'))


# ---------------------------------------------------------------- files

def path_of(source):
    """``source`` as a path str if it is one (str or os.PathLike), else None."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return None


def opened(open_fn, path, what):
    """``open_fn(path)``, its OSErrors naming the user's ``path`` and ``what`` it should be."""
    try:
        return open_fn(path)
    except OSError as e:
        if e.errno is None:  # h5py and safetensors: a message without an errno
            raise type(e)("cannot read %r as %s: %s" % (path, what, e)) from None
        raise type(e)(e.errno, '%s (reading %s)' % (os.strerror(e.errno), what),
                      path) from None


@contextlib.contextmanager
def about(where):
    """Prefix the ValueErrors and TypeErrors raised inside with ``where`` (the user's file
    and what in it was read), when there is one."""
    if not where:
        yield
        return
    try:
        yield
    except (ValueError, TypeError) as e:
        raise type(e)('%s: %s' % (where, e)) from None


def write_atomic(path, write_fn):
    """Write ``path`` all or nothing: ``write_fn(tmp)`` fills a temporary file beside it,
    which then replaces ``path`` (an existing file keeps its mode; a new one gets the umask's).
    Errors name ``path``; the temporary file never outlives the call."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix='.%s.' % os.path.basename(path),
                                   suffix='.tmp')
    except OSError as e:
        raise type(e)(e.errno, e.strerror, path) from None
    os.close(fd)
    try:
        write_fn(tmp)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        raise type(e)(e.errno, e.strerror, path) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
