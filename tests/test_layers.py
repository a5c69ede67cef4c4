"""The layer family on the one unroll loop: every cell against its NumPy equations, reverse
runs, padded steps, variational dropout masks, stateful carry, and the wrappers."""
import functools
import itertools

import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
from nnlstm.export import functions_of
from nnlstm.unroll import CHUNK
import reference

B, T, D, H = 4, 6, 3, 5

#: name -> (layer, cell options, state fields)
CASES = {
    'lstm': (nnlstm.LSTM, {}, ('c', 'h')),
    'gru': (nnlstm.GRU, {}, ('h',)),
    'gru_reset_before': (nnlstm.GRU, {'reset_after': False}, ('h',)),
    'rnn': (nnlstm.SimpleRNN, {}, ('h',)),
    'lstm_layer_norm': (nnlstm.LSTM, {'layer_norm': True}, ('c', 'h')),
    'gru_layer_norm': (nnlstm.GRU, {'layer_norm': True}, ('h',)),
}


def var(a, need_grad=False):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32), need_grad=need_grad)


def forward(*vs):
    F.sink(*vs).forward()
    return [v.d.copy() for v in vs]


def randomize(rng, name, scale=0.6):
    for k, v in nn.get_parameters(grad_only=False).items():
        if k.startswith(name + '/'):
            v.d = rng.uniform(-scale, scale, v.shape)


def layer_params(name):
    n = len(name) + 1
    return {k[n:]: v.d.astype(np.float64) for k, v in nn.get_parameters(grad_only=False).items()
            if k.startswith(name + '/')}


def equations(case, name, x, state, reverse=False, params=None, x_mask=None, h_mask=None,
              **options):
    """The NumPy reference of ``case`` with the parameters of layer ``name`` (or ``params``,
    named as in that scope), its dropout masks ``x_mask`` (B, D) and ``h_mask`` (B, H) (None:
    no dropout): (ys, states)."""
    p = layer_params(name) if params is None else params
    act = options.get('activation', 'tanh')
    masks = dict(x_mask=x_mask, h_mask=h_mask)
    norms = ({k: (p[k + '_norm/gamma'], p[k + '_norm/beta'])
              for k in ('kernel', 'recurrent', 'state') if k + '_norm/gamma' in p}
             if case.endswith('layer_norm') else None)
    if case.startswith('lstm'):
        c0, h0 = state if state is not None else (None, None)
        w = (p['WaWiWfWo/affine/W'] if norms is None else
             np.concatenate([p['WaWiWfWo/x/affine/W'], p['WaWiWfWo/h/affine/W']]))
        ys, c, h = reference.lstm(x, w, p.get('WaWiWfWo/affine/b'), c0, h0, reverse, act,
                                  norms=norms, **masks)
        return ys, (c, h)
    h0 = None if state is None else state[0]
    if case == 'rnn':
        ys, h = reference.simple_rnn(x, p['Wh/affine/W'], p.get('Wh/affine/b'), h0, reverse, act,
                                     **masks)
    elif case in ('gru', 'gru_layer_norm'):
        ys, h = reference.gru(x, p['WzWrWn/affine/W'], p.get('WzWrWn/affine/b'),
                              p['UzUrUn/affine/W'], p.get('UzUrUn/affine/b'), h0, True, reverse,
                              act, norms=norms, **masks)
    else:
        u = np.concatenate([p['UzUr/affine/W'], p['Un/affine/W']], axis=1)
        ys, h = reference.gru(x, p['WzWrWn/affine/W'], p.get('WzWrWn/affine/b'), u, None, h0,
                              False, reverse, act, **masks)
    return ys, (h,)


def build(case, x, name='layer', **kwargs):
    layer, options, _ = CASES[case]
    return layer(x, H, name=name, **dict(options, **kwargs))


@pytest.mark.parametrize('case,go_backwards,with_state,use_bias',
                         [(c,) + rest for c in CASES
                          for rest in itertools.product([False, True], repeat=3)])
