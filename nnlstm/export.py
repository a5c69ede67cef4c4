"""Write inference networks to the files NNabla's own tools and ONNX Runtime run.

Shape legend: B batch size, T time steps, D input features, H units.

:func:`export_network` writes an inference ``.nnp`` (NNabla's ``NnpLoader`` and
``nnabla_cli``), and optionally an ``.onnx`` file with a symbolic batch dimension and an
``.nnb`` file for NNabla's C runtime, both through NNabla's own converter (the ``onnx``
extra). Every file is written to a temporary name and renamed only once all of them are
complete, so a failed export leaves nothing behind. :func:`export_step` writes the one-step
network of a trained layer, for streaming inference.
"""
import contextlib
import io
import os
import sys
import tempfile
import types
import zipfile

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parameter
from google.protobuf import text_format
from nnabla.utils import nnabla_pb2
from nnabla.utils.get_file_handle import FileHandlerContext, get_default_file_savers, save_files
from nnabla.utils.save import create_proto

from . import _checks
from .cells import GRUCell, LSTMCell, SimpleRNNCell
from .unroll import ensure_stack

#: Functions that only make sense while training; an inference file must not hold them.
TRAINING_ONLY = ('Dropout',)

#: ONNX opsets NNabla 1.39's converter writes and ONNX Runtime runs. The converter writes
#: opset 7 for any other number without a word, and its opset-6 Gemm has no ONNX Runtime
#: kernel. For a newer opset, convert an opset-13 file with ``onnx.version_converter``.
ONNX_OPSETS = (7, 9, 10, 11, 13)

#: The batch size the ONNX converter is run at. It fixes every batch dimension to this
#: value; :func:`make_batch_symbolic` then turns each into the symbolic ``'batch'``, and
#: any that remains is an error. An unusual number, so that no other dimension is mistaken
#: for it.
ONNX_EXPORT_BATCH = 8191

#: NNabla functions whose ONNX counterparts output booleans: NNabla's converter adds no
#: Cast, so ONNX Runtime refuses such an output fed to arithmetic.
COMPARISONS = ('Greater', 'GreaterEqual', 'Less', 'LessEqual', 'Equal', 'NotEqual',
               'GreaterScalar', 'GreaterEqualScalar', 'LessScalar', 'LessEqualScalar',
               'EqualScalar', 'NotEqualScalar', 'LogicalNot', 'LogicalAnd', 'LogicalOr',
               'LogicalXor', 'LogicalAndScalar', 'LogicalOrScalar', 'LogicalXorScalar')

#: Functions that move a boolean along unchanged; a comparison's output may pass through
#: them, and reach nothing else, in an ONNX export.
BOOLEAN_CARRIERS = ('Split', 'Reshape', 'Stack', 'Concatenate', 'Slice', 'Transpose',
                    'Identity', 'Broadcast')

#: Functions that combine or separate the samples of a batch along the given axis.
AXIS_FUNCTIONS = ('Split', 'Stack', 'Concatenate')
REDUCTIONS = ('Sum', 'Mean', 'Max', 'Min', 'Prod')
#: Functions that combine Variables elementwise, or stack them.
COMBINING = ('Add2', 'Sub2', 'Mul2', 'Div2', 'Pow2', 'Maximum2', 'Minimum2', 'BcAdd2',
             'Greater', 'GreaterEqual', 'Less', 'LessEqual', 'Equal', 'NotEqual',
             'LogicalAnd', 'LogicalOr', 'LogicalXor', 'Where', 'Concatenate', 'Stack')

CONVERTER_INSTALL = ("pip install 'nnlstm[onnx]' && pip install --no-deps "
                     "nnabla-converter==1.39.0 (./run does both with "
                     "NNLSTM_EXTRAS=test,examples,onnx)")


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


def write_nnp(path, contents):
    """``nnabla.utils.save.save(path, contents)`` for a ``.nnp`` with a variable batch size,
    the network rewritten by :func:`exportable`."""
    ctx = FileHandlerContext()
    ctx.proto = exportable(create_proto(contents, False, True))
    ctx.parameters = None
    save_files(ctx, get_default_file_savers(parameter_format='.h5'), path, '.nnp')


