"""Training helpers that NNabla's solvers do not provide."""
import math
import numbers

import nnabla as nn
import nnabla.functions as F

from . import _checks


def _gradients(parameters):
    """The parameters as a list of Variables: a dict ``{name: Variable}`` (as
    ``nn.get_parameters()`` returns) or an iterable of Variables."""
    if isinstance(parameters, nn.Variable):
        raise TypeError("`parameters` must be a dict {name: Variable} or an iterable of "
                        "Variables; received one Variable (wrap it in a list)")
    if isinstance(parameters, dict):
        parameters = parameters.values()
    try:
        parameters = list(parameters)
    except TypeError:
        raise TypeError("`parameters` must be a dict {name: Variable} or an iterable of "
                        "Variables; received %s" % type(parameters).__name__) from None
    for k, p in enumerate(parameters):
        if not isinstance(p, nn.Variable):
            raise TypeError("`parameters[%d]` must be an nnabla.Variable; received %s"
                            % (k, type(p).__name__))
    return parameters


def clip_grad_by_global_norm(parameters, max_norm, eps=1e-6):
    r"""Scale the gradients of ``parameters`` together so that their global L2 norm is at
    most ``max_norm``, as ``torch.nn.utils.clip_grad_norm_`` and Chainer's
    ``GradientClipping`` do, and return the norm they had.

    .. math::
        n = \sqrt{\textstyle\sum_p \lVert g_p \rVert_2^2}, \qquad
        g_p \leftarrow g_p \cdot \frac{m}{n + \epsilon} \quad \text{if } \frac{m}{n + \epsilon} < 1

    NNabla's ``solver.clip_grad_by_norm(m)`` instead clips each parameter's gradient by its
    own norm, which changes the direction of the whole update; this keeps it. The sums run
    on the gradients' device (one scalar per parameter comes back to the host) and the
    scaling is done in place there. Call it between ``backward()`` and ``solver.update()``.

    A non-finite norm (an overflow, a NaN) leaves the gradients as they are and is
    returned as such, so the caller can skip that update (``math.isfinite(norm)``).

    Args:
        parameters: ``{name: Variable}`` (``nn.get_parameters()``, ``solver.get_parameters()``)
            or an iterable of Variables whose ``.grad`` holds the gradient.
        max_norm (float): the largest global norm allowed, > 0.
        eps (float): added to the norm before dividing, as PyTorch does (1e-6); finite, >= 0.

    Raises:
        TypeError: ``parameters`` not Variables, ``eps`` not a number.
        ValueError: ``max_norm`` not finite and > 0, ``eps`` negative or not finite.

    Returns:
        float: the global norm of the gradients before clipping.

    Example:
        >>> loss.forward(); solver.zero_grad(); loss.backward()
        >>> norm = nnlstm.clip_grad_by_global_norm(nn.get_parameters(), 5.0)
        >>> solver.update()
    """
    parameters = _gradients(parameters)
    if (isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real)
            or not max_norm > 0 or not math.isfinite(max_norm)):
        raise ValueError("`max_norm` must be a finite number > 0; received %r" % (max_norm,))
    eps = _checks.non_negative(eps, 'eps')
    squares = 0.0
    for p in parameters:
        squares += float(F.sum(F.pow_scalar(p.grad, 2.0)).data)
    norm = math.sqrt(squares)
    scale = max_norm / (norm + eps)
    if math.isfinite(norm) and scale < 1.0:
        for p in parameters:
            F.mul_scalar(p.grad, scale, outputs=[p.grad])
    return norm
