"""What nnlstm does to the whole process, in one place, and how to turn each off.

1. **The module aliases** ``nnabla.nnabla``, ``nnabla.nnabla_ext`` and ``nnabla.gc``
   (installed on ``import nnlstm``): NNabla 1.39's compiled code runs implicit relative
   imports, which first look for a module of that name inside the ``nnabla`` package and,
   without one, search the disk: ``import nnabla`` in every ``Function.__call__`` (three
   quarters of the time an unrolled graph takes to build), ``nnabla_ext`` in every read or
   write of ``Variable.d`` and ``.g`` (about 0.1 ms each, 0.7 of the 3.4 ms a fused LSTM
   forward takes at B, T, D, H = 32, 50, 1, 64), ``gc`` in every ``forward``. Turn them off
   with the environment variable ``NNLSTM_NO_NNABLA_ALIAS=1`` before the import, or at run
   time with ``nnlstm.process.set_nnabla_alias(False)``.
2. **The stack limit** (raised when a long graph is built): NNabla walks and frees graphs
   recursively, about 1.5 KiB of stack per unrolled step, so the default 8 MiB stack
   overflows near T = 6000. :func:`ensure_stack` raises the process's soft
   ``RLIMIT_STACK`` (it governs the main thread's stack, whichever thread calls it) and
   warns when the calling thread's own fixed stack is too small. Turn it off with
   ``NNLSTM_NO_STACK_LIMIT=1`` or ``nnlstm.process.raise_stack_limit = False``.
3. **glibc malloc's thresholds** (set when a fused CPU kernel first runs,
   :func:`tune_malloc`): by default glibc maps each block over 128 KiB afresh and gives
   freed memory at the top of the heap back to the system at once, so every pass of a
   fused layer page-faults its arrays in again: measured 766 page faults per LSTM forward
   at B, T, D, H = 32, 50, 1, 64, 2 of its 5 ms. ``M_MMAP_THRESHOLD`` 32 MiB and
   ``M_TRIM_THRESHOLD`` 64 MiB, the largest values glibc's own dynamic threshold reaches,
   keep up to 64 MiB of freed memory mapped for the next pass. Left alone where the
   ``MALLOC_*`` or ``GLIBC_TUNABLES`` environment variables set them; turn it off with
   ``NNLSTM_NO_MALLOC_TUNING=1`` or ``nnlstm.process.malloc_tuning = False``.

And one process-wide lock: NNabla's parameter scope is global, not per thread, so
nnlstm's builders hold :data:`BUILD_LOCK` (re-entrant) while they change it; NNabla's own
``PF`` calls in other threads do not take it.
"""
import ctypes
import importlib
import os
import sys
import threading
import types
import warnings


try:
    import resource
except ImportError:  # Windows: the main thread's stack is fixed when the process starts
    resource = None

#: The alias modules, by name, and the module each forwards to.
ALIASES = {'nnabla.nnabla': 'nnabla', 'nnabla.nnabla_ext': 'nnabla_ext', 'nnabla.gc': 'gc'}
ALIAS = 'nnabla.nnabla'


class _NnablaAlias(types.ModuleType):
    """A module under a name like 'nnabla.nnabla' that forwards every attribute to the
    module ``target`` ('nnabla'). NNabla 1.39's compiled code runs implicit relative imports
    (``import nnabla`` in Function.__call__), which first look for 'nnabla.<name>': without
    one, two failed searches of the disk each time (None in sys.modules still costs
    importlib's locks, about 15 % of a build). This module is found at once. It is not a
    package (no ``__path__``), so a relative import of a submodule through it fails at once
    and falls back to the real one instead of loading a second copy."""

    def __init__(self, name, target):
        super().__init__(name)
        self.__target = target

    def __getattr__(self, name):
        if name.startswith('__') or name.startswith('_NnablaAlias'):
            raise AttributeError(name)
        module = sys.modules.get(self.__target) or importlib.import_module(self.__target)
        return getattr(module, name)  # on NNabla's per-call path: a dict lookup, no import


def set_nnabla_alias(on=True):
    """Install (``on``) or remove nnlstm's alias modules (:data:`ALIASES`); a module of
    one of those names that nnlstm did not install is left alone."""
    for name, target in ALIASES.items():
        current = sys.modules.get(name)
        if on and current is None:
            sys.modules[name] = _NnablaAlias(name, target)
        elif not on and isinstance(current, _NnablaAlias):
            del sys.modules[name]


def _env(name):
    return os.environ.get(name, '').strip() not in ('', '0')


