"""Fused CPU kernels: a whole recurrent layer (one direction) as one NNabla function.

Shape legend: B batch size, T time steps, D input features, H units, G gate columns (4H for
LSTM, 3H for GRU, H for SimpleRNN).

NNabla costs about 6 us per function call, so the unrolled graph of :mod:`nnlstm.unroll`
(about 13 functions per step) is bound by calls, not arithmetic. :class:`FusedLayer` runs
the same equations (:mod:`nnlstm.cells`) on the same parameters as one
``nnabla.function.PythonFunction``: the input products ``x W_x + b`` of all steps as one
matrix product, the per-step loop (forward, and backward through time) compiled by numba
(``@njit(cache=True)``: compiled once, then loaded from the disk cache) or, where numba
cannot be imported, the same code run by Python on NumPy. The per-step products run on one
BLAS thread (threadpoolctl): on small matrices a thread pool costs more than it gives.

The kernels read every option a layer can express except a Python callable activation:
``initial_state``, ``go_backwards``, ``time_major``, ``lengths`` (the packed blend inside
the loop), the dropout masks (inputs of the function, drawn once per sequence by the
layer), the named activations, ``use_bias``. Gradients honour NNabla's ``propagate_down``
and ``accum`` flags. What a function needs to be rebuilt as the unrolled graph (for export:
:func:`nnlstm.export.unfuse`) is in its ``args``.
"""
import numpy as np
import nnabla as nn
from nnabla.function import PythonFunction

from . import gates
from .kinds import KINDS

try:
    import numba
except ImportError:  # the kernels then run as Python on NumPy
    numba = None

try:
    from threadpoolctl import ThreadpoolController
except ImportError:
    ThreadpoolController = None

#: The activation names the kernels compute, by their code in the compiled loops.
ACTIVATION_CODES = {'tanh': 0, 'sigmoid': 1, 'relu': 2, 'linear': 3, None: 3}


def compiled(fn):
    """``fn`` compiled by numba (cached on disk), or ``fn`` itself without numba."""
    return numba.njit(cache=True)(fn) if numba is not None else fn


# ------------------------------------------------------------------- the loops
# Written as array expressions that numba compiles and NumPy runs alike. Every array is
# time major and in processing order (the glue reverses the steps for go_backwards);
# ``one`` and ``half`` are scalars of the arrays' dtype (numba would promote float32 by a
# float64 literal). An empty ``h_mask`` means no recurrent dropout, an empty ``valid``
# (T, B, 1) no lengths. ``keep`` False (inference) stores no per-step cache.

@compiled
def activate(code, v, one, half):
    if code == 0:
        return np.tanh(v)
    if code == 1:
        return half * np.tanh(half * v) + half  # sigmoid: one tanh call
    if code == 2:
        return v * (v > 0)
    return v * one


@compiled
def slope(code, y, one):
    """The activation's derivative, from its output ``y``."""
    if code == 0:
        return one - y * y
    if code == 1:
        return y * (one - y)
    if code == 2:
        return (y > 0) * one
    return y * 0 + one


@compiled
def blend(m, new, old, one):
    """Keep ``old`` where the step is padding (``m`` 0), take ``new`` where valid (1)."""
    return m * new + (one - m) * old


@compiled
def lstm_forward(xw, wh, c, h, h_mask, valid, act, ract, ia, ii, if_, io, one, half, keep):
    """LSTM over ``xw`` (T, B, 4H) = x W_x + b; ``wh`` (H, 4H); ``c``, ``h`` (B, H).
    Returns y (T, B, H), c_T, h_T and the cache: activated gates (T, B, 4H), c_{t-1},
    act(c_t), the masked h_{t-1} (T, B, H each)."""
    steps, batch, cols = xw.shape
    units = cols // 4
    n = steps if keep else 0
    y = np.empty((steps, batch, units), xw.dtype)
    acts = np.empty((n, batch, cols), xw.dtype)
    cprev = np.empty((n, batch, units), xw.dtype)
    tcs = np.empty((n, batch, units), xw.dtype)
    hms = np.empty((n, batch, units), xw.dtype)
    for s in range(steps):
        hm = h * h_mask if h_mask.shape[0] else h * one
        z = xw[s] + np.dot(hm, wh)
        a = activate(act, z[:, ia * units:(ia + 1) * units], one, half)
        i = activate(ract, z[:, ii * units:(ii + 1) * units], one, half)
        f = activate(ract, z[:, if_ * units:(if_ + 1) * units], one, half)
        o = activate(ract, z[:, io * units:(io + 1) * units], one, half)
        cn = f * c + i * a
        tc = activate(act, cn, one, half)
        hn = o * tc
        if keep:
            acts[s, :, ia * units:(ia + 1) * units] = a
            acts[s, :, ii * units:(ii + 1) * units] = i
            acts[s, :, if_ * units:(if_ + 1) * units] = f
            acts[s, :, io * units:(io + 1) * units] = o
            cprev[s] = c
            tcs[s] = tc
            hms[s] = hm
        if valid.shape[0]:
            y[s] = valid[s] * hn
            c = blend(valid[s], cn, c, one)
            h = blend(valid[s], hn, h, one)
        else:
            y[s] = hn
            c = cn
            h = hn
    return y, c, h, acts, cprev, tcs, hms


