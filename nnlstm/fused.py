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
layer), the named activations, ``use_bias``, ``stateful``. Gradients honour NNabla's
``propagate_down`` and ``accum`` flags. An export writes each function as the unrolled
graph of the same layer (:mod:`nnlstm.export.unfuse`), which it rebuilds from the
function's core and inputs.

Numbers: float32 (NNabla's CPU has no float64; half contexts keep the unrolled graph).
float32 tanh (and sigmoid, as ½·tanh(½v) + ½) is Eigen's rational approximation, within
3.2e-7 of tanh; float64 arrays (the tests' finite differences) use ``np.tanh``. Compiled
code is cached on disk beside this file (numba's ``cache=True``).
"""
import contextlib
import ctypes
import platform
import sys
import weakref

import numpy as np
import nnabla as nn
from nnabla.function import PythonFunction

from . import gates, process, unroll
from .kinds import KINDS

try:
    import numba
except ImportError:  # the kernels then run as Python on NumPy
    numba = None

try:
    from threadpoolctl import ThreadpoolController
except ImportError:
    ThreadpoolController = None

#: The gates each kernel names, in the order it takes their indices in nnlstm's layout.
GATES = {'lstm': 'aifo', 'gru': 'zrn'}

#: The activation names the kernels compute, by their code in the compiled loops.
ACTIVATION_CODES = {'tanh': 0, 'sigmoid': 1, 'relu': 2, 'linear': 3, None: 3}


#: numba's floating-point flags for the loops: fast math without assuming finite values
#: (NaN and inf propagate as in NumPy); errors as NumPy's (no ZeroDivisionError checks,
#: which would keep the loops from vectorizing).
FASTMATH = {'nsz', 'arcp', 'contract', 'afn', 'reassoc'}


def compiled(fn):
    """``fn`` compiled by numba (cached on disk), or ``fn`` itself without numba."""
    if numba is None:
        return fn
    return numba.njit(cache=True, fastmath=FASTMATH, error_model='numpy')(fn)


def tanh(v):
    """tanh of an array, as ``np.tanh``. In the compiled loops a float32 array's is Eigen's
    rational approximation (``generic_fast_tanh_float``, which TensorFlow's and PyTorch's
    CPU kernels use; measured within 3.2e-7 of tanh), which compiles to vector
    instructions where libm's ``tanhf`` is called element by element (35x slower here);
    float64 keeps ``np.tanh``."""
    return np.tanh(v)


def rational_tanh(v):
    c = np.float32(7.90531110763549805)
    x = np.minimum(np.maximum(v, -c), c)  # NaN stays NaN
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


if numba is not None:
    @numba.extending.overload(tanh)
    def _compiled_tanh(v):
        if numba.float32 in (v, getattr(v, 'dtype', None)):  # an element or an array
            return rational_tanh
        return lambda v: np.tanh(v)


# ------------------------------------------------------------------- the loops
# One source serves numba and NumPy. Each step's arrays are feature major, (H, B) and
# (G, B), so a gate block is contiguous and the elementwise loops vectorize; every stack is
# time major, in processing order (the glue permutes the steps for go_backwards and
# lengths). The loop bodies index single elements: ``span(n)`` makes numba run them for
# every index, NumPy once with a slice over all (so without numba they are array
# expressions). ``one`` and ``half`` are scalars of the arrays' dtype. An empty ``h_mask``
# means no recurrent dropout, an empty ``valid`` (T, B) no lengths; ``keep`` False
# (inference) stores no cache.


def span(n):
    """The indices a loop body runs over: in the compiled loops each i < n in turn; in
    NumPy one slice over all of them."""
    return (slice(None),)


if numba is not None:
    @numba.extending.overload(span)
    def _compiled_span(n):
        return lambda n: range(n)


@compiled
def slope(code, y, one):
    """The activation's derivative, from its output ``y``."""
    if code == 0:
        return one - y * y
    if code == 1:
        return y * (one - y)
    if code == 2:
        return np.sign(y)  # y = relu(v) >= 0
    return y * 0 + one


@compiled
def masked(h, h_mask):
    return h * h_mask if h_mask.shape[0] else h  # the loops never write into a state


@compiled
def activated(code, v, half):
    """The activation ``code`` of the array ``v``, as a new array (:func:`activate_into`)."""
    return activate_into(code, v, np.empty_like(v), half)


@compiled
def activate_into(code, v, out, half):
    """``out`` (C-contiguous, the shape of ``v``; ``v`` itself for in place) = the
    activation ``code`` of ``v``: compiled, one loop per activation (one array in, one out,
    no branch inside, so it vectorizes); in NumPy one expression. Sigmoid is ½·tanh(½v) + ½
    (one tanh). Returns ``out``."""
    flat, dest = v.reshape(v.size), out.reshape(out.size)
    if code == 0:
        for k in span(flat.shape[0]):
            dest[k] = tanh(flat[k])
    elif code == 1:
        for k in span(flat.shape[0]):
            dest[k] = half * tanh(half * flat[k]) + half
    elif code == 2:
        for k in span(flat.shape[0]):
            dest[k] = np.maximum(flat[k], flat[k] * 0)
    else:
        dest[:] = flat
    return out


@compiled
def output(valid, s, new):
    """Step ``s``'s output: ``new`` (H, B), zero past a sequence's length (``valid``
    (T, B), empty without lengths)."""
    return valid[s] * new if valid.shape[0] else new


@compiled
def carried(valid, s, new, old, one):
    """The state step ``s`` leaves: ``new``, or ``old`` past a sequence's length."""
    return valid[s] * new + (one - valid[s]) * old if valid.shape[0] else new


@compiled
def lstm_forward(xw, wht, c, h, h_mask, valid, act, ract, order, one, half, keep):
    """LSTM over ``xw`` (T, 4H, B) = W_x x + b; ``wht`` (4H, H) the recurrent rows of W,
    transposed; ``c``, ``h`` (H, B) the initial state. ``order`` the gate rows of a, i,
    f, o. Returns y (T, H, B), c_T, h_T and the cache: the activated gates (T, 4, H, B),
    c_{t-1} and act(c_t) (T, H, B each), the masked h_{t-1} (H, T, B)."""
    steps, cols, batch = xw.shape
    units = cols // 4
    n = units * batch
    ia, ii, if_, io = order
    kept = steps if keep else 1  # without ``keep``, one step's scratch
    y = np.empty((steps, units, batch), xw.dtype)
    gates = np.empty((kept, 4, n), xw.dtype)
    tcs = np.empty((kept, n), xw.dtype)
    cprev = np.empty((steps if keep else 0, units, batch), xw.dtype)
    hms = np.empty((units, steps if keep else 0, batch), xw.dtype)
    for s in range(steps):
        hm = masked(h, h_mask)
        z, x = np.dot(wht, hm).reshape(4, n), xw[s].reshape(4, n)
        j = s if keep else 0
        g, tc = gates[j], tcs[j]
        for r in range(4):
            zr, xr = z[r], x[r]
            for k in span(n):
                zr[k] = zr[k] + xr[k]
            activate_into(act if r == ia else ract, zr, g[r], half)  # out of place: vectorized
        a, i, f, o, cf = g[ia], g[ii], g[if_], g[io], c.reshape(n)
        cn = np.empty(n, xw.dtype)
        for k in span(n):
            cn[k] = f[k] * cf[k] + i[k] * a[k]
        activate_into(act, cn, tc, half)
        hn = np.empty(n, xw.dtype)
        for k in span(n):
            hn[k] = o[k] * tc[k]
        if keep:
            cprev[s], hms[:, s] = c, hm
        cn, hn = cn.reshape(units, batch), hn.reshape(units, batch)
        y[s] = output(valid, s, hn)
        c, h = carried(valid, s, cn, c, one), carried(valid, s, hn, h, one)
    return (y, c, h, gates.reshape(kept, 4, units, batch), cprev,
            tcs.reshape(kept, units, batch), hms)


@compiled
def lstm_backward(dy, dc, dh, wht, gates, cprev, tcs, h_mask, valid, act, ract, order, one):
    """Backward through time of :func:`lstm_forward`: ``dy`` (T, H, B); ``dc``, ``dh``
    (H, B) the gradients of c_T, h_T. Returns dZ (4H, T, B), the gradient of the
    pre-activations, and the gradients of c_0, h_0."""
    steps, units, batch = dy.shape
    n = units * batch
    ia, ii, if_, io = order
    dz = np.empty((4, units, steps, batch), dy.dtype)
    d = np.empty((4, n), dy.dtype)
    wh = np.ascontiguousarray(wht.T)
    for s in range(steps - 1, -1, -1):
        g = gates[s].reshape(4, n)
        a, i, f, o = g[ia], g[ii], g[if_], g[io]
        tc, cp = tcs[s].reshape(n), cprev[s].reshape(n)
        if valid.shape[0]:  # past its length a step passes the gradients through
            m = valid[s]
            dhn, dci = m * (dy[s] + dh), m * dc
            dh, passed = (one - m) * dh, (one - m) * dc
        else:
            dhn, dci, passed = dy[s] + dh, dc, dc
        dhn, dci = dhn.reshape(n), dci.reshape(n)
        dcp = np.empty(n, dy.dtype)  # the gradient of c_{t-1} through the forget gate
        for k in span(n):
            dcn = dci[k] + dhn[k] * o[k] * slope(act, tc[k], one)
            d[ia, k] = dcn * i[k] * slope(act, a[k], one)
            d[ii, k] = dcn * a[k] * slope(ract, i[k], one)
            d[if_, k] = dcn * cp[k] * slope(ract, f[k], one)
            d[io, k] = dhn[k] * tc[k] * slope(ract, o[k], one)
            dcp[k] = dcn * f[k]
        dc = dcp.reshape(units, batch)
        if valid.shape[0]:
            dc = dc + passed
        dz[:, :, s] = d.reshape(4, units, batch)
        dhm = np.dot(wh, d.reshape(4 * units, batch))
        dhm = dhm * h_mask if h_mask.shape[0] else dhm
        dh = dh + dhm if valid.shape[0] else dhm
    return dz.reshape(4 * units, steps, batch), dc, dh


@compiled
def gru_forward(xw, ut, bu, unt, h, h_mask, valid, act, ract, order, one, half, keep):
    """GRU over ``xw`` (T, 3H, B) = W_x x + b_x from ``h`` (H, B). ``reset_after``
    (``unt`` empty): ``ut`` (3H, H) the recurrent kernel transposed, in the gate order,
    and ``bu`` (3, H, B) its bias broadcast; else ``ut`` (2H, H) the z then r blocks and
    ``unt`` (H, H) the candidate's, transposed. Returns y (T, H, B), h_T and the cache:
    z, r, n and h_{t-1} (4, T, H, B), the candidate's recurrent term (U_n h + c_n, or
    r * h for reset_after=False) and the masked h_{t-1} (H, T, B each)."""
    steps, cols, batch = xw.shape
    units = cols // 3
    iz, ir, in_ = order
    after = unt.shape[0] == 0
    kz, kr = (iz, ir) if after else (0, 1)  # the z, r blocks of the recurrent product
    n = steps if keep else 0
    y = np.empty((steps, units, batch), xw.dtype)
    cache = np.empty((4, n, units, batch), xw.dtype)
    terms = np.empty((units, n, batch), xw.dtype)
    hms = np.empty((units, n, batch), xw.dtype)
    for s in range(steps):
        hm = masked(h, h_mask)
        x = xw[s].reshape(3, units, batch)
        rec = np.dot(ut, hm).reshape(ut.shape[0] // units, units, batch)
        if after:
            rec = rec + bu
        r = activated(ract, x[ir] + rec[kr], half)
        term = rec[in_] if after else r * hm
        recurrent = r * term if after else np.dot(unt, term)
        z = activated(ract, x[iz] + rec[kz], half)
        cand = activated(act, x[in_] + recurrent, half)
        hn = cand + z * (h - cand)
        if keep:
            cache[0, s], cache[1, s], cache[2, s], cache[3, s] = z, r, cand, h
            terms[:, s], hms[:, s] = term, hm
        y[s] = output(valid, s, hn)
        h = carried(valid, s, hn, h, one)
    return y, h, cache, terms, hms


@compiled
def gru_backward(dy, dh, ut, unt, cache, terms, hms, h_mask, valid, act, ract, order, one):
    """Backward through time of :func:`gru_forward` from ``dy`` (T, H, B) and ``dh``
    (H, B), the gradient of h_T. Returns dXW (3H, T, B) (of W_x x + b_x), dR (3H or 2H,
    T, B) (of the recurrent product) and the gradient of h_0."""
    steps, units, batch = dy.shape
    iz, ir, in_ = order
    after = unt.shape[0] == 0
    kz, kr = (iz, ir) if after else (0, 1)
    blocks = ut.shape[0] // units
    dxw = np.empty((3, units, steps, batch), dy.dtype)
    drec = np.empty((blocks, units, steps, batch), dy.dtype)
    dx = np.empty((3, units, batch), dy.dtype)
    dr = np.empty((blocks, units, batch), dy.dtype)
    u = np.ascontiguousarray(ut.T)
    un = np.ascontiguousarray(unt.T)
    for s in range(steps - 1, -1, -1):
        z, r, cand, hp = cache[0, s], cache[1, s], cache[2, s], cache[3, s]
        if valid.shape[0]:
            m = valid[s]
            dhn = m * (dy[s] + dh)
            dh = (one - m) * dh + dhn * z
        else:
            dhn = dy[s] + dh
            dh = dhn * z
        dzp = dhn * (hp - cand) * slope(ract, z, one)
        dnp = dhn * (one - z) * slope(act, cand, one)
        dx[iz], dx[in_], dr[kz] = dzp, dnp, dzp
        if after:
            drp = dnp * terms[:, s] * slope(ract, r, one)
            dr[kr], dr[in_] = drp, dnp * r
            dhm = np.dot(u, dr.reshape(3 * units, batch))
        else:
            dterm = np.dot(un, dnp)
            drp = dterm * hms[:, s] * slope(ract, r, one)
            dr[kr] = drp
            dhm = np.dot(u, dr.reshape(2 * units, batch)) + dterm * r
        dx[ir] = drp
        dxw[:, :, s], drec[:, :, s] = dx, dr
        dh = dh + (dhm * h_mask if h_mask.shape[0] else dhm)
    return (dxw.reshape(3 * units, steps, batch), drec.reshape(blocks * units, steps, batch),
            dh)


@compiled
def rnn_forward(xw, wht, h, h_mask, valid, act, one, half, keep):
    """SimpleRNN over ``xw`` (T, H, B) = W_x x + b from ``h`` (H, B); ``wht`` (H, H) the
    recurrent rows of W, transposed. Returns y (T, H, B), h_T and the cache: h_t before
    the blend (T, H, B), the masked h_{t-1} (H, T, B)."""
    steps, units, batch = xw.shape
    n = steps if keep else 0
    y = np.empty((steps, units, batch), xw.dtype)
    cache = np.empty((n, units, batch), xw.dtype)
    hms = np.empty((units, n, batch), xw.dtype)
    for s in range(steps):
        hm = masked(h, h_mask)
        hn = activated(act, xw[s] + np.dot(wht, hm), half)
        if keep:
            cache[s], hms[:, s] = hn, hm
        y[s] = output(valid, s, hn)
        h = carried(valid, s, hn, h, one)
    return y, h, cache, hms


@compiled
def rnn_backward(dy, dh, wht, cache, h_mask, valid, act, one):
    """Backward through time of :func:`rnn_forward` from ``dy`` (T, H, B) and ``dh``, the
    gradient of h_T. Returns dXW (H, T, B) and the gradient of h_0."""
    steps, units, batch = dy.shape
    dxw = np.empty((units, steps, batch), dy.dtype)
    wh = np.ascontiguousarray(wht.T)
    for s in range(steps - 1, -1, -1):
        if valid.shape[0]:
            m = valid[s]
            d = m * (dy[s] + dh) * slope(act, cache[s], one)
            dh = (one - m) * dh
        else:
            d = (dy[s] + dh) * slope(act, cache[s], one)
            dh = dh * 0
        dxw[:, s] = d
        dhm = np.dot(wh, d)
        dh = dh + (dhm * h_mask if h_mask.shape[0] else dhm)
    return dxw, dh


# ------------------------------------------------------------------- NumPy around the loops

_controller = []


def one_blas_thread():
    """A context in which every BLAS pool loaded (numpy's, and scipy's that numba's
    ``np.dot`` calls) runs one thread; nothing without threadpoolctl."""
    if ThreadpoolController is None:
        return contextlib.nullcontext()
    if not _controller:
        if numba is not None:  # the BLAS numba's np.dot calls, loaded before it is counted
            import scipy.linalg.cython_blas  # noqa: F401
        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=1, user_api='blas')


#: MXCSR's flush-to-zero and denormals-are-zero bits.
FTZ_DAZ = 0x8040


@contextlib.contextmanager
def flushed_denormals():
    """Within, this thread's SSE arithmetic flushes denormal float results and inputs to
    zero (the MXCSR bits, through glibc's ``fegetenv``/``fesetenv`` on x86-64 Linux; a
    no-op elsewhere), restored afterwards. Gradients that fade through many steps (a loss
    on the last step only, T = 200) reach the denormal range, where each operation costs
    about 100 times more: measured 7.1 s against 0.8 s for one GRU backward pass at
    (64, 200, 128, 256)."""
    env = _fenv()
    if env is None:
        yield
        return
    libc, buf = env
    old = buf[7]
    buf[7] = old | FTZ_DAZ
    libc.fesetenv(buf)
    try:
        yield
    finally:
        buf[7] = old
        libc.fesetenv(buf)


_libc = []


def _fenv():
    """``(libc, fenv_t buffer)`` with the thread's current environment, or None off glibc
    x86-64 (``fenv_t`` is 32 bytes there, the MXCSR its last 4)."""
    if sys.platform != 'linux' or platform.machine() != 'x86_64':
        return None
    if not _libc:
        _libc.append(ctypes.CDLL(None))
    libc = _libc[0]
    buf = (ctypes.c_uint32 * 8)()
    if not hasattr(libc, 'fegetenv') or libc.fegetenv(buf) != 0:
        return None
    return libc, buf


@contextlib.contextmanager
def kernel_context():
    """What the loops run under: one BLAS thread, denormals flushed (and, once per
    process, :func:`nnlstm.process.tune_malloc`)."""
    process.tune_malloc()
    with one_blas_thread(), flushed_denormals():
        yield


class Spec(dict):
    """What a fused layer computes, as plain values: ``kind`` ('lstm', 'gru', 'rnn'),
    ``units`` H, ``activation``, ``recurrent_activation`` (None for SimpleRNN),
    ``reset_after`` (GRU), ``reverse`` (go_backwards), ``time_major``, and ``input_order``:
    the output sequence in the input's step order (else in processing order, Keras'
    ``go_backwards`` output)."""

    def __getattr__(self, key):
        return self.get(key)


def processing_order(reverse, lengths, steps, batch):
    """``(perm, valid)``: ``perm`` (T, B), the input step each sequence reads at each
    processed step (None: in order), and ``valid`` (T, B), 1 where that step is inside the
    sequence (None without lengths). Backwards with lengths, each sequence reads its own
    valid steps from its last, then its padding (which leaves the state unchanged), so the
    outputs come in processing order (Keras'), with the padding's zeros after them."""
    s = np.arange(steps)[:, None]
    if lengths is None:
        return (np.broadcast_to(steps - 1 - s, (steps, batch)) if reverse else None), None
    n = np.clip(np.floor(lengths), 0, steps).astype(np.int64)[None, :]
    valid = s < n
    perm = np.where(valid, n - 1 - s, s) if reverse else None
    return perm, valid


def feature_major(a):
    """(..., B, F) as a C-contiguous (..., F, B)."""
    return np.ascontiguousarray(np.swapaxes(a, -1, -2))


def permuted(a, perm, inverse=False):
    """(T, B, ...) with each sequence's steps in processing order ``perm`` (or back to the
    input's order with ``inverse``); ``a`` itself without a ``perm``."""
    if perm is None:
        return a
    rows = np.arange(a.shape[1])[None, :]
    if not inverse:
        return a[perm, rows]
    out = np.empty_like(a)
    out[perm, rows] = a
    return out


def forward(spec, x, params, state=None, x_mask=None, h_mask=None, lengths=None, keep=True):
    """Run the layer ``spec`` (:class:`Spec`) on NumPy arrays of one dtype.

    Args:
        x: (B, T, D), or (T, B, D) with ``spec.time_major``.
        params: the layer's parameter arrays in the order of ``kind.params``, None for those
            its options leave out (LSTM: only ``W`` and ``b`` are read).
        state: the initial state arrays, (B, H) each, in the state's field order, or None.
        x_mask (B, D), h_mask (B, H): dropout masks, or None. lengths: (B,) or None.
        keep: keep what :func:`backward` needs.

    Returns:
        ``(y, final_state, cache)``: ``y`` (B, T, H) (or (T, B, H)) in processing order
        (input order with ``spec.input_order``), the final state as a tuple of (B, H)
        arrays, ``cache`` for :func:`backward` (None without ``keep``).
    """
    dtype = x.dtype
    one, half = dtype.type(1), dtype.type(0.5)
    params = [None if p is None else np.asarray(p, dtype) for p in params]
    xt = x if spec.time_major else x.transpose(1, 0, 2)
    steps, batch, dim = xt.shape
    units = spec.units
    perm, valid = processing_order(spec.reverse, lengths, steps, batch)
    xp = permuted(xt, perm)
    if x_mask is not None:
        xp = xp * x_mask
    hm = np.empty((0, 0), dtype) if h_mask is None else feature_major(np.asarray(h_mask, dtype))
    vm = np.empty((0, 0), dtype) if valid is None else valid.astype(dtype)
    fields = KINDS[spec.kind].state._fields
    state = ([np.zeros((units, batch), dtype) for _ in fields] if state is None
             else [feature_major(np.asarray(s, dtype)) for s in state])
    act = ACTIVATION_CODES[spec.activation]
    ract = ACTIVATION_CODES.get(spec.recurrent_activation, 0)
    order = (0,) if spec.kind == 'rnn' else tuple(
        gates.order(spec.kind, 'nnlstm').index(g) for g in GATES[spec.kind])
    if spec.kind == 'gru':
        wx, bx, u, bu, uzr, un = params[:6]  # the layer norms' are blockers
        if spec.reset_after:
            bu = np.zeros(3 * units, dtype) if bu is None else bu
            rec = (feature_major(u), np.ascontiguousarray(np.broadcast_to(
                bu.reshape(3, units, 1), (3, units, batch))), np.empty((0, 0), dtype))
        else:
            rec = (feature_major(uzr), np.empty((0, 0, 0), dtype), feature_major(un))
    else:
        w, bx = params[:2]
        wx, rec = w[:dim], (feature_major(w[dim:]),)
    xs = np.ascontiguousarray(xp.transpose(2, 0, 1))              # (D, T, B)
    with kernel_context():
        xw = np.dot(wx.T, xs.reshape(dim, steps * batch))          # (G, T * B)
        if bx is not None:
            xw += bx.reshape(-1, 1)
        xw = np.ascontiguousarray(xw.reshape(-1, steps, batch).transpose(1, 0, 2))  # (T, G, B)
        if spec.kind == 'lstm':
            y, c, h, *kept = lstm_forward(xw, rec[0], *state, hm, vm, act, ract, order, one,
                                          half, keep)
            state = [c, h]
        elif spec.kind == 'gru':
            y, h, *kept = gru_forward(xw, *rec, state[0], hm, vm, act, ract, order, one,
                                      half, keep)
            state = [h]
        else:
            y, h, *kept = rnn_forward(xw, rec[0], state[0], hm, vm, act, one, half, keep)
            state = [h]
    y = y.transpose(0, 2, 1)                                      # (T, B, H)
    if spec.input_order:
        y = permuted(y, perm, inverse=True)
    y = y if spec.time_major else y.transpose(1, 0, 2)
    final = tuple(s.T for s in state)
    cache = None
    if keep:
        cache = dict(xs=xs, perm=perm, valid=vm, h_mask=hm, x_mask=x_mask, wx=wx, rec=rec,
                     kept=kept, codes=(act, ract), order=order,
                     present=[p is not None for p in params])
    return y, final, cache


def backward(spec, cache, dy, dfinal, need_x=True):
    """Gradients of a :func:`forward` run from ``dy`` (the shape of ``y``) and ``dfinal``
    (the final state's gradients, in field order). Returns ``(dx or None, dparams,
    dstate)``: ``dparams`` in the order of ``kind.params`` (None where a parameter is left
    out), ``dstate`` the initial state's gradients, (B, H) each."""
    dtype = cache['xs'].dtype
    one = dtype.type(1)
    dy = np.asarray(dy, dtype)
    dyt = dy if spec.time_major else dy.transpose(1, 0, 2)
    if spec.input_order:
        dyt = permuted(dyt, cache['perm'])
    dyt = feature_major(dyt)                                      # (T, H, B)
    dstate = [feature_major(np.asarray(d, dtype)) for d in dfinal]
    act, ract = cache['codes']
    order, rec, kept, hm, vm = (cache[k] for k in ('order', 'rec', 'kept', 'h_mask', 'valid'))
    steps, batch = dyt.shape[0], dyt.shape[2]

    def flat(a):  # (F, T, B) -> (F, T * B)
        return a.reshape(a.shape[0], steps * batch)

    with kernel_context():
        if spec.kind == 'lstm':
            dxw, *dstate = lstm_backward(dyt, *dstate, rec[0], *kept[:3], hm, vm, act, ract,
                                         order, one)
        elif spec.kind == 'gru':
            dxw, drec, dh = gru_backward(dyt, dstate[0], rec[0], rec[2], *kept[:3], hm, vm,
                                         act, ract, order, one)
            dstate = [dh]
        else:
            dxw, dh = rnn_backward(dyt, dstate[0], rec[0], kept[0], hm, vm, act, one)
            dstate = [dh]
        hms, dxw = flat(kept[-1]), flat(dxw)
        dwx = np.dot(flat(cache['xs']), dxw.T)                    # (D, G)
        db = dxw.sum(axis=1)
        if spec.kind != 'gru':
            dparams = [np.concatenate([dwx, np.dot(hms, dxw.T)]), db]
        elif spec.reset_after:
            drec = flat(drec)
            dparams = [dwx, db, np.dot(hms, drec.T), drec.sum(axis=1), None, None]
        else:
            n = order[2] * spec.units
            dparams = [dwx, db, None, None, np.dot(hms, flat(drec).T),
                       np.dot(flat(kept[1]), dxw[n:n + spec.units].T)]
        dx = None
        if need_x:
            dxp = np.dot(dxw.T, cache['wx'].T).reshape(steps, batch, -1)   # (T, B, D)
            if cache['x_mask'] is not None:
                dxp *= cache['x_mask']
            dxp = permuted(dxp, cache['perm'], inverse=True)
            dx = dxp if spec.time_major else dxp.transpose(1, 0, 2)
    dparams = [d if p else None for d, p in zip(dparams, cache['present'])]
    return dx, dparams, tuple(d.T for d in dstate)


# ------------------------------------------------------------------- the NNabla function

#: Each fused function of a live graph, by the key of its first output (``hash``, as
#: :mod:`nnlstm.record` keys Variables): how the export finds and unrolls them. Weak, so
#: the registry keeps no graph alive.
FUNCTIONS = weakref.WeakValueDictionary()

#: The inputs a fused function takes after ``x`` and the parameters, in this order, each
#: only when given.
OPTIONAL = ('state', 'x_mask', 'h_mask', 'lengths')


class FusedLayer(PythonFunction):
    """One direction of a recurrent layer as one NNabla function (see the module).

    Inputs: ``x`` (B, T, D) ((T, B, D) with ``time_major``), the core's parameters that
    exist (in the order of ``kind.params``), then those of :data:`OPTIONAL` in ``given``:
    the initial state's Variables (B, H) each, the dropout masks (B, D) and (B, H), the
    lengths (B,). Outputs: the sequence (B, T, H) (order: :class:`Spec`) and the final
    state's Variables. ``keep`` False (no input needs a gradient) keeps no cache for a
    backward pass. The cache of the last forward pass lives as long as the function, that
    is, as its graph."""
    NAME = 'NnlstmFusedLayer'

    def __init__(self, ctx, spec, core, given, keep, rates):
        super().__init__(ctx)
        self.context, self.spec, self.core, self.given, self.keep = ctx, spec, core, given, keep
        self.rates = rates  # the dropout rates its masks were drawn with
        self.present = [p is not None for p in core.params]
        self.fields = len(core.state_type._fields)
        self.cache = None

    @property
    def name(self):
        return self.NAME

    def min_outputs(self):
        return 1 + self.fields

    def grad_depends_output_data(self, i, o):
        return False

    def grad_depends_input_data(self, i, j):
        return False  # backward reads its own cache

    def again(self, inputs):
        """A new function like this one, called on ``inputs`` (this one's): its outputs."""
        return call(FusedLayer(self.context, self.spec, self.core, self.given, self.keep,
                               self.rates), inputs)

    def slots(self, inputs):
        """``inputs`` by role: ``(x, params in kind order (None where absent), state or
        None, x_mask, h_mask, lengths)``."""
        it = iter(inputs)
        x = next(it)
        params = [next(it) if p else None for p in self.present]
        rest = {k: ([next(it) for _ in range(self.fields)] if k == 'state' else next(it))
                if k in self.given else None for k in OPTIONAL}
        return x, params, rest['state'], rest['x_mask'], rest['h_mask'], rest['lengths']

    def setup_impl(self, inputs, outputs):
        x = inputs[0].shape
        batch = x[1] if self.spec.time_major else x[0]
        outputs[0].reset_shape(tuple(x[:2]) + (self.spec.units,), True)
        for o in outputs[1:]:
            o.reset_shape((batch, self.spec.units), True)

    def forward_impl(self, inputs, outputs):
        x, params, state, x_mask, h_mask, lengths = self.slots(inputs)
        d = (lambda v: None if v is None else v.d)
        y, final, self.cache = forward(
            self.spec, x.d, [d(p) for p in params], None if state is None else
            [s.d for s in state], d(x_mask), d(h_mask), d(lengths), keep=self.keep)
        outputs[0].d = y
        for o, f in zip(outputs[1:], final):
            o.d = f

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        if self.cache is None:
            raise RuntimeError("%s: backward without a forward pass that kept its cache "
                               "(the graph was built with no input needing a gradient)"
                               % self.NAME)
        dx, dparams, dstate = backward(self.spec, self.cache, outputs[0].g,
                                       [o.g for o in outputs[1:]], need_x=propagate_down[0])
        x, params, state, *_ = self.slots(range(len(inputs)))
        grads = {x: dx}
        grads.update({i: g for i, g in zip(params, dparams) if i is not None})
        grads.update(zip(state or (), dstate))
        for i, v in enumerate(inputs):
            if not propagate_down[i]:
                continue
            g = grads.get(i)
            if g is None:  # the lengths and the masks: no gradient
                g = np.zeros(v.shape, np.float32)
            v.g = v.g + g if accum[i] else g


def call(function, variables):
    """``function`` (a :class:`FusedLayer`) called on ``variables``, registered in
    :data:`FUNCTIONS`: its outputs."""
    outputs = function(*variables, n_outputs=function.min_outputs())
    FUNCTIONS[hash(outputs[0])] = function
    return outputs


def layer(core, inputs, state, reverse, time_major, lengths, dropout, recurrent_dropout,
          order):
    """The fused counterpart of :func:`nnlstm.unroll.unroll` and the stack of its outputs:
    run ``core``'s layer over ``inputs`` as one :class:`FusedLayer`, the variational dropout
    masks (rates ``dropout``, ``recurrent_dropout``) drawn once per sequence as the unrolled
    graph draws them. ``order`` 'input', 'processing' or None: the order of the returned
    sequence, or None to return none (the function computes it anyway). Returns
    ``(sequence or None, final_state)``."""
    kind = core.kind
    batch, steps, dim = (inputs.shape[1], inputs.shape[0], inputs.shape[2]) if time_major \
        else inputs.shape
    options = core.options
    spec = Spec(kind=kind.name, units=core.units, activation=options['activation'],
                recurrent_activation=options.get('recurrent_activation'),
                reset_after=options.get('reset_after'), reverse=reverse,
                time_major=time_major, input_order=order == 'input')
    extra = {'state': None if state is None else list(state),
             'x_mask': unroll.dropout_mask((batch, dim), dropout) if dropout else None,
             'h_mask': (unroll.dropout_mask((batch, core.units), recurrent_dropout)
                        if recurrent_dropout else None),
             'lengths': lengths}
    given = tuple(k for k in OPTIONAL if extra[k] is not None)
    variables = [inputs] + [p for p in core.params if p is not None]
    for k in given:
        variables += extra[k] if k == 'state' else [extra[k]]
    keep = any(v.need_grad for v in variables)
    outputs = call(FusedLayer(nn.get_current_context(), spec, core, given, keep,
                              (dropout, recurrent_dropout)), variables)
    return (outputs[0] if order else None), core.state_type(*outputs[1:])
