"""Zoneout, weight dropout (DropConnect on the recurrent kernel) and state resets on every
cell, against NumPy references written from their equations (issue 13, points 4-6)."""
import functools

import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
from nnlstm.cells import Core
import reference
from nnlstm.export import functions_of
from nnlstm.unroll import CHUNK, unroll
from test_layers import (B, CASES, D, H, T, build, equations, forward, layer_params,
                         randomize, var)

#: A rate per state tensor for each case: LSTM's (z_c, z_h) pair, one z for the others.
ZONEOUT = {'lstm': (0.3, 0.6), 'gru': 0.4, 'gru_reset_before': 0.4, 'rnn': 0.5,
           'lstm_layer_norm': (0.3, 0.6), 'gru_layer_norm': 0.4}


def zero_state(case, batch=B):
    return [np.zeros((batch, H)) for _ in CASES[case][2]]


def stepped(case, x, state, zoneout=0.0, keep=None, resets=None, reverse=False, name='layer',
            params=None):
    """The NumPy reference stepped by hand: each step the cell's equations, then zoneout's
    blend (``keep``: per step the 0/1 masks, 1 = the new value; None: the expectation),
    with the state first set to ``state`` where ``resets[:, t]`` is 1. Returns (ys, state)."""
    fields = CASES[case][2]
    rates = zoneout if isinstance(zoneout, tuple) else (zoneout,) * len(fields)
    initial, ys = list(state), np.zeros(x.shape[:2] + (H,))
    for t in (range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])):
        if resets is not None:
            r = resets[:, t:t + 1]
            state = [(1 - r) * s + r * s0 for s, s0 in zip(state, initial)]
        _, new = equations(case, name, x[:, t:t + 1], state, params=params)
        if keep is None:
            new = [z * o + (1 - z) * n for z, o, n in zip(rates, state, new)]
        else:
            new = [o + k[t] * (n - o) for o, n, k in zip(state, new, keep)]
        ys[:, t], state = new[-1], new
    return ys, state


@pytest.mark.parametrize('case', CASES)
def test_zoneout_inference_graph_equals_the_cell_stepped_by_hand_with_the_blend(rng, case):
    x = rng.randn(B, T, D)
    with nn.no_grad():
        out = build(case, var(x), zoneout=ZONEOUT[case], return_sequences=True,
                    return_state=True)
    randomize(rng, 'layer')
    got = forward(*out)
    ys, state = stepped(case, x, zero_state(case), ZONEOUT[case])
    np.testing.assert_allclose(got[0], ys, atol=1e-5)
    for g, w in zip(got[1:], state):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert not {'Rand', 'Dropout'} & functions_of(out)


@pytest.mark.parametrize('case', CASES)
def test_zoneout_training_with_fixed_masks_equals_the_reference(rng, case, monkeypatch):
    """The masks the loop draws replaced by known ones: the training blend, c and h alike,
    and the output sequence is the zoned-out h."""
    rates = ZONEOUT[case]
    fields = CASES[case][2]
    keep = [(rng.rand(T, B, H) >= 0.5).astype(np.float32) for _ in fields]
    monkeypatch.setattr(Core, 'zoneout_masks', lambda self, batch, steps=None: tuple(map(var, keep)))
    x = rng.randn(B, T, D)
    out = build(case, var(x), zoneout=rates, return_sequences=True, return_state=True)
    randomize(rng, 'layer')
    got = forward(*out)
    ys, state = stepped(case, x, zero_state(case), keep=keep)
    np.testing.assert_allclose(got[0], ys, atol=1e-5)
    for g, w in zip(got[1:], state):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_zoneout_training_keeps_each_unit_with_probability_z_per_step_unit_and_sample(rng):
    """A unit that zones out keeps its previous value exactly; the fraction is z, and the
    masks differ between steps and between samples."""
    z = 0.3
    x = var(rng.randn(256, T, D))
    y = nnlstm.SimpleRNN(x, H, zoneout=z, return_sequences=True, training=True)
    randomize(rng, 'simple_rnn')
    got = forward(y)[0]
    kept = np.concatenate([got[:, :1] == 0, got[:, 1:] == got[:, :-1]], axis=1)
    assert abs(kept.mean() - z) < 0.03
    assert len({kept[:, t].tobytes() for t in range(T)}) == T
    assert len({row.tobytes() for row in kept[:, 1]}) == 2 ** H  # every pattern of H units
    assert 'Rand' in functions_of([y])


