"""Shapes typed into docstrings drift (it happened to PyTorch's LSTMCell docs): check every
parameter shape a core's docstring states against the parameters the core creates."""
import re

import nnabla as nn
import pytest

from nnlstm.cells import GRUCore, LSTMCore, SimpleRNNCore

D, H = 3, 5
DOC_PARAM = re.compile(r'``([\w/]+/affine/[Wb])``:? \(([^)]*)\)')


def documented(core_type, mode=None):
    """{parameter: shape} from the docstring; with ``mode``, only the lines that name it
    or no mode at all."""
    shapes = {}
    for line in core_type.__doc__.splitlines():
        if mode is not None and 'reset_after=' in line and mode not in line:
            continue
        for name, shape in DOC_PARAM.findall(line):
            dims = [d.strip() for d in shape.split(',') if d.strip()]
            shapes[name] = tuple(eval(re.sub(r'(\d)H', r'\1*H', d), {'D': D, 'H': H})
                                 for d in dims)
    return shapes


@pytest.mark.parametrize('core_type,options,mode', [
    (LSTMCore, {}, None),
    (GRUCore, {'reset_after': True}, 'reset_after=True'),
    (GRUCore, {'reset_after': False}, 'reset_after=False'),
    (SimpleRNNCore, {}, None),
])
def test_documented_parameter_shapes_are_the_real_ones(core_type, options, mode):
    core_type(D, H, **options)
    real = {k: v.shape for k, v in nn.get_parameters().items()}
    assert documented(core_type, mode) == real
    assert len(real) >= 2