def functions_of(outputs):
    """Names of the NNabla functions in the graph that computes ``outputs``."""
    names = set()
    for y in outputs:
        y.visit(lambda f: names.add(f.info.type_name))
    return names


def _named(variables, arg):
    if not isinstance(variables, dict) or not variables:
        raise TypeError("`%s` must be a non-empty dict {name: nnabla.Variable}; received %r"
                        % (arg, type(variables).__name__))
    for key, value in variables.items():
        if not isinstance(key, str):
            raise TypeError("`%s` keys must be str names; received %r" % (arg, key))
        _checks.variable(value, '%s[%r]' % (arg, key))
    return variables


def _opset(value):
    if isinstance(value, bool) or value not in ONNX_OPSETS:
        raise ValueError("`opset` must be one of %s; received %r. NNabla 1.39's converter "
                         "silently writes opset 7 for other numbers (and ONNX Runtime cannot "
                         "run its opset 6); for a newer opset, convert an opset-13 file with "
                         "onnx.version_converter.convert_version"
                         % (', '.join(map(str, ONNX_OPSETS)), value))
    return int(value)


def _converter():
    """NNabla's converter modules, or an ImportError that says how to install them."""
    try:
        import onnx
        from nnabla.utils.converter.nnabla import NnpImporter
        from nnabla.utils.converter.nnablart import NnbExporter
        from nnabla.utils.converter.onnx import OnnxExporter
    except ImportError as e:
        raise ImportError("exporting .onnx or .nnb needs the onnx package and NNabla's "
                          "converter (%s): %s" % (CONVERTER_INSTALL, e)) from e
    return types.SimpleNamespace(onnx=onnx, NnpImporter=NnpImporter, NnbExporter=NnbExporter,
                                 OnnxExporter=OnnxExporter)


class Graph:
    """The functions computing ``outputs`` (in forward order) and what they read."""

    def __init__(self, outputs):
        self.functions = []
        visited = set()  # each function's first output: outputs may share functions

        def add(f):
            if f.outputs[0] not in visited:
                visited.add(f.outputs[0])
                self.functions.append(f)

        for y in outputs:
            y.visit(add)
        self.leaves = []
        seen = set()
        for f in self.functions:
            for v in f.inputs:
                if v.parent is None and v not in seen:
                    seen.add(v)
                    self.leaves.append(v)
        for y in outputs:  # an output that is an input itself
            if y.parent is None and y not in seen:
                seen.add(y)
                self.leaves.append(y)

    def depending_on(self, inputs):
        """The Variables computed from ``inputs``, the inputs included."""
        reached = set(inputs)
        for f in self.functions:
            if any(v in reached for v in f.inputs):
                reached.update(f.outputs)
        return reached


def describe(f):
    """'Reshape (3, 4, 5) -> (3, 20)', for error messages."""
    return '%s %s -> %s' % (f.info.type_name, ', '.join(str(tuple(v.shape)) for v in f.inputs),
                            ', '.join(str(tuple(v.shape)) for v in f.outputs))


