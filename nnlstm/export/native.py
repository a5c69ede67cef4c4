"""Recurrent layers as native ONNX ``LSTM``, ``GRU`` and ``RNN`` nodes, with a symbolic time
axis.

Shape legend: B batch size, T time steps, D input features, H units.

NNabla's converter writes a layer as its unrolled graph, T steps fixed in the file. Here,
each layer of the graph that ONNX's operators express (its :class:`nnlstm.record.LayerRecord`
says what it was built with) is cut out of the network before the converter runs, and
written as one node (ONNX operators, opset 7 on): ``LSTM`` (gate order i, o, f, c: the
layout ``'onnx'`` of :mod:`nnlstm.gates`), ``GRU`` (``linear_before_reset`` 1 for
``reset_after=True``, 0 for False) or ``RNN``; ``direction`` 'reverse' for
``go_backwards``, 'bidirectional' for :func:`nnlstm.Bidirectional` (its merge after the
node); ``sequence_lens`` for ``lengths``, ``initial_h`` / ``initial_c`` for the states
given, ``P`` for an LSTM's peepholes. ONNX's recurrent operators are time-major, ``Y`` (T, directions, B, H): Transpose
and Gather around the node give nnlstm's (B, T, H) and (B, H). A :func:`nnlstm.Stacked`
is a chain of nodes, one per layer.

A layer ONNX cannot express (an activation other than tanh, sigmoid and relu, dropout in
the exported graph, ``zoneout``, ``resets``, ``proj_size``, ``layer_norm`` (ONNX's
recurrent operators normalize nothing) or another variant but peepholes, ``go_backwards`` with
``return_sequences`` below opset 10) stays
unrolled, and :func:`plan` warns with :class:`UnrolledLayerWarning` naming it (or refuses,
with ``strict``). When every layer is native and the rest of the graph works at any length
(elementwise functions, per-step heads), the time axis (axis 1) of the file's inputs and
outputs is made symbolic (``'time'``): :func:`make_time_symbolic`.
"""
import warnings
from typing import NamedTuple

import numpy as np

from .. import gates, kinds, record

#: ONNX's names of the activations nnlstm's names map to.
ONNX_ACTIVATIONS = {'tanh': 'Tanh', 'sigmoid': 'Sigmoid', 'relu': 'Relu'}

#: The variants of :data:`nnlstm.kinds.VARIANTS` ONNX's operators express: ONNX's LSTM
#: takes peepholes (``P``, i, o, f; the output gate reading the new cell, as nnlstm's).
NATIVE_VARIANTS = ('use_peepholes',)

#: ONNX operator of each cell kind.
OPERATORS = {'lstm': 'LSTM', 'gru': 'GRU', 'rnn': 'RNN'}

#: ONNX operators that work at any length of the time axis (they never read its size),
#: for :func:`make_time_symbolic`.
TIME_AGNOSTIC = {'Identity', 'Add', 'Sub', 'Mul', 'Div', 'Relu', 'Tanh', 'Sigmoid', 'Exp',
                 'Log', 'Abs', 'Neg', 'Sqrt', 'Softsign', 'Softplus', 'Elu', 'LeakyRelu',
                 'Max', 'Min', 'Sum', 'Mean', 'MatMul', 'Cast'}


class UnrolledLayerWarning(UserWarning):
    """A layer of an ONNX export is written unrolled, with its T fixed in the file, because
    ONNX's recurrent operators cannot express it; the message names the layer and why."""


def blockers(rec, opset):
    """Why ONNX's operators cannot express the layer ``rec`` (an empty list: they can)."""
    reasons = []
    for d in rec.directions:
        for arg in ('activation', 'recurrent_activation'):
            value = d.core.options.get(arg)
            if arg in d.core.options and not (isinstance(value, str)
                                              and value in ONNX_ACTIVATIONS):
                reasons.append('`%s`=%r (ONNX: %s)' % (arg, value, ', '.join(ONNX_ACTIVATIONS)))
        if d.dropout:
            reasons.append('dropout in the exported graph')
        if d.resets:
            reasons.append('`resets` (ONNX has no per-step state reset)')
        if any(getattr(d.core, 'zoneout', ())):
            reasons.append('`zoneout`=%r (the expectation blend of the states)'
                           % (d.core.options.get('zoneout'),))
        for option, what in kinds.VARIANTS.items():
            value = d.core.options.get(option)
            if (option in d.core.options and option not in NATIVE_VARIANTS
                    and value != rec.kind.options[option]):
                reasons.append('`%s`=%r (%s)' % (option, value, what))
    if (rec.return_sequences and rec.directions[0].reverse and len(rec.directions) == 1
            and opset < 10):
        reasons.append('`go_backwards` with `return_sequences` at opset %d (reversing a '
                       'sequence needs opset 10)' % opset)
    return sorted(set(reasons))


