"""The documentation holds what the code does.

- Shapes typed into docstrings drift (it happened to PyTorch's LSTMCell docs): every
  parameter shape a core's docstring states is checked against the parameters it creates.
- Every ```python and ```sh block of README.md runs as pasted, in order, as a newcomer
  would paste them after ``./run sine``: the Python blocks in one interpreter session (this
  process), the shell blocks with bash, all in a copy of the checkout (no .git, no out/).
  How the test handles blocks it cannot run as they stand:
    * long runs are run in a cheap form: ``./run sine`` gets ``-i 200`` (and a short
      prediction), every ``examples/char_lm.py`` call gets tiny sizes and 4 iterations
      (CHEAP below, appended, so they win over the block's own options);
    * ``./run test`` is this suite itself: the copy's ``./run`` stand-in skips it;
    * blocks that use the onnx extra (they name onnx or ``nnb=True``) run where it is
      installed (CI) and are skipped otherwise, or fail with NNLSTM_REQUIRE_ONNX=1;
    * a block preceded by ``<!-- readme-test: skip REASON -->`` is skipped (for blocks that
      cannot run here at all, say a GPU; say why in REASON).
  ``./run`` in the copy is a stand-in that runs this interpreter, so the test installs
  nothing (./run itself is tested in tests/test_run.py).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap

import nnabla as nn
import numpy as np
import pytest
from nnabla.utils.nnp_graph import NnpLoader

from nnlstm.cells import GRUCore, LSTMCore, SimpleRNNCore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D, H = 3, 5
DOC_PARAM = re.compile(r'``([\w/]+/(?:affine/[Wb]|gamma|beta|w_c[ifo]))``:? \(([^)]*)\)')


def holds(line, options):
    """Whether the condition a docstring line states ("only with use_bias=True, a
    proj_size") holds for ``options`` (missing flags read as their kind's defaults)."""
    m = re.search(r'; only with (.*)$', line)
    if m is None:
        return True
    for part in m.group(1).rstrip('.').split(', '):
        if part.startswith('a '):
            if options.get(part[2:]) in (None, 0):
                return False
        else:
            key, value = part.split('=')
            default = {'layer_norm': False, 'use_peepholes': False}.get(key, True)
            if str(options.get(key, default)) != value:
                return False
    return True


def documented(core_type, options):
    """{parameter: shape} from the docstring's lines whose condition holds for ``options``."""
    shapes = {}
    dims = {'D': D, 'H': H, 'P': options.get('proj_size') or H}
    for line in core_type.__doc__.splitlines():
        if not holds(line, options):
            continue
        for name, shape in DOC_PARAM.findall(line):
            shapes[name] = tuple(eval(re.sub(r'(\d)([HP])', r'\1*\2', d.strip()), dims)
                                 for d in shape.split(',') if d.strip())
    return shapes


@pytest.mark.parametrize('core_type,options', [
    (LSTMCore, {}),
    (LSTMCore, {'proj_size': 2, 'use_peepholes': True}),
    (LSTMCore, {'proj_size': 2, 'use_peepholes': True, 'layer_norm': True}),
    (GRUCore, {'reset_after': True}),
    (GRUCore, {'reset_after': False}),
    (GRUCore, {'layer_norm': True}),
    (SimpleRNNCore, {}),
])
def test_documented_parameter_shapes_are_the_real_ones(core_type, options):
    core_type(D, H, **options)
    real = {k: v.shape for k, v in nn.get_parameters().items()}
    assert documented(core_type, options) == real
    assert len(real) >= 2


# --- README.md ----------------------------------------------------------------------------

FENCE = re.compile(r'^( *)```(\w*)\n(.*?)^\1```[ \t]*$', re.M | re.S)
SKIP = re.compile(r'<!-- readme-test: skip (.+?) -->\s*$')
CHEAP = [(re.compile(r'\./run sine\b'), '-i 200 --val-interval 100 --predict-steps 10'),
         (re.compile(r'examples/char_lm\.py\b'),
          '-i 4 --val-interval 2 --log-interval 2 -b 4 --window 8 --embed 8 --units 16 '
          '--max-chars 30000')]
STAND_IN = """#!/usr/bin/env bash
# The README test's ./run: this interpreter, nothing installed.
case "$1" in
  python) shift; exec %(python)s "$@" ;;
  sine) shift; exec %(python)s examples/sine.py "$@" ;;
  test) echo "./run test: the test suite itself, not run inside it" ;;
  *) echo "./run stand-in: unknown job $1" >&2; exit 2 ;;
esac
"""


def readme_blocks(path=os.path.join(ROOT, 'README.md')):
    """(line, language, code, reason to skip or None) of every fenced block, in order."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    blocks = []
    for m in FENCE.finditer(text):
        indent, language, body = m.groups()
        before = text[:m.start()].rstrip('\n ').rsplit('\n', 1)[-1]
        skip = SKIP.search(before)
        blocks.append((text.count('\n', 0, m.start()) + 1, language,
                       textwrap.dedent(body), skip.group(1) if skip else None))
    return blocks


def cheap(line):
    """A shell line with the long runs it starts shortened (options appended, before any
    comment, so they win over the line's own)."""
    code, hash_, comment = line.partition(' #')
    for pattern, options in CHEAP:
        if pattern.search(code):
            code = code.rstrip() + ' ' + options + ' '
    return code + hash_ + comment


def test_readme_has_the_blocks_this_test_expects():
    blocks = readme_blocks()
    languages = [language for _, language, _, _ in blocks]
    assert languages.count('python') >= 4 and languages.count('sh') >= 4
    code = '\n'.join(body for _, _, body, _ in blocks)
    assert './run sine' in code and 'examples/char_lm.py' in code
    assert cheap('./run sine     # the main job') == (
        './run sine -i 200 --val-interval 100 --predict-steps 10  # the main job')


def test_readme_blocks_run_as_pasted_in_order(tmp_path, monkeypatch):
    onnx = all(importlib.util.find_spec(m) is not None
               for m in ('onnx', 'onnxruntime', 'nnabla.utils.converter.onnx'))
    if os.environ.get('NNLSTM_REQUIRE_ONNX') == '1':
        assert onnx, 'NNLSTM_REQUIRE_ONNX=1 but the onnx extra is not installed'
    layout = tmp_path / 'nnlstm'
    shutil.copytree(ROOT, str(layout), ignore=shutil.ignore_patterns(
        '.venv', '.git', 'out', '__pycache__', '.pytest_cache', '*.egg-info'))
    (layout / 'run').write_text(STAND_IN % {'python': sys.executable})
    os.symlink(sys.prefix, str(layout / '.venv'))
    shared = os.path.join(os.path.dirname(ROOT), 'shared')   # ../shared/golden, if there
    if os.path.isdir(shared):
        os.symlink(shared, str(tmp_path / 'shared'))
    monkeypatch.chdir(str(layout))
    session, ran, skipped = {'__name__': '__readme__'}, [], []
    onnx_y = None  # ONNX Runtime's output in the export section
    for line, language, body, skip in readme_blocks():
        if language not in ('python', 'sh'):
            continue
        if skip or (not onnx and re.search(r'onnx|nnb=True', body)):
            skipped.append((line, skip or 'needs the onnx extra'))
            continue
        if language == 'python':
            try:
                exec(compile(body, 'README.md, block at line %d' % line, 'exec'), session)
            except Exception as e:
                pytest.fail('README.md, the python block at line %d: %s: %s\n%s'
                            % (line, type(e).__name__, e, body))
            if onnx_y is None and 'windows' in session and isinstance(session.get('y'),
                                                                      np.ndarray):
                onnx_y = session['y'].copy()  # later blocks may name other things y
        else:
            script = '\n'.join(cheap(l) for l in body.splitlines())
            out = subprocess.run(['bash', '-e', '-o', 'pipefail', '-c', script],
                                 capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, ('README.md, the sh block at line %d:\n%s\n%s'
                                         % (line, script, out.stdout[-2000:]
                                            + out.stderr[-3000:]))
        ran.append(line)
    assert len(ran) >= 6, (ran, skipped)
    # What the blocks say they write is there.
    for name in ('out/sine/sine.nnp', 'out/sine/pred_0.bin', 'out/char_lm/char_lm.nnp',
                 'out/mine/char_lm.nnp', 'out/sine/model.nnp'):
        assert (layout / name).exists(), name
    if onnx:
        for name in ('out/sine/model.onnx', 'out/sine/model.nnb', 'out/sine/lstm_step.onnx',
                     'out/sine/sine_step.onnx'):
            assert (layout / name).exists(), name
        # The export block exported the trained model: ONNX Runtime's y on the README's
        # windows is what the sine example's own .nnp gives.
        net = NnpLoader('out/sine/sine.nnp').get_network('inference', batch_size=3)
        net.inputs['x'].d = session['windows']
        net.outputs['y'].forward()
        np.testing.assert_allclose(onnx_y, net.outputs['y'].d, atol=1e-5)
