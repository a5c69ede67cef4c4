"""A sweep of bad inputs over nnlstm's public functions, each case in a forked process.

Each case is one call that must be refused. Its outcome is classified as:

* ``clear``: a ValueError/TypeError (an OSError for a path) whose message names what the
  case says it must name (the argument, or the user's path);
* ``unclear``: a ValueError/TypeError that does not name it;
* ``internal``: any other exception (AttributeError, KeyError, NNabla's C++ errors, ...);
* ``accepted``: no exception (silently accepted, perhaps silently wrong);
* ``killed``: the process died (a signal such as SIGFPE/SIGSEGV) or hung.

It prints the counts and every case that is not ``clear``; the exit status is the number of
those (capped at 255). Run: ``./run python benchmarks/bad_inputs.py`` (``-k WORD`` runs the
cases whose label holds WORD, ``-v`` prints every message).

Measured, 502 cases, about 12 s on 2 cores, with the onnx extra installed (``./run python
benchmarks/bad_inputs.py``; the "before" run is the same script over nnlstm as it was at f957658, where this branch started:
``git archive f957658 nnlstm | tar -x -C /tmp/old && PYTHONPATH=/tmp/old ./run python
benchmarks/bad_inputs.py``):

* before: 460 clear, 17 unclear, 3 internal, 22 accepted, 0 killed
  (benchmarks/results/bad_inputs_before.txt lists the 42);
* after:  502 clear, 0 unclear, 0 internal, 0 accepted, 0 killed.

Left out, as not a bad input of nnlstm's: ``units=10**12`` (NumPy's own MemoryError names
the 87 TiB it would allocate), an error raised inside the user's own ``build`` function,
Keras config options that do not change the weights (``load_keras`` accepts them, issue 12
kind 8), a Dense layer's single kernel (``use_bias=False``).
"""
import argparse
import multiprocessing
import os
import sys
import tempfile
import traceback

PRELUDE = """
import functools, math, os
import numpy as np
import nnabla as nn
import nnlstm
from nnlstm import interop
nn.clear_parameters()
x = nn.Variable((2, 5, 3))
x_t = nn.Variable((2, 3))
c = nn.Variable((2, 4))
h = nn.Variable((2, 4))
tmp = TMP
P = {'WaWiWfWo/affine/W': np.zeros((7, 16), np.float32),
     'WaWiWfWo/affine/b': np.zeros(16, np.float32)}
"""

LAYERS = ('LSTM', 'GRU', 'SimpleRNN')
CELLS = {'LSTMCell': '(x_t, c, h', 'GRUCell': '(x_t, h', 'SimpleRNNCell': '(x_t, h'}


def layer_cases():
    """Bad arguments to every layer: each (label, what the message must name, code)."""
    for L in LAYERS:
        call = 'nnlstm.%s(%%s)' % L
        for arg, value in [('units', '0'), ('units', '-1'), ('units', '2.5'), ('units', 'True'),
                           ('units', 'None'), ('units', "'4'"), ('units', 'float("nan")')]:
            yield '%s %s=%s' % (L, arg, value), arg, call % ('x, %s' % value)
        for value in ['None', 'np.zeros((2, 5, 3))', 'nn.Variable((2, 5))',
                      'nn.Variable((2, 0, 3))', 'nn.Variable((0, 5, 3))',
                      'nn.Variable((2, 5, 0))', 'nn.Variable((2, 5, 3, 1))']:
            yield '%s inputs=%s' % (L, value), 'inputs', call % ('%s, 4' % value)
        for arg in ('return_sequences', 'return_state', 'go_backwards', 'time_major'):
            for value in ("'no'", '1', 'None'):
                yield '%s %s=%s' % (L, arg, value), arg, call % ('x, 4, %s=%s' % (arg, value))
        for value in ("''", '5', "['a']"):
            yield '%s name=%s' % (L, value), 'name', call % ('x, 4, name=%s' % value)
        state = 'nn.Variable((3, 4))' if L != 'LSTM' else '(nn.Variable((3, 4)), h)'
        for label, value in [('batch', state), ('string', "'zeros'"),
                             ('units', 'nn.Variable((2, 5))' if L != 'LSTM' else '(c, c, c)')]:
            yield '%s initial_state %s' % (L, label), 'initial_state', call % (
                'x, 4, initial_state=%s' % value)
        for value in ['[6, 1]', '[-1, 2]', '[2.5, 1.0]', '[1, 2, 3]', "'ab'",
                      'nn.Variable((3,))', '[[1, 2]]']:
            yield '%s lengths=%s' % (L, value), 'lengths', call % ('x, 4, lengths=%s' % value)
        for arg, value in [('activation', "'nope'"), ('activation', "['tanh']"),
                           ('activation', '5'), ('kernel_initializer', "'nonsense'"),
                           ('kernel_initializer', "'5'"),
                           ('kernel_initializer', 'np.zeros((2, 2))'),
                           ('recurrent_initializer', '5j'), ('bias_initializer', "'unknown'"),
                           ('rng', "'a'"), ('rng', '-1'), ('rng', '1.5'),
                           ('dropout', '1.5'), ('dropout', '-0.1'), ('dropout', "'0.1'"),
                           ('recurrent_dropout', 'float("nan")'), ('use_bias', "'yes'"),
                           ('fix_parameters', "'no'"), ('training', "'yes'"),
                           ('stateful', '5'), ('stateful', 'True'), ('fused', "'yes'"),
                           ('foo', '1'), ('return_sequence', 'True')]:
            yield '%s %s=%s' % (L, arg, value), arg, call % ('x, 4, %s=%s' % (arg, value))
    yield 'LSTM unit_forget_bias=x', 'unit_forget_bias', "nnlstm.LSTM(x, 4, unit_forget_bias='x')"
    yield 'LSTM recurrent_activation=no', 'recurrent_activation', \
        "nnlstm.LSTM(x, 4, recurrent_activation='no')"
    yield 'GRU reset_after=False str', 'reset_after', "nnlstm.GRU(x, 4, reset_after='False')"
    yield 'SimpleRNN reset_after', 'reset_after', 'nnlstm.SimpleRNN(x, 4, reset_after=True)'
    yield 'LSTM fused+lengths', 'fused', 'nnlstm.LSTM(x, 4, fused=True, lengths=[5, 5])'
    yield 'LSTM lengths Variable 2D', 'lengths', \
        'nnlstm.LSTM(x, 4, lengths=nn.Variable((2, 1)))'