def plan(graph, opset, strict):
    """The records of the layers in ``graph`` (a :class:`.checks.Graph`) to write as native
    nodes. Each other layer is warned of (:class:`UnrolledLayerWarning`), or refused with a
    ValueError if ``strict``. Returns ``(native records, all records found)``."""
    found = [rec for rec in record.records_of(
        [v for f in graph.functions for v in list(f.inputs) + list(f.outputs)])
        if genuine(rec)]
    native = []
    for rec in found:
        reasons = blockers(rec, opset)
        if not reasons:
            native.append(rec)
            continue
        reason = ("ONNX's %s operator cannot express %s"
                  % (OPERATORS[rec.kind.name], ', '.join(reasons)))
        if strict:
            raise ValueError("strict=True: layer %r cannot be written as a native ONNX node: "
                             "%s (onnx_rnn='unrolled' writes every layer unrolled)"
                             % (rec.name, reason))
        warnings.warn("layer %r is written to ONNX unrolled, with T = %d fixed in the file: %s"
                      % (rec.name, rec.x.shape[1], reason), UnrolledLayerWarning, stacklevel=3)
    return native, found


def walk(item):
    """The NNabla functions of a layer record or :class:`Head` ``item`` (each by its first
    output Variable): those computing its outputs from its inputs, the inputs and
    parameters excluded; and the Variables they read."""
    stop = set(inputs_of(item))
    inside, read = set(), set()
    todo = [v for v in item.outputs if v is not None and v not in stop]
    while todo:
        v = todo.pop()
        f = v.parent
        if f is None or f.outputs[0] in inside:
            continue
        inside.add(f.outputs[0])
        read.update(f.inputs)
        todo.extend(u for u in f.inputs if u not in stop)
    return inside, read


def region(item):
    """The functions of ``item`` (:func:`walk`)."""
    return walk(item)[0]


def genuine(rec):
    """Whether the record ``rec`` :func:`nnlstm.record.records_of` found is the layer that
    computed its outputs: its own parameters and its ``x`` are read on the way."""
    read = walk(rec)[1]
    params = {p for d in rec.directions for p in d.core.params if p is not None}
    return rec.x in read and params <= read


class Head(NamedTuple):
    """A per-step Affine of the graph, (B, T, H) -> (B, T, K) (``base_axis`` 2, kept in the
    ``.nnp`` by :mod:`.heads`), written to ONNX as MatMul and Add: ``x`` its input, ``w``
    (H, K) and ``b`` (K,) or None its parameters, ``outputs`` its one output."""
    x: object
    w: object
    b: object
    outputs: tuple


def heads(graph):
    """The per-step Affines (:class:`Head`) of ``graph`` (a :class:`.checks.Graph`)."""
    found = []
    for f in graph.functions:
        if f.info.type_name != 'Affine':
            continue
        x = f.inputs[0]
        if (x.ndim > 2 and f.info.args['base_axis'] == x.ndim - 1
                and all(v.parent is None for v in f.inputs[1:])):
            found.append(Head(x, f.inputs[1], f.inputs[2] if len(f.inputs) > 2 else None,
                              (f.outputs[0],)))
    return found


def inputs_of(item):
    """The Variables a layer record or :class:`Head` reads, parameters aside."""
    if isinstance(item, Head):
        return [item.x]
    return [v for v in [item.x, item.lengths] if v is not None] + [
        s for d in item.directions for s in (d.state or ())]


def names_for(items, given):
    """``{Variable: name}`` for the inputs and outputs of ``items`` (layer records and
    :class:`Head` s), extending ``given`` (the user's ``{name: Variable}`` inputs), for
    NNabla's saver's ``names``."""
    names = {v: k for k, v in given.items()}
    for n, item in enumerate(items):
        for k, v in enumerate(inputs_of(item) + list(item.outputs)):
            if v is not None and v not in names:
                names[v] = 'nnlstm_%d_%d' % (n, k)
    return names


