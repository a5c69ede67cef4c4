"""Move one recurrent layer's weights between nnlstm and PyTorch, Keras or NNabla's fused
``PF.lstm``.

Shape legend: B batch size, T time steps, D input features, H units; G the cell's gate
blocks (4 for LSTM, 3 for GRU, 1 for SimpleRNN / ``nn.RNN``).

nnlstm keeps a layer's parameters in NNabla's parameter store under the layer's scope
``name`` (see :mod:`nnlstm.cells` for the equations). Their names and shapes, from the
cell kinds' records (:mod:`nnlstm.kinds`), under ``{name}/``:

%(table)s

Each format has a pair of array converters, ``from_<format>`` (the format's arrays to a
dict of nnlstm arrays keyed by the names above) and ``to_<format>`` (back), and a pair of
functions on the parameter store: ``load_<format>`` writes a layer's parameters,
``save_<format>`` reads them. A :func:`nnlstm.Bidirectional` layer keeps its two layers in
``{name}/forward`` and ``{name}/backward``, a :func:`nnlstm.Stacked` one in
``{name}/layer0``, ``{name}/layer1``, ...: convert each of them as one layer. One module per
format: :mod:`nnlstm.interop.torch_io`, :mod:`nnlstm.interop.keras_io`,
:mod:`nnlstm.interop.nnabla_io`, over :mod:`nnlstm.interop.store`.

Files: ``load_torch`` / ``from_torch`` also read a ``.safetensors`` file (``prefix``
picks the module, ``'lstm.'``) and ``save_torch(..., path=...)`` writes one;
``load_keras`` reads a Keras layer object, ``**layer.get_config()`` beside its weights, or a
Keras 3 ``.weights.h5`` file (``layer`` picks it: ``'lstm'``, ``'gru_1'``, or its name).
``load_torch_linear`` and ``load_keras_dense`` load an ``nn.Linear`` / ``Dense`` head into
``PF.affine``.

What does not map one to one:

* PyTorch's LSTM and RNN add two biases, ``b_ih + b_hh``; nnlstm has one. Loading sums
  them; saving returns ``b_ih`` = nnlstm's bias and ``b_hh`` = zeros, the same function.
* PyTorch's GRU is nnlstm's ``reset_after=True`` GRU exactly (``b_ih`` is the input bias,
  ``b_hh`` the recurrent one); a ``reset_after=False`` GRU has no PyTorch equivalent.
* Keras' LSTM has no recurrent bias; Keras' GRU with ``reset_after=True`` keeps its two
  biases as one (2, 3H) array, input bias first.
* ``PF.lstm`` is converted for ``cell='lstm'`` only.

Example:
    >>> sd = {k: v.numpy() for k, v in torch_lstm.state_dict().items()}  # nn.LSTM(D, H)
    >>> nnlstm.interop.load_torch(sd, 'enc')
    >>> y = nnlstm.LSTM(x, H, name='enc', return_sequences=True)        # (B, T, H)
    >>> nnlstm.interop.load_keras(keras_gru.get_weights(), 'dec', cell='gru')
    >>> y = nnlstm.GRU(x, H, name='dec')                                  # (B, H)
    >>> sd = nnlstm.interop.save_torch('enc')   # torch_lstm.load_state_dict(
    ...                                         #     {k: torch.from_numpy(v) ...})
"""
from nnlstm.interop.keras_io import (from_keras, load_keras, load_keras_dense, save_keras,
                                     to_keras)
from nnlstm.interop.nnabla_io import from_nnabla, load_nnabla, save_nnabla, to_nnabla
from nnlstm.interop.store import PARAMETERS, condition, gate_count, shapes
from nnlstm.interop.torch_io import (from_torch, load_torch, load_torch_linear, save_torch,
                                     to_torch, torch_keys)
from nnlstm.kinds import KINDS


def _table():
    """The parameter names and shapes of every cell kind, as the docstring lists them."""
    lines = []
    for cell, k in KINDS.items():
        lines.append("``cell='%s'`` (:func:`nnlstm.%s`):" % (cell, k.layer_name))
        for p in k.params:
            when = condition(cell, p)
            lines.append('    ``%s`` %s%s'
                         % (p.name, p.legend, ', with ' + when if when else ''))
    return '\n'.join(lines)


if __doc__:  # None under python -OO
    __doc__ = __doc__ % {'table': _table()}

__all__ = ['from_keras', 'from_nnabla', 'from_torch', 'load_keras', 'load_keras_dense',
           'load_nnabla', 'load_torch', 'load_torch_linear', 'save_keras', 'save_nnabla',
           'save_torch', 'to_keras', 'to_nnabla', 'to_torch']
