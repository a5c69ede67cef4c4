"""One record per cell kind: everything nnlstm knows about LSTM, GRU and SimpleRNN cells.

Shape legend: B batch size, T time steps, D input features, H units, P an LSTM's
projection size (``proj_size``; H without one).

Layers, wrappers, step networks, weight interop and the docstrings read these records; no
other table maps cell kinds. Adding a kind (or a variant of one) means adding a record here,
its core in :mod:`nnlstm.cells`, its gate orders in :mod:`nnlstm.gates`, and its tests.

Each record's parameter table creates the parameters (:meth:`nnlstm.cells.Core.create`
reads it) and writes the "Parameters" section of the core's, the cell's and the layer's
docstring (:func:`parameter_doc`), as NNabla's ``parametric_function_api`` does.
"""
from typing import Callable, NamedTuple, Optional, Tuple

from . import _checks
from ._checks import rank_of, shape_of
from .cells import (GRUCell, GRUCore, HiddenState, LSTMCell, LSTMCore, LSTMState,
                    SimpleRNNCell, SimpleRNNCore)

__all__ = ['CellKind', 'KINDS', 'ParamSpec', 'VARIANTS', 'When', 'kind_of', 'parameter_doc',
           'rank_of', 'shape_of']


class When:
    """A condition on a layer's options, e.g. ``When(use_bias=True)``, or
    ``When(given=('proj_size',))`` for an option that is neither None nor 0; callable on an options
    dict (missing flags read as True), printable for the docstrings, and combined with
    ``&``."""

    def __init__(self, given=(), **flags):
        self.given, self.flags = tuple(given), flags

    def __call__(self, options):
        return (all(bool(options.get(k, True)) == v for k, v in self.flags.items())
                and all(options.get(k) not in (None, 0) for k in self.given))

    def __and__(self, other):
        return When(self.given + other.given, **dict(self.flags, **other.flags))

    def __str__(self):
        return ', '.join(['%s=%s' % kv for kv in self.flags.items()]
                         + ['a %s' % k for k in self.given])

    def options(self):
        """The options this condition reads."""
        return set(self.flags) | set(self.given)


class ParamSpec(NamedTuple):
    """One parameter a core creates in the layer's scope.

    ``name`` is relative to the scope (``'WaWiWfWo/affine/W'``); ``legend`` spells its shape
    in the legend's letters (``'(D + H, 4H)'``); ``role`` says which initializer makes it
    (``'kernel'``, ``'recurrent'``, ``'kernel+recurrent'`` for rows ``[x; h]``, ``'bias'``);
    ``when`` tells from the layer's options whether it exists (None: always). ``whole``, if
    given, is the legend of one initial matrix that consecutive parameters with the same
    ``whole`` are cut from, column block after column block (GRU ``reset_after=False``'s
    recurrent kernel: Keras' one (H, 3H) orthogonal matrix in two parameters).
    """
    name: str
    legend: str
    role: str
    when: Optional[When] = None
    whole: Optional[str] = None

    def exists(self, options):
        return self.when is None or bool(self.when(options))

    def variant(self):
        """The :data:`VARIANTS` option this parameter belongs to, or None (a parameter of
        the plain cell, as the LSTM's joint kernel that exists with ``layer_norm=False``):
        an option the condition needs switched on or given."""
        if self.when is None:
            return None
        needs = [o for o, on in self.when.flags.items() if on] + list(self.when.given)
        return next((o for o in sorted(needs) if o in VARIANTS), None)


#: Options every kind's core accepts, with their defaults (Keras' names).
COMMON_OPTIONS = {
    'activation': 'tanh',
    'use_bias': True,
    'kernel_initializer': None,
    'recurrent_initializer': None,
    'bias_initializer': None,
    'zoneout': 0.0,
    'weight_dropout': 0.0,
    'rng': None,
    'fix_parameters': False,
}

#: The variants of issue 13 that add parameters, option -> what it is: options the weight
#: converters of :mod:`nnlstm.interop` map only where they say so, and refuse by name.
VARIANTS = {
    'proj_size': "LSTMP's projection of h (PyTorch's proj_size)",
    'use_peepholes': 'peephole connections',
    'layer_norm': "layer normalization (TF-Addons' LayerNormLSTMCell)",
}

