"""Where the variational dropout masks go (issue 10, point 6). Agreement between two paths
proves nothing about mask placement, so here the masks are fixed to known {0, 1 / (1 - p)}
values and every cell is checked against its NumPy reference written from Keras' placement
(see tests/reference.py): outputs, final states and the gradients of every input by finite
differences; then Bidirectional's two directions and Stacked's between-layer dropout
(PyTorch's ``dropout``: the inputs of every layer but the first).

The masks are made known at their one source, :func:`nnlstm.unroll.dropout_mask`, which
:class:`KnownMasks` replaces; each test also checks which masks were drawn (shape and rate,
once per sequence), so a path that drew its masks elsewhere fails here instead of passing
unchecked."""
import functools
import importlib

import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
import reference
from test_layers import B, CASES, D, H, T, build, equations, layer_params, randomize, var

#: The paths every test runs, as the layers' ``fused`` argument: False the unrolled graph.
#: (On the CPU ``fused=None`` means the unrolled graph too, today; a fused kernel adds None.)
PATHS = [False]

#: The dropout rate of every mask here.
P = 0.5


class KnownMasks:
    """Stands in for :func:`nnlstm.unroll.dropout_mask`: each call returns a new mask (B, W)
    of 0 and 1 / (1 - rate), with exactly ``floor(W * rate)`` zeros per row at random places
    (so each row drops some units and keeps others, and rows differ), and records it:
    ``drawn`` is the list of ``(shape, rate, mask)`` in the order they were drawn."""

    def __init__(self, rng):
        self.rng = rng
        self.drawn = []

    def __call__(self, shape, rate):
        order = np.argsort(self.rng.uniform(size=shape), axis=-1)
        mask = (order >= int(shape[-1] * rate)) / (1.0 - rate)
        self.drawn.append((tuple(shape), rate, mask))
        return nn.Variable.from_numpy_array(mask.astype(np.float32))

    def shapes(self):
        return [(shape, rate) for shape, rate, _ in self.drawn]

    def masks(self):
        return [mask for _, _, mask in self.drawn]


@pytest.fixture
def masks(monkeypatch):
    known = KnownMasks(np.random.RandomState(7))
    # `nnlstm.unroll` is the function; its module is where the loop looks the name up
    monkeypatch.setattr(importlib.import_module('nnlstm.unroll'), 'dropout_mask', known)
    return known


def weighted_sum(outputs, weights):
    """sum_k sum(outputs[k] * weights[k]): a loss that reads every element of every output."""
    terms = [F.sum(F.mul2(v, var(w))) for v, w in zip(outputs, weights)]
    return functools.reduce(F.add2, terms)


@pytest.mark.parametrize('fused', PATHS)
@pytest.mark.parametrize('go_backwards', [False, True])
@pytest.mark.parametrize('case', CASES)
def test_each_cell_places_its_masks_as_keras_does(rng, masks, case, go_backwards, fused):
    """Input mask on x_t; recurrent mask on h_{t-1} in the recurrent products only (a GRU
    updates from the unmasked h_{t-1}); one mask of each per sequence. Outputs, final states
    and the gradients of x, the initial state and every parameter equal the reference's
    (its gradients by float64 central differences, the same masks held fixed)."""
    fields = CASES[case][2]
    x = rng.randn(B, T, D)
    s0 = [rng.randn(B, H) for _ in fields]
    xv, sv = var(x, True), [var(s, True) for s in s0]
    y, *state = build(case, xv, initial_state=sv if len(sv) > 1 else sv[0],
                      return_sequences=True, return_state=True, go_backwards=go_backwards,
                      dropout=P, recurrent_dropout=P, training=True, fused=fused)
    assert masks.shapes() == [((B, D), P), ((B, H), P)]  # x's then h's, once per sequence
    x_mask, h_mask = masks.masks()
    randomize(rng, 'layer')
    weights = [rng.randn(*v.shape) for v in [y] + state]
    loss = weighted_sum([y] + state, weights)
    for p in nn.get_parameters().values():
        p.grad.zero()
    loss.forward()
    loss.backward()

    def oracle(values):
        """The reference's outputs (y, then the final state tensors)."""
        ys, final = equations(case, 'layer', values['x'], [values[f] for f in fields],
                              reverse=go_backwards, params=values, x_mask=x_mask,
                              h_mask=h_mask)
        return [ys[:, ::-1] if go_backwards else ys] + list(final)  # Keras: processing order

    inputs = dict(layer_params('layer'), x=x, **dict(zip(fields, s0)))
    for got, want in zip([y] + state, oracle(inputs)):
        np.testing.assert_allclose(got.d, want, rtol=1e-5, atol=1e-5)
    analytic = dict({k[len('layer/'):]: v.g for k, v in nn.get_parameters().items()},
                    x=xv.g, **{f: v.g for f, v in zip(fields, sv)})
    reference.assert_gradients(analytic, inputs, lambda values: sum(
        np.sum(o * w) for o, w in zip(oracle(values), weights)))


