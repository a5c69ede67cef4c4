"""Write inference networks to the files NNabla's own tools and ONNX Runtime run.

Shape legend: B batch size, T time steps, D input features, H units.

:func:`export_network` writes an inference ``.nnp`` (NNabla's ``NnpLoader`` and
``nnabla_cli``), and optionally an ``.onnx`` file with a symbolic batch dimension and an
``.nnb`` file for NNabla's C runtime, both through NNabla's own converter (the ``onnx``
extra). The files are written all or nothing (:mod:`.files`): a failed export leaves the
previous files as they were. :func:`export_step` writes the one-step
network of a trained layer, for streaming inference.

One module per job:

* :mod:`.checks`: is the graph an inference network the files can hold;
* :mod:`.rewrite`: protobuf rewrites of the saved network and of the converter's ONNX model;
* :mod:`.files`: writing all or nothing (temporary names, renames);
* :mod:`.converter`: driving NNabla's saver and converter (:func:`export_network`);
* :mod:`.native`: recurrent layers as native ONNX LSTM / GRU / RNN nodes, symbolic time;
* :mod:`.heads`: per-step Affine heads (``base_axis=2``) kept by NNabla's saver;
* :mod:`.step`: streaming step networks (:func:`step_network`, :func:`export_step`).
"""
from .checks import (AXIS_FUNCTIONS, BOOLEAN_CARRIERS, COMBINING, COMPARISONS, REDUCTIONS,
                     TRAINING_ONLY, Graph, check_graph, check_onnx_graph, check_variable_batch,
                     describe, functions_of)
from .converter import (CONVERTER_INSTALL, ONNX_EXPORT_BATCH, ONNX_OPSETS, ONNX_RNN,
                        deep_recursion, export_network, import_nnp, network_proto, save_nnp,
                        write_nnb, write_nnp, write_onnx)
from .files import atomic_write, save_parameters, staged
from .heads import keep_base_axis
from .native import UnrolledLayerWarning
from .rewrite import (BROADCASTING, EXPORTABLE, exportable, make_batch_symbolic,
                      make_names_unique)
from .step import export_step, step_network

__all__ = ['atomic_write', 'export_network', 'export_step', 'ONNX_OPSETS', 'ONNX_RNN',
           'save_nnp', 'save_parameters', 'step_network', 'UnrolledLayerWarning']
