"""nnlstm.record: a layer call's record holds no graph Variable (so rebuilt graphs are
freed), and an export finds it again from the graph's own Variables."""
import nnabla as nn

import nnlstm
from nnlstm import record
from nnlstm.export.checks import Graph
from nnlstm.export.native import genuine


def graph_variables(outputs):
    graph = Graph(outputs)
    return [v for f in graph.functions for v in list(f.inputs) + list(f.outputs)]


def test_the_registry_keeps_keys_not_variables_and_finds_the_layer_again():
    with nn.no_grad():
        x = nn.Variable((2, 4, 3))
        h0 = nn.Variable((2, 5))
        y, h = nnlstm.GRU(x, 5, initial_state=h0, return_sequences=True, return_state=True)
    kept = list(record._records.values())[-1]
    assert all(isinstance(k, int) for k in (kept.x,) + kept.outputs + kept.directions[0].state)
    # keys are addresses: a freed graph's record may match some (a fused graph has few
    # Variables, so addresses come back often); genuine() is what the export trusts
    found = [r for r in record.records_of(graph_variables([y, h])) if genuine(r)]
    assert len(found) == 1
    rec = found[0]
    assert rec.name == 'gru' and rec.x == x and rec.directions[0].state.h == h0
    assert rec.outputs == (y, h) and genuine(rec)


def test_a_record_whose_parameters_do_not_compute_the_outputs_is_not_trusted():
    """Keys are addresses and may come back after a graph is freed: the parameters decide."""
    with nn.no_grad():
        x = nn.Variable((2, 4, 3))
        y = nnlstm.LSTM(x, 5, name='a')
        other = nnlstm.LSTM(x, 5, name='b')
    # a freed graph's record may match some of these keys; exactly one is genuine
    [rec] = [r for r in record.records_of(graph_variables([y])) if genuine(r)]
    [theirs] = [r for r in record.records_of(graph_variables([other])) if genuine(r)]
    assert rec.name == 'a' and theirs.name == 'b'
    assert not genuine(rec._replace(directions=theirs.directions))
