"""Files written all or nothing: to a temporary name beside the target, renamed when complete."""
import contextlib
import os
import tempfile

import nnabla as nn


@contextlib.contextmanager
def staged(paths):
    """Yield ``{path: temporary path}``, each temporary beside its path with the same
    extension (NNabla's writers choose the format by it). On success every temporary is
    renamed to its path; on any error all are deleted, so nothing is left behind."""
    tmps = {}
    try:
        for path in paths:
            folder, base = os.path.split(os.path.abspath(path))
            fd, tmps[path] = tempfile.mkstemp(suffix=os.path.splitext(base)[1],
                                              prefix='.tmp-', dir=folder)
            os.close(fd)
        yield tmps
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def atomic_write(path, write):
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same extension, since
    NNabla's writers choose the format by it), then rename it to ``path``."""
    with staged([path]) as tmps:
        write(tmps[path])
    return path


def save_parameters(path):
    """``nn.save_parameters(path)`` (.h5 or .protobuf), written to a temporary name and
    renamed, so an interrupted save never leaves a broken file."""
    path = os.fspath(path)
    return atomic_write(path, nn.save_parameters)
