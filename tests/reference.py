"""Independent oracles written from the equations, in float64 NumPy, and the seed's own
LSTM code (the blog post's concatenate + affine + four slices), kept as it was written in
benchmarks/seed.py, whose baseline it also is."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'benchmarks'))
from seed import seed_lstm, seed_lstm_cell  # noqa: E402,F401  (the seed, for the tests)

ACT = {'tanh': np.tanh, 'sigmoid': lambda v: 1 / (1 + np.exp(-v)),
       'relu': lambda v: np.maximum(v, 0), 'linear': lambda v: v}


def layer_norm(v, gamma, beta, eps):
    """Ba et al.'s layer normalization of each row of ``v`` over all its features."""
    mu, var = v.mean(axis=1, keepdims=True), v.var(axis=1, keepdims=True)
    return gamma * (v - mu) / np.sqrt(var + eps) + beta


def masked(v, mask):
    """``v`` times a variational dropout ``mask`` (the same at every step), or ``v``."""
    return v if mask is None else v * mask


# Where the dropout masks go, as Keras places them. LSTMCell.call (keras-team/keras,
# keras/src/layers/rnn/lstm.py): `inputs = inputs * dp_mask; h_tm1 = h_tm1 * rec_dp_mask`, one
# mask each for all four gates, before the matrix products (tf.keras' implementation=1 drew one
# per gate); nnlstm's LSTM does the same. SimpleRNNCell.call masks inputs and prev_output
# alike. GRUCell.call with implementation=1 (keras/src/layers/rnn/gru.py; tf.keras'
# tensorflow/python/keras/layers/recurrent.py): `h_tm1_z = h_tm1 * rec_dp_mask[0]` (and _r,
# _h) in the recurrent products, `r * h_tm1_h` for reset_after=False, and the UNMASKED h_{t-1}
# in the update `h = z * h_tm1 + (1 - z) * hh`; nnlstm draws one mask for all three gates
# (those three masks equal). Keras' GRUCell with implementation=2, its default, applies no
# recurrent mask at all.
def lstm(x, w, b, c0=None, h0=None, reverse=False, act='tanh', ract='sigmoid',
         peepholes=None, whr=None, x_mask=None, h_mask=None, norms=None, eps=1e-3):
    """x (B, T, D); w (D + P, 4H) and b (4H,) in the seed's a, i, f, o blocks; ``peepholes``
    (w_ci, w_cf, w_co) each (H,): i and f read c_{t-1}, o reads c_t (Gers and Schmidhuber;
    TensorFlow's LSTMCell); ``whr`` (H, P): h_t = (o_t * act(c_t)) @ whr (PyTorch's LSTMP);
    ``x_mask`` (B, D) and ``h_mask`` (B, P) variational dropout masks on x_t and on h_{t-1}
    before the product (Keras' placement, above); ``norms`` {'kernel', 'recurrent', 'state':
    (gamma, beta)}: TF-Addons' LayerNormLSTMCell, z = LN_k(x_t @ w[:D]) + LN_r(h @ w[D:]) + b
    over all 4H, and c_t = LN_s(c_t), the normalized c carried on.
    Returns ys (B, T, P) aligned with the input steps, c_T (B, H), h_T (B, P)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    batch, steps, _ = x.shape
    units = w.shape[1] // 4
    size = units if whr is None else whr.shape[1]
    b = np.zeros(4 * units) if b is None else np.asarray(b, np.float64)
    c = np.zeros((batch, units)) if c0 is None else np.asarray(c0, np.float64)
    h = np.zeros((batch, size)) if h0 is None else np.asarray(h0, np.float64)
    w_ci, w_cf, w_co = np.zeros((3, units)) if peepholes is None else peepholes
    act, ract = ACT[act], ACT[ract]
    ys = np.zeros((batch, steps, size))
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        xm, hm = masked(x[:, t], x_mask), masked(h, h_mask)
        if norms is None:
            z = np.concatenate([xm, hm], axis=1) @ w + b
        else:
            d = x.shape[2]
            z = (layer_norm(xm @ w[:d], *norms['kernel'], eps)
                 + layer_norm(hm @ w[d:], *norms['recurrent'], eps) + b)
        a, i, f, o = np.split(z, 4, axis=1)
        c = ract(f + w_cf * c) * c + ract(i + w_ci * c) * act(a)
        if norms is not None:
            c = layer_norm(c, *norms['state'], eps)
        h = ract(o + w_co * c) * act(c)
        if whr is not None:
            h = h @ whr
        ys[:, t] = h
    return ys, c, h


def assert_gradients(analytic, inputs, objective, eps=1e-6):
    """Check ``analytic[key]`` against float64 central differences of ``objective(values)``
    for every array ``inputs[key]`` (``values``: ``inputs`` with one entry perturbed)."""
    for key, value in inputs.items():
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            up, down = dict(inputs), dict(inputs)
            up[key], down[key] = value.copy(), value.copy()
            up[key][i] += eps
            down[key][i] -= eps
            numeric[i] = (objective(up) - objective(down)) / (2 * eps)
        np.testing.assert_allclose(analytic[key], numeric, rtol=1e-4, atol=1e-5,
                                   err_msg='gradient of ' + key)


def gru(x, wx, bx, u, bu=None, h0=None, reset_after=True, reverse=False, act='tanh',
        ract='sigmoid', x_mask=None, h_mask=None, norms=None, eps=1e-3):
    """Keras' GRU from its equations, in nnlstm's layout: wx (D, 3H), bx (3H,) blocks z, r, n;
    reset_after: u (H, 3H), bu (3H,); else u (H, 3H) = [UzUr | Un] and no recurrent bias.
    ``x_mask`` (B, D) and ``h_mask`` (B, H) variational dropout masks: on x_t, and on h_{t-1}
    in the recurrent products but not in the update (Keras' placement, above). ``norms``
    {'kernel', 'recurrent': (gamma, beta)} (reset_after only): x_t @ wx and h @ u each
    layer-normalized over all 3H before its bias is added."""
    x = np.asarray(x, np.float64)
    batch, steps, _ = x.shape
    units = u.shape[0]
    bx = np.zeros(3 * units) if bx is None else bx
    bu = np.zeros(3 * units) if bu is None else bu
    h = np.zeros((batch, units)) if h0 is None else np.asarray(h0, np.float64)
    act, ract = ACT[act], ACT[ract]
    ys = np.zeros((batch, steps, units))
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        xw = masked(x[:, t], x_mask) @ wx
        if norms is not None:
            xw = layer_norm(xw, *norms['kernel'], eps)
        xz, xr, xn = np.split(xw + bx, 3, axis=1)
        hm = masked(h, h_mask)
        if reset_after:
            hu = hm @ u
            if norms is not None:
                hu = layer_norm(hu, *norms['recurrent'], eps)
            uz, ur, un = np.split(hu + bu, 3, axis=1)
            z, r = ract(xz + uz), ract(xr + ur)
            n = act(xn + r * un)
        else:
            uz, ur = np.split(hm @ u[:, :2 * units], 2, axis=1)
            z, r = ract(xz + uz), ract(xr + ur)
            n = act(xn + (r * hm) @ u[:, 2 * units:])
        h = z * h + (1 - z) * n
        ys[:, t] = h
    return ys, h


def simple_rnn(x, w, b, h0=None, reverse=False, act='tanh', x_mask=None, h_mask=None):
    """h_t = act([x_t, h_{t-1}] @ w + b), w (D + H, H); ``x_mask`` (B, D) and ``h_mask``
    (B, H) variational dropout masks on x_t and h_{t-1} (Keras' placement, above)."""
    x = np.asarray(x, np.float64)
    batch, steps, _ = x.shape
    units = w.shape[1]
    b = np.zeros(units) if b is None else b
    h = np.zeros((batch, units)) if h0 is None else np.asarray(h0, np.float64)
    ys = np.zeros((batch, steps, units))
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        xh = np.concatenate([masked(x[:, t], x_mask), masked(h, h_mask)], axis=1)
        h = ACT[act](xh @ w + b)
        ys[:, t] = h
    return ys, h
