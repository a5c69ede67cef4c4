"""Write inference networks to ``.nnp`` files that NNabla's own loaders read."""
import os
import tempfile

import nnabla as nn
from nnabla.utils.get_file_handle import FileHandlerContext, get_default_file_savers, save_files
from nnabla.utils.save import create_proto

from . import _checks

#: Functions that only make sense while training; an inference file must not hold them.
TRAINING_ONLY = ('Dropout',)


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


def save_nnp(path, inputs, outputs, network_name='inference', executor_name='runtime'):
    """Save the network from ``inputs`` to ``outputs`` as an inference ``.nnp`` file.

    The file holds the network (batch size left variable: the first axis of every input
    is the batch), an executor named ``executor_name`` and the current parameters. It is
    written to a temporary name beside ``path`` and renamed, so an interrupted export never
    leaves a broken file behind.

    Args:
        path (str): the ``.nnp`` file to write.
        inputs (dict): ``{name: Variable}``, the network's inputs, batch-major.
        outputs (dict): ``{name: Variable}``, what it computes.

    Example:
        >>> x = nn.Variable((1, 20, 1))
        >>> y = PF.affine(nnlstm.LSTM(x, 32, name='lstm'), 1, name='fc')
        >>> nnlstm.save_nnp('sine.nnp', {'x': x}, {'y': y})
    """
    path = os.fspath(path)
    if not path.endswith('.nnp'):
        raise ValueError("`path` must end with '.nnp'; received %r" % path)
    _named(inputs, 'inputs')
    _named(outputs, 'outputs')
    banned = functions_of(outputs.values()) & set(TRAINING_ONLY)
    if banned:
        raise ValueError("the graph of `outputs` holds training-only functions %s; build the "
                         "inference graph without them (e.g. dropout=0 or training=False)"
                         % sorted(banned))
    batch = {v.shape[0] for v in inputs.values()}
    if len(batch) != 1:
        raise ValueError("`inputs` disagree on the batch size (first axis): %s"
                         % {k: tuple(v.shape) for k, v in inputs.items()})
    contents = {
        'networks': [{'name': network_name, 'batch_size': batch.pop(),
                      'outputs': dict(outputs), 'names': dict(inputs)}],
        'executors': [{'name': executor_name, 'network': network_name,
                       'data': list(inputs), 'output': list(outputs)}],
    }
    return atomic_write(path, lambda tmp: write_nnp(tmp, contents))


def save_parameters(path):
    """``nn.save_parameters(path)`` (.h5 or .protobuf), written to a temporary name and
    renamed, so an interrupted save never leaves a broken file."""
    path = os.fspath(path)
    return atomic_write(path, nn.save_parameters)


def atomic_write(path, write):
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same extension, since
    NNabla's writers choose the format by it), then rename it to ``path``."""
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(base)[1], prefix='.tmp-', dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