@pytest.mark.parametrize('case', CASES)
def test_neutral_settings_equal_the_plain_layer_exactly_in_training(rng, case):
    x = var(rng.randn(B, T, D))
    plain = build(case, x, return_sequences=True, training=True, fused=False)
    randomize(rng, 'layer')  # resets keep the unrolled graph: compare it with its own kind
    neutral = build(case, x, return_sequences=True, training=True, weight_dropout=0.0,
                    zoneout=0.0, resets=np.zeros((B, T)))
    got = forward(plain, neutral)
    np.testing.assert_array_equal(got[0], got[1])


@pytest.mark.parametrize('case', CASES)
def test_weight_dropout_inference_graph_is_the_plain_layer(rng, case):
    x = var(rng.randn(B, T, D))
    with nn.no_grad():
        plain = build(case, x, return_sequences=True)
        randomize(rng, 'layer')
        dropped = build(case, x, return_sequences=True, weight_dropout=0.5)
    got = forward(plain, dropped)
    np.testing.assert_array_equal(got[0], got[1])
    assert 'Dropout' not in functions_of([dropped])


@pytest.mark.parametrize('case', CASES)
def test_weight_dropout_one_mask_on_the_recurrent_rows_per_forward_pass(rng, case):
    """The core's weights as the steps read them: the x rows and biases as they are, the h
    rows 0 or W / (1 - p); the output equals the reference with those weights at every step,
    and a new forward pass draws a new mask, the same one again from the same seed."""
    p = 0.5
    layer, options, _ = CASES[case]
    x = rng.randn(B, T, D)
    with nn.parameter_scope('layer'):
        core = layer.cell_kind.core(D, H, training=True, weight_dropout=p, **options)
    outputs, _ = unroll(core, var(x))
    randomize(rng, 'layer')
    y = F.stack(*outputs, axis=1)
    drawn = []
    for seed in (7, 8, 7):
        nn.random.seed(seed)
        F.sink(y, *[w for w in core.params if w is not None]).forward()
        weights = {spec.name: w.d.astype(np.float64)
                   for spec, w in zip(core.kind.params, core.params) if w is not None}
        ys, _ = equations(case, 'layer', x, None, params=weights)
        np.testing.assert_allclose(y.d, ys, atol=1e-5)
        masks = []
        for spec, w in zip(core.kind.params, core.params):
            if w is None:
                continue
            raw = nn.get_parameters(grad_only=False)['layer/' + spec.name].d
            raw, read = raw.astype(np.float32), w.d.astype(np.float32)
            rows = {'kernel+recurrent': slice(D, None),
                    'recurrent': slice(None)}.get(spec.role)
            if rows is None:
                np.testing.assert_array_equal(read, raw)
                continue
            np.testing.assert_array_equal(read[:rows.start or 0], raw[:rows.start or 0])
            mask = read[rows] / raw[rows]
            np.testing.assert_allclose(mask[mask != 0], 1 / (1 - p), rtol=1e-6)
            assert 0.3 < np.mean(mask == 0) < 0.7
            masks.append(mask == 0)
        drawn.append(np.concatenate([m.ravel() for m in masks]))
    assert (drawn[0] == drawn[2]).all() and not (drawn[0] == drawn[1]).all()


def resets_of(rows):
    """(B, T) resets with a 1 at each listed step of each row."""
    resets = np.zeros((B, T), np.float32)
    for b, steps in enumerate(rows):
        resets[b, list(steps)] = 1
    return resets


#: Row 0 reset at 3, row 1 never, row 2 at 0 and 4, row 3 at 1.
RESETS = [(3,), (), (0, 4), (1,)]


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('go_backwards', [False, True])
@pytest.mark.parametrize('with_state', [False, True])
def test_a_reset_sequence_continues_as_a_fresh_run(rng, case, go_backwards, with_state):
    """A reset at step r (the input's time index): steps r, r + 1, ... (r, r - 1, ..., 0 with
    go_backwards) equal a fresh run over them from the initial state."""
    x = rng.randn(B, T, D)
    fields = CASES[case][2]
    state = [rng.randn(B, H) for _ in fields] if with_state else zero_state(case)
    arg = None if not with_state else (var(state[0]) if len(fields) == 1
                                       else tuple(var(s) for s in state))
    resets = resets_of(RESETS)
    out = build(case, var(x), initial_state=arg, return_sequences=True, return_state=True,
                go_backwards=go_backwards, resets=var(resets))
    randomize(rng, 'layer')
    got = forward(*out)
    ys = got[0][:, ::-1] if go_backwards else got[0]
    want, final = stepped(case, x, state, resets=resets, reverse=go_backwards)
    np.testing.assert_allclose(ys, want, atol=1e-5)
    for g, w in zip(got[1:], final):
        np.testing.assert_allclose(g, w, atol=1e-5)
    # the property itself, row 0 reset at r = 3, against an independent fresh run
    r, s0 = 3, [s[:1] for s in state]
    part = x[:1, r:] if not go_backwards else x[:1, :r + 1]
    fresh, _ = equations(case, 'layer', part, s0, reverse=go_backwards)
    np.testing.assert_allclose(ys[:1, r:] if not go_backwards else ys[:1, :r + 1], fresh,
                               atol=1e-5)