#: ``layer_norm`` (LSTM and GRU) and its epsilon, TF-Addons' default, with their defaults.
NORM_OPTIONS = {'layer_norm': False, 'norm_epsilon': 1e-3}

#: The LSTM variants' options (issue 13), with their defaults: the plain cell.
LSTM_VARIANTS = dict(proj_size=None, use_peepholes=False, **NORM_OPTIONS)

#: What each role's default initializer is, for the docstrings.
ROLE_DOC = {'kernel': 'Glorot uniform', 'recurrent': 'orthogonal',
            'kernel+recurrent': 'rows [x; h]: Glorot uniform over x, orthogonal over h',
            'bias': 'zeros', 'gain': 'ones', 'shift': 'zeros'}


class CellKind(NamedTuple):
    """What nnlstm knows about one kind of recurrent cell."""
    name: str                 # 'lstm'; also the key of nnlstm.gates.ORDERS
    layer_name: str           # 'LSTM', the public layer function
    core: type                # the core class of nnlstm.cells
    cell: Callable            # the public one-step function, e.g. nnlstm.LSTMCell
    state: type               # the state NamedTuple type
    params: Tuple[ParamSpec, ...]
    options: dict             # cell option -> default
    states: Tuple[str, ...]   # legend of each state field, e.g. ('(B, H)', '(B, P)')
    fused: Optional[str] = None  # NNabla's function running the whole layer ('lstm': F.lstm)

    def dims(self, input_size, units, **options):
        """The legend's letters for ``input_size`` D, ``units`` H and ``options``: D, H and
        P (``proj_size``, checked; H without one)."""
        projection = _checks.projection(dict(self.options, **options).get('proj_size'), units)
        return dict(D=input_size, H=units, P=units if projection is None else projection)

    def parameters(self, input_size, units, **options):
        """``{name: shape}`` of the parameters a layer of this kind creates for
        ``input_size`` D and ``units`` H with ``options``."""
        dims = self.dims(input_size, units, **options)
        options = dict(self.options, **options)
        return {p.name: shape_of(p.legend, **dims) for p in self.params if p.exists(options)}

    def state_sizes(self, units, **options):
        """The width of each state field for ``units`` H and ``options`` (``(H, P)`` for an
        LSTM: c is (B, H), h is (B, P)), as a tuple in the state's field order."""
        dims = dict(self.dims(1, units, **options), B=1)
        return tuple(shape_of(legend, **dims)[1] for legend in self.states)

    def check_options(self, function, given):
        """Refuse the options of ``given`` this kind's cell does not take, naming
        ``function`` (the one the user called) and where a refused option applies."""
        return _checks.options(function, given, self.options, owners())


_BIAS = When(use_bias=True)
_PEEP = When(use_peepholes=True)
_NORM = When(layer_norm=True)


def _norms(legend, *scopes):
    """The gain ``{scope}/gamma`` and shift ``{scope}/beta`` of each layer normalization."""
    return tuple(ParamSpec('%s/%s' % (scope, name), legend, role, _NORM)
                 for scope in scopes for name, role in (('gamma', 'gain'), ('beta', 'shift')))