def check_graph(inputs, outputs):
    """Check that ``inputs`` -> ``outputs`` is an inference network an ``.nnp`` with a
    variable batch size can hold; raise a ValueError that says what is wrong otherwise.
    Returns the batch size (the first axis of every input) and the :class:`Graph`."""
    graph = Graph(outputs.values())
    names = {f.info.type_name for f in graph.functions}
    banned = names & set(TRAINING_ONLY)
    if banned:
        raise ValueError("the graph of `outputs` holds training-only functions %s; build the "
                         "inference graph without them (e.g. dropout=0 or training=False)"
                         % sorted(banned))
    batch = {v.shape[0] if v.ndim else None for v in inputs.values()}
    if len(batch) != 1 or None in batch:
        raise ValueError("`inputs` disagree on the batch size (first axis): %s"
                         % {k: tuple(v.shape) for k, v in inputs.items()})
    batch = batch.pop()
    for key, v in inputs.items():
        if v.parent is not None:
            raise ValueError("`inputs[%r]` is computed by a %s function; an input must be a "
                             "Variable the graph reads, not one it computes"
                             % (key, v.parent.info.type_name))
        if v not in set(graph.leaves):
            raise ValueError("`inputs[%r]` %s is not read by the graph of `outputs`"
                             % (key, tuple(v.shape)))
    params = set(nn.get_parameters(grad_only=False).values())
    stray = [v for v in graph.leaves if v not in params and v not in set(inputs.values())]
    if stray:
        raise ValueError(
            "the graph of `outputs` reads %d Variable(s) that are neither `inputs` nor "
            "registered parameters, of shapes %s; an exported file would hold them without "
            "their values. Name them in `inputs` (an `initial_state`, `lengths` given as a "
            "Variable) or build the graph without them (no `stateful` Carry, no "
            "nn.Variable.from_numpy_array constants)"
            % (len(stray), ', '.join(str(tuple(v.shape)) for v in stray)))
    batch_major = graph.depending_on(inputs.values())
    hint = ("; an exported network must keep the batch on the first axis of everything it "
            "computes from its inputs (time_major=True layers cannot be exported: give them "
            "(B, T, D) inputs)")
    for f in graph.functions:
        if not any(v in batch_major for v in f.inputs):
            continue
        kind, args = f.info.type_name, f.info.args
        for v in f.outputs:
            if v.ndim == 0 or v.shape[0] != batch:
                raise ValueError("%s computes a %s Variable whose first axis is not the batch "
                                 "size %d%s" % (describe(f), tuple(v.shape), batch, hint))
        x = next(v for v in f.inputs if v in batch_major)
        if args.get('base_axis', 1) != 1:
            raise ValueError("%s has base_axis=%d: NNabla's saver rewrites it to 1, which "
                             "breaks a variable batch size. Apply such a head to each step's "
                             "(B, H) output before stacking, or to a (B * T, H) reshape in a "
                             "graph you do not export" % (describe(f), args['base_axis']))
        if kind in AXIS_FUNCTIONS and args['axis'] % (x.ndim + (kind == 'Stack')) == 0:
            raise ValueError("%s works along axis 0, the batch%s" % (describe(f), hint))
        if kind == 'Slice' and len(args['start']) == x.ndim:
            raise ValueError("%s slices the batch axis: NNabla's saver keeps its bounds, so a "
                             "file reloaded at another batch size would cut the batch. Slice "
                             "the trailing axes only (F.slice with len(start) < ndim)"
                             % describe(f))
        if kind == 'Transpose' and args['axes'][0] != 0:
            raise ValueError("%s moves the batch axis%s" % (describe(f), hint))
        fixed = [v for v in f.inputs
                 if v not in batch_major and v.ndim and v.shape[0] == batch]
        if kind in COMBINING and batch != 1 and fixed:
            raise ValueError(
                "%s combines the batch with a %s Variable that is not computed from the "
                "inputs but has the batch size first (F.constant((B, H)), say): NNabla's "
                "saver keeps it fixed, so the file would fail at other batch sizes. Compute "
                "it from the inputs (as the layers' zero state is) or give it a first axis "
                "of 1" % (describe(f), tuple(fixed[0].shape)))
        if kind in REDUCTIONS and (not args.get('axes') or 0 in args['axes']):
            raise ValueError("%s reduces over the batch axis (a loss is not an inference "
                             "output)" % describe(f))
    return batch, graph


def check_onnx_graph(graph):
    """Refuse what NNabla's ONNX converter would write as an invalid model."""
    boolean = {}  # Variable -> the comparison it comes from
    for f in graph.functions:
        kind = f.info.type_name
        source = next((boolean[v] for v in f.inputs if v in boolean), None)
        if kind in COMPARISONS:
            boolean.update((v, kind) for v in f.outputs)
        elif source and kind in BOOLEAN_CARRIERS:
            boolean.update((v, source) for v in f.outputs)
        elif source:
            raise ValueError(
                "cannot export to ONNX: the output of %s reaches %s, but NNabla's converter "
                "writes %s as an ONNX comparison, whose output is boolean, and adds no Cast, "
                "so ONNX Runtime rejects the model. (nnlstm's `go_backwards` with `lengths` "
                "and `return_sequences` reverses each sequence's valid part this way, and with "
                "a Gather: export it to .nnp only, or run the layer forward on reversed "
                "inputs.)" % (source, describe(f), source))


