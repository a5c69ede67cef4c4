"""Streaming: the one-step network of a trained recurrent layer, and its export."""
import nnabla as nn
import nnabla.parameter

from .. import _checks
from ..kinds import kind_of
from .converter import export_network


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
            ``recurrent_activation``, ``use_bias``, ``reset_after``, the variants
            ``proj_size``, ``use_peepholes``, ``layer_norm``, ``norm_epsilon``;
            ``zoneout``: the step blends by its expectation, as the layer's inference
            graph; ``weight_dropout`` changes nothing there). A stream resets by feeding
            zero (or its initial) states.

    Returns:
        ``(inputs, outputs)``, two dicts ``{name: Variable}`` for :func:`export_network`.

    Example:
        >>> inputs, outputs = nnlstm.step_network(nnlstm.LSTM, 1, 32, name='lstm')
        >>> outputs['y'] = PF.affine(outputs['y'], 1, name='fc')   # the model's head
        >>> nnlstm.export_network('step.nnp', inputs, outputs, onnx=True)
    """
    kind = kind_of(layer)
    kind.check_options('step_network', options)
    input_size = _checks.positive_int(input_size, 'input_size')
    units = _checks.positive_int(units, 'units')
    batch_size = _checks.positive_int(batch_size, 'batch_size')
    name = _checks.name(name)
    cell, fields = kind.cell, kind.state._fields
    before = set(nn.get_parameters(grad_only=False))
    if not any(k.startswith(name + '/') for k in before):
        raise ValueError("no parameters under `name` %r: build or load the trained layer "
                         "first (parameters: %s)" % (name, sorted(before) or 'none'))
    # The layer's parameters the step would not read (a bias, with use_bias=False given
    # for a layer trained with one): the file would silently compute another function.
    unused = sorted(name + '/' + p.name for p in kind.params
                    if name + '/' + p.name in before
                    and p.name not in kind.parameters(input_size, units, **options))
    if unused:
        raise ValueError("the %s step under `name` %r would ignore the layer's parameters %s: "
                         "give the options the layer was built with (e.g. `use_bias`, "
                         "`reset_after`)" % (layer.__name__, name, unused))
    x = nn.Variable((batch_size, input_size))
    states = [nn.Variable((batch_size, w)) for w in kind.state_sizes(units, **options)]
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
