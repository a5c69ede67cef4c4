"""Monte Carlo dropout: one batched graph of S x B rows against S separate forward passes of
the ordinary training graph, the masks it draws, and its argument checks."""
import functools
import statistics

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import pytest

import nnlstm
from nnlstm.export import functions_of

B, T, D, H = 3, 4, 2, 5
SAMPLES = 2000
#: Chance that the seeded statistical comparison would fail on a correct implementation
#: (family-wise, over all the compared numbers of one model: Bonferroni).
ALPHA = 1e-3


def lstm(x, p):
    return PF.affine(nnlstm.LSTM(x, H, dropout=p, recurrent_dropout=p, name='lstm'), 2,
                     name='fc')                                                # (B, 2)


def stacked(x, p):
    return nnlstm.Stacked(nnlstm.LSTM, x, H, num_layers=2, dropout=p, recurrent_dropout=p,
                          name='stacked')                                      # (B, H)


def bidirectional(x, p):
    return nnlstm.Bidirectional(nnlstm.GRU, x, H, dropout=p, recurrent_dropout=p,
                                return_sequences=True, name='bi')              # (B, T, 2H)


MODELS = [lstm, stacked, bidirectional]


def inputs(rng):
    return nn.Variable.from_numpy_array(rng.randn(B, T, D).astype(np.float32))


def loop_samples(model, x, p, samples):
    """``samples`` forward passes of the ordinary training graph (B rows), each drawing new
    masks: the oracle mc_dropout must agree with. Returns (samples, B, ...)."""
    y = model(x, p)
    assert 'Dropout' in functions_of([y])
    out = []
    for _ in range(samples):
        y.forward()
        out.append(y.d.copy())
    return np.stack(out).astype(np.float64)


def z_scores(mean, variance, want):
    """z of the differences between mc_dropout's mean and variance and those of the
    independent loop samples ``want`` (S, ...), each over S samples of the same
    distribution: standard errors sqrt(2 var / S) for means and sqrt(2 (m4 - var^2) / S)
    for population variances, m4 the fourth central moment, all estimated from ``want``."""
    s = len(want)
    centred = want - want.mean(axis=0)
    var = (centred ** 2).mean(axis=0)
    m4 = (centred ** 4).mean(axis=0)
    z_mean = (mean - want.mean(axis=0)) / np.sqrt(2 * var / s)
    z_var = (variance - var) / np.sqrt(2 * (m4 - var ** 2) / s)
    return np.concatenate([z_mean.ravel(), z_var.ravel()])


def bound(n):
    """Two-sided normal quantile for ``n`` comparisons at family-wise level ALPHA."""
    return statistics.NormalDist().inv_cdf(1 - ALPHA / (2 * n))


@pytest.mark.parametrize('model', MODELS)
def test_mean_and_variance_match_separate_forward_passes(rng, model):
    x = inputs(rng)
    want = loop_samples(model, x, 0.3, SAMPLES)
    mean, variance = nnlstm.mc_dropout(functools.partial(model, p=0.3), x, samples=SAMPLES)
    assert mean.shape == variance.shape == want.shape[1:]
    variance.forward(clear_buffer=True)
    assert np.all(variance.d > 0)  # the dropout is there
    z = z_scores(mean.d, variance.d, want)
    assert np.abs(z).max() < bound(z.size), np.abs(z).max()


def test_the_comparison_detects_another_dropout_rate(rng):
    """The same statistic against passes with half the rate fails: the test has power."""
    x = inputs(rng)
    want = loop_samples(lstm, x, 0.15, SAMPLES)
    mean, variance = nnlstm.mc_dropout(functools.partial(lstm, p=0.3), x, samples=SAMPLES)
    variance.forward(clear_buffer=True)
    z = z_scores(mean.d, variance.d, want)
    assert np.abs(z).max() > 2 * bound(z.size), np.abs(z).max()


@pytest.mark.parametrize('model', MODELS)
@pytest.mark.parametrize('samples', [1, 2, 16, 37])
def test_without_dropout_the_mean_is_the_plain_output_and_the_variance_zero(rng, model,
                                                                            samples):
    x = inputs(rng)
    with nn.no_grad():
        plain = model(x, 0.0)
    plain.forward()
    mean, variance = nnlstm.mc_dropout(functools.partial(model, p=0.0), x, samples=samples)
    assert 'Dropout' not in functions_of([variance])
    variance.forward(clear_buffer=True)
    if samples == 1:  # the same B-row graph
        np.testing.assert_array_equal(mean.d, plain.d)
        np.testing.assert_array_equal(variance.d, 0.0)
    # Larger batches: OpenBLAS rounds the rows of a last, partial block of a matrix product
    # differently, by an ulp (measured 1.5e-8): a few roundings of float32 at most.
    rounding = 8 * np.finfo(np.float32).eps * np.abs(plain.d).max()
    np.testing.assert_allclose(mean.d, plain.d, rtol=0, atol=rounding)
    assert np.all(variance.d >= 0) and variance.d.max() <= rounding ** 2


