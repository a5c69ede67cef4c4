"""Graph building: no module searches per NNabla function call, and the alias that avoids
them cannot load a second copy of nnabla's submodules."""
import importlib
import sys

import nnabla as nn
import pytest

import nnlstm


def test_building_a_graph_searches_for_no_module():
    """NNabla's compiled functions import nnabla relatively on every call; without nnlstm's
    alias each call searches the disk for 'nnabla.nnabla' twice."""
    nnlstm.GRU(nn.Variable((2, 3, 4)), 5)  # parameters and lazy imports done

    class Finder:
        searched = []

        def find_spec(self, name, path, target=None):
            self.searched.append(name)

    sys.meta_path.insert(0, Finder())
    try:
        nnlstm.LSTM(nn.Variable((2, 50, 4)), 5, return_sequences=True, name='other')
        nnlstm.GRU(nn.Variable((2, 50, 4)), 5, lengths=nn.Variable((2,)))
    finally:
        sys.meta_path.pop(0)
    assert 'nnabla.nnabla' not in Finder.searched


def test_the_alias_forwards_to_nnabla_and_is_not_a_package():
    alias = sys.modules['nnabla.nnabla']
    assert alias.Variable is nn.Variable and alias.functions is nn.functions
    with pytest.raises(ModuleNotFoundError, match="'nnabla.nnabla' is not a package"):
        importlib.import_module('nnabla.nnabla.utils')
    assert 'nnabla.nnabla.utils' not in sys.modules