def cell_cases():
    for cell, head in CELLS.items():
        call = 'nnlstm.%s%s%%s)' % (cell, head)
        rest = head[len('(x_t'):]  # ', c, h' or ', h'
        yield cell + ' x None', 'x', 'nnlstm.%s(None%s)' % (cell, rest)
        yield cell + ' x (2, 0)', 'x', 'nnlstm.%s(nn.Variable((2, 0))%s)' % (cell, rest)
        yield cell + ' x rank 3', 'x', 'nnlstm.%s(x%s)' % (cell, rest)
        yield cell + ' H = 0', 'h', 'nnlstm.%s%s)' % (
            cell, head.replace('c, h', 'nn.Variable((2, 0)), nn.Variable((2, 0))').replace(
                'x_t, h', 'x_t, nn.Variable((2, 0))'))
        yield cell + ' h batch 3', 'h', 'nnlstm.%s%s)' % (
            cell, head.replace(' h', ' nn.Variable((3, 4))'))
        yield cell + ' h numpy', 'h', 'nnlstm.%s%s)' % (cell, head.replace(' h', ' np.zeros((2, 4))'))
        for arg, value in [('name', '5'), ('name', "''"), ('foo', '1'),
                           ('activation', "'nope'"), ('use_bias', "'no'"), ('rng', "'x'"),
                           ('dropout', '0.5'), ('kernel_initializer', "'nonsense'")]:
            yield '%s %s=%s' % (cell, arg, value), arg, call % (', %s=%s' % (arg, value))
    yield 'LSTMCell c batch 3', 'c', 'nnlstm.LSTMCell(x_t, nn.Variable((3, 4)), h)'
    yield 'LSTMCell c H 5', 'c', 'nnlstm.LSTMCell(x_t, nn.Variable((2, 5)), h)'


def unroll_cases():
    core = 'nnlstm.cells.LSTMCore(3, 4)'
    yield 'unroll core None', 'core', 'nnlstm.unroll(None, x)'
    yield 'unroll core LSTM', 'core', 'nnlstm.unroll(nnlstm.LSTM, x)'
    for label, args, arg in [
            ('inputs rank 2', 'nn.Variable((2, 5))', 'inputs'),
            ('inputs None', 'None', 'inputs'),
            ('inputs D 2', 'nn.Variable((2, 5, 2))', 'inputs'),
            ('inputs T 0', 'nn.Variable((2, 0, 3))', 'inputs'),
            ('reverse str', "x, reverse='yes'", 'reverse'),
            ('time_major 1', 'x, time_major=1', 'time_major'),
            ('dropout 2', 'x, dropout=2.0', 'dropout'),
            ('recurrent_dropout -1', 'x, recurrent_dropout=-1.0', 'recurrent_dropout'),
            ('state B', 'x, initial_state=(nn.Variable((3, 4)), h)', 'initial_state'),
            ('state 1 field', 'x, initial_state=(h,)', 'initial_state'),
            ('state str', "x, initial_state='zeros'", 'initial_state'),
            ('lengths range', 'x, lengths=[7, 1]', 'lengths'),
            ('lengths float', 'x, lengths=[1.5, 1.0]', 'lengths'),
            ('lengths shape', 'x, lengths=[1]', 'lengths')]:
        yield 'unroll ' + label, arg, 'nnlstm.unroll(%s, %s)' % (core, args)
    for label, args, arg in [('D 0', '0, 4', 'input_size'), ('H 0', '3, 0', 'units'),
                             ('H str', "3, '4'", 'units'), ('H bool', '3, True', 'units'),
                             ('option', '3, 4, foo=1', 'foo')]:
        yield 'LSTMCore ' + label, arg, 'nnlstm.cells.LSTMCore(%s)' % args