def test_resets_with_lengths_zoneout_and_time_major(rng):
    """Padded steps ignore their resets; zoneout (inference) blends from the reset state;
    time-major resets are (T, B)."""
    x = rng.randn(B, T, D)
    lengths = np.array([T, 4, 2, 5])
    resets = resets_of([(3,), (1,), (0, 4), (5,)])  # row 2 at 4 and row 3 at 5: padded
    with nn.no_grad():
        y, c, h = nnlstm.LSTM(var(x), H, return_sequences=True, return_state=True,
                              name='layer', lengths=lengths, resets=resets,
                              zoneout=(0.2, 0.4))
        y_tm = nnlstm.LSTM(var(x.transpose(1, 0, 2)), H, return_sequences=True, name='layer',
                           lengths=lengths, resets=resets.T, zoneout=(0.2, 0.4),
                           time_major=True)
    randomize(rng, 'layer')
    got = forward(y, c, h, y_tm)
    for b, n in enumerate(lengths):
        ys, state = stepped('lstm', x[b:b + 1, :n], zero_state('lstm', 1), (0.2, 0.4),
                            resets=resets[b:b + 1, :n])
        np.testing.assert_allclose(got[0][b, :n], ys[0], atol=1e-5)
        assert np.all(got[0][b, n:] == 0)
        np.testing.assert_allclose(got[1][b], state[0][0], atol=1e-5)
        np.testing.assert_allclose(got[2][b], state[1][0], atol=1e-5)
    np.testing.assert_array_equal(got[3].transpose(1, 0, 2), got[0])


def test_bidirectional_resets_split_the_sequence_into_independent_segments(rng):
    """Resets mark where segments start: each segment's outputs equal a Bidirectional run
    over that segment alone (the backward direction starts each at its last step)."""
    x = rng.randn(B, T, D)
    resets = resets_of(RESETS)
    y = nnlstm.Bidirectional(nnlstm.GRU, var(x), H, return_sequences=True, name='bi',
                             resets=var(resets), zoneout=0.3, training=False)
    randomize(rng, 'bi')
    got = forward(y)[0]
    for b, steps in enumerate(RESETS):
        bounds = sorted(set((0,) + steps + (T,)))
        for start, stop in zip(bounds[:-1], bounds[1:]):
            part = x[b:b + 1, start:stop]
            yf, _ = stepped('gru', part, zero_state('gru', 1), 0.3, name='bi/forward')
            yb, _ = stepped('gru', part, zero_state('gru', 1), 0.3, reverse=True,
                            name='bi/backward')
            np.testing.assert_allclose(got[b:b + 1, start:stop],
                                       np.concatenate([yf, yb], axis=-1), atol=1e-5)


def test_stacked_layers_all_reset(rng):
    """Stacked passes resets to every layer: a row reset at 3 continues as a fresh stacked
    run over steps 3, 4, ...; zoneout and weight_dropout pass on too."""
    x = rng.randn(B, T, D)
    resets = resets_of(RESETS)
    with nn.no_grad():
        y = nnlstm.Stacked(nnlstm.LSTM, var(x), H, return_sequences=True, resets=resets,
                           zoneout=0.1, weight_dropout=0.3)
        randomize(rng, 'stacked')
        fresh = nnlstm.Stacked(nnlstm.LSTM, var(x[:1, 3:]), H, return_sequences=True,
                               zoneout=0.1)
        unreset = nnlstm.Stacked(nnlstm.LSTM, var(x[1:2]), H, return_sequences=True,
                                 zoneout=0.1)
    got = forward(y, fresh, unreset)
    np.testing.assert_allclose(got[0][:1, 3:], got[1], atol=1e-6)
    np.testing.assert_allclose(got[0][1:2], got[2], atol=1e-6)