@compiled
def lstm_backward(dy, dc, dh, wh, acts, cprev, tcs, h_mask, valid, act, ract, ia, ii, if_,
                  io, one):
    """Backward through time of :func:`lstm_forward`: ``dy`` (T, B, H), ``dc``, ``dh`` the
    gradients of c_T, h_T. Returns dZ (T, B, 4H) (of the pre-activations) and the gradients
    of c_0, h_0."""
    steps, batch, units = dy.shape
    dz = np.empty((steps, batch, 4 * units), dy.dtype)
    wht = np.ascontiguousarray(wh.T)
    for s in range(steps - 1, -1, -1):
        if valid.shape[0]:
            m = valid[s]
            dhn = m * (dy[s] + dh)
            dcn = m * dc
            dh = (one - m) * dh
            dc = (one - m) * dc
        else:
            dhn = dy[s] + dh
            dcn = dc
            dh = dh * 0
            dc = dc * 0
        a = acts[s, :, ia * units:(ia + 1) * units]
        i = acts[s, :, ii * units:(ii + 1) * units]
        f = acts[s, :, if_ * units:(if_ + 1) * units]
        o = acts[s, :, io * units:(io + 1) * units]
        dcn = dcn + dhn * o * slope(act, tcs[s], one)
        dz[s, :, ia * units:(ia + 1) * units] = dcn * i * slope(act, a, one)
        dz[s, :, ii * units:(ii + 1) * units] = dcn * a * slope(ract, i, one)
        dz[s, :, if_ * units:(if_ + 1) * units] = dcn * cprev[s] * slope(ract, f, one)
        dz[s, :, io * units:(io + 1) * units] = dhn * tcs[s] * slope(ract, o, one)
        dc = dc + dcn * f
        dhm = np.dot(dz[s], wht)
        dh = dh + (dhm * h_mask if h_mask.shape[0] else dhm)
    return dz, dc, dh


@compiled
def gru_forward(xw, u, bu, un, h, h_mask, valid, act, ract, iz, ir, in_, one, half, keep):
    """GRU over ``xw`` (T, B, 3H) = x W_x + b_x. ``reset_after`` (``un`` empty): ``u``
    (H, 3H) and ``bu`` (3H,) the recurrent kernel and bias; else ``u`` (H, 2H) the z, r
    blocks and ``un`` (H, H) the candidate's. Returns y (T, B, H), h_T and the cache: z, r,
    n, the candidate's recurrent term (U_n h + c_n, or r * h for reset_after=False),
    h_{t-1}, the masked h_{t-1} (T, B, H each)."""
    steps, batch, cols = xw.shape
    units = cols // 3
    after = un.shape[0] == 0
    n = steps if keep else 0
    y = np.empty((steps, batch, units), xw.dtype)
    cache = np.empty((6, n, batch, units), xw.dtype)
    for s in range(steps):
        hm = h * h_mask if h_mask.shape[0] else h * one
        rec = np.dot(hm, u) + bu if after else np.dot(hm, u)
        z = activate(ract, xw[s, :, iz * units:(iz + 1) * units]
                     + rec[:, iz * units:(iz + 1) * units], one, half)
        r = activate(ract, xw[s, :, ir * units:(ir + 1) * units]
                     + rec[:, ir * units:(ir + 1) * units], one, half)
        if after:
            term = rec[:, in_ * units:(in_ + 1) * units] * one
            cand = activate(act, xw[s, :, in_ * units:(in_ + 1) * units] + r * term, one,
                            half)
        else:
            term = r * hm
            cand = activate(act, xw[s, :, in_ * units:(in_ + 1) * units] + np.dot(term, un),
                            one, half)
        hn = cand + z * (h - cand)
        if keep:
            cache[0, s] = z
            cache[1, s] = r
            cache[2, s] = cand
            cache[3, s] = term
            cache[4, s] = h
            cache[5, s] = hm
        if valid.shape[0]:
            y[s] = valid[s] * hn
            h = blend(valid[s], hn, h, one)
        else:
            y[s] = hn
            h = hn
    return y, h, cache


