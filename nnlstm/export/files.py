"""Files written all or nothing, for every file nnlstm writes (``.nnp``, ``.onnx``, ``.nnb``,
parameters).

:func:`staged` writes each file to a temporary beside it and renames all of them once every
one is complete:

* the temporaries of ``m.nnp`` are named ``.m.nnp.tmp-<pid>-<random>.nnp`` (same extension:
  NNabla's writers choose the format by it). They are removed on any exception, and on
  SIGTERM (while a write runs in the main thread, SIGTERM unwinds it, and is then delivered
  again); those a killed run left behind are removed by the next write to the same target;
* a new file gets the mode ``open()`` gives (0o666 less the umask), a replaced one keeps
  its mode;
* the renames are all or nothing: the files they replace are kept (hard links) until every
  rename succeeded, and put back if one fails;
* an OSError names the user's path, never a temporary;
* NNabla's INFO lines about the write (``Saving <_io.StringIO ...> as prototxt``, the
  temporaries' names) are dropped while it runs, in the writing thread only.
"""
import contextlib
import errno
import logging
import os
import secrets
import shutil
import signal
import stat
import threading
import time

import nnabla as nn
from nnabla.logger import logger as nnabla_logger

from .. import _checks

#: Temporaries of this process's writes in progress (another thread's are not stale).
_active = set()
_active_lock = threading.Lock()


def temporary_prefix(path):
    """``(folder, '.m.nnp.tmp-')`` for ``path`` 'folder/m.nnp': every temporary of that
    target starts so, followed by the writing process's pid."""
    folder, base = os.path.split(os.path.abspath(path))
    return folder, '.%s.tmp-' % base


class Terminated(BaseException):
    """SIGTERM arrived during a staged write: raised to unwind it (a BaseException, so that
    no ``except Exception`` on the way swallows it), then the signal is delivered again."""


@contextlib.contextmanager
def sigterm_unwinds():
    """While active, SIGTERM raises :class:`Terminated` instead of ending the process at
    once; when the block is left the previous handler is restored and, if the signal came,
    it is delivered again (so the process still ends by SIGTERM). Only where SIGTERM has
    its default action and in the main thread (the only one Python delivers signals to);
    a handler of the user's own stays as it is."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    came = []

    def handler(signum, frame):
        if not came:  # a second SIGTERM must not interrupt the clean-up of the first
            came.append(signum)
            raise Terminated('SIGTERM during a write')

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if came:
            signal.raise_signal(signal.SIGTERM)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists (as another user's)
        return True
    return True


class _QuietThread(logging.Filter):
    """Drops the INFO (and DEBUG) records of NNabla's logger sent by one thread."""

    def __init__(self):
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record):
        return record.levelno > logging.INFO or record.thread != self.thread


@contextlib.contextmanager
def quiet_nnabla():
    """While active, NNabla's INFO lines from this thread are not printed (its saver names
    every temporary and StringIO it writes); warnings and errors still are."""
    quiet = _QuietThread()
    nnabla_logger.addFilter(quiet)
    try:
        yield
    finally:
        nnabla_logger.removeFilter(quiet)


