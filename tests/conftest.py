import numpy as np
import nnabla as nn
import pytest


@pytest.fixture(autouse=True)
def clean_parameters():
    """Every test starts and ends with no NNabla parameters and a seeded rng."""
    nn.clear_parameters()
    nn.random.seed(0)
    np.random.seed(0)
    yield
    nn.clear_parameters()


@pytest.fixture
def rng():
    return np.random.RandomState(1234)