#: Raise the soft stack limit for long graphs (:func:`ensure_stack`).
raise_stack_limit = not _env('NNLSTM_NO_STACK_LIMIT')

#: Stack NNabla's recursive graph walks need per unrolled step (forward, backward and the
#: deletion of a graph all recurse along it): measured about 1.5 KiB per LSTM step, so that
#: the default 8 MiB stack segfaults near T = 6000. Four times that, for headroom.
STACK_PER_STEP = 6 * 1024
#: Stack the Python and NNabla frames around the graph walk take, for headroom.
STACK_BASE = 1024 * 1024


def stack_needed(steps):
    """Bytes of stack a graph of ``steps`` unrolled steps may need."""
    return STACK_BASE + steps * STACK_PER_STEP


def thread_stack_size():
    """The calling thread's own stack size in bytes (``pthread_getattr_np``), or None where
    it cannot be read (not glibc/Linux, or the main thread, whose stack grows up to the
    soft limit)."""
    if threading.current_thread() is threading.main_thread() or not sys.platform.startswith(
            'linux'):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.pthread_self.restype = ctypes.c_ulong
        attr = ctypes.create_string_buffer(128)  # pthread_attr_t: 56 bytes on x86-64
        if libc.pthread_getattr_np(ctypes.c_ulong(libc.pthread_self()), attr):
            return None
        addr, size = ctypes.c_void_p(), ctypes.c_size_t()
        failed = libc.pthread_attr_getstack(attr, ctypes.byref(addr), ctypes.byref(size))
        libc.pthread_attr_destroy(attr)
        return None if failed else size.value
    except (OSError, AttributeError):
        return None


def ensure_stack(steps):
    """Make room on the stack for a graph of ``steps`` unrolled steps to run and be deleted.

    Raises the process's soft ``RLIMIT_STACK`` to :func:`stack_needed` (Linux grows the main
    thread's stack on demand up to the current soft limit, whichever thread raised it, so a
    graph built in a worker and freed by the main thread is covered). A RuntimeWarning says
    when the stack of the calling thread stays too small: a thread other than the main one
    has a fixed stack (start it after ``threading.stack_size(...)``), and the main thread's
    limit may be capped by the hard limit or left alone (``raise_stack_limit`` False)."""
    need = stack_needed(steps)
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if raise_stack_limit and soft != resource.RLIM_INFINITY and soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))
    own = thread_stack_size()
    if own is None and threading.current_thread() is threading.main_thread():
        own = None if soft == resource.RLIM_INFINITY else soft
        where = "the main thread's stack limit is"
    else:
        where = "this thread has"
    if own is not None and own < need:
        warnings.warn("a graph of %d steps needs about %d bytes of stack, and %s %d: run "
                      "it in a thread created after threading.stack_size(%d)%s"
                      % (steps, need, where, own, need,
                         '' if raise_stack_limit else
                         ' (nnlstm.process.raise_stack_limit is off)'),
                      RuntimeWarning, stacklevel=3)


#: Set glibc malloc's thresholds before the first fused kernel runs (:func:`tune_malloc`).
malloc_tuning = not _env('NNLSTM_NO_MALLOC_TUNING')

#: :func:`tune_malloc`'s values: glibc's ``M_MMAP_THRESHOLD`` (-3) and ``M_TRIM_THRESHOLD``
#: (-1), in bytes.
MALLOC_THRESHOLDS = {-3: 32 << 20, -1: 64 << 20}

_malloc = []


def tune_malloc():
    """Set glibc malloc's mmap and trim thresholds (:data:`MALLOC_THRESHOLDS`) once per
    process, unless :data:`malloc_tuning` is off, the environment sets them, or this is not
    glibc. Returns whether they are set."""
    if not _malloc:
        done = False
        if malloc_tuning and sys.platform.startswith('linux') and not any(
                k in os.environ for k in ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_',
                                          'MALLOC_TOP_PAD_', 'GLIBC_TUNABLES')):
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                mallopt = None
            done = mallopt is not None and all(
                mallopt(option, value) == 1 for option, value in MALLOC_THRESHOLDS.items())
        _malloc.append(done)
    return _malloc[0]


#: Held (re-entrantly) by every nnlstm builder while it changes NNabla's global parameter
#: scope, so builders in several threads do not interleave their scopes.
BUILD_LOCK = threading.RLock()


if not _env('NNLSTM_NO_NNABLA_ALIAS'):
    set_nnabla_alias(True)
