"""Parameter names and shapes are a public contract: a golden file of every layer, wrapper
and option that changes them (Haiku's integration/checkpoints/Recurrent-*.json), the kinds'
tables against what the layers create, and a parameter file written by an earlier version
(b4646b0) that must load unchanged and give the same numbers.

Rewrite the golden file only for a deliberate change of names:
    ./run python tests/test_parameters.py --write
"""
import functools
import json
import os
import sys

import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import nnlstm
from nnlstm.kinds import KINDS

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, 'data', 'parameters.json')
D, H = 3, 5

#: case -> a function building it on x, with ``name='m'``
CASES = {
    'LSTM': lambda x: nnlstm.LSTM(x, H, name='m'),
    'LSTM use_bias=False': lambda x: nnlstm.LSTM(x, H, name='m', use_bias=False),
    'GRU': lambda x: nnlstm.GRU(x, H, name='m'),
    'GRU reset_after=False': lambda x: nnlstm.GRU(x, H, name='m', reset_after=False),
    'GRU use_bias=False': lambda x: nnlstm.GRU(x, H, name='m', use_bias=False),
    'GRU reset_after=False use_bias=False': lambda x: nnlstm.GRU(x, H, name='m',
                                                                 reset_after=False,
                                                                 use_bias=False),
    'SimpleRNN': lambda x: nnlstm.SimpleRNN(x, H, name='m'),
    'SimpleRNN use_bias=False': lambda x: nnlstm.SimpleRNN(x, H, name='m', use_bias=False),
    'LSTMCell': lambda x: nnlstm.LSTMCell(x[:, 0], *[nn.Variable((2, H))] * 2, name='m'),
    'GRUCell': lambda x: nnlstm.GRUCell(x[:, 0], nn.Variable((2, H)), name='m'),
    'SimpleRNNCell': lambda x: nnlstm.SimpleRNNCell(x[:, 0], nn.Variable((2, H)), name='m'),
    'Bidirectional LSTM': lambda x: nnlstm.Bidirectional(nnlstm.LSTM, x, H, name='m'),
    'Bidirectional GRU reset_after=False': lambda x: nnlstm.Bidirectional(
        nnlstm.GRU, x, H, name='m', reset_after=False),
    'Stacked LSTM': lambda x: nnlstm.Stacked(nnlstm.LSTM, x, H, name='m'),
    'Stacked SimpleRNN num_layers=3': lambda x: nnlstm.Stacked(nnlstm.SimpleRNN, x, H,
                                                               num_layers=3, name='m'),
    'Stacked Bidirectional GRU': lambda x: nnlstm.Stacked(
        functools.partial(nnlstm.Bidirectional, nnlstm.GRU), x, H, name='m'),
    'LSTM proj_size=2': lambda x: nnlstm.LSTM(x, H, name='m', proj_size=2),
    'LSTM use_peepholes=True': lambda x: nnlstm.LSTM(x, H, name='m', use_peepholes=True),
    'Stacked Bidirectional LSTM proj_size=2': lambda x: nnlstm.Stacked(
        functools.partial(nnlstm.Bidirectional, nnlstm.LSTM), x, H, name='m', proj_size=2),
    'LSTM layer_norm=True': lambda x: nnlstm.LSTM(x, H, name='m', layer_norm=True),
    'LSTM layer_norm=True proj_size=2 use_peepholes=True': lambda x: nnlstm.LSTM(
        x, H, name='m', layer_norm=True, proj_size=2, use_peepholes=True),
    'GRU layer_norm=True': lambda x: nnlstm.GRU(x, H, name='m', layer_norm=True),
    'GRU layer_norm=True use_bias=False': lambda x: nnlstm.GRU(x, H, name='m', layer_norm=True,
                                                               use_bias=False),
}

#: layer case -> (kind, options) for the kinds' own tables
TABLES = {
    'LSTM': ('lstm', {}), 'LSTM use_bias=False': ('lstm', {'use_bias': False}),
    'GRU': ('gru', {}), 'GRU reset_after=False': ('gru', {'reset_after': False}),
    'GRU use_bias=False': ('gru', {'use_bias': False}),
    'GRU reset_after=False use_bias=False': ('gru', {'reset_after': False, 'use_bias': False}),
    'SimpleRNN': ('rnn', {}), 'SimpleRNN use_bias=False': ('rnn', {'use_bias': False}),
    'LSTMCell': ('lstm', {}), 'GRUCell': ('gru', {}), 'SimpleRNNCell': ('rnn', {}),
    'LSTM proj_size=2': ('lstm', {'proj_size': 2}),
    'LSTM use_peepholes=True': ('lstm', {'use_peepholes': True}),
    'LSTM layer_norm=True': ('lstm', {'layer_norm': True}),
    'LSTM layer_norm=True proj_size=2 use_peepholes=True': (
        'lstm', {'layer_norm': True, 'proj_size': 2, 'use_peepholes': True}),
    'GRU layer_norm=True': ('gru', {'layer_norm': True}),
    'GRU layer_norm=True use_bias=False': ('gru', {'layer_norm': True, 'use_bias': False}),
}