def wrapper_cases():
    B = 'nnlstm.Bidirectional(%s)'
    for label, args, arg in [
            ('layer str', "'LSTM', x, 4", 'layer'), ('layer None', 'None, x, 4', 'layer'),
            ('layer cell', 'nnlstm.LSTMCell, x, 4', 'layer'),
            ('merge_mode cat', "nnlstm.LSTM, x, 4, merge_mode='cat'", 'merge_mode'),
            ('merge_mode 5', 'nnlstm.LSTM, x, 4, merge_mode=5', 'merge_mode'),
            ('units 0', 'nnlstm.LSTM, x, 0', 'units'), ('name empty', "nnlstm.LSTM, x, 4, name=''", 'name'),
            ('inputs None', 'nnlstm.LSTM, None, 4', 'inputs'),
            ('go_backwards', 'nnlstm.LSTM, x, 4, go_backwards=True', 'go_backwards'),
            ('initial_state 1', 'nnlstm.GRU, x, 4, initial_state=h', 'initial_state'),
            ('initial_state B', 'nnlstm.GRU, x, 4, initial_state=(nn.Variable((3, 4)),) * 2',
             'initial_state'),
            ('return_state str', "nnlstm.LSTM, x, 4, return_state='y'", 'return_state'),
            ('option', 'nnlstm.LSTM, x, 4, foo=1', 'foo'),
            ('lengths range', 'nnlstm.LSTM, x, 4, lengths=[9, 1]', 'lengths')]:
        yield 'Bidirectional ' + label, arg, B % args
    S = 'nnlstm.Stacked(%s)'
    for label, args, arg in [
            ('layer str', "'LSTM', x, 4", 'layer'), ('layer None', 'None, x, 4', 'layer'),
            ('num_layers 0', 'nnlstm.LSTM, x, 4, num_layers=0', 'num_layers'),
            ('num_layers bool', 'nnlstm.LSTM, x, 4, num_layers=True', 'num_layers'),
            ('num_layers 1.5', 'nnlstm.LSTM, x, 4, num_layers=1.5', 'num_layers'),
            ('dropout 1.5', 'nnlstm.LSTM, x, 4, dropout=1.5', 'dropout'),
            ('dropout str', "nnlstm.LSTM, x, 4, dropout='0'", 'dropout'),
            ('units list', 'nnlstm.LSTM, x, [4, 0]', 'units'),
            ('units list len', 'nnlstm.LSTM, x, [4, 4, 4]', 'units'),
            ('name 5', 'nnlstm.LSTM, x, 4, name=5', 'name'),
            ('initial_state', 'nnlstm.GRU, x, 4, initial_state=h', 'initial_state'),
            ('merge_mode None', 'functools.partial(nnlstm.Bidirectional, nnlstm.LSTM, '
             'merge_mode=None), x, 4, return_sequences=True', 'merge_mode'),
            ('option', 'nnlstm.LSTM, x, 4, foo=1', 'foo'),
            ('return_sequences', "nnlstm.LSTM, x, 4, return_sequences='y'", 'return_sequences')]:
        yield 'Stacked ' + label, arg, S % args