@compiled
def gru_backward(dy, dh, u, un, cache, h_mask, valid, act, ract, iz, ir, in_, one):
    """Backward through time of :func:`gru_forward`. Returns dXW (T, B, 3H) (of x W_x + b_x),
    dR (T, B, 3H or 2H) (of the recurrent product's output) and the gradient of h_0."""
    steps, batch, units = dy.shape
    after = un.shape[0] == 0
    dxw = np.empty((steps, batch, 3 * units), dy.dtype)
    drec = np.empty((steps, batch, u.shape[1]), dy.dtype)
    ut = np.ascontiguousarray(u.T)
    unt = np.ascontiguousarray(un.T)
    for s in range(steps - 1, -1, -1):
        if valid.shape[0]:
            dhn = valid[s] * (dy[s] + dh)
            dh = (one - valid[s]) * dh
        else:
            dhn = dy[s] + dh
            dh = dh * 0
        z, r, cand, term, hp, hm = (cache[0, s], cache[1, s], cache[2, s], cache[3, s],
                                    cache[4, s], cache[5, s])
        dzp = dhn * (hp - cand) * slope(ract, z, one)
        dnp = dhn * (one - z) * slope(act, cand, one)
        dxw[s, :, iz * units:(iz + 1) * units] = dzp
        dxw[s, :, in_ * units:(in_ + 1) * units] = dnp
        drec[s, :, iz * units:(iz + 1) * units] = dzp
        if after:
            drp = dnp * term * slope(ract, r, one)
            drec[s, :, ir * units:(ir + 1) * units] = drp
            drec[s, :, in_ * units:(in_ + 1) * units] = dnp * r
            dhm = np.dot(drec[s], ut)
        else:
            dterm = np.dot(dnp, unt)
            drp = dterm * hm * slope(ract, r, one)
            drec[s, :, ir * units:(ir + 1) * units] = drp
            dhm = dterm * r + np.dot(drec[s], ut)
        dxw[s, :, ir * units:(ir + 1) * units] = drp
        dh = dh + dhn * z + (dhm * h_mask if h_mask.shape[0] else dhm)
    return dxw, drec, dh


@compiled
def rnn_forward(xw, wh, h, h_mask, valid, act, one, half, keep):
    """SimpleRNN over ``xw`` (T, B, H) = x W_x + b; ``wh`` (H, H). Returns y (T, B, H),
    h_T and the cache: h_t before the blend, the masked h_{t-1} (2, T, B, H)."""
    steps, batch, units = xw.shape
    n = steps if keep else 0
    y = np.empty((steps, batch, units), xw.dtype)
    cache = np.empty((2, n, batch, units), xw.dtype)
    for s in range(steps):
        hm = h * h_mask if h_mask.shape[0] else h * one
        hn = activate(act, xw[s] + np.dot(hm, wh), one, half)
        if keep:
            cache[0, s] = hn
            cache[1, s] = hm
        if valid.shape[0]:
            y[s] = valid[s] * hn
            h = blend(valid[s], hn, h, one)
        else:
            y[s] = hn
            h = hn
    return y, h, cache


@compiled
def rnn_backward(dy, dh, wh, cache, h_mask, valid, act, one):
    """Backward through time of :func:`rnn_forward`. Returns dXW (T, B, H) and the gradient
    of h_0."""
    steps, batch, units = dy.shape
    dxw = np.empty((steps, batch, units), dy.dtype)
    wht = np.ascontiguousarray(wh.T)
    for s in range(steps - 1, -1, -1):
        if valid.shape[0]:
            dhn = valid[s] * (dy[s] + dh)
            dh = (one - valid[s]) * dh
        else:
            dhn = dy[s] + dh
            dh = dh * 0
        dxw[s] = dhn * slope(act, cache[0, s], one)
        dhm = np.dot(dxw[s], wht)
        dh = dh + (dhm * h_mask if h_mask.shape[0] else dhm)
    return dxw, dh


