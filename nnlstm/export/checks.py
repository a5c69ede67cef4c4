"""Checks that a graph is an inference network the exported files can hold.

:func:`check_graph` (every format: no training-only function, nothing read but the inputs
and parameters, the batch on the first axis of all the inputs feed), :func:`check_onnx_graph`
(what NNabla's ONNX converter would write as an invalid model) and
:func:`check_variable_batch` (that NNabla's saver left the batch variable). Each raises a
ValueError that says what is wrong and why.
"""
import nnabla as nn


#: Functions that only make sense while training; an inference file must not hold them.
TRAINING_ONLY = ('Dropout',)

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


def functions_of(outputs):
    """Names of the NNabla functions in the graph that computes ``outputs``."""
    names = set()
    for y in outputs:
        y.visit(lambda f: names.add(f.info.type_name))
    return names


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
    leaves, named = set(graph.leaves), set(inputs.values())
    for key, v in inputs.items():
        if v.parent is not None:
            raise ValueError("`inputs[%r]` is computed by a %s function; an input must be a "
                             "Variable the graph reads, not one it computes"
                             % (key, v.parent.info.type_name))
        if v not in leaves:
            raise ValueError("`inputs[%r]` %s is not read by the graph of `outputs`"
                             % (key, tuple(v.shape)))
    params = set(nn.get_parameters(grad_only=False).values())
    stray = [v for v in graph.leaves if v not in params and v not in named]
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
        if args.get('base_axis', 1) != 1 and kind != 'Affine':
            raise ValueError("%s has base_axis=%d: NNabla's saver rewrites it to 1, which "
                             "breaks a variable batch size. Only an Affine keeps its "
                             "base_axis (nnlstm.export.heads)"
                             % (describe(f), args['base_axis']))
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


def check_onnx_graph(graph, skip=()):
    """Refuse what NNabla's ONNX converter would write as an invalid model; the functions
    whose first output is in ``skip`` are not given to it (native recurrent nodes replace
    them)."""
    boolean = {}  # Variable -> the comparison it comes from
    for f in graph.functions:
        if f.outputs[0] in skip:
            continue
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


def check_variable_batch(proto, network_name, inputs):
    """Check that in the ``NNablaProtoBuf`` ``proto`` NNabla's saver made, the network
    ``network_name`` left the batch (first) axis of every input variable; the saver does
    so only where it finds the batch as the first axis of the input of a function with
    ``base_axis`` (an Affine)."""
    net = next(n for n in proto.network if n.name == network_name)
    shapes = {v.name: list(v.shape.dim) for v in net.variable}
    fixed = {k: shapes[k] for k in inputs if not shapes[k] or shapes[k][0] != -1}
    if fixed:
        raise ValueError("NNabla's saver kept a fixed batch size for the inputs %s: it makes "
                         "the batch variable only in a graph where an Affine (a function "
                         "with base_axis) reads a batch-major Variable computed from the "
                         "inputs" % fixed)