def check_variable_batch(nnp_path, network_name, inputs):
    """Check that the network NNabla's saver wrote left the batch (first) axis of every
    input variable; it does so only where it finds the batch as the first axis of the
    input of a function with ``base_axis`` (an Affine)."""
    with zipfile.ZipFile(nnp_path) as z:
        proto = text_format.Parse(z.read('network.nntxt').decode('utf-8'),
                                  nnabla_pb2.NNablaProtoBuf())
    net = next(n for n in proto.network if n.name == network_name)
    shapes = {v.name: list(v.shape.dim) for v in net.variable}
    fixed = {k: shapes[k] for k in inputs if not shapes[k] or shapes[k][0] != -1}
    if fixed:
        raise ValueError("NNabla's saver kept a fixed batch size for the inputs %s: it makes "
                         "the batch variable only in a graph where an Affine (a function "
                         "with base_axis) reads a batch-major Variable computed from the "
                         "inputs" % fixed)


#: ONNX operators that broadcast their inputs, with the opset they do so from.
BROADCASTING = {'Add': 7, 'Sub': 7, 'Mul': 7, 'Div': 7, 'Pow': 7, 'Greater': 7, 'Less': 7,
                'Equal': 7, 'And': 7, 'Or': 7, 'Xor': 7, 'Min': 8, 'Max': 8, 'Sum': 8,
                'Mean': 8, 'Where': 9}


def make_batch_symbolic(model, export_batch, opset, dim_name='batch'):
    """Rewrite an ONNX model that NNabla's converter wrote at batch size ``export_batch``
    so that its batch dimension is the symbolic ``dim_name``:

    * the first dimension of every graph input and output;
    * a batch-sized first entry of a Reshape's target shape becomes -1 (or 0, "as the
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
        t = consts.get(n.input[1]) if n.op_type == 'Reshape' else None
        if t is not None and n.input[0] not in inits:
            shape = numpy_helper.to_array(t).copy()
            if shape.size and shape[0] == export_batch:
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


@contextlib.contextmanager
def staged(paths):
    """Yield ``{path: temporary path}``, each temporary beside its path with the same
    extension (NNabla's writers choose the format by it). On success every temporary is
    renamed to its path; on any error all are deleted, so nothing is left behind."""
    tmps = {}
    try:
        for path in paths:
            folder, base = os.path.split(os.path.abspath(path))
            fd, tmps[path] = tempfile.mkstemp(suffix=os.path.splitext(base)[1],
                                              prefix='.tmp-', dir=folder)
            os.close(fd)
        yield tmps
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def atomic_write(path, write):
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same extension, since
    NNabla's writers choose the format by it), then rename it to ``path``."""
    with staged([path]) as tmps:
        write(tmps[path])
    return path


def _quietly(fn, *args):
    """Call ``fn(*args)`` without the progress NNabla's converter prints on stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        return fn(*args)


@contextlib.contextmanager
def deep_recursion(functions):
    """Room for NNabla's converter, which walks the network recursively in Python: its
    default recursion limit (1000) stops it near 70 unrolled LSTM steps. The limit is
    raised to a few frames per function, and the main thread's stack with it."""
    depth = 1000 + 8 * functions
    ensure_stack(depth // 4)  # its per-step estimate covers more than 4 Python frames
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, depth))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def write_onnx(converter, nnp_path, onnx_path, opset):
    """Convert the ``.nnp`` at ``nnp_path`` to ONNX ``opset`` with NNabla's converter, make
    its batch dimension symbolic, check and write it."""
    nnp = _quietly(converter.NnpImporter(nnp_path, expand_network=True,
                                         executor_index=None).execute)
    exporter = converter.OnnxExporter(nnp, ONNX_EXPORT_BATCH, -1, opset=str(opset))
    table = exporter.nnabla_function_type_to_onnx_optype
    unsupported = sorted({f.type for net in nnp.protobuf.network for f in net.function
                          if f.type not in table})
    if unsupported:
        raise ValueError("cannot export to ONNX opset %d: NNabla's converter does not support "
                         "the function(s) %s of this graph (for F.mul_n / F.add_n use chains "
                         "of F.mul2 / F.add2)" % (opset, ', '.join(unsupported)))
    try:
        model = _quietly(exporter.export_model_proto)
    except Exception as e:
        raise ValueError("NNabla's ONNX converter failed on this graph: %s: %s"
                         % (type(e).__name__, e)) from e
    make_batch_symbolic(make_names_unique(model), ONNX_EXPORT_BATCH, opset)
    try:
        # With shape inference, which finds type errors, from opset 9 on: for opset 7 the
        # converter writes int64 Constants (Reshape targets) that ONNX Runtime runs but
        # that opset's Constant does not define.
        converter.onnx.checker.check_model(model, full_check=opset >= 9)
    except Exception as e:
        raise ValueError("the ONNX model NNabla's converter wrote for this graph is invalid: "
                         "%s" % e) from e
    converter.onnx.save(model, onnx_path)