def remove_stale(path, start):
    """Remove the temporaries of ``path`` that a killed run left: older than ``start`` (a
    time.time()), of a process that has ended, or of this one but of no write in progress."""
    folder, prefix = temporary_prefix(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return  # creating the temporary reports the folder's problem
    with _active_lock:
        active = tuple(_active)
    for name in names:
        pid = name[len(prefix):].split('-', 1)[0]
        if not name.startswith(prefix) or not pid.isdigit():
            continue
        full = os.path.join(folder, name)
        if full.startswith(active) if int(pid) == os.getpid() else _alive(int(pid)):
            continue
        try:
            if os.lstat(full).st_mtime >= start:
                continue
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                os.unlink(full)
        except OSError:
            pass


def _temporary(path, suffix=None):
    """A new empty temporary of ``path`` (:func:`temporary_prefix`), created as ``open()``
    creates a file, so with the umask applied. Returns its name and its mode."""
    folder, prefix = temporary_prefix(path)
    suffix = os.path.splitext(path)[1] if suffix is None else suffix
    while True:
        name = os.path.join(folder, '%s%d-%s%s' % (prefix, os.getpid(), secrets.token_hex(4),
                                                   suffix))
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        with _active_lock:
            _active.add(name)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        return name, mode


def _discard(name):
    with _active_lock:
        _active.discard(name)
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def _for_user(error, paths):
    """``error`` about the user's path where it names a temporary of one of ``paths``;
    ``error`` itself otherwise."""
    for name in (error.filename, error.filename2):
        if not isinstance(name, str) or error.errno is None:
            continue
        for path in paths:
            folder, prefix = temporary_prefix(path)
            full = os.path.abspath(name)
            if os.path.dirname(full) == folder and os.path.basename(full).startswith(prefix):
                try:
                    return type(error)(error.errno, error.strerror, path)
                except TypeError:  # a subclass of its own signature
                    return OSError(error.errno, error.strerror, path)
    return error


def _commit(paths, tmps):
    """Rename each temporary to its path; if one rename fails, put back every file that was
    there (kept as a hard link, or a copy where the file system has none) and remove the
    new ones, then raise."""
    backups, replaced = {}, []
    try:
        for path in paths:
            if os.path.lexists(path):
                backups[path] = _temporary(path, '.bak')[0]
                os.unlink(backups[path])
                try:
                    os.link(path, backups[path], follow_symlinks=False)
                except OSError:
                    shutil.copy2(path, backups[path], follow_symlinks=False)
        for path in paths:
            replaced.append(path)  # first: an exception may come between the two lines
            os.replace(tmps[path], path)
    except BaseException:
        for path in reversed(replaced):
            try:
                if path in backups:  # (if the rename failed, both name the same file)
                    os.replace(backups[path], path)
                elif os.path.lexists(path) and not os.path.lexists(tmps[path]):
                    os.unlink(path)  # a new file, renamed
            except OSError:
                backups.pop(path, None)  # the previous file: never delete it
        raise
    finally:
        for name in backups.values():
            _discard(name)


@contextlib.contextmanager
def staged(paths):
    """Yield ``{path: temporary path}``, each temporary beside its path with the same
    extension (NNabla's writers choose the format by it). On success every temporary is
    renamed to its path, all or nothing; on any error (and on SIGTERM) the temporaries are
    deleted and the files that were there are left or put back as they were. See the module
    docstring. Raises IsADirectoryError for a path that is a directory, and any OSError
    with the user's path, before anything is written."""
    paths = [os.fspath(p) for p in paths]
    for path in paths:
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    start = time.time()
    tmps, modes = {}, {}
    with sigterm_unwinds(), quiet_nnabla():
        try:
            for path in paths:
                remove_stale(path, start)
                tmps[path], modes[path] = _temporary(path)
                if os.path.exists(path):
                    modes[path] = stat.S_IMODE(os.stat(path).st_mode)
            yield dict(tmps)
            for path in paths:
                os.chmod(tmps[path], modes[path])
            _commit(paths, tmps)
        except OSError as e:
            error = _for_user(e, paths)
            if error is e:
                raise
            raise error from None
        finally:
            for tmp in tmps.values():
                _discard(tmp)


def atomic_write(path, write):
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same extension, since
    NNabla's writers choose the format by it), then rename it to ``path``: see
    :func:`staged`. Returns ``path``."""
    with staged([path]) as tmps:
        write(tmps[path])
    return path


def save_parameters(path):
    """``nn.save_parameters(path)`` (.h5 or .protobuf), all or nothing (:func:`staged`): an
    interrupted save never leaves a broken file. Returns ``path``."""
    path = _checks.path(path, 'path', ('.h5', '.protobuf'))
    return atomic_write(path, nn.save_parameters)