# ------------------------------------------------------------------- NumPy around the loops

_controller = []


def one_blas_thread():
    """A context in which every BLAS pool loaded (numpy's, and scipy's that numba's
    ``np.dot`` calls) runs one thread; nothing without threadpoolctl."""
    if ThreadpoolController is None:
        return _Nothing()
    if not _controller:
        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=1, user_api='blas')


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Spec(dict):
    """What a fused layer computes, as plain values (it is the function's ``args``, and
    :func:`nnlstm.export.unfuse` rebuilds the unrolled layer from it): ``kind`` ('lstm',
    'gru', 'rnn'), ``units`` H, ``activation``, ``recurrent_activation`` (None for
    SimpleRNN), ``reset_after`` (GRU), ``reverse`` (go_backwards), ``time_major``, and which
    optional inputs follow the parameters: ``state``, ``x_mask``, ``h_mask``, ``lengths``."""

    def __getattr__(self, key):
        return self[key]


def processing_order(reverse, lengths, steps, batch):
    """``(perm, valid)``: ``perm`` (T, B), the input step each sequence reads at each
    processed step (None: in order), and ``valid`` (T, B, 1), 1 where that step is inside
    the sequence (None without lengths). Backwards with lengths, each sequence reads its own
    valid steps from its last, then its padding (which leaves the state unchanged), so the
    outputs come in processing order (Keras'), with the padding's zeros after them."""
    s = np.arange(steps)[:, None]
    if lengths is None:
        return (np.broadcast_to(steps - 1 - s, (steps, batch)) if reverse else None), None
    n = np.clip(np.floor(lengths), 0, steps).astype(np.int64)[None, :]
    valid = s < n
    perm = np.where(valid, n - 1 - s, s) if reverse else None
    return perm, valid[:, :, None]


def input_product(x, wx, b):
    """``x`` (T, B, D) times ``wx`` (D, G), plus ``b``: (T, B, G), C-contiguous."""
    steps, batch, dim = x.shape
    xw = np.dot(x.reshape(steps * batch, dim), wx).reshape(steps, batch, wx.shape[1])
    if b is not None:
        xw += b
    return xw


def forward(spec, x, params, state=None, x_mask=None, h_mask=None, lengths=None, keep=True):
    """Run the layer ``spec`` (:class:`Spec`) on NumPy arrays of one dtype.

    Args:
        x: (B, T, D), or (T, B, D) with ``spec.time_major``.
        params: the layer's parameter arrays in the order of ``kind.params``, None for those
            its options leave out.
        state: the initial state arrays, (B, H) each, in the state's field order, or None.
        x_mask (B, D), h_mask (B, H): dropout masks, or None. lengths: (B,) or None.
        keep: keep what :func:`backward` needs.

    Returns:
        ``(y, final_state, cache)``: ``y`` (B, T, H) (or (T, B, H)) in processing order,
        the final state as a tuple of (B, H) arrays, ``cache`` for :func:`backward`
        (None without ``keep``).
    """
    dtype = x.dtype
    one, half = dtype.type(1), dtype.type(0.5)
    params = [None if p is None else np.asarray(p, dtype) for p in params]
    xt = x if spec.time_major else x.transpose(1, 0, 2)
    steps, batch, dim = xt.shape
    units = spec.units
    perm, valid = processing_order(spec.reverse, lengths, steps, batch)
    xp = xt if perm is None else xt[perm, np.arange(batch)[None, :]]
    xm = xp if x_mask is None else xp * x_mask
    empty_h = np.empty((0, 0), dtype)
    hm = empty_h if h_mask is None else np.ascontiguousarray(h_mask, dtype)
    vm = np.empty((0, 0, 0), dtype) if valid is None else valid.astype(dtype)
    if state is None:
        state = [np.zeros((batch, units), dtype)] * len(KINDS[spec.kind].state._fields)
    state = [np.ascontiguousarray(s, dtype) for s in state]
    act = ACTIVATION_CODES[spec.activation]
    ract = ACTIVATION_CODES.get(spec.recurrent_activation, 0)
    order = gates.order(spec.kind, 'nnlstm')
    with one_blas_thread():
        if spec.kind == 'gru':
            wx, bx, u, bu, uzr, un = params
            xw = input_product(xm, wx, bx)
            if spec.reset_after:
                rec = (u, np.zeros(3 * units, dtype) if bu is None else bu, empty_h)
            else:
                rec = (uzr, np.zeros(0, dtype), un)
            rec = tuple(np.ascontiguousarray(r, dtype) for r in rec)
            y, h, kept = gru_forward(xw, *rec, state[0], hm, vm, act, ract, *map(
                order.index, 'zrn'), one, half, keep)
            final, kept = (h,), (kept,)
        else:
            w, b = params[:2]  # LSTM: peephole/projection parameters are not covered (None)
            wx, rec = w[:dim], (np.ascontiguousarray(w[dim:]),)
            xw = input_product(xm, wx, b)
            if spec.kind == 'lstm':
                y, c, h, *kept = lstm_forward(xw, rec[0], *state, hm, vm, act, ract,
                                              *map(order.index, 'aifo'), one, half, keep)
                final = (c, h)
            else:
                y, h, kept = rnn_forward(xw, rec[0], state[0], hm, vm, act, one, half, keep)
                final, kept = (h,), (kept,)
    y = y if spec.time_major else y.transpose(1, 0, 2)
    cache = None
    if keep:
        cache = dict(xm=xm, perm=perm, valid=vm, h_mask=hm, x_mask=x_mask, wx=wx, rec=rec,
                     kept=tuple(kept), dims=(steps, batch, dim), codes=(act, ract),
                     order=order, present=[p is not None for p in params])
    return y, final, cache


