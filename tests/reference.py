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


def lstm(x, w, b, c0=None, h0=None, reverse=False, act='tanh', ract='sigmoid',
         peepholes=None, whr=None, norms=None, eps=1e-3):
    """x (B, T, D); w (D + P, 4H) and b (4H,) in the seed's a, i, f, o blocks; ``peepholes``
    (w_ci, w_cf, w_co) each (H,): i and f read c_{t-1}, o reads c_t (Gers and Schmidhuber;
    TensorFlow's LSTMCell); ``whr`` (H, P): h_t = (o_t * act(c_t)) @ whr (PyTorch's LSTMP);
    ``norms`` {'kernel', 'recurrent', 'state': (gamma, beta)}: TF-Addons' LayerNormLSTMCell,
    z = LN_k(x_t @ w[:D]) + LN_r(h @ w[D:]) + b over all 4H, and c_t = LN_s(c_t), the
    normalized c carried on. Returns ys (B, T, P) aligned with the input steps, c_T (B, H),
    h_T (B, P)."""
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
        if norms is None:
            z = np.concatenate([x[:, t], h], axis=1) @ w + b
        else:
            d = x.shape[2]
            z = (layer_norm(x[:, t] @ w[:d], *norms['kernel'], eps)
                 + layer_norm(h @ w[d:], *norms['recurrent'], eps) + b)
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
        ract='sigmoid', norms=None, eps=1e-3):
    """Keras' GRU from its equations, in nnlstm's layout: wx (D, 3H), bx (3H,) blocks z, r, n;
    reset_after: u (H, 3H), bu (3H,); else u (H, 3H) = [UzUr | Un] and no recurrent bias.
    ``norms`` {'kernel', 'recurrent': (gamma, beta)} (reset_after only): x_t @ wx and h @ u
    each layer-normalized over all 3H before its bias is added."""
    x = np.asarray(x, np.float64)
    batch, steps, _ = x.shape
    units = u.shape[0]
    bx = np.zeros(3 * units) if bx is None else bx
    bu = np.zeros(3 * units) if bu is None else bu
    h = np.zeros((batch, units)) if h0 is None else np.asarray(h0, np.float64)
    act, ract = ACT[act], ACT[ract]
    ys = np.zeros((batch, steps, units))
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        xw = x[:, t] @ wx
        if norms is not None:
            xw = layer_norm(xw, *norms['kernel'], eps)
        xz, xr, xn = np.split(xw + bx, 3, axis=1)
        if reset_after:
            hu = h @ u
            if norms is not None:
                hu = layer_norm(hu, *norms['recurrent'], eps)
            uz, ur, un = np.split(hu + bu, 3, axis=1)
            z, r = ract(xz + uz), ract(xr + ur)
            n = act(xn + r * un)
        else:
            uz, ur = np.split(h @ u[:, :2 * units], 2, axis=1)
            z, r = ract(xz + uz), ract(xr + ur)
            n = act(xn + (r * h) @ u[:, 2 * units:])
        h = z * h + (1 - z) * n
        ys[:, t] = h
    return ys, h


def simple_rnn(x, w, b, h0=None, reverse=False, act='tanh'):
    """h_t = act([x_t, h_{t-1}] @ w + b), w (D + H, H)."""
    x = np.asarray(x, np.float64)
    batch, steps, _ = x.shape
    units = w.shape[1]
    b = np.zeros(units) if b is None else b
    h = np.zeros((batch, units)) if h0 is None else np.asarray(h0, np.float64)
    ys = np.zeros((batch, steps, units))
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        h = ACT[act](np.concatenate([x[:, t], h], axis=1) @ w + b)
        ys[:, t] = h
    return ys, h