def test_a_reset_inside_a_stateful_window_starts_from_zeros(rng):
    """With a Carry, a reset starts from zeros, not from the carried state: the second
    window, reset at step 2, continues as a fresh run over its steps 2, 3, ..."""
    x = rng.randn(B, 2 * T, D)
    carry = nnlstm.Carry()
    window, resets = nn.Variable((B, T, D)), nn.Variable((B, T))
    y = nnlstm.GRU(window, H, return_sequences=True, stateful=carry, resets=resets,
                   name='layer')
    randomize(rng, 'layer')
    for k, steps in enumerate([(), (2,)]):
        window.d, resets.d = x[:, k * T:(k + 1) * T], resets_of([steps] * B)
        y.forward()
        carry.advance()
    whole, _ = equations('gru', 'layer', x[:, :T], None)
    np.testing.assert_allclose(y.d[:, :2], equations('gru', 'layer', x[:, T:T + 2],
                                                     [whole[:, -1]])[0], atol=1e-5)
    np.testing.assert_allclose(y.d[:, 2:], equations('gru', 'layer', x[:, T + 2:], None)[0],
                               atol=1e-5)


@pytest.mark.parametrize('case', CASES)
def test_cells_take_zoneout(rng, case):
    """A one-step cell call: in inference the blend with the state it was given, in
    training each unit either keeps its value or takes the new one."""
    layer, options, fields = CASES[case]
    cell = layer.cell_kind.cell
    x, states = rng.randn(B, D), [rng.randn(B, H) for _ in fields]
    with nn.no_grad():
        plain = cell(var(x), *map(var, states), name='layer', **options)
        zoned = cell(var(x), *map(var, states), name='layer', zoneout=ZONEOUT[case],
                     **options)
    trained = cell(var(x), *map(var, states), name='layer', zoneout=ZONEOUT[case],
                   training=True, **options)
    randomize(rng, 'layer')
    as_tuple = functools.partial(lambda v: v if isinstance(v, tuple) else (v,))
    plain, zoned, trained = map(as_tuple, (plain, zoned, trained))
    got = forward(*plain, *zoned, *trained)
    n = len(fields)
    rates = ZONEOUT[case] if n > 1 else (ZONEOUT[case],)
    for k, z in enumerate(rates):
        np.testing.assert_allclose(got[n + k], z * states[k] + (1 - z) * got[k], atol=1e-6)
        t = got[2 * n + k]
        assert np.all(np.isclose(t, states[k], atol=1e-7) | np.isclose(t, got[k], atol=1e-7))


@pytest.mark.parametrize('layer', [nnlstm.LSTM, nnlstm.GRU])
def test_step_network_with_zoneout_run_T_times_equals_the_layer(rng, layer):
    x = rng.randn(B, T, D)
    rate = (0.2, 0.5) if layer is nnlstm.LSTM else 0.3
    with nn.no_grad():
        y = layer(var(x), H, return_sequences=True, name='enc', zoneout=rate,
                  weight_dropout=0.4)
    randomize(rng, 'enc')
    want = forward(y)[0]
    inputs, outputs = nnlstm.step_network(layer, D, H, name='enc', batch_size=B,
                                          zoneout=rate, weight_dropout=0.4)
    fields = layer.cell_kind.state._fields
    for f in fields:
        inputs[f].d = 0
    for t in range(T):
        inputs['x'].d = x[:, t]
        nn.forward_all(list(outputs.values()))
        np.testing.assert_allclose(outputs['y'].d, want[:, t], atol=1e-5)
        for f in fields:
            inputs[f].d = outputs[f + '_next'].d


