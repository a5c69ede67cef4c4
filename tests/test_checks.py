"""Options are checked where the user passed them, and nothing a user passes crashes the
process, surfaces an internal error or is silently wrong (issues 9 and 12)."""
import functools
import re

import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
from nnlstm import _checks
from nnlstm.cells import LSTMCore
from nnlstm.unroll import unroll

B, T, D, H = 2, 5, 3, 4


def var(a):
    return nn.Variable.from_numpy_array(np.asarray(a, np.float32))


def x():
    return var(np.zeros((B, T, D)))


def xt(d=D):
    return var(np.zeros((B, d)))


def s(h=H):
    return var(np.zeros((B, h)))


BI = functools.partial(nnlstm.Bidirectional, nnlstm.LSTM)

#: every public builder, called with ``**options`` added
CALLS = {
    'LSTM': lambda **o: nnlstm.LSTM(x(), H, **o),
    'GRU': lambda **o: nnlstm.GRU(x(), H, **o),
    'SimpleRNN': lambda **o: nnlstm.SimpleRNN(x(), H, **o),
    'Bidirectional': lambda **o: nnlstm.Bidirectional(nnlstm.GRU, x(), H, **o),
    'Stacked': lambda **o: nnlstm.Stacked(nnlstm.LSTM, x(), H, **o),
    'Stacked(Bidirectional)': lambda **o: nnlstm.Stacked(BI, x(), H, **o),
    'LSTMCell': lambda **o: nnlstm.LSTMCell(xt(), s(), s(), **o),
    'GRUCell': lambda **o: nnlstm.GRUCell(xt(), s(), **o),
    'SimpleRNNCell': lambda **o: nnlstm.SimpleRNNCell(xt(), s(), **o),
}


@pytest.mark.parametrize('function,option,hint', [
    ('LSTM', 'return_sequence', "; did you mean 'return_sequences'?"),
    ('LSTM', 'peephole', "; did you mean 'use_peepholes'? ("),
    ('LSTM', 'reset_after', ": it is an option of GRU, not of LSTM()"),
    ('GRU', 'unit_forget_bias', ": it is an option of LSTM, not of GRU()"),
    ('GRU', 'resetafter', "; did you mean 'reset_after'?"),
    ('SimpleRNN', 'recurrent_activation', ": it is an option of LSTM, GRU, not of SimpleRNN()"),
    ('SimpleRNN', 'reset_after', ": it is an option of GRU, not of SimpleRNN()"),
    ('Bidirectional', 'fused', ": it is an option of LSTM, GRU, SimpleRNN, not of "
                               "Bidirectional()"),
    ('Bidirectional', 'merge', "; did you mean 'merge_mode'?"),
    ('Stacked', 'peephole', "; did you mean 'use_peepholes'? ("),
    ('Stacked', 'reset_after', ": it is an option of GRU, not of Stacked()"),
    ('Stacked', 'num_layer', "; did you mean 'num_layers'?"),
    ('Stacked(Bidirectional)', 'fused', ": it is an option of LSTM, GRU, SimpleRNN"),
    ('Stacked(Bidirectional)', 'mergemode', "; did you mean 'merge_mode'?"),
    ('LSTMCell', 'reset_after', ": it is an option of GRU, not of LSTMCell()"),
    ('LSTMCell', 'use_bais', "; did you mean 'use_bias'?"),
    ('GRUCell', 'unit_forget_bias', ": it is an option of LSTM, not of GRUCell()"),
    ('SimpleRNNCell', 'recurrent_activation', ": it is an option of LSTM, GRU"),
    ('SimpleRNNCell', 'dropout', "; did you mean 'weight_dropout'?"),
])
def test_unknown_or_misplaced_options_name_the_function_and_the_option(function, option,
                                                                       hint):
    called = function.split('(')[0]
    match = r"^%s\(\) got an unexpected option '%s'%s" % (called, option, re.escape(hint))
    with pytest.raises(TypeError, match=match) as e:
        CALLS[function](**{option: 1})
    assert 'accepts: ' in str(e.value)
    assert nn.get_parameters() == {}  # refused before anything was built


def test_the_message_lists_what_is_accepted():
    with pytest.raises(TypeError) as e:
        nnlstm.SimpleRNN(x(), H, recurrent_activation='bogus')
    accepted = str(e.value).split('accepts: ')[1].rstrip(')').split(', ')
    assert 'activation' in accepted and 'return_sequences' in accepted
    assert 'recurrent_activation' not in accepted and 'unit_forget_bias' not in accepted


def test_the_check_step_networks_call():
    """nnlstm.export's step networks call the same check with their own name."""
    with pytest.raises(TypeError, match=r"^step_network\(\) got an unexpected option 'fo'; "
                                        r"did you mean 'foo'\?"):
        _checks.options('step_network', {'fo': 1}, ['foo', 'bar'])
    assert _checks.options('f', {'foo': 1}, ['foo']) == {'foo': 1}


