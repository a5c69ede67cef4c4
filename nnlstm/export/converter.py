"""Drive NNabla's saver and converter: the ``.nnp``, ``.onnx`` and ``.nnb`` files.

Shape legend: B batch size, T time steps, D input features, H units.

:func:`export_network` checks the graph (:mod:`.checks`), writes the inference ``.nnp`` with
NNabla's saver and, through NNabla's converter (the ``onnx`` extra), the ``.onnx`` (its batch
dimension made symbolic by :mod:`.rewrite`) and the ``.nnb``, all staged to temporary
names by :mod:`.files` and renamed together.
"""
import contextlib
import io
import os
import shutil
import sys
import tempfile
import types
import zipfile

import nnabla.functions as F
from nnabla.utils.get_file_handle import FileHandlerContext, get_default_file_savers, save_files
from nnabla.utils.save import create_proto

from .. import _checks
from ..unroll import ensure_stack
from .checks import check_graph, check_onnx_graph, check_variable_batch
from .files import staged
from .linear import linear_converter
from .heads import keep_base_axis
from .native import cut, heads, make_time_symbolic, names_for, plan, region, splice
from .rewrite import exportable, make_batch_symbolic, make_names_unique
from .unfuse import unfused

#: ONNX opsets NNabla 1.39's converter writes and ONNX Runtime runs. The converter writes
#: opset 7 for any other number without a word, and its opset-6 Gemm has no ONNX Runtime
#: kernel. For a newer opset, convert an opset-13 file with ``onnx.version_converter``.
ONNX_OPSETS = (7, 9, 10, 11, 13)

#: How :func:`export_network` writes recurrent layers to ONNX: 'native' as one ONNX
#: LSTM / GRU / RNN node each (:mod:`.native`), 'unrolled' as NNabla's converter writes
#: their unrolled graph, T steps fixed.
ONNX_RNN = ('native', 'unrolled')

#: The batch size the ONNX converter is run at. It fixes every batch dimension to this
#: value; :func:`make_batch_symbolic` then turns each into the symbolic ``'batch'``, and
#: any that remains is an error. An unusual number, so that no other dimension is mistaken
#: for it.
ONNX_EXPORT_BATCH = 8191

CONVERTER_INSTALL = ("pip install 'nnlstm[onnx]' && pip install --no-deps "
                     "nnabla-converter==1.39.0 (./run does both with "
                     "NNLSTM_EXTRAS=test,examples,onnx)")


def network_proto(contents):
    """The ``NNablaProtoBuf`` that ``nnabla.utils.save.save(path, contents)`` writes for a
    ``.nnp`` with a variable batch size, without parameters, rewritten by
    :func:`exportable`."""
    return exportable(create_proto(contents, False, True))


def write_nnp(path, proto):
    """Write ``proto`` (:func:`network_proto`) and the current parameters to the ``.nnp``
    ``path``, as NNabla's ``save`` does."""
    ctx = FileHandlerContext()
    ctx.proto = proto
    ctx.parameters = None
    save_files(ctx, get_default_file_savers(parameter_format='.h5'), path, '.nnp')


def _named(variables, arg):
    if not isinstance(variables, dict) or not variables:
        raise TypeError("`%s` must be a non-empty dict {name: nnabla.Variable}; received %r"
                        % (arg, type(variables).__name__))
    for key, value in _checks.keys(variables, arg).items():
        _checks.name(key, '%s key' % arg)
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


