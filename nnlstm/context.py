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
        device_id (str): the GPU to use.
        type_config (str): 'float' or 'half'.

    Raises:
        ImportError: ``cuda``/``cudnn`` without a working ``nnabla-ext-cuda120``.
    """
    _checks.choice(name, 'context', CONTEXTS)
    _checks.choice(type_config, 'type_config', ('float', 'half'))
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
