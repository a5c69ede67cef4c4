"""Per-step heads in exported files: an Affine with ``base_axis`` 2 over a (B, T, H)
sequence, (B, T, H) -> (B, T, K), exports at any batch size (and in ONNX at any length).

Shape legend: B batch size, T time steps, H units, K a head's outputs.

NNabla's saver, making the batch variable (``nnabla.core.variable_batch_size``), takes the
product of the axes before the last ``base_axis`` it finds as the batch (B * T for a
per-step head) and rewrites such functions to ``base_axis`` 1 over a (B * T, H) reshape:
the file then works only at the batch it was saved with, or not at all. While
:func:`keep_base_axis` is active, the saver sees such Affines with ``base_axis`` 1 (so the
batch is the first axis, as :func:`nnlstm.export.checks.check_graph` ensures) and they keep
theirs: the ``.nnp`` holds ``Affine(base_axis=2)`` over (-1, T, H). The ONNX file writes
them as MatMul and Add (:func:`nnlstm.export.native.head_nodes`), which broadcast over B
and T.
"""
import contextlib
import threading

from nnabla.core import variable_batch_size as _module

_lock = threading.Lock()
_original = _module.variable_batch_size


def _keeping(network):
    """NNabla's ``variable_batch_size`` with every Affine's ``base_axis`` read as 1."""
    wide = [(f, f.args['base_axis']) for f in network.forward_sequence()
            if f.type == 'Affine' and f.args.get('base_axis', 1) > 1]
    for f, _ in wide:
        f.args['base_axis'] = 1
    try:
        return _original(network)
    finally:
        for f, axis in wide:
            f.args['base_axis'] = axis


@contextlib.contextmanager
def keep_base_axis():
    """While active, NNabla's saver keeps the ``base_axis`` of per-step Affines."""
    with _lock:
        _module.variable_batch_size = _keeping
        try:
            yield
        finally:
            _module.variable_batch_size = _original
