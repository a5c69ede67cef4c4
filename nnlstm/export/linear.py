"""NNabla's saver and converter in time linear in the size of the graph, during nnlstm's export.

NNabla 1.39 (its last release) has three loops that are quadratic in the number of functions,
so an unrolled layer's export grew with T squared (LSTM, D = 1, H = 32: 10.5 s at T = 500,
6.4 minutes at T = 2000):

* ``nnabla/core/graph_def.py`` ``ProtoFunction._proto_call`` (the saver) finds the name of
  each input variable with ``list(keys)[list(values).index(v)]``;
* ``nnabla/utils/converter/nnabla/expander.py`` ``_TopologicalSort._visit`` (the converter)
  scans every function for every output to find its consumers;
* the same file's ``NnpExpander._expand_network`` finds each sorted function with
  ``func_list.index(name)``.

:func:`linear_converter` replaces the three, only while it is active, by versions that
compute the same thing with dictionaries: the same variable names, the same function
order, byte for byte the same files (``tests/test_export.py`` compares them with the
unpatched converter's). Each replacement is NNabla's code with the lookup changed.
"""
import bisect
import collections
import contextlib
import re
import threading

import numpy as np
import nnabla as nn
from nnabla.core import graph_def
from nnabla.utils import nnabla_pb2


def _first_key(variables, v):
    """The first key of the dict ``variables`` whose value is ``v``, or None: what NNabla's
    ``v in values()`` and ``list(keys)[list(values).index(v)]`` compute (ProtoVariable has
    no ``__eq__``: identity). The saver stores each ProtoVariable once, under its own name
    (an output under the name it makes for it, an input under ``v.name``), so that name
    finds it at once; a variable not stored yet (each of the graph's leaves, once) takes
    NNabla's scan."""
    if v.name is not None and variables.get(v.name) is v:
        return v.name
    for key, value in variables.items():
        if value is v:
            return key
    return None


def _proto_call(self, inputs, n_outputs):
    """``nnabla.core.graph_def.ProtoFunction._proto_call`` of NNabla 1.39, the name of each
    input found by :func:`_first_key` instead of two list scans."""
    def join_name(name):
        if self.path_name:
            return '/'.join([self.path_name, name])
        return name
    for v in inputs:
        if isinstance(v, nn.Variable):
            self.owner().parameters[str(v.data.__hash__())] = v
            self.inputs.append(str(v.data.__hash__()))
        else:
            v_name = _first_key(self.owner().variables, v)
            if v_name is None:
                if v.name is not None:
                    self.owner().variables[v.name] = v
                    v_name = v.name
                else:
                    v_name = join_name(
                        self.type + '_in') if v.name is None else v.name
                    v_name = graph_def._get_unique_name(
                        self.owner().var_names, v_name)
                    self.owner().variables[v_name] = v
                    v.name = v_name
            v.required.append(self.name)
            self.inputs.append(v_name)

    n_outputs = self.function_instance.min_outputs() if n_outputs < 0 else n_outputs
    input_vars = [nn.Variable(v.shape) for v in inputs]
    output_vars = [nn.Variable() for _ in range(n_outputs)]

    # Obtain output shape from a function_instance
    self.function_instance.setup(input_vars, output_vars)

    # Release this function instance immediately.
    # function_instance cannot call setup() multiple times for current situation.
    self.function_instance = None
    for i, v in enumerate(output_vars):
        v_name = join_name(self.type + '_out')
        renamed = False
        if hasattr(self.owner(), 'renaming'):
            n_v_name = self.owner().renaming(i, v_name)
            if n_v_name != v_name:
                renamed = True
            v_name = n_v_name
        n_v_name = graph_def._get_unique_name(self.owner().var_names, v_name)
        if renamed and n_v_name != v_name:
            raise ValueError(
                "User specified name is not unique in name space!")
        v_name = n_v_name
        pv = self.owner().variables[v_name] = graph_def.ProtoVariable(
            v.shape, v_name, v.need_grad, 'Buffer')
        pv.parent = self.name
        self.outputs.append(v_name)
    self.owner().functions[self.name] = self

    # Since a new function is added to graph, graph should be
    # set to dirty
    graph_def.current_graph_builder().dirty()
    if len(self.outputs) == 1:
        return self.owner().variables[self.outputs[0]]
    return tuple([self.owner().variables[k] for k in self.outputs])