@pytest.mark.parametrize('legend,rank', [('(4H,)', 1), ('(B, H)', 2), ('(D + H, 4H)', 2),
                                         ('(B, T, D)', 3), ('()', 0)])
def test_rank_reads_the_legend(legend, rank):
    assert _checks.rank_of(legend) == rank
    assert _checks.rank(nn.Variable((1,) * rank), 'v', legend).ndim == rank


@pytest.mark.parametrize('function', sorted(CALLS))
@pytest.mark.parametrize('flag,value', [('return_sequences', 'no'), ('return_state', 1),
                                        ('use_bias', 'False'), ('fix_parameters', None),
                                        ('go_backwards', 'yes'), ('time_major', 0),
                                        ('training', 'yes')])
def test_flags_must_be_bools(function, flag, value):
    try:
        CALLS[function](**{flag: False})
    except (TypeError, ValueError) as e:  # not an option of this function: refused as such
        assert 'unexpected option' in str(e) or 'is not an option of' in str(e)
        return
    nn.clear_parameters()
    with pytest.raises(TypeError, match=r"`%s` must be True or False.*; received %s %r"
                                        % (flag, type(value).__name__, value)):
        CALLS[function](**{flag: value})


@pytest.mark.parametrize('call,flag', [
    (lambda v: nnlstm.GRU(x(), H, reset_after=v), 'reset_after'),
    (lambda v: nnlstm.GRUCell(xt(), s(), reset_after=v), 'reset_after'),
    (lambda v: nnlstm.LSTM(x(), H, unit_forget_bias=v), 'unit_forget_bias'),
    (lambda v: unroll(LSTMCore(D, H), x(), reverse=v), 'reverse'),
])
def test_cell_flags_must_be_bools(call, flag):
    with pytest.raises(TypeError, match=r"`%s` must be True or False; received str 'False'"
                                        % flag):
        call('False')


@pytest.mark.parametrize('call,error,match', [
    # kind 1: crashes and unchecked public functions
    (lambda: nnlstm.LSTMCell(xt(0), s(), s()), ValueError,
     r"`x` has an empty axis: shape \(2, 0\), expected \(B, D\)"),
    (lambda: nnlstm.GRUCell(xt(0), s()), ValueError, r"`x` has an empty axis"),
    (lambda: nnlstm.SimpleRNNCell(xt(0), s()), ValueError, r"`x` has an empty axis"),
    (lambda: nnlstm.LSTMCell(xt(), s(0), s(0)), ValueError,
     r"`c` has an empty axis: shape \(2, 0\), expected \(B, H\)"),
    (lambda: nnlstm.GRUCell(xt(), s(0)), ValueError, r"`h` has an empty axis"),
    (lambda: nnlstm.LSTMCell(var(np.zeros((0, D))), s(), s()), ValueError,
     r"`x` has an empty axis"),
    (lambda: unroll(None, x()), TypeError,
     r"`core` must be a cell core of nnlstm.cells .*; received NoneType"),
    (lambda: unroll(LSTMCore(D, H), var(np.zeros((B, T)))), ValueError,
     r"`inputs` must have rank 3, \(B, T, D\); received shape \(2, 5\)"),
    (lambda: unroll(LSTMCore(D, H), var(np.zeros((B, T, D + 1)))), ValueError,
     r"`inputs` has D = 4 features; the core was built for input_size D = 3"),
    (lambda: unroll(LSTMCore(D, H), x(), initial_state=s()), TypeError,
     r"`initial_state` must be a tuple \(c0, h0\)"),
    (lambda: unroll(LSTMCore(D, H), x(), lengths=np.array([9, 1])), ValueError,
     r"`lengths` must lie in \[0, T\] = \[0, 5\]"),
    (lambda: unroll(LSTMCore(D, H), x(), dropout=2), ValueError, r"`dropout` must be in"),
    (lambda: LSTMCore(D, H, peephole=True), TypeError,
     r"LSTMCore\(\) got an unexpected option 'peephole'"),
    # kind 2: internal errors instead of a message naming the argument
    (lambda: nnlstm.LSTMCell(xt(), s(), s(), name=5), TypeError,
     r"`name` must be a non-empty str or None; received 5"),
    (lambda: nnlstm.GRUCell(xt(), s(), name=''), TypeError, r"`name` must be a non-empty str"),
    (lambda: nnlstm.Bidirectional(nnlstm.LSTM, x(), H, name=3), TypeError,
     r"`name` must be a non-empty str; received 3"),
    (lambda: nnlstm.LSTM(x(), H, rng='42'), TypeError,
     r"`rng` must be None, an int seed or a numpy.random.RandomState; received str '42'"),
    (lambda: nnlstm.LSTM(x(), H, rng=-1), ValueError, r"`rng` as a seed must be >= 0"),
    (lambda: nnlstm.LSTM(x(), H, rng=True), TypeError, r"`rng` must be None, an int seed"),
    (lambda: nnlstm.LSTM(x(), H, activation=['tanh']), TypeError,
     r"`activation` must be a callable or one of .*; received list \['tanh'\]"),
    (lambda: nnlstm.GRU(x(), H, recurrent_activation=3), TypeError,
     r"`recurrent_activation` must be a callable or one of .*; received int 3"),
    (lambda: nnlstm.Stacked('LSTM', x(), H), TypeError,
     r"`layer` must be nnlstm.LSTM, nnlstm.GRU or nnlstm.SimpleRNN, or functools.partial"
     r"\(nnlstm.Bidirectional, one of them\); received 'LSTM'"),
    (lambda: nnlstm.Stacked(functools.partial(nnlstm.Bidirectional, len), x(), H), TypeError,
     r"`layer` must be nnlstm.LSTM"),
    (lambda: nnlstm.LSTM(x(), H, kernel_initializer='glorot'), ValueError,
     r"`kernel_initializer` 'glorot' is not an initializer nnlstm knows; Keras' names it "
     r"accepts: glorot_normal, glorot_uniform, he_normal"),
    (lambda: nnlstm.LSTM(x(), H, bias_initializer=object()), TypeError,
     r"`bias_initializer` must be an array, a callable taking the shape, a Keras name or "
     r"None; received object"),
    # kind 3: silently wrong
    (lambda: nnlstm.Stacked(functools.partial(nnlstm.Bidirectional, nnlstm.LSTM,
                                              merge_mode=None), x(), H,
                            return_sequences=True), ValueError,
     r"a stacked Bidirectional layer needs a `merge_mode`; received None in functools"),
    (lambda: nnlstm.Stacked(nnlstm.GRU, x(), H, initial_state=s()), TypeError,
     r"`initial_state` must be a list with one state per layer; received Variable"),
    (lambda: nnlstm.Stacked(BI, x(), H, merge_mode=None), ValueError,
     r"a stacked Bidirectional layer needs a `merge_mode`; received None"),
    (lambda: nnlstm.Stacked(nnlstm.LSTM, x(), H, num_layers=1, dropout=0.5), ValueError,
     r"`dropout` = 0.5 acts on the inputs of every layer but the first, and num_layers=1 "
     r"has none"),
])
def test_bad_arguments_are_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def weights(name, **options):
    nnlstm.LSTM(x(), H, name=name, **options)
    return {k[len(name):]: v.d.copy() for k, v in nn.get_parameters().items()
            if k.startswith(name + '/')}