def cut(proto, network_name, items, names):
    """Remove the functions of ``items`` (layer records and :class:`Head` s) from the
    network ``network_name`` of the ``NNablaProtoBuf`` ``proto`` (in place): what computes
    their outputs from their inputs. Their outputs become inputs of the network (data
    variables of its executors), for :func:`splice` to replace by ONNX nodes."""
    net = next(n for n in proto.network if n.name == network_name)
    producer = {o: k for k, f in enumerate(net.function) for o in f.output}
    outputs = [names[v] for item in items for v in item.outputs if v is not None]
    stop = set(outputs) | {names[v] for item in items for v in inputs_of(item)}
    removed, todo = set(), list(outputs)
    while todo:
        k = producer.get(todo.pop())
        if k is None or k in removed:
            continue
        removed.add(k)
        todo.extend(i for i in net.function[k].input if i not in stop)
    kept = [f for k, f in enumerate(net.function) if k not in removed]
    lost = {o for k in removed for o in net.function[k].output} - set(outputs)
    for f in kept:
        read = lost.intersection(f.input)
        if read:
            raise ValueError("cannot write the recurrent layers as native ONNX nodes: %s reads "
                             "%s, computed inside a layer; export with onnx_rnn='unrolled'"
                             % (f.type, sorted(read)))
    del net.function[:]
    net.function.extend(kept)
    used = {i for f in kept for i in f.input} | {o for f in kept for o in f.output}
    keep = used | set(outputs) | {v for e in proto.executor for v in
                                  [d.variable_name for d in e.data_variable]}
    variables = [v for v in net.variable if v.name in keep]
    del net.variable[:]
    net.variable.extend(variables)
    for e in proto.executor:
        if e.network_name == network_name:
            for name in outputs:
                if name not in [d.variable_name for d in e.data_variable]:
                    dv = e.data_variable.add()
                    dv.variable_name = dv.data_name = name
            params = [p for p in e.parameter_variable if p.variable_name in used]
            del e.parameter_variable[:]
            e.parameter_variable.extend(params)
    return proto


def weights(direction, kind, dim, units):
    """ONNX's ``W`` (gates * H, D), ``R`` (gates * H, H) and ``B`` (2 * gates * H,) of one
    direction, from its core's parameters (nnlstm's layout, :mod:`nnlstm.kinds`)."""
    def onnx_rows(w):  # (rows, gates * H) in nnlstm's order -> (gates * H, rows) in ONNX's
        return gates.reorder(w, kind.name, 'nnlstm', 'onnx', axis=1).T

    p = [None if v is None else v.d.astype(np.float32) for v in direction.core.params]
    count = len(gates.order(kind.name, 'onnx'))
    zeros = np.zeros(count * units, np.float32)
    if kind.name == 'gru':
        wx, bx, u, bu, uzr, un = p[:6]  # then the layer norms', a blocker
        w, r = wx, (u if u is not None else np.concatenate([uzr, un], axis=1))
        bias = [zeros if bx is None else bx, zeros if bu is None else bu]
    else:  # rows [x; h] of one kernel
        w, r = p[0][:dim], p[0][dim:]
        bias = [zeros if p[1] is None else p[1], zeros]
    b = np.concatenate([gates.reorder(v, kind.name, 'nnlstm', 'onnx') for v in bias])
    return onnx_rows(w), onnx_rows(r), b


class Builder:
    """ONNX nodes and initializers, with fresh names."""

    def __init__(self, helper, numpy_helper, prefix):
        self.helper, self.numpy_helper, self.prefix = helper, numpy_helper, prefix
        self.nodes, self.initializers, self.count = [], [], 0
        self.done = set()  # outputs named already

    def name(self, what):
        self.count += 1
        return '%s/%s_%d' % (self.prefix, what, self.count)

    def const(self, value, what='const'):
        name = self.name(what)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, outputs=1, output=None, **attrs):
        names = [output] if output else [self.name(op) for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op, list(inputs), names,
                                                name=self.name(op + '_node'), **attrs))
        return names[0] if outputs == 1 else names


