"""One record per cell kind: everything nnlstm knows about LSTM, GRU and SimpleRNN cells.

Shape legend: B batch size, T time steps, D input features, H units.

Layers, wrappers, step networks, weight interop and the docstrings read these records; no
other table maps cell kinds. Adding a kind (or a variant of one) means adding a record here,
its core in :mod:`nnlstm.cells`, and its tests.
"""
import re
from typing import Callable, NamedTuple, Optional, Tuple

from .cells import (GRUCell, GRUCore, HiddenState, LSTMCell, LSTMCore, LSTMState,
                    SimpleRNNCell, SimpleRNNCore)


class ParamSpec(NamedTuple):
    """One parameter a core creates in the layer's scope.

    ``name`` is relative to the scope (``'WaWiWfWo/affine/W'``); ``legend`` spells its shape
    in the legend's letters (``'(D + H, 4H)'``); ``role`` says which initializer makes it
    (``'kernel'``, ``'recurrent'``, ``'kernel+recurrent'`` for rows ``[x; h]``, ``'bias'``);
    ``when`` tells from the layer's options whether it exists (None: always).
    """
    name: str
    legend: str
    role: str
    when: Optional[Callable[[dict], bool]] = None

    def exists(self, options):
        return self.when is None or bool(self.when(options))


_TERM = re.compile(r'^\s*(\d*)\s*([DH])\s*$')


def shape_of(legend, **dims):
    """The shape a legend spells for the given dimensions: ``shape_of('(D + H, 4H)', D=3,
    H=5) == (8, 20)``. Each axis is a sum of terms, each an optional integer times one
    letter."""
    axes = [a for a in legend.strip().strip('()').split(',') if a.strip()]
    shape = []
    for axis in axes:
        size = 0
        for term in axis.split('+'):
            m = _TERM.match(term)
            if m is None:
                raise ValueError("cannot read the shape legend %r" % legend)
            size += int(m.group(1) or 1) * dims[m.group(2)]
        shape.append(size)
    return tuple(shape)


def rank_of(legend):
    """The rank a legend spells: ``'(D + H, 4H)'`` 2, ``'(4H,)'`` 1, ``'(B, H)'`` 2."""
    return len([a for a in legend.strip().strip('()').split(',') if a.strip()])


def _use_bias(options):
    return options.get('use_bias', True)


#: Options every kind's core accepts, with their defaults (Keras' names).
COMMON_OPTIONS = {
    'activation': 'tanh',
    'use_bias': True,
    'kernel_initializer': None,
    'recurrent_initializer': None,
    'bias_initializer': None,
    'rng': None,
    'fix_parameters': False,
}


class CellKind(NamedTuple):
    """What nnlstm knows about one kind of recurrent cell."""
    name: str                 # 'lstm'; also the key of nnlstm.gates.ORDERS
    layer_name: str           # 'LSTM', the public layer function
    core: type                # the core class of nnlstm.cells
    cell: Callable            # the public one-step function, e.g. nnlstm.LSTMCell
    state: type               # the state NamedTuple type
    params: Tuple[ParamSpec, ...]
    options: dict             # cell option -> default

    def parameters(self, input_size, units, **options):
        """``{name: shape}`` of the parameters a layer of this kind creates for
        ``input_size`` D and ``units`` H with ``options``."""
        options = dict(self.options, **options)
        return {p.name: shape_of(p.legend, D=input_size, H=units)
                for p in self.params if p.exists(options)}


KINDS = {
    'lstm': CellKind(
        'lstm', 'LSTM', LSTMCore, LSTMCell, LSTMState,
        (ParamSpec('WaWiWfWo/affine/W', '(D + H, 4H)', 'kernel+recurrent'),
         ParamSpec('WaWiWfWo/affine/b', '(4H,)', 'bias', _use_bias)),
        dict(COMMON_OPTIONS, recurrent_activation='sigmoid', unit_forget_bias=True)),
    'gru': CellKind(
        'gru', 'GRU', GRUCore, GRUCell, HiddenState,
        (ParamSpec('WzWrWn/affine/W', '(D, 3H)', 'kernel'),
         ParamSpec('WzWrWn/affine/b', '(3H,)', 'bias', _use_bias),
         ParamSpec('UzUrUn/affine/W', '(H, 3H)', 'recurrent',
                   lambda o: o.get('reset_after', True)),
         ParamSpec('UzUrUn/affine/b', '(3H,)', 'bias',
                   lambda o: o.get('reset_after', True) and _use_bias(o)),
         ParamSpec('UzUr/affine/W', '(H, 2H)', 'recurrent',
                   lambda o: not o.get('reset_after', True)),
         ParamSpec('Un/affine/W', '(H, H)', 'recurrent',
                   lambda o: not o.get('reset_after', True))),
        dict(COMMON_OPTIONS, recurrent_activation='sigmoid', reset_after=True)),
    'rnn': CellKind(
        'rnn', 'SimpleRNN', SimpleRNNCore, SimpleRNNCell, HiddenState,
        (ParamSpec('Wh/affine/W', '(D + H, H)', 'kernel+recurrent'),
         ParamSpec('Wh/affine/b', '(H,)', 'bias', _use_bias)),
        dict(COMMON_OPTIONS)),
}


def kind_of(layer, arg='layer'):
    """The :class:`CellKind` of a public layer function (``nnlstm.LSTM``, ``nnlstm.GRU``,
    ``nnlstm.SimpleRNN``); a TypeError naming ``arg`` for anything else."""
    kind = getattr(layer, 'cell_kind', None)
    if not isinstance(kind, CellKind):
        raise TypeError("`%s` must be one of %s; received %r"
                        % (arg, ', '.join('nnlstm.' + k.layer_name for k in KINDS.values()),
                           layer))
    return kind