KINDS = {
    'lstm': CellKind(
        'lstm', 'LSTM', LSTMCore, LSTMCell, LSTMState,
        (ParamSpec('WaWiWfWo/affine/W', '(D + P, 4H)', 'kernel+recurrent',
                   When(layer_norm=False)),
         ParamSpec('WaWiWfWo/affine/b', '(4H,)', 'bias', _BIAS),
         ParamSpec('peephole/w_ci', '(H,)', 'kernel', _PEEP),
         ParamSpec('peephole/w_cf', '(H,)', 'kernel', _PEEP),
         ParamSpec('peephole/w_co', '(H,)', 'kernel', _PEEP),
         ParamSpec('Whr/affine/W', '(H, P)', 'kernel', When(given=('proj_size',))),
         ParamSpec('WaWiWfWo/x/affine/W', '(D, 4H)', 'kernel', _NORM),
         ParamSpec('WaWiWfWo/h/affine/W', '(P, 4H)', 'recurrent', _NORM))
        + _norms('(4H,)', 'kernel_norm', 'recurrent_norm') + _norms('(H,)', 'state_norm'),
        dict(COMMON_OPTIONS, recurrent_activation='sigmoid', unit_forget_bias=True,
             **LSTM_VARIANTS),
        ('(B, H)', '(B, P)'), fused='lstm'),
    'gru': CellKind(
        'gru', 'GRU', GRUCore, GRUCell, HiddenState,
        (ParamSpec('WzWrWn/affine/W', '(D, 3H)', 'kernel'),
         ParamSpec('WzWrWn/affine/b', '(3H,)', 'bias', _BIAS),
         ParamSpec('UzUrUn/affine/W', '(H, 3H)', 'recurrent', When(reset_after=True)),
         ParamSpec('UzUrUn/affine/b', '(3H,)', 'bias', When(reset_after=True) & _BIAS),
         ParamSpec('UzUr/affine/W', '(H, 2H)', 'recurrent', When(reset_after=False),
                   '(H, 3H)'),
         ParamSpec('Un/affine/W', '(H, H)', 'recurrent', When(reset_after=False),
                   '(H, 3H)'))
        + _norms('(3H,)', 'kernel_norm', 'recurrent_norm'),
        dict(COMMON_OPTIONS, recurrent_activation='sigmoid', reset_after=True,
             **NORM_OPTIONS),
        ('(B, H)',)),
    'rnn': CellKind(
        'rnn', 'SimpleRNN', SimpleRNNCore, SimpleRNNCell, HiddenState,
        (ParamSpec('Wh/affine/W', '(D + H, H)', 'kernel+recurrent'),
         ParamSpec('Wh/affine/b', '(H,)', 'bias', _BIAS)),
        dict(COMMON_OPTIONS), ('(B, H)',)),
}


def kind_of(layer, arg='layer'):
    """The :class:`CellKind` of a public layer function (``nnlstm.LSTM``, ``nnlstm.GRU``,
    ``nnlstm.SimpleRNN``); a TypeError naming ``arg`` for anything else."""
    kind = getattr(layer, 'cell_kind', None)
    if not isinstance(kind, CellKind):
        raise TypeError("`%s` must be %s; received %r" % (arg, layer_names(), layer))
    return kind


def owners():
    """``{option: 'LSTM, GRU'}``: the layers whose cells take each cell option."""
    names = {}
    for kind in KINDS.values():
        for option in kind.options:
            names.setdefault(option, []).append(kind.layer_name)
    return {option: ', '.join(layers) for option, layers in names.items()}


def layer_names():
    """'nnlstm.LSTM, nnlstm.GRU or nnlstm.SimpleRNN', for messages."""
    names = ['nnlstm.' + k.layer_name for k in KINDS.values()]
    return ', '.join(names[:-1]) + ' or ' + names[-1]


def parameter_doc(kind, indent='    ', scope='the current scope'):
    """The "Parameters" section of a docstring, written from ``kind.params``."""
    lines = ['', indent + 'Parameters, in %s (generated from ``nnlstm.kinds.KINDS[%r]``):'
             % (scope, kind.name), '']
    for p in kind.params:
        init = ROLE_DOC[p.role] + (', cut from one %s matrix' % p.whole if p.whole else '')
        if p.role == 'bias' and 'unit_forget_bias' in kind.options:
            init += ', the forget gate 1 with unit_forget_bias=True'
        when = '; only with %s' % p.when if p.when is not None else ''
        lines.append('%s* ``%s``: %s, %s%s' % (indent, p.name, p.legend, init, when))
    return '\n'.join(lines) + '\n'


for _kind in KINDS.values():
    _kind.core.kind = _kind  # each core creates its parameters from its record
    for _fn in (_kind.core, _kind.cell):
        if _fn.__doc__:
            _fn.__doc__ += parameter_doc(_kind)