def backward(spec, cache, dy, dfinal, need_x=True):
    """Gradients of a :func:`forward` run from ``dy`` (the shape of ``y``) and ``dfinal``
    (the final state's gradients, in field order). Returns ``(dx or None, dparams,
    dstate)``: ``dparams`` in the order of ``kind.params`` (None where a parameter is left
    out), ``dstate`` the initial state's gradients."""
    steps, batch, dim = cache['dims']
    dtype = dy.dtype
    one = dtype.type(1)
    dyt = np.ascontiguousarray(dy if spec.time_major else dy.transpose(1, 0, 2))
    dfinal = [np.ascontiguousarray(d, dtype) for d in dfinal]
    act, ract = cache['codes']
    order, rec, kept, hm, vm = (cache[k] for k in ('order', 'rec', 'kept', 'h_mask', 'valid'))
    units = spec.units

    def flat(a):
        return a.reshape(steps * batch, a.shape[-1])

    with one_blas_thread():
        if spec.kind == 'lstm':
            dxw, dc, dh = lstm_backward(dyt, *dfinal, rec[0], *kept[:3], hm, vm, act, ract,
                                        *map(order.index, 'aifo'), one)
            dstate = (dc, dh)
        elif spec.kind == 'gru':
            dxw, drec, dh = gru_backward(dyt, dfinal[0], rec[0], rec[2], kept[0], hm, vm, act,
                                         ract, *map(order.index, 'zrn'), one)
            dstate = (dh,)
        else:
            dxw, dh = rnn_backward(dyt, dfinal[0], rec[0], kept[0], hm, vm, act, one)
            dstate = (dh,)
    hms = flat(kept[-1] if spec.kind == 'lstm' else kept[0][-1])  # the masked h_{t-1}
    dwx = np.dot(flat(cache['xm']).T, flat(dxw))
    db = dxw.sum(axis=(0, 1))
    if spec.kind == 'gru':
        if spec.reset_after:
            dparams = [dwx, db, np.dot(hms.T, flat(drec)), drec.sum(axis=(0, 1)), None, None]
        else:
            n = order.index('n')
            dn = flat(dxw)[:, n * units:(n + 1) * units]
            dparams = [dwx, db, None, None, np.dot(hms.T, flat(drec)),
                       np.dot(flat(kept[0][3]).T, dn)]
    else:
        dparams = [np.concatenate([dwx, np.dot(hms.T, flat(dxw))]), db]
    dparams = [d if p else None for d, p in zip(dparams, cache['present'])]
    dx = None
    if need_x:
        dxp = np.dot(flat(dxw), cache['wx'].T).reshape(steps, batch, dim)
        if cache['x_mask'] is not None:
            dxp *= cache['x_mask']
        if cache['perm'] is not None:
            dxt = np.empty_like(dxp)
            dxt[cache['perm'], np.arange(batch)[None, :]] = dxp
            dxp = dxt
        dx = dxp if spec.time_major else dxp.transpose(1, 0, 2)
    return dx, dparams, dstate