def identity_rnn(x, **options):
    """A linear SimpleRNN whose dropout masks show in its outputs: W_x = I (D = H) with
    ``dropout``, or W_x = 0, W_h = I, h0 = 1 with ``recurrent_dropout``."""
    units = x.shape[2]
    if 'dropout' in options:
        return nnlstm.SimpleRNN(x, units, return_sequences=True, activation='linear',
                                kernel_initializer=np.eye(units),
                                recurrent_initializer=np.zeros((units, units)), **options)
    h0 = F.constant(1.0, (x.shape[0], units))
    return nnlstm.SimpleRNN(x, units, initial_state=h0, return_sequences=True,
                            activation='linear', use_bias=False,
                            kernel_initializer=np.zeros((units, units)),
                            recurrent_initializer=np.eye(units), **options)


@pytest.mark.parametrize('option', ['dropout', 'recurrent_dropout'])
def test_every_row_draws_its_own_variational_masks(option):
    """y_t = x_t * mask (input dropout, x = 1) or h_t = mask^(t+1) (recurrent dropout): each of
    the S x B rows shows its masks, the same at every step and different from every other
    row's, although the graph is built under nn.no_grad()."""
    samples, units = 64, 32
    x = nn.Variable.from_numpy_array(np.ones((B, T, units), np.float32))
    rows = []

    def build(v):
        rows.append(identity_rnn(v, **{option: 0.5}))
        return rows[-1]

    with nn.no_grad():
        mean, variance = nnlstm.mc_dropout(build, x, samples=samples)
    variance.forward()
    got = rows[0].d                                                   # (S * B, T, H)
    assert got.shape == (samples * B, T, units)
    kept = got[:, 0] != 0
    for t in range(T):
        scale = 2.0 if option == 'dropout' else 2.0 ** (t + 1)
        np.testing.assert_array_equal(got[:, t], np.where(kept, scale, 0.0))
    assert 0.4 < kept.mean() < 0.6
    assert len({row.tobytes() for row in kept}) == samples * B
    np.testing.assert_allclose(mean.d, got.reshape(samples, B, T, units).mean(axis=0),
                               rtol=1e-6)
    np.testing.assert_allclose(variance.d, got.reshape(samples, B, T, units).var(axis=0),
                               rtol=1e-5)


def test_the_flag_is_off_outside_and_after_a_failing_build(rng):
    x = inputs(rng)

    def failing(v):
        lstm(v, 0.3)
        raise RuntimeError('model bug')

    with pytest.raises(RuntimeError, match='model bug'):
        nnlstm.mc_dropout(failing, x, samples=2)
    with nn.no_grad():
        assert 'Dropout' not in functions_of([lstm(x, 0.3)])
        with nnlstm.mc.sampling():
            assert 'Dropout' in functions_of([lstm(x, 0.3)])
        assert 'Dropout' not in functions_of([lstm(x, 0.3)])
    mean, variance = nnlstm.mc_dropout(
        lambda v: nnlstm.LSTM(v, H, dropout=0.3, training=False, name='lstm'), x, samples=4)
    assert 'Dropout' not in functions_of([variance])  # an explicit training=False wins


X = nn.Variable((B, T, D))


@pytest.mark.parametrize('call,error,match', [
    (lambda: nnlstm.mc_dropout('lstm', X), TypeError,
     r'`build` must be a function of one Variable \(the model\); received str'),
    (lambda: nnlstm.mc_dropout(lambda v: v, np.zeros((B, T, D))), TypeError,
     r'`inputs` must be an nnabla.Variable; received ndarray'),
    (lambda: nnlstm.mc_dropout(lambda v: v, nn.Variable(())), ValueError,
     r'`inputs` must have a batch axis, \(B, \.\.\.\); received a scalar'),
    (lambda: nnlstm.mc_dropout(lambda v: v, X, samples=0), ValueError,
     r'`samples` must be a positive int; received 0'),
    (lambda: nnlstm.mc_dropout(lambda v: v, X, samples=2.5), TypeError,
     r'`samples` must be a positive int; received float 2.5'),
    (lambda: nnlstm.mc_dropout(lambda v: v, X, samples=True), TypeError,
     r'`samples` must be a positive int; received bool True'),
    (lambda: nnlstm.mc_dropout(lambda v: (v, v), X), TypeError,
     r'`build` must return one nnabla.Variable; it returned tuple'),
    (lambda: nnlstm.mc_dropout(lambda v: F.mean(v, axis=0), X, samples=4), ValueError,
     r'`build` must keep the batch axis: given \(S\*B, \.\.\.\) = \(12, \.\.\.\) it '
     r'returned shape \(4, 2\)'),
])
def test_bad_arguments_are_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