def test_layers_match_their_equations(rng, case, go_backwards, with_state, use_bias):
    x = rng.randn(B, T, D)
    fields = CASES[case][2]
    state = [rng.randn(B, H) for _ in fields] if with_state else None
    arg = None if state is None else (var(state[0]) if len(fields) == 1
                                      else tuple(var(s) for s in state))
    out = build(case, var(x), initial_state=arg, return_sequences=True, return_state=True,
                go_backwards=go_backwards, use_bias=use_bias)
    randomize(rng, 'layer')
    got = forward(*out)
    ys, states = equations(case, 'layer', x, state, reverse=go_backwards)
    if go_backwards:
        ys = ys[:, ::-1]  # Keras: processing order
    np.testing.assert_allclose(got[0], ys, atol=1e-5)
    for g, w in zip(got[1:], states):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert len(got) == 1 + len(fields)


@pytest.mark.parametrize('case', ['gru', 'gru_reset_before', 'rnn'])
def test_layer_equals_hand_stepped_cell(rng, case):
    x, h0 = rng.randn(B, T, D), rng.randn(B, H)
    y = build(case, var(x), initial_state=var(h0), return_sequences=True)
    randomize(rng, 'layer')
    cell = nnlstm.GRUCell if case.startswith('gru') else nnlstm.SimpleRNNCell
    h, steps = var(h0), []
    for t in range(T):
        h = cell(var(x[:, t]), h, name='layer', **CASES[case][1])
        steps.append(h)
    got = forward(y, *steps)
    np.testing.assert_allclose(got[0], np.stack(got[1:], axis=1), atol=1e-6)