@pytest.mark.parametrize('call,error,match', [
    (lambda x: nnlstm.GRU(x, H, zoneout=(0.1, 0.2)), ValueError,
     r"`zoneout` of a GRU is one rate \(its state is h alone\); received \(0.1, 0.2\)"),
    (lambda x: nnlstm.LSTM(x, H, zoneout=(0.1, 0.2, 0.3)), ValueError,
     r"`zoneout` of a LSTM is one rate or 2, \(z_c, z_h\)"),
    (lambda x: nnlstm.LSTM(x, H, zoneout=(0.1, 1.0)), ValueError,
     r"`zoneout \(z_h\)` must be in \[0, 1\); received 1.0"),
    (lambda x: nnlstm.SimpleRNN(x, H, zoneout='0.1'), TypeError, r"`zoneout` must be a float"),
    (lambda x: nnlstm.LSTM(x, H, weight_dropout=-0.1), ValueError,
     r"`weight_dropout` must be in \[0, 1\)"),
    (lambda x: nnlstm.LSTM(x, H, fused=True, zoneout=0.1, weight_dropout=0.2,
                           resets=np.zeros((B, T)), training=True), ValueError,
     r"these options prevent it: `zoneout`, `weight_dropout`, `resets`"),
    (lambda x: nnlstm.GRU(x, H, resets=np.zeros((B, T + 1))), ValueError,
     r"`resets` has shape \(4, 7\); expected \(B, T\) = \(4, 6\)"),
    (lambda x: nnlstm.GRU(x, H, resets=nn.Variable((T, B))), ValueError,
     r"`resets` has shape \(6, 4\); expected \(B, T\) = \(4, 6\)"),
    (lambda x: nnlstm.LSTM(x, H, resets=np.full((B, T), 2)), ValueError,
     r"`resets` must hold only 0 and 1; received the values \[2\]"),
    (lambda x: nnlstm.LSTM(x, H, resets=[['a'] * T] * B), TypeError,
     r"`resets` must be an nnabla.Variable or an array of 0 and 1"),
    (lambda x: nnlstm.Bidirectional(nnlstm.LSTM, x, H, resets=np.ones((B, 1))), ValueError,
     r"`resets` has shape \(4, 1\)"),
    (lambda x: nnlstm.LSTMCell(x[:, 0], var(np.zeros((B, H))), var(np.zeros((B, H))),
                               resets=np.zeros((B, 1))), TypeError,
     r"LSTMCell\(\) got an unexpected option 'resets'"),
    (lambda x: nnlstm.LSTMCell(x[:, 0], var(np.zeros((B, H))), var(np.zeros((B, H))),
                               training='yes'), TypeError,
     r"`training` must be True or False"),
])
def test_bad_options_are_clear_errors(call, error, match):
    x = var(np.zeros((B, T, D)))
    with pytest.raises(error, match=match):
        call(x)


def test_inference_graph_with_every_option_has_no_random_function():
    x = var(np.zeros((B, T, D)))
    with nn.no_grad():
        y = nnlstm.Bidirectional(nnlstm.LSTM, x, H, zoneout=(0.1, 0.2), weight_dropout=0.3,
                                 resets=np.zeros((B, T)), return_sequences=True)
    assert not {'Rand', 'Dropout', 'GreaterEqualScalar'} & functions_of([y])


@pytest.mark.parametrize('case', CASES)
def test_gradients_with_zoneout_and_resets_match_finite_differences(rng, case, monkeypatch):
    """Training zoneout with fixed masks, a reset to the initial state: the gradients of the
    parameters, the inputs and the initial state against float64 central differences."""
    b, t, d = 2, 3, 2
    fields = CASES[case][2]
    keep = [(rng.rand(t, b, H) >= 0.5).astype(np.float32) for _ in fields]
    monkeypatch.setattr(Core, 'zoneout_masks', lambda self, batch, steps=None: tuple(map(var, keep)))
    x, g = rng.randn(b, t, d), rng.randn(b, t, H)
    states = {'%s0' % f: rng.randn(b, H) for f in fields}
    resets = np.array([[0, 1, 0], [0, 0, 1]], np.float32)
    xv, sv = var(x, True), [var(states['%s0' % f], True) for f in fields]
    y = build(case, xv, initial_state=sv[0] if len(sv) == 1 else tuple(sv),
              return_sequences=True, zoneout=ZONEOUT[case], resets=resets)
    randomize(rng, 'layer')
    loss = F.sum(F.mul2(y, var(g)))
    for p in nn.get_parameters().values():
        p.grad.zero()
    loss.forward()
    loss.backward()
    inputs = dict(layer_params('layer'), x=x, **states)
    analytic = dict({k[len('layer/'):]: v.g for k, v in nn.get_parameters().items()}, x=xv.g,
                    **{'%s0' % f: v.g for f, v in zip(fields, sv)})

    def objective(values):
        ys, _ = stepped(case, values['x'], [values['%s0' % f] for f in fields], keep=keep,
                        resets=resets, params=values)
        return np.sum(ys * g)

    reference.assert_gradients(analytic, inputs, objective)


