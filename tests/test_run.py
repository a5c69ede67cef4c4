"""./run's environment handling, on a copy of the layout whose interpreters are stand-ins:
each forwards to a real CPython 3.8-3.10 but only logs ``-m pip`` and fakes ``-m venv``, so
no package is installed and each case takes a fraction of a second."""
import glob
import os
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYENV = os.path.expanduser('~/.pyenv/versions')


def real_interpreters():
    """Two different CPython 3.8-3.10 executables, this one first."""
    found = [os.path.realpath(sys.executable)]
    for path in sorted(glob.glob(os.path.join(PYENV, '3.*', 'bin', 'python3.[89]'))
                       + glob.glob(os.path.join(PYENV, '3.10*', 'bin', 'python3.10'))):
        if os.path.realpath(path) not in found:
            found.append(os.path.realpath(path))
    return found


STAND_IN = '''#!/usr/bin/env bash
echo "$(basename "$(dirname "$(dirname "$0")")")/$(basename "$0") $*" >> "$RUN_LOG"
if [ "$1 $2" = "-m pip" ]; then exit 0; fi
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi
exec %s "$@"
'''


def stand_in(path, real):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(STAND_IN % real)
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def layout(tmp_path):
    for name in ('run', 'setup.cfg', 'pyproject.toml', '.python-version'):
        shutil.copy(os.path.join(ROOT, name), str(tmp_path / name))
    return tmp_path


def run(layout, python, extras=None, args=('python', '-c', 'pass')):
    log = layout / 'log.txt'
    if log.exists():
        log.unlink()
    env = dict(os.environ, RUN_LOG=str(log), NNLSTM_PYTHON=python)
    env.pop('NNLSTM_EXTRAS', None)
    if extras is not None:
        env['NNLSTM_EXTRAS'] = extras
    out = subprocess.run([str(layout / 'run')] + list(args), env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    return out.stderr, [c for c in calls if ' -m ' in c]


def test_extras_add_up_and_a_plain_run_after_a_superset_installs_nothing(layout):
    python = stand_in(str(layout / 'a' / 'bin' / 'python'), real_interpreters()[0])
    log, calls = run(layout, python)
    assert 'making' in log and 'installing nnlstm[examples,test]' in log
    assert any(c.endswith("-e %s[examples,test]" % layout) for c in calls), calls
    assert run(layout, python) == ('', [])                       # nothing to do
    log, calls = run(layout, python, 'test,examples,onnx')
    assert 'installing nnlstm[examples,onnx,test]' in log and 'making' not in log
    assert any('--no-deps nnabla-converter==1.39.0' in c for c in calls), calls
    for extras in (None, 'test', 'onnx,test'):                    # subsets: nothing to do
        assert run(layout, python, extras) == ('', [])
    log, _ = run(layout, python, 'cuda')                          # one more: added
    assert 'installing nnlstm[cuda,examples,onnx,test]' in log
    with open(str(layout / 'setup.cfg'), 'a') as f:               # setup.cfg changed:
        f.write('\n# changed\n')                                  # reinstall all of them
    log, calls = run(layout, python)
    assert 'installing nnlstm[cuda,examples,onnx,test]' in log


def test_another_nnlstm_python_remakes_the_environment(layout):
    reals = real_interpreters()
    if len(reals) < 2:
        pytest.skip('one CPython 3.8-3.10 here; the case needs two')
    first = stand_in(str(layout / 'a' / 'bin' / 'python'), reals[0])
    second = stand_in(str(layout / 'b' / 'bin' / 'python'), reals[1])
    run(layout, first, 'test,examples,onnx')
    assert run(layout, first) == ('', [])
    log, calls = run(layout, second)
    assert 'NNLSTM_PYTHON=%s is %s, but %s was made with %s: remaking it' % (
        second, reals[1], layout / '.venv', reals[0]) in log
    assert calls[0] == 'b/python -m venv %s' % (layout / '.venv')
    assert 'installing nnlstm[examples,test]' in log   # a new environment: only what is asked
    assert run(layout, second) == ('', [])
    assert run(layout, first)[0].endswith('remaking it\n' 'nnlstm: making %s with %s (%s)\n'
                                          'nnlstm: installing nnlstm[examples,test] into %s\n'
                                          % (layout / '.venv', first,
                                             subprocess.check_output([reals[0], '--version'],
                                                                     text=True).strip(),
                                             layout / '.venv'))