def layer_nodes(b, rec, names, opset):
    """Add to ``b`` (a :class:`Builder`) the nodes computing ``rec``'s outputs (named by
    ``names``) from its inputs. Returns the set of those nodes' outputs that do not carry
    the time axis."""
    kind, dirs = rec.kind, rec.directions
    dim, units = rec.x.shape[2], dirs[0].core.units
    w, r, bias = zip(*[weights(d, kind, dim, units) for d in dirs])
    timeless = set()
    x = b.node('Transpose', [names[rec.x]], perm=[1, 0, 2])                   # (T, B, D)
    lens = ''
    if rec.lengths is not None:
        lens = b.node('Cast', [names[rec.lengths]], to=6)                    # int32 (B,)
        timeless.add(lens)

    def initial(field):  # (directions, B, H), or '' for zeros
        if dirs[0].state is None:
            return ''
        parts = [b.node('Reshape', [names[getattr(d.state, field)],
                                    b.const(np.array([1, -1, units], np.int64), 'shape')])
                 for d in dirs]
        out = parts[0] if len(parts) == 1 else b.node('Concat', parts, axis=0)
        timeless.update(parts + [out])
        return out

    inputs = [x, b.const(np.stack(w), 'W'), b.const(np.stack(r), 'R'),
              b.const(np.stack(bias), 'B'), lens, initial('h')]
    acts = {'lstm': ('recurrent_activation', 'activation', 'activation'),
            'gru': ('recurrent_activation', 'activation'), 'rnn': ('activation',)}
    attrs = dict(hidden_size=units, activations=[
        ONNX_ACTIVATIONS[d.core.options[a]] for d in dirs for a in acts[kind.name]],
        direction='bidirectional' if len(dirs) == 2 else
        ('reverse' if dirs[0].reverse else 'forward'))
    if kind.name == 'lstm':
        inputs.append(initial('c'))
        if dirs[0].core.params[2] is not None:  # peepholes w_ci, w_cf, w_co -> ONNX's i, o, f
            inputs.append(b.const(np.stack([np.concatenate(
                [v.d for v in (d.core.params[2], d.core.params[4], d.core.params[3])])
                for d in dirs]).astype(np.float32), 'P'))
    if kind.name == 'gru':
        attrs['linear_before_reset'] = int(dirs[0].core.options['reset_after'])
    while inputs[-1] == '':
        inputs.pop()
    outs = b.node(OPERATORS[kind.name], inputs, outputs=3 if kind.name == 'lstm' else 2,
                  **attrs)
    seq = b.node('Transpose', [outs[0]], perm=[2, 0, 1, 3])               # (B, T, dirs, H)
    timeless.update(outs[1:])

    def pick(value, k, axis):
        out = b.node('Gather', [value, b.const(np.array(k, np.int64), 'index')], axis=axis)
        if value != seq:
            timeless.add(out)
        return out

    finals = []
    for k, d in enumerate(dirs):
        state = {'h': pick(outs[1], k, 0)}
        if kind.name == 'lstm':
            state['c'] = pick(outs[2], k, 0)
        finals.append([state[f] for f in kind.state._fields])
    ys = []
    for k, d in enumerate(dirs):
        if not rec.return_sequences:
            ys.append(finals[k][kind.state._fields.index('h')])
            continue
        y = pick(seq, k, 2)                                                     # (B, T, H)
        if len(dirs) == 1 and d.reverse:  # Keras: the sequence in processing order
            if rec.lengths is None:
                y = b.node('Slice', [y] + [b.const(np.array([v], np.int64), 'slice')
                                           for v in (-1, -2 ** 62, 1, -1)])
            else:
                y = b.node('ReverseSequence', [y, b.node('Cast', [names[rec.lengths]], to=7)],
                           batch_axis=0, time_axis=1)
        ys.append(y)
    if len(dirs) == 2 and rec.merge_mode is not None:
        merged = merge(b, rec.merge_mode, ys)
        if not rec.return_sequences:
            timeless.add(merged)
        ys = [merged]
    computed = ys + [v for state in finals for v in state]
    for v, value in zip(rec.outputs, computed):
        if v in names and names[v] not in b.done:
            b.done.add(names[v])
            b.node('Identity', [value], output=names[v])
            if value in timeless:
                timeless.add(names[v])
    return timeless