def topological_order(functions):
    """``_TopologicalSort(functions).sorted()`` of NNabla 1.39's expander: ``functions`` are
    ``(name, type, inputs, outputs)`` tuples; each is placed before the functions reading
    its outputs, in the order of NNabla's depth-first search (which visits, for each output,
    every function reading it, in list order, once per reading input), found through a map
    from each variable to its readers instead of a scan of all functions, and without
    recursion."""
    readers = collections.defaultdict(list)
    for f in functions:
        for name in f[2]:
            readers[name].append(f)

    def consumers(f):
        return (g for output in f[3] for g in readers.get(output, ()))

    state = {}  # function name -> 1 while its readers are visited, 2 once placed
    placed = []  # in the reverse of the sorted order
    for root in functions:
        if root[0] in state:
            continue
        state[root[0]] = 1
        stack = [(root, consumers(root))]
        while stack:
            f, pending = stack[-1]
            for g in pending:
                if g[0] not in state:
                    state[g[0]] = 1
                    stack.append((g, consumers(g)))
                    break
                if state[g[0]] == 1:
                    raise ValueError("the network is not a DAG: %s reads its own output"
                                     % g[0])
            else:
                state[f[0]] = 2
                placed.append(f)
                stack.pop()
    placed.reverse()
    return placed


def _sort_functions(self, orig_functions):
    """``NnpExpander._sort_functions``, by :func:`topological_order`."""
    return topological_order(orig_functions)


def _expand_network(self, network):
    """``NnpExpander._expand_network`` of NNabla 1.39, each sorted function found by a dict
    from its name to its first position instead of ``func_list.index``."""
    self._parameter_original_names = collections.OrderedDict()

    print(' Expanding {}.'.format(network.name))

    repeat_ids = collections.OrderedDict()
    for ri in network.repeat_info:
        repeat_ids[ri.id] = ri.times

    # Check whether parameter name complies with old rule.
    self._old_version_param_name = False
    for param in self._parameters:
        for ri in repeat_ids:
            m = re.search('{}\\[([0-9]+)\\]$'.format(ri), param)
            if m:
                if int(m.group(1)) < repeat_ids[ri]:
                    self._old_version_param_name = True

    # Expand repeat
    network = self._expand_repeat(network)

    functions = []
    for func in network.function:
        functions.append((func.name,
                          func.type,
                          [n for n in func.input],
                          [n for n in func.output]))

    sorted_functions = self._sort_functions(functions)
    position = {}
    for k, f in enumerate(functions):
        position.setdefault(f[0], k)

    net = nnabla_pb2.NNablaProtoBuf().network.add()
    net.CopyFrom(network)
    net.ClearField('function')
    for f in sorted_functions:
        func = net.function.add()
        func.CopyFrom(network.function[position[f[0]]])

    return net


