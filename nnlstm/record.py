"""What each layer call built, kept so that the ONNX export can write the layer as one
native recurrent node (:mod:`nnlstm.export.native`) instead of its unrolled graph.

Shape legend: B batch size, T time steps, D input features, H units.

Every call of :func:`nnlstm.LSTM`, :func:`nnlstm.GRU`, :func:`nnlstm.SimpleRNN` and
:func:`nnlstm.Bidirectional` (and so every layer of a :func:`nnlstm.Stacked`) makes a
:class:`LayerRecord`, keyed by the Variables the layer returned: an export finds the records
of the layers in its graph by those Variables, whatever functions compute them. NNabla's
Variables take no weak references, so the registry holds the last :data:`KEPT` records (a
record keeps its input and output Variables alive); a layer built longer ago than that is
exported unrolled, with a warning.
"""
import collections
import threading
from typing import NamedTuple, Optional, Tuple

#: How many layer calls the registry remembers.
KEPT = 1024

_records = collections.OrderedDict()  # output Variable -> LayerRecord
_lock = threading.Lock()


class Direction(NamedTuple):
    """One direction of a layer: its core (parameters and options, :mod:`nnlstm.cells`),
    the initial state given (a state NamedTuple of (B, H) Variables, or None for zeros),
    whether it runs from the last step, and whether dropout masks were built."""
    core: object
    state: Optional[tuple]
    reverse: bool
    dropout: bool


class LayerRecord(NamedTuple):
    """One layer call: ``name`` the layer's ``name`` (for messages), ``kind`` its
    :class:`nnlstm.kinds.CellKind`, ``directions`` one :class:`Direction` (two for a
    Bidirectional layer: forward, backward), ``merge_mode`` a Bidirectional's (None
    otherwise), ``x`` the (B, T, D) input, ``lengths`` the (B,) Variable or None,
    ``return_sequences``, and ``outputs`` the Variables the call returned, in its order."""
    name: str
    kind: object
    directions: Tuple[Direction, ...]
    merge_mode: Optional[str]
    x: object
    lengths: object
    return_sequences: bool
    outputs: tuple


def register(record):
    """Remember ``record`` under each Variable it returned. Returns ``record``."""
    with _lock:
        for v in record.outputs:
            _records.pop(v, None)
            _records[v] = record
        while len(_records) > KEPT * 4:
            _records.popitem(last=False)
    return record


def records_of(variables):
    """The records of the layers that returned any of ``variables``, each once, in the
    order of ``variables``."""
    found = []
    with _lock:
        for v in variables:
            r = _records.get(v)
            if r is not None and all(id(r) != id(s) for s in found):
                found.append(r)
    return found