def write_nnb(converter, nnp_path, nnb_path, batch_size):
    """Convert the ``.nnp`` at ``nnp_path`` to an ``.nnb`` of fixed ``batch_size``."""
    nnp = _quietly(converter.NnpImporter(nnp_path, expand_network=True,
                                         executor_index=None).execute)
    try:
        _quietly(converter.NnbExporter(nnp, batch_size, api_level=-1).execute,
                 nnb_path, None, None, ['FLOAT32'])
    except Exception as e:
        raise ValueError("NNabla's .nnb converter failed on this graph: %s: %s"
                         % (type(e).__name__, e)) from e


def export_network(path, inputs, outputs, onnx=False, opset=13, nnb=False, nnb_batch_size=None,
           network_name='inference', executor_name='runtime'):
    """Export the inference network from ``inputs`` to ``outputs``: an ``.nnp`` file, and
    optionally ``.onnx`` and ``.nnb`` files beside it (same name, other extension).

    * ``.nnp``: NNabla's ``NnpLoader`` and ``nnabla_cli infer`` run it at any batch size.
      It holds the network (named ``network_name``; the first axis of every input is the
      batch, left variable), an executor ``executor_name`` and the current parameters.
      Each output is saved as an Identity of the Variable given, so that ``NnpLoader``'s
      ``net.outputs`` lists them all (it lists the graph's leaves) and one Variable may be
      named twice (an LSTM's ``y`` and ``h_T``).
    * ``.onnx`` (``onnx=True``): written by NNabla's own converter at ``opset`` (one of
      :data:`ONNX_OPSETS`), then rewritten so that the batch dimension is symbolic
      (``'batch'``): one file serves every batch size. Inputs and outputs keep their names.
    * ``.nnb`` (``nnb=True``): for NNabla's C runtime, with a fixed batch size,
      ``nnb_batch_size`` (default: the first axis of the inputs here).

    The graph is checked first: it must hold no training-only function (Dropout), read
    nothing but ``inputs`` and parameters, and keep the batch on the first axis of all it
    computes (so ``time_major`` layers, heads with ``base_axis=2`` and batch-axis slices
    are refused); for ONNX, every function must be one the converter writes and ONNX
    Runtime accepts (``lengths`` masks are not). Each failure is a ValueError that says
    what and why. Every file is written to a temporary name and renamed once all are
    complete: a failed export leaves no file behind, and an existing one unchanged.
    The ``.onnx`` and ``.nnb`` files need the ``onnx`` extra (see the README).

    Args:
        path (str): the ``.nnp`` file to write.
        inputs (dict): ``{name: Variable}``, the network's inputs, each batch-major
            (B, ...): ``x`` (B, T, D) for a layer; states (B, H) for a step network.
        outputs (dict): ``{name: Variable}``, what it computes.
        onnx (bool): also write ``path`` with ``.onnx``.
        opset (int): the ONNX opset, one of :data:`ONNX_OPSETS`.
        nnb (bool): also write ``path`` with ``.nnb``.
        nnb_batch_size (int): the ``.nnb``'s fixed batch size.

    Returns:
        dict: ``{'nnp': path, 'onnx': ..., 'nnb': ...}``, the files written.

    Example:
        >>> with nn.no_grad():
        ...     x = nn.Variable((1, 20, 1))
        ...     y = PF.affine(nnlstm.LSTM(x, 32, name='lstm'), 1, name='fc')
        >>> nnlstm.export_network('sine.nnp', {'x': x}, {'y': y}, onnx=True)
        {'nnp': 'sine.nnp', 'onnx': 'sine.onnx'}
    """
    path = os.fspath(path)
    if not path.endswith('.nnp'):
        raise ValueError("`path` must end with '.nnp'; received %r" % path)
    _named(inputs, 'inputs')
    _named(outputs, 'outputs')
    if onnx:
        opset = _opset(opset)
    batch, graph = check_graph(inputs, outputs)
    nnb_batch_size = (batch if nnb_batch_size is None
                      else _checks.positive_int(nnb_batch_size, 'nnb_batch_size'))
    converter = None
    if onnx or nnb:
        converter = _converter()
    if onnx:
        check_onnx_graph(graph)
    named = {key: F.identity(v) for key, v in outputs.items()}
    files = {'nnp': path}
    stem = path[:-len('.nnp')]
    if onnx:
        files['onnx'] = stem + '.onnx'
    if nnb:
        files['nnb'] = stem + '.nnb'
    contents = {
        'networks': [{'name': network_name, 'batch_size': batch,
                      'outputs': named, 'names': dict(inputs)}],
        'executors': [{'name': executor_name, 'network': network_name,
                       'data': list(inputs), 'output': list(named)}],
    }
    with staged(list(files.values())) as tmps:
        write_nnp(tmps[path], contents)
        check_variable_batch(tmps[path], network_name, inputs)
        with deep_recursion(len(graph.functions)):
            if onnx:
                write_onnx(converter, tmps[path], tmps[files['onnx']], opset)
            if nnb:
                write_nnb(converter, tmps[path], tmps[files['nnb']], nnb_batch_size)
    return files