def save_variable_buffer(info):
    """``nnablart.save_variable_buffer.save_variable_buffer`` of NNabla 1.39, the plan of
    the ``.nnb``'s variable buffers: the same sizes and assignment, found by one sweep over
    the functions that keeps the set of buffers alive, instead of a scan of every buffer for
    every function (four times). Returns ``(actual buffer sizes, {variable index: actual
    buffer index})``."""
    lives = getattr(nnablart_buffers(), '__make_buf_var_lives')(info)
    n_functions = len(info._network.function)
    sizes = info._variable_buffer_size
    begins, ends = collections.defaultdict(list), collections.defaultdict(list)
    for b, life in enumerate(lives):  # needed at begin <= f <= end (_LifeSpan.needed_at)
        first, last = max(life.begin_func_idx, 0), min(life.end_func_idx, n_functions - 1)
        if first <= last:
            begins[first].append(b)
            ends[last].append(b)
    alive = []  # ascending, as NNabla lists them
    needed = []  # for each function, the buffers alive (NNabla's buf_var_refs rows)
    largest = []  # [j]: over all functions, the largest (j + 1)-th largest size alive
    for f in range(n_functions):
        for b in begins.get(f, ()):
            bisect.insort(alive, b)
        needed.append(list(alive))
        for j, size in enumerate(sorted((sizes[b] for b in alive), reverse=True)):
            if j == len(largest):
                largest.append(size)
            elif size > largest[j]:
                largest[j] = size
        for b in ends.get(f, ()):
            alive.remove(b)
    count = max(map(len, needed), default=0)
    # NNabla pads each function's ascending sizes with -1 in front to `count` and keeps the
    # elementwise maximum, from zeros: the j-th largest lands at count - 1 - j.
    actual = np.zeros(count, dtype=np.int32)
    for j, size in enumerate(largest):
        actual[count - 1 - j] = max(0, size)

    # __assign_actual_buf_to_variable, as NNabla writes it, on lists.
    actual = [int(a) for a in actual]
    assigned = {}
    for row in needed:
        taken = [False] * count
        for b in row:
            v = info._variable_buffer_index[b][0]
            if v in assigned:
                taken[assigned[v]] = True
        for b in row:
            v = info._variable_buffer_index[b][0]
            if v in assigned:
                continue
            size = info._variable_buffer_size[b]
            for a in range(count):
                if not taken[a] and size <= actual[a]:
                    break
            else:  # none is large enough: grow the first vacant one
                if False not in taken:
                    continue  # (never: `count` buffers are enough for every function)
                a = taken.index(False)
                actual[a] = size
            taken[a] = True
            assigned[v] = a
    return list(np.array(actual, dtype=np.int32)), assigned


def nnablart_buffers():
    from nnabla.utils.converter.nnablart import save_variable_buffer as module
    return module


def _alloc(self, size=-1, data=b''):
    """``NnbExporter._alloc`` of NNabla 1.39: the returned pointer, the sum of the memory
    index (which no caller reads), kept as a running total, and the memory data grown in
    place (a bytearray) instead of copied at every allocation."""
    size = len(data) if size < 0 else size
    index = len(self._memory_index)
    known = self.__dict__.get('_nnlstm_index_sum')
    pointer = known[1] if known and known[0] == index else sum(self._memory_index)
    self._memory_index.append(len(self._memory_data))
    self._nnlstm_index_sum = (index + 1, pointer + self._memory_index[-1])
    assert (len(data) <= size)
    if not isinstance(self._memory_data, bytearray):
        self._memory_data = bytearray(self._memory_data)
    self._memory_data += data
    self._memory_data += b'\0' * (self._align(len(data)) - len(data))
    return (index, pointer)


_lock = threading.Lock()
_active = 0
_saved = []


@contextlib.contextmanager
def linear_converter():
    """While active (in any thread), NNabla's saver and converter use the linear versions
    of the module above; the original methods are restored when the last active block
    ends. Nested and concurrent blocks are safe: the replacements compute what the
    originals do."""
    global _active
    from nnabla.utils.converter.nnabla import expander
    swaps = [(graph_def.ProtoFunction, '_proto_call', _proto_call),
             (expander.NnpExpander, '_sort_functions', _sort_functions),
             (expander.NnpExpander, '_expand_network', _expand_network)]
    try:  # the .nnb exporter needs packages of the onnx extra
        from nnabla.utils.converter.nnablart.nnb import NnbExporter
        swaps += [(nnablart_buffers(), 'save_variable_buffer', save_variable_buffer),
                  (NnbExporter, '_alloc', _alloc)]
    except ImportError:
        pass
    with _lock:
        if _active == 0:
            _saved[:] = [(owner, name, owner.__dict__[name]) for owner, name, _ in swaps]
            for owner, name, method in swaps:
                setattr(owner, name, method)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                for owner, name, method in _saved:
                    setattr(owner, name, method)
                del _saved[:]