def other_cases():
    for label, args, arg in [
            ('build None', 'None, x', 'build'), ('inputs None', 'lambda v: v, None', 'inputs'),
            ('samples 0', 'lambda v: v, x, samples=0', 'samples'),
            ('samples bool', 'lambda v: v, x, samples=True', 'samples'),
            ('samples 2.5', 'lambda v: v, x, samples=2.5', 'samples'),
            ('build returns str', "lambda v: 'y', x", 'build'),
            ('build returns tuple', 'lambda v: (v, v), x', 'build')]:
        yield 'mc_dropout ' + label, arg, 'nnlstm.mc_dropout(%s)' % args
    v = 'nn.Variable((2,), need_grad=True)'
    for label, args, arg in [
            ('None', 'None, 1.0', 'parameters'), ('ints', '[1], 1.0', 'parameters'),
            ('one Variable', v + ', 1.0', 'parameters'),
            ('max_norm 0', '[%s], 0.0' % v, 'max_norm'), ('max_norm -1', '[%s], -1' % v, 'max_norm'),
            ('max_norm nan', '[%s], float("nan")' % v, 'max_norm'),
            ('max_norm inf', '[%s], float("inf")' % v, 'max_norm'),
            ('max_norm str', "[%s], '1'" % v, 'max_norm'),
            ('max_norm bool', '[%s], True' % v, 'max_norm'),
            ('eps -1', '[%s], 1.0, eps=-1.0' % v, 'eps'),
            ('eps nan', '[%s], 1.0, eps=float("nan")' % v, 'eps'),
            ('eps str', "[%s], 1.0, eps='0'" % v, 'eps'),
            ('eps None', '[%s], 1.0, eps=None' % v, 'eps')]:
        yield 'clip_grad_by_global_norm ' + label, arg, \
            'nnlstm.clip_grad_by_global_norm(%s)' % args
    for label, args, arg in [
            ('name gpu', "'gpu'", 'context'), ('name None', 'None', 'context'),
            ('device_id -1', "'cpu', device_id=-1", 'device_id'),
            ('device_id x', "'cpu', device_id='x'", 'device_id'),
            ('device_id None', "'cpu', device_id=None", 'device_id'),
            ('device_id 1.5', "'cpu', device_id=1.5", 'device_id'),
            ('type_config', "'cpu', type_config='double'", 'type_config'),
            ('cudnn', "'cudnn'", 'cudnn')]:
        yield 'context ' + label, arg, 'nnlstm.context(%s)' % args
    yield 'Carry argument', 'Carry', 'nnlstm.Carry(5)'
    yield 'Carry layer name reused with another D', 'name', (
        'k = nnlstm.Carry(); nnlstm.LSTM(x, 4, stateful=k, name="a"); '
        'nnlstm.LSTM(nn.Variable((2, 5, 4)), 4, stateful=k, name="a")')