def save_nnp(path, inputs, outputs, network_name='inference', executor_name='runtime'):
    """Save the network from ``inputs`` to ``outputs`` as an inference ``.nnp`` file,
    atomically: :func:`export_network` without the other formats. Returns ``path``.

    Args:
        path (str): the ``.nnp`` file to write.
        inputs (dict): ``{name: Variable}``, the network's inputs, batch-major.
        outputs (dict): ``{name: Variable}``, what it computes.

    Example:
        >>> x = nn.Variable((1, 20, 1))
        >>> y = PF.affine(nnlstm.LSTM(x, 32, name='lstm'), 1, name='fc')
        >>> nnlstm.save_nnp('sine.nnp', {'x': x}, {'y': y})
    """
    return export_network(path, inputs, outputs, network_name=network_name,
                          executor_name=executor_name)['nnp']


def save_parameters(path):
    """``nn.save_parameters(path)`` (.h5 or .protobuf), written to a temporary name and
    renamed, so an interrupted save never leaves a broken file."""
    path = os.fspath(path)
    return atomic_write(path, nn.save_parameters)


def _step_cells():
    from .layers import GRU, LSTM, SimpleRNN
    return {LSTM: (LSTMCell, ('c', 'h')), GRU: (GRUCell, ('h',)),
            SimpleRNN: (SimpleRNNCell, ('h',))}