def built(case):
    """{name: shape} of the parameters ``case`` creates."""
    nn.clear_parameters()
    CASES[case](nn.Variable((2, 4, D)))
    shapes = {k: list(v.shape) for k, v in nn.get_parameters(grad_only=False).items()}
    nn.clear_parameters()
    return shapes


def test_golden_file_lists_every_case():
    with open(GOLDEN) as f:
        assert sorted(json.load(f)) == sorted(CASES)


@pytest.mark.parametrize('case', CASES)
def test_parameter_names_and_shapes_match_the_golden_file(case):
    with open(GOLDEN) as f:
        golden = json.load(f)
    assert built(case) == golden[case]


@pytest.mark.parametrize('case', TABLES)
def test_the_kinds_tables_are_what_the_layers_create(case):
    kind, options = TABLES[case]
    table = KINDS[kind].parameters(D, H, **options)
    assert {'m/' + k: list(v) for k, v in table.items()} == built(case)


LEGACY = os.path.join(HERE, 'data', 'legacy', 'parameters.h5')


def test_a_parameter_file_of_b4646b0_loads_unchanged_and_gives_its_outputs():
    """tests/write_legacy_parameters.py wrote the file and the outputs with b4646b0's code."""
    sys.path.insert(0, HERE)
    try:
        import write_legacy_parameters as legacy
    finally:
        sys.path.pop(0)
    want = np.load(os.path.join(HERE, 'data', 'legacy', 'outputs.npz'))
    nn.load_parameters(LEGACY)
    before = {k: v.d.copy() for k, v in nn.get_parameters(grad_only=False).items()}
    x = nn.Variable.from_numpy_array(want['x'])
    out = legacy.build(x)
    after = nn.get_parameters(grad_only=False)
    assert sorted(after) == sorted(before)  # nothing created, nothing renamed
    F.sink(*out.values()).forward()
    for name, y in out.items():
        np.testing.assert_allclose(y.d, want[name], atol=1e-6, err_msg=name)
    # and the same seeds still draw exactly the same initial values (Keras' initializers,
    # GRU reset_after=False's recurrent kernel cut from one orthogonal matrix)
    nn.clear_parameters()
    np.random.seed(3)
    nn.random.seed(3)
    legacy.build(nn.Variable.from_numpy_array(want['x']))
    fresh = nn.get_parameters(grad_only=False)
    for name, value in before.items():
        np.testing.assert_array_equal(fresh[name].d, value, err_msg=name)


def write():
    """One line per parameter, so a diff shows each rename."""
    cases = ['  %s: {\n%s\n  }' % (json.dumps(case), ',\n'.join(
        '    %s: %s' % (json.dumps(k), json.dumps(v)) for k, v in sorted(built(case).items())))
        for case in sorted(CASES)]
    with open(GOLDEN, 'w') as f:
        f.write('{\n' + ',\n'.join(cases) + '\n}\n')


if __name__ == '__main__':
    if sys.argv[1:] != ['--write']:
        sys.exit(__doc__)
    write()


@pytest.mark.parametrize('kind', KINDS)
def test_docstrings_state_the_parameters_of_the_table(kind):
    """The "Parameters" section of the layer's, the cell's and the core's docstring is
    written from the kind's table (NNabla's parametric_function_api), one line each."""
    record = KINDS[kind]
    layer = getattr(nnlstm, record.layer_name)
    for fn in (layer, record.cell, record.core):
        for p in record.params:
            assert '* ``%s``: %s' % (p.name, p.legend) in fn.__doc__, (fn, p.name)
    assert "``{name}/``" in layer.__doc__


def test_the_readme_states_the_tables_shapes():
    """README's parameter paragraph is typed by hand: every name and shape it gives must be
    a row of a kind's table."""
    import re
    with open(os.path.join(HERE, '..', 'README.md')) as f:
        text = f.read()
    rows = {(p.name, p.legend) for k in KINDS.values() for p in k.params}
    stated = re.findall(r'`(?:\{name\}/)?(\w+/affine/(?:W|b|\{W,b\}))`\s+\(([^)]*)\)', text)
    assert len(stated) >= 6
    for name, legend in stated:
        names = [name.replace('{W,b}', 'W')] if '{W,b}' in name else [name]
        for n in names:
            assert (n, '(%s)' % legend) in rows, (n, legend)