def export_cases():
    net = "y = nnlstm.LSTM(x, 4); "
    for fn in ('export_network', 'save_nnp'):
        call = net + 'nnlstm.%s(%%s)' % fn
        for label, args, arg in [
                ('path None', "None, {'x': x}, {'y': y}", 'path'),
                ('path 5', "5, {'x': x}, {'y': y}", 'path'),
                ('path empty', "'', {'x': x}, {'y': y}", 'path'),
                ('path nodir', "'nodir/m.nnp', {'x': x}, {'y': y}", 'nodir/m.nnp'),
                ('path is dir', "tmp, {'x': x}, {'y': y}", 'tmp'),
                ('inputs empty', "tmp + '/m.nnp', {}, {'y': y}", 'inputs'),
                ('outputs empty', "tmp + '/m.nnp', {'x': x}, {}", 'outputs'),
                ('inputs list', "tmp + '/m.nnp', [x], {'y': y}", 'inputs'),
                ('outputs Variable', "tmp + '/m.nnp', {'x': x}, y", 'outputs'),
                ('inputs value str', "tmp + '/m.nnp', {'x': 'x'}, {'y': y}", 'inputs'),
                ('outputs value None', "tmp + '/m.nnp', {'x': x}, {'y': None}", 'outputs'),
                ('inputs key int', "tmp + '/m.nnp', {1: x}, {'y': y}", 'inputs'),
                ('outputs mixed keys', "tmp + '/m.nnp', {'x': x}, {'y': y, 2: y}", 'outputs'),
                ('inputs key empty', "tmp + '/m.nnp', {'': x}, {'y': y}", 'inputs'),
                ('same name in and out', "tmp + '/m.nnp', {'x': x}, {'x': y}", "'x'"),
                ('input not in graph', "tmp + '/m.nnp', {'x': nn.Variable((2, 5, 3))}, {'y': y}",
                 'inputs'),
                ('network_name empty', "tmp + '/m.nnp', {'x': x}, {'y': y}, network_name=''",
                 'network_name'),
                ('network_name 5', "tmp + '/m.nnp', {'x': x}, {'y': y}, network_name=5",
                 'network_name'),
                ('executor_name empty', "tmp + '/m.nnp', {'x': x}, {'y': y}, executor_name=''",
                 'executor_name'),
                ('executor_name None', "tmp + '/m.nnp', {'x': x}, {'y': y}, executor_name=None",
                 'executor_name')]:
            yield '%s %s' % (fn, label), arg, call % args
    call = net + "nnlstm.export_network(tmp + '/m.nnp', {'x': x}, {'y': y}, %s)"
    for label, args, arg in [('onnx str', "onnx='yes'", 'onnx'), ('nnb 1', 'nnb=1', 'nnb'),
                             ('opset 0', 'onnx=True, opset=0', 'opset'),
                             ('opset str', "onnx=True, opset='13'", 'opset'),
                             ('nnb_batch_size -1', 'nnb=True, nnb_batch_size=-1', 'nnb_batch_size'),
                             ('option', 'foo=1', 'foo')]:
        yield 'export_network ' + label, arg, call % args
    yield 'export_network training graph', 'dropout', (
        "y = nnlstm.LSTM(x, 4, dropout=0.5); "
        "nnlstm.export_network(tmp + '/m.nnp', {'x': x}, {'y': y})")
    for label, args, arg in [('None', 'None', 'path'), ('5', '5', 'path'),
                             ('nodir', "'nodir/p.h5'", 'nodir/p.h5'), ('dir', 'tmp', 'tmp'),
                             ('empty', "''", 'path')]:
        yield 'save_parameters ' + label, arg, net + 'nnlstm.save_parameters(%s)' % args
    train = "nnlstm.LSTM(x, 4, name='enc'); "
    for label, args, arg in [
            ('layer str', "'LSTM', 3, 4, 'enc'", 'layer'),
            ('layer None', "None, 3, 4, 'enc'", 'layer'),
            ('input_size 0', "nnlstm.LSTM, 0, 4, 'enc'", 'input_size'),
            ('input_size str', "nnlstm.LSTM, '3', 4, 'enc'", 'input_size'),
            ('units 0', "nnlstm.LSTM, 3, 0, 'enc'", 'units'),
            ('units mismatch', "nnlstm.LSTM, 3, 5, 'enc'", 'units'),
            ('input_size mismatch', "nnlstm.LSTM, 2, 4, 'enc'", 'input size'),
            ('name empty', "nnlstm.LSTM, 3, 4, ''", 'name'),
            ('name 5', 'nnlstm.LSTM, 3, 4, 5', 'name'),
            ('name unknown', "nnlstm.LSTM, 3, 4, 'dec'", 'dec'),
            ('batch_size 0', "nnlstm.LSTM, 3, 4, 'enc', batch_size=0", 'batch_size'),
            ('batch_size bool', "nnlstm.LSTM, 3, 4, 'enc', batch_size=True", 'batch_size'),
            ('option', "nnlstm.LSTM, 3, 4, 'enc', foo=1", 'foo'),
            ('use_bias False', "nnlstm.LSTM, 3, 4, 'enc', use_bias=False", 'use_bias'),
            ('wrong kind', "nnlstm.GRU, 3, 4, 'enc'", 'enc')]:
        yield 'step_network ' + label, arg, train + 'nnlstm.step_network(%s)' % args
    for label, args, arg in [('path None', "None, nnlstm.LSTM, 3, 4, 'enc'", 'path'),
                             ('path nodir', "'nodir/s.nnp', nnlstm.LSTM, 3, 4, 'enc'",
                              'nodir/s.nnp'),
                             ('onnx str', "tmp + '/s.nnp', nnlstm.LSTM, 3, 4, 'enc', onnx='y'",
                              'onnx')]:
        yield 'export_step ' + label, arg, train + 'nnlstm.export_step(%s)' % args


