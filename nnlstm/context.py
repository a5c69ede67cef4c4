"""Choose where the graph runs: NNabla's ``cpu`` context, or ``cuda``/``cudnn`` with the CUDA
extension, failing with a message that says what to install when it is missing."""
import importlib

from nnabla.ext_utils import get_extension_context

from . import _checks

CONTEXTS = ('cpu', 'cuda', 'cudnn')


def context(name='cpu', device_id='0', type_config='float'):
    """``nnabla.ext_utils.get_extension_context(name, ...)``, checked.

    Args:
        name (str): 'cpu', 'cuda' or 'cudnn'.
        device_id (str or int): the GPU to use, a number >= 0 ('0', 1).
        type_config (str): 'float' or 'half'.

    Raises:
        ValueError: an unknown ``name`` or ``type_config``, a ``device_id`` that is not a
            number >= 0.
        ImportError: ``cuda``/``cudnn`` without a working ``nnabla-ext-cuda120``.
    """
    _checks.choice(name, 'context', CONTEXTS)
    _checks.choice(type_config, 'type_config', ('float', 'half'))
    if isinstance(device_id, bool) or not (
            isinstance(device_id, int) and device_id >= 0
            or isinstance(device_id, str) and device_id.isdecimal()):
        raise ValueError("`device_id` must be a GPU number >= 0, as an int or a str of digits "
                         "('0'); received %s %r" % (type(device_id).__name__, device_id))
    if name != 'cpu':
        try:
            importlib.import_module('nnabla_ext.' + name)
        except Exception as e:
            raise ImportError(
                "context %r needs NNabla's CUDA extension, which did not load (%s: %s). "
                "Install it with `pip install 'nnlstm[cuda]'` (the nnabla-ext-cuda120 wheel; "
                "it needs an NVIDIA GPU with the CUDA 12 and cuDNN 8 system libraries), or "
                "use the 'cpu' context." % (name, type(e).__name__, e)) from e
    return get_extension_context(name, device_id=str(device_id), type_config=type_config)