def merge(b, mode, ys):
    """The ONNX nodes of :data:`nnlstm.wrappers.MERGES`' ``mode`` over the two ``ys``."""
    if mode == 'concat':
        return b.node('Concat', ys, axis=-1)
    if mode == 'sum':
        return b.node('Add', ys)
    if mode == 'mul':
        return b.node('Mul', ys)
    return b.node('Mul', [b.node('Add', ys), b.const(np.array(0.5, np.float32), 'half')])


def head_nodes(b, head, names):
    """Add to ``b`` (a :class:`Builder`) ``head``'s MatMul and Add, (B, T, H) -> (B, T, K)."""
    y = b.node('MatMul', [names[head.x], b.const(head.w.d.astype(np.float32), 'W')])
    if head.b is not None:
        y = b.node('Add', [y, b.const(head.b.d.astype(np.float32), 'b')])
    b.node('Identity', [y], output=names[head.outputs[0]])


def splice(model, items, names, opset):
    """Replace, in the ONNX ``model`` NNabla's converter wrote from the network :func:`cut`
    left, the inputs standing for the outputs of ``items`` (layer records and
    :class:`Head` s) by the nodes computing them; drop what no output needs and sort the
    nodes. Returns the names of the values that do not carry the time axis among those the
    native nodes compute."""
    from onnx import helper, numpy_helper
    g = model.graph
    b = Builder(helper, numpy_helper, 'nnlstm')
    timeless = set()
    for item in items:
        if isinstance(item, Head):
            head_nodes(b, item, names)
        else:
            timeless |= layer_nodes(b, item, names, opset)
    computed = {o for n in b.nodes for o in n.output}
    inputs = [i for i in g.input if i.name not in computed]
    del g.input[:]
    g.input.extend(inputs)
    nodes = sort_nodes(b.nodes + list(g.node), [i.name for i in g.input]
                       + [t.name for t in list(g.initializer) + b.initializers])
    needed = {o.name for o in g.output}
    kept = []
    for n in reversed(nodes):
        if needed.intersection(n.output):
            kept.append(n)
            needed.update(n.input)
    del g.node[:]
    g.node.extend(reversed(kept))
    inits = [t for t in list(g.initializer) + b.initializers if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    return timeless


def sort_nodes(nodes, available):
    """``nodes`` in an order where each reads only what ``available`` or an earlier node
    holds (ONNX's rule)."""
    ready, done, order = set(available) | {''}, set(), []
    pending = list(nodes)
    while pending:
        left = []
        for n in pending:
            if all(i in ready for i in n.input):
                order.append(n)
                ready.update(n.output)
            else:
                left.append(n)
        if len(left) == len(pending):
            raise ValueError("cannot order the ONNX nodes: %s read values nothing computes"
                             % sorted({i for n in left for i in n.input if i not in ready}))
        pending = left
    return order


def make_time_symbolic(model, records, names, timeless, dim_name='time'):
    """Make axis 1 of the inputs and outputs of ``model`` that carry the time axis the
    symbolic ``dim_name``, if the whole graph works at any length: the time axis enters
    only as the ``x`` of the native layers ``records`` (named by ``names``; ``timeless``
    the values of their nodes that do not carry it), and every other node it reaches is
    one of :data:`TIME_AGNOSTIC`, meeting no constant of that length. Returns whether it
    did."""
    from onnx import numpy_helper
    g = model.graph
    steps = {rec.x.shape[1] for rec in records if not isinstance(rec, Head)}
    ours = {o for n in g.node if n.name.startswith('nnlstm/') for o in n.output}
    xs = {names[rec.x] for rec in records} & {i.name for i in g.input}
    consts = {t.name: t for t in g.initializer}
    consts.update({n.output[0]: n.attribute[0].t for n in g.node if n.op_type == 'Constant'})
    timed = set(xs)
    for n in g.node:
        if not timed.intersection(n.input):
            continue
        if n.output[0] in ours:
            timed.update(o for o in n.output if o not in timeless)
            continue
        if n.op_type not in TIME_AGNOSTIC:
            return False
        for i in n.input:
            if i in consts and steps.intersection(consts[i].dims):
                return False
            if i in consts and steps.intersection(numpy_helper.to_array(consts[i]).ravel()):
                return False
        timed.update(n.output)
    for vi in list(g.input) + list(g.output):
        if vi.name in timed:
            dims = vi.type.tensor_type.shape.dim
            dims[1].Clear()
            dims[1].dim_param = dim_name
    return True
