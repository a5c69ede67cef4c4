"""Fused layers written as their unrolled graph: the files an export writes do not depend on
the path a layer ran on.

Shape legend: B batch size, T time steps, D input features, H units.

A layer run by :mod:`nnlstm.fused` is one Python function in the graph, which neither
NNabla's saver nor ONNX can hold. :func:`unfused` swaps each for the unrolled graph of the
same layer (:func:`nnlstm.unroll.unroll` on the same core, parameters and input Variables),
rewiring the function's output Variables onto it (``Variable.rewire_on``): the Variables the
user holds stay the user's, the records of :mod:`nnlstm.record` follow their keys, and the
export sees the graph the unrolled path builds. Afterwards each is rewired onto a new
fused function again, so the user's graph runs fused as before.
"""
import contextlib

import nnabla.functions as F

from .. import fused as kernels, record
from ..layers import stacked
from ..unroll import unroll


def fused_functions(variables):
    """The fused layer functions of the graphs of ``variables``, each once, with the
    :class:`nnlstm.fused.FusedLayer` behind it: a list of ``(function, layer)``."""
    found, seen = [], set()

    def visit(f):
        if f.info.type_name != kernels.FusedLayer.NAME:
            return
        key = hash(f.outputs[0])
        if key not in seen:
            seen.add(key)
            found.append((f, kernels.FUNCTIONS[key]))

    for v in variables:
        v.visit(visit)
    return found


def unrolled(layer, inputs):
    """The unrolled graph of ``layer`` (a :class:`nnlstm.fused.FusedLayer`) on its
    ``inputs``: its outputs, ``[sequence, *final_state]``."""
    x, _, state, _, _, lengths = layer.slots(inputs)
    spec, core = layer.spec, layer.core
    outputs, final = unroll(core, x, None if state is None else core.state_type(*state),
                            spec.reverse, spec.time_major, lengths, *layer.rates)
    order = 'input' if spec.input_order else 'processing'
    # The final state read by the last step (c_T by its output, h_T as a step's output):
    # rewiring a Variable onto another takes that one's parent away, so each gets its own.
    return ([stacked(outputs, order, spec.reverse, lengths, spec.time_major)]
            + [F.identity(v) for v in final])


@contextlib.contextmanager
def unfused(variables):
    """Within, every fused layer in the graphs of ``variables`` is its unrolled graph, on the
    same output Variables; on leaving, each runs fused again (a new function, whose cache is
    empty until its next forward pass)."""
    swapped = []
    try:
        for f, layer in fused_functions(variables):
            inputs, outputs = list(f.inputs), list(f.outputs)
            rewire(outputs, unrolled(layer, inputs))
            swapped.append((layer, inputs, outputs))
        yield
    finally:
        for layer, inputs, outputs in swapped:
            rewire(outputs, layer.again(inputs))


def rewire(outputs, new):
    """Rewire each of ``outputs`` onto its Variable of ``new``; the layer records follow
    (a rewired Variable takes the other's key, :func:`nnlstm.record.rekey`)."""
    keys = {}
    for old, v in zip(outputs, new):
        key = hash(old)
        old.rewire_on(v)
        keys[key] = hash(old)
    record.rekey(keys)
