"""Protobuf rewrites between NNabla's saver and converter and the files nnlstm writes.

:func:`exportable` rewrites the NNabla network (two-input MulN / AddN to Mul2 / Add2);
:func:`make_names_unique` and :func:`make_batch_symbolic` rewrite the ONNX model NNabla's
converter wrote at a fixed batch size into one with a symbolic batch dimension.
"""
import numpy as np


#: Variadic functions nnlstm's graphs use for speed, and the two-input functions of the same
#: meaning that the saved network holds instead (NNabla's ONNX exporter rejects MulN, AddN).
EXPORTABLE = {'MulN': ('Mul2', 'mul2_param'), 'AddN': ('Add2', 'add2_param')}


def exportable(proto):
    """Rewrite every two-input MulN / AddN of ``proto``'s networks to Mul2 / Add2, in place."""
    for network in proto.network:
        for f in network.function:
            if f.type in EXPORTABLE and len(f.input) == 2:
                f.type, param = EXPORTABLE[f.type]
                getattr(f, param).SetInParent()
    return proto


#: ONNX operators that broadcast their inputs, with the opset they do so from.
BROADCASTING = {'Add': 7, 'Sub': 7, 'Mul': 7, 'Div': 7, 'Pow': 7, 'Greater': 7, 'Less': 7,
                'Equal': 7, 'And': 7, 'Or': 7, 'Xor': 7, 'Min': 8, 'Max': 8, 'Sum': 8,
                'Mean': 8, 'Where': 9}


def make_batch_symbolic(model, export_batch, opset, dim_name='batch'):
    """Rewrite an ONNX model that NNabla's converter wrote at batch size ``export_batch``
    so that its batch dimension is the symbolic ``dim_name``:

    * the first dimension of every graph input and output;
    * a first entry of a Reshape's target shape that is the batch or a multiple of it
      (B * T, where a per-step Affine flattens a sequence) becomes -1 (or 0, "as the
      input", where the shape holds a -1 already);
    * a batch-sized constant filled with one value (the converter writes
      ``F.r_sub_scalar``, ``F.minimum_scalar``, ``F.maximum_scalar`` so) becomes a constant
      of shape (1, ...), where it only meets the batch in operators that broadcast.

    Shape annotations of intermediate values are dropped. Raises ValueError where that
    cannot be done. Returns ``model``."""
    from onnx import numpy_helper
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == 'Constant'
              and n.attribute and n.attribute[0].HasField('t')}

    for vi in list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if not dims or dims[0].dim_value != export_batch:
            raise ValueError("ONNX %s %r has shape %s; expected the batch %d first"
                             % ('input' if vi in g.input else 'output', vi.name,
                                [d.dim_value for d in dims], export_batch))
        dims[0].Clear()
        dims[0].dim_param = dim_name
    for n in g.node:
        t = None
        if n.op_type == 'Reshape':
            t = consts.get(n.input[1], inits.get(n.input[1]))
        if t is not None and n.input[0] not in inits:
            shape = numpy_helper.to_array(t).copy()
            if shape.size and shape[0] > 0 and shape[0] % export_batch == 0:
                shape[0] = 0 if (shape == -1).any() else -1
                t.CopyFrom(numpy_helper.from_array(shape, t.name))
    del g.value_info[:]
    shrunk = set()
    for name, t in list(consts.items()) + list(inits.items()):
        if export_batch in t.dims:
            value = numpy_helper.to_array(t)
            if not (value == value.flat[0]).all():
                raise ValueError("cannot make the ONNX batch dimension symbolic: the constant "
                                 "%r of shape %s depends on the batch size. Build the graph "
                                 "without batch-sized constants" % (name, list(t.dims)))
            t.CopyFrom(numpy_helper.from_array(
                np.full([1] * value.ndim, value.flat[0], value.dtype), t.name))
            shrunk.add(name)
        elif t.data_type == 7 and export_batch in numpy_helper.to_array(t).ravel():
            raise ValueError("cannot make the ONNX batch dimension symbolic: the int64 "
                             "constant %r holds the batch size" % name)
    # A shrunk constant must meet the batch only in operators that broadcast it back.
    batched = {i.name for i in g.input}
    for n in g.node:
        if any(v in shrunk for v in n.input):
            if BROADCASTING.get(n.op_type, 99) > opset:
                raise ValueError(
                    "cannot make the ONNX batch dimension symbolic: NNabla's converter wrote "
                    "a batch-sized constant (as it does for F.r_sub_scalar, F.minimum_scalar, "
                    "F.maximum_scalar) read by %s, which does not broadcast at opset %d"
                    % (n.op_type, opset))
            if not any(v in batched for v in n.input):
                shrunk.update(n.output)
        if any(v in batched for v in n.input):
            batched.update(n.output)
    left = shrunk & {o.name for o in g.output}
    if left:
        raise ValueError("cannot make the ONNX batch dimension symbolic: the outputs %s "
                         "do not depend on the inputs" % sorted(left))
    return model


def make_names_unique(model):
    """NNabla's converter names the target shape of a Reshape of ``x`` ``x_shape``, twice
    if ``x`` is reshaped twice (two layers reading one T = 1 input). Rename repeated
    outputs, and their later readers, so that the graph is in single assignment form."""
    defined = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    current = {}
    for n in model.graph.node:
        for k, name in enumerate(n.input):
            if name in current:
                n.input[k] = current[name]
        for k, name in enumerate(n.output):
            if name in defined:
                new, count = name, 1
                while new in defined:
                    new, count = '%s_%d' % (name, count), count + 1
                n.output[k] = current[name] = new
                defined.add(new)
            else:
                defined.add(name)
                current.pop(name, None)
    return model
