"""What each layer call built, kept so that the ONNX export can write the layer as one
native recurrent node (:mod:`nnlstm.export.native`) instead of its unrolled graph.

Shape legend: B batch size, T time steps, D input features, H units.

Every call of :func:`nnlstm.LSTM`, :func:`nnlstm.GRU`, :func:`nnlstm.SimpleRNN` and
:func:`nnlstm.Bidirectional` (and so every layer of a :func:`nnlstm.Stacked`) makes a
:class:`LayerRecord`. The registry holds none of the graph's Variables (holding them would
keep every graph ever built alive, as a rebuilt training graph is): it keeps each Variable
the layer read or returned by its key, ``hash(v)``, the same for every Python object NNabla
hands out for one graph variable (``f.inputs`` makes new ones), and the cores, which hold
the layer's parameters. :func:`records_of` finds a graph's records by the keys of its
Variables. A key is an address, so a freed Variable's may come back: the export checks that
the record's own parameters compute the outputs before it trusts a record. Only Variables
are keyed; a Variable rewired onto another (the fused layers' unrolled form for export) takes
that one's key, and :func:`rekey` follows it.
"""
import itertools
import threading
from typing import NamedTuple, Optional, Tuple

#: How many layer calls the registry remembers (each record holds parameters, no graph).
KEPT = 4096

_records = {}  # record number -> LayerRecord, its Variables as keys (hash)
_index = {}    # an output Variable's key -> record number
_numbers = itertools.count()
_lock = threading.Lock()


class Direction(NamedTuple):
    """One direction of a layer: its core (parameters and options, :mod:`nnlstm.cells`),
    the initial state given (a state NamedTuple of (B, H) Variables, or None for zeros),
    whether it runs from the last step, whether dropout masks were built, and whether a
    ``resets`` input restarts its sequences."""
    core: object
    state: Optional[tuple]
    reverse: bool
    dropout: bool
    resets: bool = False


class LayerRecord(NamedTuple):
    """One layer call: ``name`` the layer's ``name`` (for messages), ``kind`` its
    :class:`nnlstm.kinds.CellKind`, ``directions`` one :class:`Direction` (two for a
    Bidirectional layer: forward, backward), ``merge_mode`` a Bidirectional's (None
    otherwise), ``x`` the (B, T, D) input, ``lengths`` the (B,) Variable or None,
    ``return_sequences``, and ``outputs`` the Variables the call returned, in its order
    (None for one not in the graph exported)."""
    name: str
    kind: object
    directions: Tuple[Direction, ...]
    merge_mode: Optional[str]
    x: object
    lengths: object
    return_sequences: bool
    outputs: tuple


def _keys(state):
    return None if state is None else tuple(hash(v) for v in state)


def register(record):
    """Remember ``record``, its Variables by their keys. Returns ``record``."""
    with _lock:
        number = next(_numbers)
        _records[number] = record._replace(
            directions=tuple(d._replace(state=_keys(d.state)) for d in record.directions),
            x=hash(record.x), lengths=None if record.lengths is None else hash(record.lengths),
            outputs=tuple(hash(v) for v in record.outputs))
        for v in record.outputs:
            _index[hash(v)] = number
        while len(_records) > KEPT:
            old = _records.pop(next(iter(_records)))
            for key in old.outputs:
                if _index.get(key) not in _records:
                    _index.pop(key, None)
    return record


def rekey(keys):
    """Follow Variables whose key changed: ``keys`` maps old keys to new ones.
    ``Variable.rewire_on`` gives a Variable the key of the one it is rewired on (the
    export's unfusing of fused layers, :mod:`nnlstm.export.unfuse`, does this)."""
    def new(key):
        return keys.get(key, key)

    with _lock:
        for number, rec in list(_records.items()):
            _records[number] = rec._replace(
                directions=tuple(d._replace(state=None if d.state is None else
                                            tuple(map(new, d.state))) for d in rec.directions),
                x=new(rec.x), lengths=None if rec.lengths is None else new(rec.lengths),
                outputs=tuple(map(new, rec.outputs)))
        for old, key in keys.items():
            if old in _index:
                _index[key] = _index.pop(old)


def records_of(variables):
    """The records of the layers that may have returned some of ``variables`` (a graph's,
    its leaves included), each once, in the order their outputs first appear, resolved to
    those Variables. A Variable's key may be a freed one's: the caller checks that the
    record's parameters compute its outputs (:func:`nnlstm.export.native.genuine`)."""
    by_key = {hash(v): v for v in variables}
    found, seen = [], set()
    with _lock:
        for v in variables:
            number = _index.get(hash(v))
            if number is None or number in seen or number not in _records:
                continue
            seen.add(number)
            rec = _records[number]
            try:
                found.append(rec._replace(
                    directions=tuple(d._replace(state=None if d.state is None else
                                                rec.kind.state(*[by_key[k] for k in d.state]))
                                     for d in rec.directions),
                    x=by_key[rec.x],
                    lengths=None if rec.lengths is None else by_key[rec.lengths],
                    outputs=tuple(by_key.get(k) for k in rec.outputs)))
            except KeyError:  # its inputs are not among ``variables``
                continue
    return found