def import_nnp(converter, nnp_path, proto):
    """What NNabla's converter reads from the ``.nnp`` at ``nnp_path`` (``NnpImporter``,
    the network expanded), given ``proto``, the ``NNablaProtoBuf`` whose text the file's
    ``network.nntxt`` holds. The importer takes the network in binary (a ``.protobuf``
    file, one of its input formats) and the file's parameters: the same message as from
    parsing the text, which NNabla does in Python (10 s for an LSTM at T = 2000)."""
    # Beside the file, named as its temporary is (.files.remove_stale removes it if killed).
    folder = tempfile.mkdtemp(prefix=os.path.basename(nnp_path) + '-',
                              dir=os.path.dirname(os.path.abspath(nnp_path)))
    try:
        files = [os.path.join(folder, 'network.protobuf')]
        with open(files[0], 'wb') as f:
            f.write(proto.SerializeToString())
        with zipfile.ZipFile(nnp_path) as z:
            for name in z.namelist():
                if os.path.splitext(name)[1].lower() in ('.protobuf', '.h5'):
                    files.append(z.extract(name, os.path.join(folder, 'parameters')))
        return _quietly(converter.NnpImporter(*files, expand_network=True,
                                              executor_index=None).execute)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_onnx(converter, nnp, onnx_path, opset, native=(), names=None, any_length=False):
    """Convert ``nnp`` (:func:`import_nnp`) to ONNX ``opset`` with NNabla's converter, put
    in the native nodes of the layers ``native`` (records, their Variables named by
    ``names``; :mod:`.native`), make its batch dimension symbolic, and its time axis if
    ``any_length``, check and write it. Returns whether the time axis is symbolic."""
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
    make_names_unique(model)
    timeless = splice(model, native, names, opset) if native else set()
    make_batch_symbolic(model, ONNX_EXPORT_BATCH, opset)
    any_length = any_length and make_time_symbolic(model, native, names, timeless)
    try:
        # With shape inference, which finds type errors, from opset 9 on: for opset 7 the
        # converter writes int64 Constants (Reshape targets) that ONNX Runtime runs but
        # that opset's Constant does not define.
        converter.onnx.checker.check_model(model, full_check=opset >= 9)
    except Exception as e:
        raise ValueError("the ONNX model NNabla's converter wrote for this graph is invalid: "
                         "%s" % e) from e
    converter.onnx.save(model, onnx_path)
    return any_length


def write_nnb(converter, nnp, nnb_path, batch_size):
    """Convert ``nnp`` (:func:`import_nnp`) to an ``.nnb`` of fixed ``batch_size``."""
    try:
        _quietly(converter.NnbExporter(nnp, batch_size, api_level=-1).execute,
                 nnb_path, None, None, ['FLOAT32'])
    except Exception as e:
        raise ValueError("NNabla's .nnb converter failed on this graph: %s: %s"
                         % (type(e).__name__, e)) from e