def interop_cases():
    sd = ("sd = interop.to_torch({'WaWiWfWo/affine/W': np.zeros((7, 16), np.float32), "
          "'WaWiWfWo/affine/b': np.zeros(16, np.float32)}); ")
    for fmt in ('torch', 'nnabla'):
        load = 'good = interop.to_%s(P); interop.load_%s(%%s)' % (fmt, fmt)
        for label, args, arg in [
                ('None', "None, 'a'", 'params' if fmt == 'nnabla' else 'state_dict'),
                ('empty', "{}, 'a'", 'params' if fmt == 'nnabla' else 'state_dict'),
                ('name 5', "good, 5", 'name'), ('name empty', "good, ''", 'name'),
                ('layer -1', "{}, 'a', layer=-1", 'layer'),
                ('layer bool', "{}, 'a', layer=True", 'layer'),
                ('layer str', "{}, 'a', layer='0'", 'layer'),
                ('cell bad', "{}, 'a', cell='lstmx'", 'cell'),
                ('cell None', "{}, 'a', cell=None", 'cell'),
                ('reverse str', "good, 'a', reverse='y'", 'reverse'),
                ('key int', "{1: np.zeros(3)}, 'a'", 'params' if fmt == 'nnabla' else 'state_dict'),
                ('mixed keys', "{'a': np.zeros(3), 1: np.zeros(3)}, 'a'",
                 'params' if fmt == 'nnabla' else 'state_dict')]:
            yield 'load_%s %s' % (fmt, label), arg, load % args
        save = 'interop.save_%s(%%s)' % fmt
        for label, args, arg in [('missing', "'nothere'", 'nothere'), ('name 5', '5', 'name'),
                                 ('layer -1', "'a', layer=-1", 'layer'),
                                 ('cell bad', "'a', cell='x'", 'cell')]:
            yield 'save_%s %s' % (fmt, label), arg, save % args
        for label, args, arg in [('None', 'None', 'params'), ('empty', '{}', 'params'),
                                 ('cell bad', "{}, cell='q'", 'cell'),
                                 ('layer -1', 'P, layer=-1', 'layer')]:
            yield 'to_%s %s' % (fmt, label), arg, 'interop.to_%s(%s)' % (fmt, args)
    for label, args, arg in [
            ('prefix 5', "sd, 'a', prefix=5", 'prefix'),
            ('prefix unknown', "sd, 'a', prefix='enc.'", 'enc.'),
            ('shape', "dict(sd, weight_hh_l0=np.zeros((16, 3), np.float32)), 'a'",
             'weight_hh_l0'),
            ('NaN', "dict(sd, bias_ih_l0=np.full(16, np.nan, np.float32)), 'a'", 'bias_ih_l0'),
            ('dtype str', "dict(sd, bias_ih_l0=np.array(['a'] * 16)), 'a'", 'bias_ih_l0'),
            ('missing file', "tmp + '/none.safetensors', 'a'", 'none.safetensors'),
            ('not a file', "tmp, 'a'", 'tmp'),
            ('layer 1', "sd, 'a', layer=1", 'weight_hh_l1'),
            ('reverse', "sd, 'a', reverse=True", 'reverse'),
            ('cell gru', "sd, 'a', cell='gru'", 'weight_hh_l0')]:
        yield 'load_torch ' + label, arg, sd + 'interop.load_torch(%s)' % args
    kw = ("kw = [np.zeros((3, 16), np.float32), np.zeros((4, 16), np.float32), "
          "np.zeros(16, np.float32)]; ")
    for label, args, arg in [
            ('None', "None, 'k'", 'weights'), ('empty list', "[], 'k'", 'weights'),
            ('one array', "kw[:1], 'k'", 'weights'), ('name 5', 'kw, 5', 'name'),
            ('cell bad', "kw, 'k', cell='lsmt'", 'cell'),
            ('units mismatch', "kw, 'k', units=5", 'units'),
            ('units str', "kw, 'k', units='4'", 'units'),
            ('unknown config', "kw, 'k', frobnicate=1", 'frobnicate'),
            ('use_bias False with bias', "kw, 'k', use_bias=False", 'use_bias'),
            ('shape', "[kw[0], kw[0], kw[2]], 'k'", 'weights'),
            ('NaN', "[kw[0], kw[1], np.full(16, np.nan, np.float32)], 'k'", 'weights'),
            ('missing file', "tmp + '/none.weights.h5', 'k'", 'none.weights.h5'),
            ('dict', "{'a': kw[0]}, 'k'", 'weights'),
            ('layer 5', "kw, 'k', layer=5", 'layer')]:
        yield 'load_keras ' + label, arg, kw + 'interop.load_keras(%s)' % args
    for label, args, arg in [('None', 'None', 'weights'), ('cell bad', "kw, cell='x'", 'cell'),
                             ('reset_after str', "kw, cell='gru', reset_after='no'",
                              'reset_after')]:
        yield 'from_keras ' + label, arg, kw + 'interop.from_keras(%s)' % args
    for label, args, arg in [('missing', "'nothere'", 'nothere'), ('cell bad', "'a', cell='x'", 'cell')]:
        yield 'save_keras ' + label, arg, 'interop.save_keras(%s)' % args
    for label, args, arg in [
            ('None', "None, 'fc'", 'weights'), ('three arrays', "[np.zeros((3, 2))] * 3, 'fc'",
                                                 'weights'),
            ('bias shape', "[np.zeros((3, 2)), np.zeros(3)], 'fc'", 'b'),
            ('name 5', "[np.zeros((3, 2)), np.zeros(2)], 5", 'name')]:
        yield 'load_keras_dense ' + label, arg, 'interop.load_keras_dense(%s)' % args
    for label, args, arg in [
            ('None', "None, 'fc'", 'state_dict'), ('empty', "{}, 'fc'", 'fc.'),
            ('bias shape', "{'fc.weight': np.zeros((2, 3)), 'fc.bias': np.zeros(3)}, 'fc'", 'bias'),
            ('prefix 5', "{}, 'fc', prefix=5", 'prefix')]:
        yield 'load_torch_linear ' + label, arg, 'interop.load_torch_linear(%s)' % args
    for label, args, arg in [('None', 'None', 'params'), ('layer -1', '{}, layer=-1', 'layer'),
                             ('cell', "{}, cell='gru'", 'cell')]:
        yield 'from_nnabla ' + label, arg, 'interop.from_nnabla(%s)' % args
    for label, args, arg in [('None', 'None', 'state_dict'), ('layer -1', '{}, layer=-1', 'layer'),
                             ('prefix 5', '{}, prefix=5', 'prefix')]:
        yield 'from_torch ' + label, arg, 'interop.from_torch(%s)' % args


