"""Monte Carlo dropout: the predictive mean and variance of a model with dropout left on
(Gal and Ghahramani, "Dropout as a Bayesian approximation", 2016; "A theoretically grounded
application of dropout in recurrent neural networks", 2016).

Shape legend: S samples, B batch size, T time steps, D input features, H units.
"""
import contextlib

import nnabla as nn
import nnabla.functions as F
import nnabla.parameter

from . import _checks

#: Process-wide, as NNabla's own ``nn.no_grad()`` flag is.
_sampling = False


def dropout_on():
    """What a layer's ``training=None`` resolves to: build dropout masks unless the graph is
    built under ``nn.no_grad()``, and always inside :func:`sampling`."""
    return _sampling or not nnabla.parameter.current_no_grad


@contextlib.contextmanager
def sampling():
    """Inside, nnlstm's layers given ``training=None`` build their dropout masks even under
    ``nn.no_grad()``: a prediction graph that samples. Layers given ``training=False`` still
    build none. :func:`mc_dropout` builds its graph in here; use it directly to sample in a
    loop of your own (e.g. one step at a time)."""
    global _sampling
    previous, _sampling = _sampling, True
    try:
        yield
    finally:
        _sampling = previous


def mc_dropout(build, inputs, samples=100):
    """Predictive mean and variance of ``build(inputs)`` over ``samples`` dropout masks per
    input row, as one batched graph (Monte Carlo dropout).

    ``inputs`` is repeated S times along the batch axis, sample-major (row ``s * B + b`` is
    sample ``s`` of input row ``b``), and ``build`` runs once on the S·B rows under
    ``nn.no_grad()`` with :func:`sampling` on, so every nnlstm layer inside it with dropout
    builds its masks: each of the S·B rows draws its own, variational ones (the same at every
    time step of the row). Zoneout masks are drawn per row and per step too; a layer's
    ``weight_dropout`` draws one mask of the weights for the whole graph, so every sample
    shares it and it adds no spread. Dropout that is not nnlstm's (``F.dropout``) is up to
    ``build``.

    The variance is the population variance over the S samples (``ddof=0``, NumPy's default),
    the moment estimate of Gal and Ghahramani's predictive variance without the observation
    noise term :math:`\\tau^{-1}`; ``samples=1`` gives variance 0. Without dropout in the model
    every sample is the plain output up to rounding: the mean is it and the variance 0,
    exactly where the S·B-row matrix products round every copy of a row alike (OpenBLAS
    rounds the rows of a last, partial block differently, by about an ulp).

    Every forward draws new masks: forward ``variance`` (its graph computes ``mean`` on the
    way, and ``mean`` keeps its values under ``clear_buffer``) or both with
    ``nn.forward_all([mean, variance])``; forwarding them one after the other draws twice.

    Args:
        build: the model, a function of one Variable (S·B, ...) returning one Variable
            (S·B, ...), whose parameters live in ``nn.parameter_scope`` as usual: call the
            layers with the names the model was trained with.
        inputs (~nnabla.Variable): (B, ...), e.g. (B, T, D) for a recurrent model.
        samples (int): S, the number of masks drawn per input row.

    Returns:
        ``(mean, variance)``: two Variables (B, ...) of the shape ``build`` returns for B
        rows.

    Raises:
        TypeError: ``build`` not callable or not returning one Variable, ``inputs`` not a
            Variable, ``samples`` not an int.
        ValueError: ``samples`` < 1, ``inputs`` without a batch axis, or an output of
            ``build`` whose first axis is not S·B.

    Example:
        >>> def build(x):                                              # (S*B, T, 1)
        ...     h = nnlstm.LSTM(x, 32, recurrent_dropout=0.1, name='lstm')
        ...     return PF.affine(h, 1, name='fc')                      # (S*B, 1)
        >>> mean, variance = nnlstm.mc_dropout(build, x, samples=100)  # (B, 1) each
        >>> variance.forward(clear_buffer=True)
    """
    if not callable(build):
        raise TypeError("`build` must be a function of one Variable (the model); received %s"
                        % type(build).__name__)
    _checks.variable(inputs, 'inputs')
    if inputs.ndim == 0:
        raise ValueError("`inputs` must have a batch axis, (B, ...); received a scalar")
    samples = _checks.positive_int(samples, 'samples')
    batch, rest = inputs.shape[0], tuple(inputs.shape[1:])
    with nn.no_grad(), sampling():
        repeated = F.broadcast(F.reshape(inputs, (1, batch) + rest), (samples, batch) + rest)
        y = build(F.reshape(repeated, (samples * batch,) + rest))
        if not isinstance(y, nn.Variable):
            raise TypeError("`build` must return one nnabla.Variable; it returned %s"
                            % type(y).__name__)
        if y.ndim == 0 or y.shape[0] != samples * batch:
            raise ValueError("`build` must keep the batch axis: given (S*B, ...) = (%d, ...) "
                             "it returned shape %s" % (samples * batch, tuple(y.shape)))
        shape = (batch,) + tuple(y.shape[1:])
        y = F.reshape(y, (samples,) + shape)
        # The mean shifted by the first sample, then the two-pass variance: identical samples
        # give exactly that sample and exactly 0 (a plain mean of S equal floats rounds).
        first = F.slice(y, (0,) * y.ndim, (1,) + shape)                     # (1, B, ...)
        mean = F.add2(F.reshape(first, shape),
                      F.mean(F.sub2(y, F.broadcast(first, y.shape)), axis=0))
        deviation = F.sub2(y, F.broadcast(F.reshape(mean, (1,) + shape), y.shape))
        variance = F.mean(F.mul2(deviation, deviation), axis=0)
    mean.persistent = True
    return mean, variance