def export_network(path, inputs, outputs, onnx=False, opset=13, nnb=False, nnb_batch_size=None,
                   network_name='inference', executor_name='runtime', onnx_rnn='native',
                   strict=False):
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
      With ``onnx_rnn='native'`` (the default) each nnlstm layer is one ONNX ``LSTM``,
      ``GRU`` or ``RNN`` node and per-step Affine heads are MatMul + Add
      (:mod:`.native`); when all layers are, and nothing else reads T, axis 1 of the
      inputs and outputs carrying time is the symbolic ``'time'``. A layer ONNX cannot
      express is written unrolled with an :class:`.native.UnrolledLayerWarning` (a
      ValueError with ``strict``). ``onnx_rnn='unrolled'`` writes every layer unrolled.
    * ``.nnb`` (``nnb=True``): for NNabla's C runtime, with a fixed batch size,
      ``nnb_batch_size`` (default: the first axis of the inputs here).

    The graph is checked first: it must hold no training-only function (Dropout), read
    nothing but ``inputs`` and parameters, and keep the batch on the first axis of all it
    computes (so ``time_major`` layers, functions but Affine with ``base_axis=2`` and
    batch-axis slices are refused; a per-step Affine keeps its ``base_axis``:
    :mod:`.heads`); for ONNX, every function left to the converter must be one it writes
    and ONNX Runtime accepts. Each failure is a ValueError that says
    what and why. The files are written all or nothing (:mod:`nnlstm.export.files`): to
    temporaries beside them, renamed once all are complete, the previous files put back if
    a rename fails; temporaries are removed on any error and on SIGTERM; a new file's mode
    follows the umask, a replaced one keeps its mode; an OSError names the user's path.
    The ``.onnx`` and ``.nnb`` files need the ``onnx`` extra (see the README).

    Args:
        path (str): the ``.nnp`` file to write.
        inputs (dict): ``{name: Variable}``, the network's inputs, each batch-major
            (B, ...): ``x`` (B, T, D) for a layer; states (B, H) for a step network.
        outputs (dict): ``{name: Variable}``, what it computes.
        onnx (bool): also write ``path`` with ``.onnx``.
        opset (int): the ONNX opset, one of :data:`ONNX_OPSETS`.
        nnb (bool): also write ``path`` with ``.nnb``.
        nnb_batch_size (int): the ``.nnb``'s fixed batch size (checked, and unused without
            ``nnb``, so one set of options serves both).
        network_name, executor_name (str): non-empty names of the network and executor.
        onnx_rnn (str): 'native' or 'unrolled' (:data:`ONNX_RNN`), how layers go to ONNX.
        strict (bool): refuse, rather than write unrolled with a warning, a layer ONNX's
            recurrent operators cannot express.

    Raises:
        TypeError: a ``path`` that is not a path, ``inputs``/``outputs`` not dicts of
            Variables under non-empty str names, names or flags of the wrong type.
        ValueError: a graph the files cannot hold (see above), a name both an input and an
            output, a ``path`` without ``.nnp``, a bad ``opset`` or ``nnb_batch_size``.
        OSError: the file system's error, naming the user's path.

    Returns:
        dict: ``{'nnp': path, 'onnx': ..., 'nnb': ...}``, the files written.

    Raises:
        ValueError: a graph the files cannot hold (above), a bad ``path``, ``opset`` or
            ``onnx_rnn``, or with ``strict`` a layer ONNX cannot express.
        TypeError: ``inputs`` / ``outputs`` not ``{name: Variable}``, ``strict`` not a bool.
        ImportError: ``onnx`` or ``nnb`` without the onnx extra.

    Example:
        >>> with nn.no_grad():
        ...     x = nn.Variable((1, 20, 1))
        ...     y = PF.affine(nnlstm.LSTM(x, 32, name='lstm'), 1, name='fc')
        >>> nnlstm.export_network('sine.nnp', {'x': x}, {'y': y}, onnx=True)
        {'nnp': 'sine.nnp', 'onnx': 'sine.onnx'}
    """
    path = _checks.path(path, 'path', ('.nnp',))
    _named(inputs, 'inputs')
    _named(outputs, 'outputs')
    shared = sorted(set(inputs) & set(outputs))
    if shared:
        raise ValueError("`inputs` and `outputs` share the name(s) %s: NNabla's saver would "
                         "rename the input; give each input and output its own name"
                         % ', '.join(map(repr, shared)))
    _checks.name(network_name, 'network_name')
    _checks.name(executor_name, 'executor_name')
    _checks.flag(onnx, 'onnx')
    _checks.flag(nnb, 'nnb')
    if onnx:
        opset = _opset(opset)
        _checks.choice(onnx_rnn, 'onnx_rnn', ONNX_RNN)
        _checks.flag(strict, 'strict')
    with unfused(list(outputs.values())):  # fused layers: their unrolled graph
        batch, graph = check_graph(inputs, outputs)
        nnb_batch_size = (batch if nnb_batch_size is None
                          else _checks.positive_int(nnb_batch_size, 'nnb_batch_size'))
        converter = None
        if onnx or nnb:
            converter = _converter()
        native, any_length = [], False
        if onnx:
            if onnx_rnn == 'native':
                layers, found = plan(graph, opset, strict)
                native = layers + heads(graph)
                any_length = bool(found) and len(layers) == len(found)
            check_onnx_graph(graph, set().union(*[region(r) for r in native]))
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
        with linear_converter(), keep_base_axis():
            proto = network_proto(contents)
            check_variable_batch(proto, network_name, inputs)
            with staged(list(files.values())) as tmps:
                write_nnp(tmps[path], proto)
                with deep_recursion(len(graph.functions)):
                    if onnx:
                        names = names_for(native, inputs)
                        onnx_proto = proto
                        if native:
                            network = dict(contents['networks'][0],
                                           names={k: v for v, k in names.items()})
                            onnx_proto = cut(network_proto(dict(contents, networks=[network])),
                                             network_name, native, names)
                        write_onnx(converter, import_nnp(converter, tmps[path], onnx_proto),
                                   tmps[files['onnx']], opset, native, names,
                                   any_length)
                    if nnb:
                        write_nnb(converter, import_nnp(converter, tmps[path], proto),
                                  tmps[files['nnb']], nnb_batch_size)
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