def test_an_int_rng_is_a_seed_and_zero_is_not_ignored():
    a, b, zero, zero2 = weights('a', rng=42), weights('b', rng=42), weights('c', rng=0), \
        weights('d', rng=0)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(zero[k], zero2[k])
    assert not np.array_equal(a['/WaWiWfWo/affine/W'], zero['/WaWiWfWo/affine/W'])
    same = weights('e', rng=np.random.RandomState(0))
    np.testing.assert_array_equal(same['/WaWiWfWo/affine/W'], zero['/WaWiWfWo/affine/W'])


def test_keras_initializer_names_use_keras_formulas():
    default = weights('a', rng=1)
    named = weights('b', rng=1, kernel_initializer='glorot_uniform',
                    recurrent_initializer='orthogonal', bias_initializer='zeros',
                    unit_forget_bias=False)
    np.testing.assert_array_equal(named['/WaWiWfWo/affine/W'], default['/WaWiWfWo/affine/W'])
    np.testing.assert_array_equal(named['/WaWiWfWo/affine/b'], 0)
    ones = weights('c', bias_initializer='ones', kernel_initializer='zeros')
    np.testing.assert_array_equal(ones['/WaWiWfWo/affine/b'], 1)  # forget gate 1 anyway
    np.testing.assert_array_equal(ones['/WaWiWfWo/affine/W'][:D], 0)
    big = nn.Variable((2, 3, 400))
    for name, std in [('he_normal', np.sqrt(2 / 400)), ('lecun_normal', np.sqrt(1 / 400)),
                      ('glorot_normal', np.sqrt(2 / (400 + 4 * 300))),
                      ('he_uniform', np.sqrt(2 / 400)), ('random_normal', 0.05)]:
        nnlstm.LSTM(big, 300, kernel_initializer=name, name=name)
        w = nn.get_parameters()[name + '/WaWiWfWo/affine/W'].d[:400]
        assert abs(w.std() / std - 1) < 0.03, name
        if name.endswith('_normal') and name != 'random_normal':
            assert np.abs(w).max() <= 2 * std / 0.87962566103423978 + 1e-6  # truncated


def test_a_fractional_lengths_variable_is_floored():
    """2.5 valid steps are 2: a fraction would blend half a step into the state."""
    data = np.random.RandomState(0).randn(B, T, D)
    out = [nnlstm.GRU(var(data), H, lengths=var(lengths), return_sequences=True,
                      return_state=True, go_backwards=backwards, name='g')
           for lengths in ([2.5, 4.9], [2, 4]) for backwards in (False, True)]
    F.sink(*[v for o in out for v in o]).forward()
    for a, b in zip(out[:2], out[2:]):
        for va, vb in zip(a, b):
            np.testing.assert_array_equal(va.d, vb.d)