@pytest.mark.parametrize('fused', PATHS)
@pytest.mark.parametrize('case', CASES)
def test_inference_draws_no_masks(rng, masks, case, fused):
    """``training=False``, and a graph built under ``nn.no_grad()``, draw no mask and equal
    the reference without dropout."""
    x = rng.randn(B, T, D)
    y = build(case, var(x), return_sequences=True, dropout=P, recurrent_dropout=P,
              training=False, fused=fused)
    with nn.no_grad():
        y2 = build(case, var(x), return_sequences=True, dropout=P, recurrent_dropout=P,
                   fused=fused)
    assert masks.drawn == []
    randomize(rng, 'layer')
    F.sink(y, y2).forward()
    want, _ = equations(case, 'layer', x, None)
    for got in (y, y2):
        np.testing.assert_allclose(got.d, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fused', PATHS)
@pytest.mark.parametrize('case', CASES)
def test_bidirectional_gives_each_direction_its_own_masks(rng, masks, case, fused):
    """Each direction draws its own input and recurrent masks (Keras' Bidirectional: two
    cells, each with its masks) and places them as the cell does: the backward direction,
    run over the reversed steps, with its masks."""
    layer, options, fields = CASES[case]
    x = rng.randn(B, T, D)
    # Bidirectional takes no `fused` (nnlstm.wrappers.NOT_BIDIRECTIONAL): both directions
    # run the unrolled graph, `fused`=False; when it takes `fused`, pass it here.
    y_f, y_b, *states = nnlstm.Bidirectional(
        layer, var(x), H, merge_mode=None, name='bi', return_sequences=True,
        return_state=True, dropout=P, recurrent_dropout=P, training=True, **options)
    assert masks.shapes() == [((B, D), P), ((B, H), P)] * 2  # forward's, then backward's
    drawn = masks.masks()
    randomize(rng, 'bi')
    F.sink(y_f, y_b, *states).forward()
    n = len(fields)
    for k, (direction, y) in enumerate([('forward', y_f), ('backward', y_b)]):
        ys, final = equations(case, 'bi/' + direction, x, None, reverse=k == 1,
                              x_mask=drawn[2 * k], h_mask=drawn[2 * k + 1])
        for got, want in zip([y] + states[k * n:(k + 1) * n], [ys] + list(final)):
            np.testing.assert_allclose(got.d, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fused', PATHS)
@pytest.mark.parametrize('case', CASES)
def test_stacked_drops_the_inputs_of_every_layer_but_the_first(rng, masks, case, fused):
    """PyTorch's ``nn.LSTM(dropout=p)``: dropout on the outputs of every layer but the last,
    i.e. the inputs of every layer but the first (here variational: one mask per sequence).
    Three layers: no mask on x, one (B, H) mask on each of the two later layers' inputs."""
    layer, options, fields = CASES[case]
    x = rng.randn(B, T, D)
    y, states = nnlstm.Stacked(layer, var(x), H, num_layers=3, dropout=P, name='st',
                               return_sequences=True, return_state=True, training=True,
                               fused=fused, **options)
    assert masks.shapes() == [((B, H), P)] * 2  # layer 1's input, layer 2's; none on x
    drawn = masks.masks()
    randomize(rng, 'st')
    F.sink(y, *[v for s in states for v in s]).forward()
    seq = x
    for k in range(3):
        seq, final = equations(case, 'st/layer%d' % k, seq, None,
                               x_mask=drawn[k - 1] if k else None)
        for got, want in zip(states[k], final):
            np.testing.assert_allclose(got.d, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y.d, seq, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fused', PATHS)
def test_stacked_bidirectional_drops_the_merged_input_of_the_second_layer(rng, masks, fused):
    """Between Bidirectional layers the dropped input is the merged (B, T, 2H) sequence,
    each direction of the second layer with its own mask (as Keras' Bidirectional of a
    layer with ``dropout``); the first layer's input is not dropped."""
    x = rng.randn(B, T, D)
    bi = functools.partial(nnlstm.Bidirectional, nnlstm.LSTM)  # no `fused`: see above
    y = nnlstm.Stacked(bi, var(x), H, num_layers=2, dropout=P, name='st',
                       return_sequences=True, training=True)
    assert masks.shapes() == [((B, 2 * H), P)] * 2  # layer 1: forward's, backward's
    drawn = masks.masks()
    randomize(rng, 'st')
    y.forward()
    def both(k, seq, x_masks):
        return np.concatenate([equations('lstm', 'st/layer%d/%s' % (k, d), seq, None,
                                         reverse=d == 'backward', x_mask=m)[0]
                               for d, m in zip(('forward', 'backward'), x_masks)], axis=-1)

    want = both(1, both(0, x, (None, None)), drawn)
    np.testing.assert_allclose(y.d, want, rtol=1e-5, atol=1e-5)