@pytest.mark.parametrize('case', CASES)
def test_go_backwards_equals_forward_run_on_the_flipped_sequence(rng, case):
    x = rng.randn(B, T, D)
    backward = build(case, var(x), return_sequences=True, return_state=True, go_backwards=True)
    randomize(rng, 'layer')
    flipped = build(case, var(x[:, ::-1].copy()), return_sequences=True, return_state=True)
    got = forward(*backward, *flipped)
    n = len(got) // 2
    for a, b in zip(got[:n], got[n:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('case,go_backwards,as_variable',
                         [(c, g, v) for c in CASES for g in (False, True) for v in (False, True)])
def test_padded_steps_change_nothing(rng, case, go_backwards, as_variable):
    """Each padded sequence gives what it gives alone at its own length: outputs before the
    length, final states, and zeros past it; go_backwards reverses only the valid part."""
    lengths = np.array([T, 3, 1, 0])
    x = rng.randn(B, T, D) * 3  # padding full of large values, which must not leak in
    lv = var(lengths) if as_variable else lengths
    out = build(case, var(x), return_sequences=True, return_state=True,
                go_backwards=go_backwards, lengths=lv)
    randomize(rng, 'layer')
    got = forward(*out)
    for b, n in enumerate(lengths):
        assert np.all(got[0][b, n:] == 0)
        if n == 0:
            for s in got[1:]:
                np.testing.assert_array_equal(s[b], 0)
            continue
        alone = build(case, var(x[b:b + 1, :n]), return_sequences=True, return_state=True,
                      go_backwards=go_backwards)
        want = forward(*alone)
        np.testing.assert_allclose(got[0][b, :n], want[0][0], atol=1e-6)
        for g, w in zip(got[1:], want[1:]):
            np.testing.assert_allclose(g[b], w[0], atol=1e-6)


@pytest.mark.parametrize('case', CASES)
def test_last_output_with_lengths_is_each_sequences_own_last(rng, case):
    lengths = np.array([2, T, 4, 1])
    x = rng.randn(B, T, D)
    y, seq = build(case, var(x), lengths=lengths), None
    randomize(rng, 'layer')
    seq = build(case, var(x), lengths=lengths, return_sequences=True)
    got_y, got_seq = forward(y, seq)
    np.testing.assert_array_equal(got_y, got_seq[np.arange(B), lengths - 1])


def test_bidirectional_with_lengths_runs_backward_over_the_valid_part_only(rng):
    lengths = np.array([T, 2, 4, 1])
    x = rng.randn(B, T, D)
    y, c_f, h_f, c_b, h_b = nnlstm.Bidirectional(nnlstm.LSTM, var(x), H, lengths=lengths,
                                                 return_sequences=True, return_state=True,
                                                 name='bi')
    randomize(rng, 'bi')
    got = forward(y, h_f, h_b)
    for b, n in enumerate(lengths):
        ys_f, (_, hf) = equations('lstm', 'bi/forward', x[b:b + 1, :n], None)
        ys_b, (_, hb) = equations('lstm', 'bi/backward', x[b:b + 1, :n], None, reverse=True)
        np.testing.assert_allclose(got[0][b, :n], np.concatenate([ys_f, ys_b], -1)[0],
                                   atol=1e-5)
        assert np.all(got[0][b, n:] == 0)
        np.testing.assert_allclose(got[1][b], hf[0], atol=1e-5)
        np.testing.assert_allclose(got[2][b], hb[0], atol=1e-5)


def test_identity_rnn_shows_one_input_mask_for_every_step(rng):
    """With W_x = I, W_h = 0, b = 0 and a linear activation, y_t = x_t * mask: the variational
    mask is the same at every step, 0 or 1 / (1 - p), and differs between sequences."""
    eye = np.concatenate([np.eye(H), np.zeros((H, H))])
    y = nnlstm.SimpleRNN(var(np.ones((64, T, H))), H, return_sequences=True, dropout=0.5,
                         activation='linear', kernel_initializer=eye[:H],
                         recurrent_initializer=np.zeros((H, H)))
    got = forward(y)[0]
    for t in range(T):
        np.testing.assert_array_equal(got[:, t], got[:, 0])
    assert set(np.unique(got)) == {0.0, 2.0}
    assert 0.3 < np.mean(got == 0) < 0.7
    assert len({tuple(row) for row in got[:, 0]}) > 1
    assert 'Dropout' in functions_of([y])


def test_identity_rnn_shows_one_recurrent_mask_for_every_step():
    """With W_x = 0, W_h = I, h0 = 1 and a linear activation, h_t = h_{t-1} * mask, so
    h_t = mask^t: the same units are dropped at every step."""
    h0 = var(np.ones((64, H)))
    y = nnlstm.SimpleRNN(var(np.zeros((64, T, 1))), H, initial_state=h0, return_sequences=True,
                         recurrent_dropout=0.5, activation='linear', use_bias=False,
                         kernel_initializer=np.zeros((1, H)), recurrent_initializer=np.eye(H))
    got = forward(y)[0]
    kept = got[:, 0] != 0
    for t in range(T):
        np.testing.assert_array_equal(got[:, t], np.where(kept, 2.0 ** (t + 1), 0.0))
    assert 0.3 < np.mean(kept) < 0.7


@pytest.mark.parametrize('case', CASES)
def test_inference_graphs_have_no_dropout(case):
    x = var(np.ones((B, T, D)))
    train = build(case, x, dropout=0.3, recurrent_dropout=0.3)
    assert 'Dropout' in functions_of([train])
    with nn.no_grad():
        inference = build(case, x, dropout=0.3, recurrent_dropout=0.3)
    assert 'Dropout' not in functions_of([inference])
    explicit = build(case, x, dropout=0.3, recurrent_dropout=0.3, training=False)
    assert 'Dropout' not in functions_of([explicit])
    assert len(nn.get_parameters()) == len(layer_params('layer'))  # one set, shared


@pytest.mark.parametrize('case', CASES)
def test_stateful_run_over_two_chunks_equals_one_run_over_the_joined_sequence(rng, case):
    x = rng.randn(B, 2 * T, D)
    whole = build(case, var(x), return_sequences=True, return_state=True)
    randomize(rng, 'layer')
    want = forward(*whole)
    carry = nnlstm.Carry()
    chunk = nn.Variable((B, T, D))
    out = build(case, chunk, return_sequences=True, return_state=True, stateful=carry)
    parts = []
    for k in range(2):
        chunk.d = x[:, k * T:(k + 1) * T]
        F.sink(*out).forward(clear_buffer=True)
        parts.append(out[0].d.copy())
        carry.advance()
    np.testing.assert_allclose(np.concatenate(parts, axis=1), want[0], atol=1e-6)
    for g, w in zip(out[1:], want[1:]):
        np.testing.assert_allclose(g.d, w, atol=1e-6)
    carry.reset_state()
    chunk.d = x[:, :T]
    out[0].forward()
    np.testing.assert_allclose(out[0].d, want[0][:, :T], atol=1e-6)


def test_stateful_training_carries_values_but_not_gradients(rng):
    """Truncated BPTT: the second window's gradient w.r.t. its carried initial state stops
    there, and the window after an update starts from the carried state."""
    carry = nnlstm.Carry()
    x = nn.Variable((B, T, D))
    y = nnlstm.Stacked(nnlstm.LSTM, x, H, stateful=carry, return_sequences=True)
    loss = F.mean(y)
    for _ in range(2):
        x.d = rng.randn(B, T, D)
        loss.forward(clear_no_need_grad=True)
        loss.backward(clear_buffer=True)
        carry.advance()
    assert len(carry._pairs()) == 2  # one per stacked layer
    for initial, final in carry._pairs():
        for v0, v in zip(initial, final):
            np.testing.assert_array_equal(v0.d, v.d)
            assert not v0.need_grad and np.abs(v0.d).sum() > 0


@pytest.mark.parametrize('merge_mode', ['concat', 'sum', 'mul', 'ave', None])
@pytest.mark.parametrize('return_sequences', [False, True])
def test_bidirectional_merges_a_forward_and_a_backward_layer(rng, merge_mode,
                                                             return_sequences):
    x = rng.randn(B, T, D)
    out = nnlstm.Bidirectional(nnlstm.GRU, var(x), H, merge_mode=merge_mode, name='bi',
                               return_sequences=return_sequences, return_state=True)
    assert sorted(nn.get_parameters()) == sorted(
        'bi/%s/%s/affine/%s' % (d, p, w) for d in ('forward', 'backward')
        for p in ('WzWrWn', 'UzUrUn') for w in 'Wb')
    randomize(rng, 'bi')
    got = forward(*out)
    ys_f, (h_f,) = equations('gru', 'bi/forward', x, None)
    ys_b, (h_b,) = equations('gru', 'bi/backward', x, None, reverse=True)
    # Keras: the backward sequence aligned with the input; its last output is after step 0.
    a, b = (ys_f, ys_b) if return_sequences else (ys_f[:, -1], ys_b[:, 0])
    merged = {'concat': lambda: np.concatenate([a, b], -1), 'sum': lambda: a + b,
              'mul': lambda: a * b, 'ave': lambda: (a + b) / 2, None: lambda: None}[merge_mode]()
    ys = [a, b] if merge_mode is None else [merged]
    for g, w in zip(got, ys + [h_f, h_b]):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert len(got) == len(ys) + 2


def test_bidirectional_splits_initial_state_into_forward_and_backward_halves(rng):
    x = rng.randn(B, T, D)
    s = [rng.randn(B, H) for _ in range(4)]
    y, c_f, h_f, c_b, h_b = nnlstm.Bidirectional(nnlstm.LSTM, var(x), H, name='bi',
                                                 initial_state=[var(v) for v in s],
                                                 return_state=True)
    randomize(rng, 'bi')
    got = forward(y, c_f, h_f, c_b, h_b)
    _, (cf, hf) = equations('lstm', 'bi/forward', x, (s[0], s[1]))
    _, (cb, hb) = equations('lstm', 'bi/backward', x, (s[2], s[3]), reverse=True)
    for g, w in zip(got[1:], (cf, hf, cb, hb)):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_stacked_layers_read_the_previous_layers_sequence(rng):
    x = rng.randn(B, T, D)
    y, states = nnlstm.Stacked(nnlstm.LSTM, var(x), H, num_layers=3, name='st',
                               return_state=True)
    assert sorted({k.rsplit('/', 3)[0] for k in nn.get_parameters()}) == [
        'st/layer0', 'st/layer1', 'st/layer2']
    randomize(rng, 'st')
    got = forward(y, *[v for s in states for v in s])
    seq = x
    for k in range(3):
        seq, (c, h) = equations('lstm', 'st/layer%d' % k, seq, None)
        np.testing.assert_allclose(got[1 + 2 * k], c, atol=1e-5)
        np.testing.assert_allclose(got[2 + 2 * k], h, atol=1e-5)
    np.testing.assert_allclose(got[0], seq[:, -1], atol=1e-5)


def test_stacked_bidirectional_and_between_layer_dropout(rng):
    x = var(rng.randn(B, T, D))
    bi = functools.partial(nnlstm.Bidirectional, nnlstm.LSTM)
    y = nnlstm.Stacked(bi, x, H, num_layers=2, dropout=0.4, name='st', return_sequences=True)
    assert y.shape == (B, T, 2 * H)
    assert {k.rsplit('/', 3)[0] for k in nn.get_parameters()} == {
        'st/layer0/forward', 'st/layer0/backward', 'st/layer1/forward', 'st/layer1/backward'}
    assert 'Dropout' in functions_of([y])
    with nn.no_grad():
        y2 = nnlstm.Stacked(bi, x, H, num_layers=2, dropout=0.4, name='st')
    assert 'Dropout' not in functions_of([y2])


@pytest.mark.parametrize('case', CASES)
def test_inference_graph_uses_the_fast_product_and_agrees_with_the_training_graph(rng, case):
    """One predicate picks the product: MulN (fast, but NaN gradients at exact zeros) only
    where no gradient can be asked for, Mul2 everywhere else (in the unrolled graph)."""
    x = var(rng.randn(B, T, D))
    lengths = np.array([T, 2, 5, 1])
    train = build(case, x, return_sequences=True, lengths=lengths, fused=False)
    randomize(rng, 'layer')
    with nn.no_grad():
        inference = build(case, x, return_sequences=True, lengths=lengths, fused=False)
    assert 'MulN' not in functions_of([train]) and 'Mul2' in functions_of([train])
    assert 'MulN' in functions_of([inference])
    a, b = forward(train, inference)
    np.testing.assert_allclose(a, b, atol=1e-6)
    with nn.no_grad():
        asks_for_grad = build(case, var(x.d, need_grad=True), fused=False)
    assert 'MulN' not in functions_of([asks_for_grad])


@pytest.mark.parametrize('case', CASES)
def test_exact_zeros_give_finite_gradients(case):
    """Zero inputs, a zero state, zero bias, dropout and length masks: every factor of some
    product is exactly zero somewhere, which NNabla's MulN backward turns into NaN."""
    x = var(np.zeros((B, T, D)), need_grad=True)
    y = build(case, x, return_sequences=True, dropout=0.5, recurrent_dropout=0.5,
              lengths=np.array([T, 0, 3, 1]),
              **({'unit_forget_bias': False} if case == 'lstm' else {}))
    loss = F.sum(y)
    loss.forward()
    loss.backward()
    assert np.isfinite(x.g).all()
    assert all(np.isfinite(p.g).all() for p in nn.get_parameters().values())


@pytest.mark.parametrize('case', CASES)
def test_time_major(rng, case):
    x = rng.randn(B, T, D)
    a = build(case, var(x), return_sequences=True)
    b = build(case, var(x.transpose(1, 0, 2)), return_sequences=True, time_major=True)
    got = forward(a, b)
    np.testing.assert_array_equal(got[0], got[1].transpose(1, 0, 2))


@pytest.mark.parametrize('case', ['gru', 'gru_reset_before', 'rnn'])
def test_gradients_match_finite_differences(rng, case):
    b, t, d, h = 2, 3, 2, 3
    x, h0, g = rng.randn(b, t, d), rng.randn(b, h), rng.randn(b, t, h)
    xv, hv = var(x, True), var(h0, True)
    layer, options, _ = CASES[case]
    y = layer(xv, h, initial_state=hv, return_sequences=True, name='layer', **options)
    randomize(rng, 'layer')
    loss = F.sum(F.mul2(y, var(g)))
    for p in nn.get_parameters().values():
        p.grad.zero()
    loss.forward()
    loss.backward()
    inputs = dict(layer_params('layer'), x=x, h0=h0)
    analytic = dict({k[len('layer/'):]: v.g for k, v in nn.get_parameters().items()},
                    x=xv.g, h0=hv.g)

    def objective(values):
        ys, _ = equations(case, 'layer', values['x'], (values['h0'],), params=values)
        return np.sum(ys * g)

    reference.assert_gradients(analytic, inputs, objective)


X = np.zeros((B, T, D))


@pytest.mark.parametrize('call,error,match', [
    (lambda: nnlstm.GRU(var(X), H, initial_state=(var(np.zeros((B, H))),) * 2), TypeError,
     r'`initial_state` must be an nnabla.Variable; received tuple'),
    (lambda: nnlstm.GRU(var(X), H, initial_state=var(np.zeros((B, 2)))), ValueError,
     r'`initial_state \(h0\)` has shape \(4, 2\); expected \(B, units\) = \(4, 5\)'),
    (lambda: nnlstm.LSTM(var(X), H, lengths=np.array([1, 2])), ValueError,
     r'`lengths` must be \(B,\) = \(4,\) ints; received int64 \(2,\)'),
    (lambda: nnlstm.LSTM(var(X), H, lengths=np.array([1, 2, 3, 7])), ValueError,
     r'`lengths` must lie in \[0, T\] = \[0, 6\]; received \[1, 2, 3, 7\]'),
    (lambda: nnlstm.LSTM(var(X), H, lengths=np.array([1., 2, 3, 4])), ValueError,
     r'`lengths` must be \(B,\) = \(4,\) ints; received float64'),
    (lambda: nnlstm.LSTM(var(X), H, lengths=var(np.ones((B, 1)))), ValueError,
     r'`lengths` has shape \(4, 1\); expected \(B,\) = \(4,\)'),
    (lambda: nnlstm.LSTM(var(X), H, dropout=1.0), ValueError,
     r'`dropout` must be in \[0, 1\); received 1.0'),
    (lambda: nnlstm.LSTM(var(X), H, recurrent_dropout='0.1'), TypeError,
     r'`recurrent_dropout` must be a float in \[0, 1\); received str'),
    (lambda: nnlstm.LSTM(var(X), H, stateful=True), TypeError,
     r'`stateful` must be an nnlstm.Carry; received bool'),
    (lambda: nnlstm.LSTM(var(X), H, stateful=nnlstm.Carry(),
                         initial_state=(var(np.zeros((B, H))),) * 2), ValueError,
     r'give `initial_state` or `stateful`, not both'),
    (lambda: nnlstm.LSTM(var(X), H, peephole=True), TypeError, r"peephole"),
    (lambda: nnlstm.Bidirectional(len, var(X), H), TypeError,
     r'`layer` must be nnlstm.LSTM, nnlstm.GRU or nnlstm.SimpleRNN'),
    (lambda: nnlstm.Bidirectional(nnlstm.LSTM, var(X), H, go_backwards=True), ValueError,
     r'`go_backwards` is not an option of Bidirectional'),
    (lambda: nnlstm.Bidirectional(nnlstm.LSTM, var(X), H, merge_mode='max'), ValueError,
     r"`merge_mode` must be one of 'concat', 'sum', 'mul', 'ave', None; received 'max'"),
    (lambda: nnlstm.Bidirectional(nnlstm.GRU, var(X), H, initial_state=[var(np.zeros((B, H)))]),
     ValueError, r'`initial_state` must hold 2 Variables, the forward layer'),
    (lambda: nnlstm.Stacked(nnlstm.LSTM, var(X), H, num_layers=0), ValueError,
     r'`num_layers` must be a positive int; received 0'),
    (lambda: nnlstm.Stacked(nnlstm.GRU, var(X), H, initial_state=[None]), ValueError,
     r'`initial_state` must hold one state per layer, 2; received 1'),
])
def test_bad_arguments_are_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize('target,function', [('cudnn', 'LSTM'),
                                             ('cpu', nnlstm.fused.FusedLayer.NAME)])
@pytest.mark.parametrize('with_state,use_bias', [(False, True), (True, True), (True, False)])
def test_fused_path_agrees_with_the_unrolled_graph(rng, monkeypatch, with_state, use_bias,
                                                   target, function):
    """The same parameters through each fused path and through the unrolled graph:
    NNabla's F.lstm (the cuDNN path, its backend faked: F.lstm runs on CPU too) and the CPU
    kernels; outputs, states and every gradient."""
    monkeypatch.setattr(nnlstm.layers, 'backend', lambda: target)
    x = rng.randn(B, T, D)
    s = [rng.randn(B, H), rng.randn(B, H)]
    results = []
    for fused in (False, True):
        xv = var(x, True)
        sv = [var(v, True) for v in s] if with_state else None
        y, c, h = nnlstm.LSTM(xv, H, sv, return_sequences=True, return_state=True,
                              fused=fused, use_bias=use_bias)
        if not results:
            randomize(rng, 'lstm')
        assert (function in functions_of([y])) == fused
        loss = F.sum(F.mul2(y, var(np.linspace(-1, 1, B * T * H).reshape(B, T, H))))
        loss = F.add2(loss, F.add2(F.sum(c), F.sum(F.mul_scalar(h, 0.5))))
        for p in nn.get_parameters().values():
            p.grad.zero()
        loss.forward()
        loss.backward()
        results.append([y.d.copy(), c.d.copy(), h.d.copy(), xv.g.copy()]
                       + ([v.g.copy() for v in sv] if with_state else [])
                       + [p.g.copy() for p in nn.get_parameters().values()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_fused_path_is_taken_only_when_asked_or_under_cudnn(rng, monkeypatch):
    x = var(rng.randn(B, T, D))
    assert 'LSTM' not in functions_of([nnlstm.LSTM(x, H)])  # CPU context: the CPU kernels
    monkeypatch.setattr(nnlstm.layers, 'backend', lambda: 'cudnn')
    with pytest.raises(ValueError, match=r"`fused`=True cannot run this LSTM layer fused on "
                                         r"cudnn; these options prevent it: `lengths`, "
                                         r"`dropout`$"):
        nnlstm.LSTM(x, H, fused=True, lengths=np.full(B, T), dropout=0.2)
    with pytest.raises(ValueError, match=r"a gru layer"):
        nnlstm.GRU(x, H, fused=True)
    with pytest.raises(TypeError, match=r"`fused` must be None, True or False; received 'yes'"):
        nnlstm.LSTM(x, H, fused='yes')
    with pytest.raises(TypeError, match=r"`stateful` must be an nnlstm.Carry; received bool"):
        nnlstm.LSTM(x, H, fused=True, stateful=True)
    # options at their defaults do not prevent fusing, nor reach the cell
    y = nnlstm.LSTM(x, H, fused=True, dropout=0.0, recurrent_dropout=0.0, training=True)
    assert 'LSTM' in functions_of([y])


@pytest.mark.parametrize('case,go_backwards,time_major',
                         [('lstm', False, False), ('lstm', True, False), ('gru', False, True),
                          ('rnn', True, True)])
def test_sequences_longer_than_a_chunk_match_their_equations(rng, case, go_backwards,
                                                             time_major):
    """Past CHUNK steps the time axis is split and the sequence stacked in chunks."""
    steps = 2 * CHUNK + 3
    x = rng.randn(2, steps, D)
    xv = var(x.transpose(1, 0, 2) if time_major else x)
    out = build(case, xv, return_sequences=True, return_state=True, go_backwards=go_backwards,
                time_major=time_major)
    randomize(rng, 'layer')
    got = forward(*out)
    ys, states = equations(case, 'layer', x, None, reverse=go_backwards)
    ys = ys[:, ::-1] if go_backwards else ys
    np.testing.assert_allclose(got[0].transpose(1, 0, 2) if time_major else got[0], ys,
                               atol=1e-5)
    for g, w in zip(got[1:], states):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_lengths_past_a_chunk(rng):
    steps = CHUNK + 10
    lengths = np.array([steps, CHUNK + 2, 3])
    x = rng.randn(3, steps, D)
    y, c, h = build('lstm', var(x), return_sequences=True, return_state=True, lengths=lengths)
    randomize(rng, 'layer')
    got = forward(y, c, h)
    for b, n in enumerate(lengths):
        ys, (cb, hb) = equations('lstm', 'layer', x[b:b + 1, :n], None)
        np.testing.assert_allclose(got[0][b, :n], ys[0], atol=1e-5)
        assert np.all(got[0][b, n:] == 0)
        np.testing.assert_allclose(got[1][b], cb[0], atol=1e-5)
        np.testing.assert_allclose(got[2][b], hb[0], atol=1e-5)