def test_mc_dropout_samples_zoneout_per_row(rng):
    """Inside mc_dropout zoneout draws its training masks: a spread around a mean near the
    inference graph's expectation blend."""
    x = var(rng.randn(2, T, D))
    with nn.no_grad():
        plain = nnlstm.GRU(x, H, zoneout=0.3, name='layer')
    randomize(rng, 'layer')
    mean, variance = nnlstm.mc_dropout(
        lambda v: nnlstm.GRU(v, H, zoneout=0.3, name='layer'), x, samples=400)
    got = forward(plain, mean, variance)
    assert np.all(got[2] > 1e-4)
    np.testing.assert_allclose(got[1], got[0], atol=0.1)


def counter(x, **options):
    """A SimpleRNN counting its steps: h_t = h_{t-1} + x_t (W_x = W_h = 1, linear)."""
    return nnlstm.SimpleRNN(x, 1, return_sequences=True, activation='linear', use_bias=False,
                            kernel_initializer=np.ones((1, 1)),
                            recurrent_initializer=np.ones((1, 1)), **options)


@pytest.mark.parametrize('go_backwards', [False, True])
def test_the_loop_resets_a_counter_across_chunk_boundaries(go_backwards):
    """h_t counts the steps since the last reset (in processing order), over T = 2 CHUNK + 1
    steps with resets on both sides of each chunk boundary."""
    steps = 2 * CHUNK + 1
    resets = np.zeros((2, steps), np.float32)
    resets[0, [CHUNK - 1, CHUNK, 2 * CHUNK]] = 1
    resets[1, [5]] = 1
    got = forward(counter(var(np.ones((2, steps, 1))), resets=resets,
                          go_backwards=go_backwards))[0][..., 0]
    if go_backwards:
        got = got[:, ::-1]
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    want, count = np.zeros((2, steps)), np.zeros(2)
    for t in order:
        count = np.where(resets[:, t] == 1, 0, count) + 1
        want[:, t] = count
    np.testing.assert_array_equal(got, want)


def test_the_loop_zones_out_a_counter_across_chunk_boundaries():
    """Inference: h_t = h_{t-1} + (1 - z), so h_t = (t + 1)(1 - z); training: each step
    adds 0 (zoned out) or 1, a fraction z of the steps 0."""
    steps, z = 2 * CHUNK + 1, 0.25
    x = var(np.ones((64, steps, 1)))
    with nn.no_grad():
        expected = counter(x, zoneout=z, name='expected')
    trained = counter(x, zoneout=z, name='trained', training=True)
    got = forward(expected, trained)
    np.testing.assert_allclose(got[0][0, :, 0], (np.arange(steps) + 1) * (1 - z), rtol=1e-5)
    added = np.diff(np.concatenate([np.zeros((64, 1)), got[1][..., 0]], axis=1), axis=1)
    assert set(np.unique(added)) == {0.0, 1.0}
    assert abs(np.mean(added == 0) - z) < 0.03


@pytest.mark.parametrize('variant', [{'proj_size': 3}, {'use_peepholes': True}])
def test_lstm_variants_take_zoneout_resets_and_weight_dropout(rng, variant):
    """With a projection (c (B, H), h (B, P)) or peepholes: the inference graph equals the
    one-step cell stepped by hand with zoneout's blend, restarted at each reset; weight
    dropout leaves it unchanged."""
    x = rng.randn(B, T, D)
    resets = resets_of(RESETS)
    zoneout = (0.3, 0.6)
    with nn.no_grad():
        y, c, h = nnlstm.LSTM(var(x), H, return_sequences=True, return_state=True,
                              name='layer', zoneout=zoneout, resets=resets,
                              weight_dropout=0.5, **variant)
        randomize(rng, 'layer')
        p = variant.get('proj_size', H)
        zeros = [var(np.zeros((B, w))) for w in (H, p)]
        state, steps = zeros, []
        for t in range(T):
            r = var(np.repeat(resets[:, t:t + 1], H, axis=1))
            start = [F.mul2(s, F.r_sub_scalar(F.slice(r, (0, 0), (B, s.shape[1])), 1.0))
                     for s in state]
            state = nnlstm.LSTMCell(var(x[:, t]), *start, name='layer', zoneout=zoneout,
                                    **variant)
            steps.append(state[1])
    got = forward(y, c, h, *steps)
    np.testing.assert_allclose(got[0], np.stack(got[3:], axis=1), atol=1e-6)
    assert got[0].shape == (B, T, variant.get('proj_size', H))
    training = nnlstm.LSTM(var(x), H, name='layer', zoneout=zoneout, resets=resets,
                           weight_dropout=0.5, training=True, **variant)
    assert forward(training)[0].shape == (B, variant.get('proj_size', H))