def more_cases():
    """The same kinds tried on more functions and arguments (after the first fixes)."""
    sd = "sd = interop.to_torch(P); "
    for label, names, code in [
            ('LSTM stateful and initial_state', 'initial_state',
             'nnlstm.LSTM(x, 4, stateful=nnlstm.Carry(), initial_state=(c, h))'),
            ('GRU initial_state 2-tuple', 'initial_state', 'nnlstm.GRU(x, 4, initial_state=(h, h))'),
            ('LSTM initial_state numpy', 'initial_state',
             'nnlstm.LSTM(x, 4, initial_state=(np.zeros((2, 4)), np.zeros((2, 4))))'),
            ('LSTM lengths bool', 'lengths', 'nnlstm.LSTM(x, 4, lengths=np.array([True, False]))'),
            ('LSTM lengths None-filled', 'lengths', 'nnlstm.LSTM(x, 4, lengths=[None, 1])'),
            ('LSTM lengths dict', 'lengths', "nnlstm.LSTM(x, 4, lengths={'a': 1})"),
            ('Stacked units 0 in list', 'units', 'nnlstm.Stacked(nnlstm.LSTM, x, [4, 0])'),
            ('Stacked num_layers str', 'num_layers', "nnlstm.Stacked(nnlstm.LSTM, x, 4, num_layers='2')"),
            ('Stacked dropout with one layer only', 'dropout',
             'nnlstm.Stacked(nnlstm.LSTM, x, 4, num_layers=1, dropout=0.5)'),
            ('Bidirectional layer Stacked', 'layer', 'nnlstm.Bidirectional(nnlstm.Stacked, x, 4)'),
            ('Bidirectional units str', 'units', "nnlstm.Bidirectional(nnlstm.GRU, x, '4')"),
            ('Bidirectional time_major str', 'time_major',
             "nnlstm.Bidirectional(nnlstm.GRU, x, 4, time_major='y')"),
            ('mc_dropout samples -3', 'samples', 'nnlstm.mc_dropout(lambda v: v, x, samples=-3)'),
            ('clip parameters dict of str', 'parameters',
             "nnlstm.clip_grad_by_global_norm({'a': 'b'}, 1.0)"),
            ('clip parameters generator of ints', 'parameters',
             'nnlstm.clip_grad_by_global_norm((i for i in range(2)), 1.0)'),
            ('context device_id float str', 'device_id', "nnlstm.context('cpu', device_id='1.0')"),
            ('context type_config None', 'type_config', "nnlstm.context('cpu', type_config=None)"),
            ('step_network layer Bidirectional', 'layer',
             "nnlstm.LSTM(x, 4, name='enc'); nnlstm.step_network(nnlstm.Bidirectional, 3, 4, 'enc')"),
            ('step_network unknown option', 'foo',
             "nnlstm.LSTM(x, 4, name='enc'); nnlstm.step_network(nnlstm.LSTM, 3, 4, 'enc', foo=2)"),
            ('export_step batch_size 0', 'batch_size',
             "nnlstm.LSTM(x, 4, name='enc'); nnlstm.export_step(tmp + '/s.nnp', nnlstm.LSTM, 3, 4, "
             "'enc', batch_size=0)"),
            ('export_step path .onnx', 'path',
             "nnlstm.LSTM(x, 4, name='enc'); nnlstm.export_step(tmp + '/s.onnx', nnlstm.LSTM, 3, 4, "
             "'enc')"),
            ('export_network opset bool', 'opset',
             "y = nnlstm.LSTM(x, 4); nnlstm.export_network(tmp + '/m.nnp', {'x': x}, {'y': y}, "
             "onnx=True, opset=True)"),
            ('export_network path bytes', 'path',
             "y = nnlstm.LSTM(x, 4); nnlstm.export_network(b'm.nnp', {'x': x}, {'y': y})"),
            ('save_parameters path bytes', 'path', "nnlstm.save_parameters(b'p.h5')"),
            ('save_torch path nodir', 'nodir/w.safetensors',
             sd + "interop.load_torch(sd, 'a'); interop.save_torch('a', path='nodir/w.safetensors')"),
            ('save_torch path 5', 'path', sd + "interop.load_torch(sd, 'a'); interop.save_torch('a', path=5)"),
            ('save_torch into list', 'into', sd + "interop.load_torch(sd, 'a'); interop.save_torch('a', into=[])"),
            ('save_torch prefix 5', 'prefix', sd + "interop.load_torch(sd, 'a'); interop.save_torch('a', prefix=5)"),
            ('to_keras units mismatch', 'units', "interop.to_keras(P, units=5)"),
            ('to_torch wrong shapes', 'params',
             "interop.to_torch({'WaWiWfWo/affine/W': np.zeros((7, 15)), "
             "'WaWiWfWo/affine/b': np.zeros(16)})"),
            ('from_torch NaN', 'weight_ih_l0',
             sd + "sd['weight_ih_l0'] = sd['weight_ih_l0'] * np.nan; interop.from_torch(sd)"),
            ('load_keras object without config', 'weights',
             "class K:\n    def get_weights(self): return []\ninterop.load_keras(K(), 'k')"),
            ('load_nnabla NaN', 'weight_l0',
             "interop.load_nnabla({'weight_l0': np.full((1, 4, 4, 7), np.nan), "
             "'bias': np.zeros((1, 1, 4, 4))}, 'a')"),
            ('load_torch_linear NaN', "'weight'",
             "interop.load_torch_linear({'fc.weight': np.full((2, 3), np.nan), "
             "'fc.bias': np.zeros(2)}, 'fc')")]:
        yield label, names, code