def step_network(layer, input_size, units, name, batch_size=1, **options):
    """The one-step network of the trained recurrent layer ``layer(..., name=name)``, for
    streaming inference: it reads one input step and the state, and returns the output and
    the next state, with the layer's own parameters (the cell under the layer's name).

    LSTM: inputs ``x`` (B, D), ``c``, ``h`` (B, H); outputs ``y``, ``c_next``, ``h_next``
    (B, H). GRU and SimpleRNN: inputs ``x``, ``h``; outputs ``y``, ``h_next``. ``y`` is
    ``h_next``, as for the layer. Start a stream from zero states and feed each step's
    ``c_next``, ``h_next`` back as the next ``c``, ``h``: T steps give the layer's output
    sequence.

    Args:
        layer: :func:`nnlstm.LSTM`, :func:`nnlstm.GRU` or :func:`nnlstm.SimpleRNN`.
        input_size (int): D. units (int): H.
        name (str): the layer's ``name`` (a layer of a stack: ``'stacked/layer0'``; of a
            Bidirectional: ``'bidirectional/forward'``). Its parameters must exist
            (trained, or loaded with ``nn.load_parameters``).
        batch_size (int): B here; an exported ``.nnp``/``.onnx`` keeps it variable.
        **options: the layer's cell options, as it was built (``activation``,
            ``recurrent_activation``, ``use_bias``, ``reset_after``).

    Returns:
        ``(inputs, outputs)``, two dicts ``{name: Variable}`` for :func:`export_network`.

    Example:
        >>> inputs, outputs = nnlstm.step_network(nnlstm.LSTM, 1, 32, name='lstm')
        >>> outputs['y'] = PF.affine(outputs['y'], 1, name='fc')   # the model's head
        >>> nnlstm.export_network('step.nnp', inputs, outputs, onnx=True)
    """
    cells = _step_cells()
    if layer not in cells:
        raise TypeError("`layer` must be nnlstm.LSTM, nnlstm.GRU or nnlstm.SimpleRNN; "
                        "received %r" % (layer,))
    input_size = _checks.positive_int(input_size, 'input_size')
    units = _checks.positive_int(units, 'units')
    batch_size = _checks.positive_int(batch_size, 'batch_size')
    if not isinstance(name, str) or not name:
        raise TypeError("`name` must be a non-empty str; received %r" % (name,))
    cell, fields = cells[layer]
    before = set(nn.get_parameters(grad_only=False))
    if not any(k.startswith(name + '/') for k in before):
        raise ValueError("no parameters under `name` %r: build or load the trained layer "
                         "first (parameters: %s)" % (name, sorted(before) or 'none'))
    x = nn.Variable((batch_size, input_size))
    states = [nn.Variable((batch_size, units)) for _ in fields]
    with nn.no_grad():
        new = cell(x, *states, name=name, **options)
    new = new if isinstance(new, tuple) else (new,)
    created = sorted(set(nn.get_parameters(grad_only=False)) - before)
    if created:
        for key in created:
            nnabla.parameter.pop_parameter(key)
        raise ValueError("the %s step under `name` %r needs parameters the layer does not "
                         "have, %s: give the `layer` and the options it was built with "
                         "(e.g. `reset_after`, `use_bias`)" % (layer.__name__, name, created))
    inputs = dict(zip(('x',) + fields, [x] + states))
    outputs = {'y': new[-1]}
    outputs.update({f + '_next': v for f, v in zip(fields, new)})
    return inputs, outputs


def export_step(path, layer, input_size, units, name, batch_size=1, onnx=False, opset=13,
                nnb=False, **options):
    """Export the one-step network of a trained layer (:func:`step_network`) with
    :func:`export_network`: ``(x, c, h) -> (y, c_next, h_next)`` for an LSTM, ``(x, h) -> (y,
    h_next)`` for a GRU or SimpleRNN. ``batch_size`` is also the ``.nnb``'s fixed batch.

    Example:
        >>> y = nnlstm.LSTM(x, 32, return_sequences=True, name='enc')   # trained
        >>> nnlstm.export_step('enc_step.nnp', nnlstm.LSTM, 1, 32, name='enc', onnx=True)
        {'nnp': 'enc_step.nnp', 'onnx': 'enc_step.onnx'}
    """
    inputs, outputs = step_network(layer, input_size, units, name, batch_size, **options)
    return export_network(path, inputs, outputs, onnx=onnx, opset=opset, nnb=nnb)