def cases():
    for group in (layer_cases, cell_cases, unroll_cases, wrapper_cases, other_cases,
                  export_cases, interop_cases, more_cases):
        yield from group()


def child(code, tmp, conn):
    """Run one case; send (outcome, type name, message) back."""
    try:
        namespace = {'TMP': tmp}
        exec(PRELUDE.replace('TMP', repr(tmp)), namespace)
        exec(code, namespace)
        conn.send(('accepted', '', ''))
    except BaseException as e:  # noqa: B902 (classified, not handled)
        conn.send(('raised', type(e).__name__, '%s\n%s' % (e, traceback.format_exc(limit=-2))))
    conn.close()


def classify(result, names, tmp):
    kind, etype, message = result
    if kind != 'raised':
        return kind
    first = message.split('\n')[0]
    names = tmp if names == 'tmp' else names
    if etype in ('ValueError', 'TypeError', 'ImportError', 'ModuleNotFoundError',
                 'FileNotFoundError', 'PermissionError', 'IsADirectoryError',
                 'NotADirectoryError', 'OSError'):
        return 'clear' if names in first else 'unclear'
    return 'internal'


def run_case(code, tmp, timeout):
    ctx = multiprocessing.get_context('fork')
    parent, conn = ctx.Pipe(duplex=False)
    p = ctx.Process(target=child, args=(code, tmp, conn))
    p.start()
    conn.close()
    result = None
    if parent.poll(timeout):
        try:
            result = parent.recv()
        except EOFError:  # the child died before it could answer
            pass
    p.join(5)
    if p.is_alive():
        p.kill()
        p.join()
        return ('killed', 'timeout', 'no answer in %d s' % timeout)
    if result is None:
        return ('killed', 'exit %s' % p.exitcode, 'the process died (exit code %s)' % p.exitcode)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('-k', default='', help='run only the cases whose label holds this')
    parser.add_argument('-v', action='store_true', help='print every case with its message')
    parser.add_argument('--timeout', type=float, default=120.0)
    args = parser.parse_args()
    import nnabla  # noqa: F401  (imported once, before forking)
    import nnlstm  # noqa: F401
    counts = dict.fromkeys(('clear', 'unclear', 'internal', 'accepted', 'killed'), 0)
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # relative paths ('nodir/m.nnp') land here
        selected = [c for c in cases() if args.k in c[0]]
        for label, names, code in selected:
            result = run_case(code, tmp, args.timeout)
            outcome = classify(result, names, tmp)
            counts[outcome] += 1
            first = result[2].split('\n')[0][:160]
            if outcome != 'clear':
                bad.append('%-9s %-45s %s: %s' % (outcome, label, result[1], first))
            elif args.v:
                print('clear     %-45s %s: %s' % (label, result[1], first))
    print('\n'.join(bad))
    print('%d cases: %s' % (len(selected), ', '.join('%d %s' % (n, k) for k, n in counts.items())))
    return min(len(bad), 255)


if __name__ == '__main__':
    sys.exit(main())
