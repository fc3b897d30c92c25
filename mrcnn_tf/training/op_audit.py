"""Which ops a traced function contains, and which of them a device would refuse to run.

The device plan (training/device_plan.py) picks implementations so that a run never meets a
kernel that refuses; this module lets a test prove it on a CPU, with no GPU or TPU at hand:

- `graph_nodes(fn)`: every node of a concrete function's graph and of its function library
  (loop bodies, conditionals, gradients), recursively;
- `gpu_determinism_refusals(nodes)`: the nodes TensorFlow 2.21 refuses to run on a GPU while
  op determinism is enabled, from `REFUSED_UNDER_GPU_DETERMINISM`, a list built from
  TensorFlow's kernels (every kernel that checks `OpDeterminismRequired()` and raises; read
  in the sources and confirmed in the 2.21 wheel's binaries), each entry with its source file;
- `lower_to_hlo(fn, *args)`: lowers a function to XLA HLO through TensorFlow's tf2xla
  bridge, which fails, naming the op, on any op without an XLA kernel (what a TPU needs);
- `training_batch_spec(config, batch_size)`: the TensorSpecs of a training batch, taken from
  the real input pipeline.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterable, List, Tuple

import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.data import pipeline

# What TensorFlow 2.21 does NOT refuse under determinism, though older releases did or the
# kernels carry a message for it (so these are left out of the list on purpose):
# - segment reductions (UnsortedSegmentSum, SegmentSum, SparseSegment*, their gradients) switch
#   to a sort-based deterministic GPU kernel; the gradients of Gather/GatherV2 (made dense by
#   UnsortedSegmentSum), which the builtin RoIAlign relies on, are therefore deterministic;
# - ScatterNd, TensorScatter* and ResourceScatter* (GatherNd's gradient among them) copy to the
#   host and run the CPU kernel on a GPU: deterministic, at the price of the copy;
# - ResizeBilinearGrad, BiasAddGrad, MaxPoolGrad (not compiled), convolutions and their
#   gradients, matmuls, FusedBatchNormGradV3 with is_training=True and
#   DepthwiseConv2dNativeBackpropFilter take deterministic paths.


def _always(node) -> bool:
    del node
    return True


def _attr_is_false(name: str) -> Callable:
    return lambda node: name in node.attr and not node.attr[name].b


def _floating(node) -> bool:
    """The node's "T" attribute is a floating-point dtype (half, bfloat16, float, double)."""
    return "T" in node.attr and tf.as_dtype(node.attr["T"].type).is_floating


def _unseeded(node) -> bool:
    return all(node.attr[k].i == 0 for k in ("seed", "seed2") if k in node.attr)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Kernels that raise instead of running when op determinism is enabled.

    op_types: the op names as they appear in a GraphDef.
    devices: "GPU" (only the GPU kernel refuses; the CPU one runs), "any", or "XLA" (when
      compiled with XLA, on any device).
    condition: when they refuse, in words; `applies(node_def)` decides it for one node.
    source: the kernel's file in the tensorflow/tensorflow repository (TF 2.21).
    """

    op_types: Tuple[str, ...]
    devices: str
    condition: str
    source: str
    applies: Callable = _always


REFUSED_UNDER_GPU_DETERMINISM: Tuple[Refusal, ...] = (
    Refusal(("CropAndResizeGradImage", "CropAndResizeGradBoxes"), "GPU",
            "always (the CPU kernels run, single-threaded)",
            "tensorflow/core/kernels/image/crop_and_resize_op.cc"),
    Refusal(("FusedBatchNormGrad", "FusedBatchNormGradV2", "FusedBatchNormGradV3"), "GPU",
            "is_training=False: the gradient of batch norm in inference mode (training mode "
            "runs)", "tensorflow/core/kernels/fused_batch_norm_op.cu.cc",
            _attr_is_false("is_training")),
    Refusal(("ResizeNearestNeighborGrad",), "GPU",
            "always: the gradient of a nearest-neighbour resize",
            "tensorflow/core/kernels/image/resize_nearest_neighbor_op.cc"),
    Refusal(("AdjustContrast", "AdjustContrastv2"), "GPU", "a non-empty input",
            "tensorflow/core/kernels/image/adjust_contrast_op.cc"),
    Refusal(("SparseTensorDenseMatMul",), "GPU", "non-empty operands (its gradient with "
            "respect to the dense operand is the same op)",
            "tensorflow/core/kernels/sparse_tensor_dense_matmul_op_gpu.cu.cc"),
    Refusal(("Bincount",), "GPU", "no weights and size > 0",
            "tensorflow/core/kernels/bincount_op_gpu.cu.cc"),
    Refusal(("DenseBincount",), "GPU", "always (tf.math.bincount makes this op)",
            "tensorflow/core/kernels/bincount_op.cc"),
    Refusal(("FakeQuantWithMinMaxVarsGradient", "FakeQuantWithMinMaxVarsPerChannelGradient"),
            "GPU", "always", "tensorflow/core/kernels/fake_quant_ops.cc"),
    Refusal(("Dilation2DBackpropInput", "Dilation2DBackpropFilter"), "GPU", "always",
            "tensorflow/core/kernels/dilation_ops.cc"),
    Refusal(("MaxPoolGradWithArgmax",), "GPU", "always (the gradient of max_pool_with_argmax)",
            "tensorflow/core/kernels/maxpooling_op.cc"),
    Refusal(("Svd", "BatchSvd"), "GPU", "matrices with one column",
            "tensorflow/core/kernels/linalg/svd_op_gpu.cu.cc"),
    Refusal(("ScatterUpdate", "ScatterAdd", "ScatterSub", "ScatterMul", "ScatterDiv",
             "ScatterMin", "ScatterMax"), "GPU",
            "floating-point data in a ref variable (TF1 style; resource variables run)",
            "tensorflow/core/kernels/scatter_op.cc", _floating),
    Refusal(("SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"), "GPU",
            "always; under determinism tf.nn's functions build a log-softmax graph instead, so "
            "only a raw op reaches these", "tensorflow/core/kernels/xent_op.cc and "
            "sparse_xent_op.cc"),
    Refusal(("DebugNumericSummaryV2",), "GPU",
            "tensor_debug_mode CONCISE_HEALTH (3) or FULL_HEALTH (4)",
            "tensorflow/core/kernels/debug_ops.h"),
    Refusal(("Timestamp",), "any", "always", "tensorflow/core/kernels/logging_ops.cc"),
    Refusal(("RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
             "ParameterizedTruncatedNormal", "RandomGamma", "RandomPoisson", "RandomPoissonV2",
             "Multinomial", "RandomShuffle", "RandomCrop", "SampleDistortedBoundingBox",
             "SampleDistortedBoundingBoxV2", "AllCandidateSampler", "UniformCandidateSampler",
             "LogUniformCandidateSampler", "LearnedUnigramCandidateSampler",
             "ThreadUnsafeUnigramCandidateSampler", "FixedUnigramCandidateSampler"), "any",
            "seed and seed2 both 0 (no seed given)",
            "tensorflow/core/util/guarded_philox_random.cc", _unseeded),
    # XLA: determinism also refuses these when compiled, on any XLA device; the device plan
    # keeps op determinism off under XLA (and a ResNet's stem max-pool has this gradient).
    Refusal(("MaxPoolGrad", "MaxPoolGradV2"), "XLA", "compiled with XLA",
            "tensorflow/compiler/tf2xla/kernels/pooling_ops.cc"),
)


def graph_nodes(function) -> List[tf.compat.v1.NodeDef]:
    """Every node of `function` (a ConcreteFunction or tf.Graph) and of every function in
    its library (while and cond bodies, gradients, nested tf.functions)."""
    graph = function if isinstance(function, tf.Graph) else function.graph
    graph_def = graph.as_graph_def()
    nodes = list(graph_def.node)
    for library_function in graph_def.library.function:
        nodes.extend(library_function.node_def)
    return nodes


def op_types(nodes: Iterable) -> Dict[str, int]:
    """{op type: node count}."""
    counts: Dict[str, int] = {}
    for node in nodes:
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts


def gpu_determinism_refusals(nodes: Iterable, xla: bool = False
                             ) -> List[Tuple[str, str, Refusal]]:
    """[(op type, node name, refusal)] for each node that TensorFlow would refuse to run on
    a GPU under op determinism (`xla`: in a function compiled with XLA)."""
    devices = ("GPU", "any") + (("XLA",) if xla else ())
    by_type = {op: refusal for refusal in REFUSED_UNDER_GPU_DETERMINISM
               for op in refusal.op_types if refusal.devices in devices}
    found = []
    for node in nodes:
        refusal = by_type.get(node.op)
        if refusal is not None and refusal.applies(node):
            found.append((node.op, node.name, refusal))
    return found


def lower_to_hlo(function: tf.types.experimental.PolymorphicFunction, *args) -> str:
    """The HLO text of `function` (made with `tf.function(..., jit_compile=True)`) on `args`.

    Raises ValueError naming the first op that has no XLA kernel.
    """
    return function.experimental_get_compiler_ir(*args)(stage="hlo")


def training_batch_spec(config: Config, batch_size: int) -> Dict[str, tf.TensorSpec]:
    """The TensorSpecs of a training batch of `config`, as `pipeline.preprocess_for_training`
    makes them (images [B, P, P, 3], gt_masks [B, M, S, S], gt_keypoints [B, M, K, 3], ...,
    sample_seed [B, 2])."""
    example = {"image": tf.zeros([8, 8, 3], tf.uint8),
               "boxes": tf.constant([[1.0, 1.0, 6.0, 6.0]]),
               "class_ids": tf.constant([1], tf.int32),
               "masks": tf.ones([1, 8, 8], tf.uint8),
               "is_crowd": tf.constant([False]),
               "image_id": tf.constant(0, tf.int64)}
    if config.num_keypoints:
        example["keypoints"] = tf.zeros([1, config.num_keypoints, 3])
    seed = tf.constant([0, 0], tf.int64)
    dataset = tf.data.Dataset.from_tensors(example).map(
        lambda e: pipeline.preprocess_for_training(e, config, False, seed=seed))
    return dataset.batch(batch_size, drop_remainder=True).element_spec


def trace_training_step(model, batch_spec: Dict[str, tf.TensorSpec]):
    """The ConcreteFunction of `model.train_step` (forward, losses, gradients, optimizer
    update, loss trackers) on batches of `batch_spec`. `model` must be built and compiled;
    its optimizer's variables are created here if they are not yet."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return tf.function(model.train_step).get_concrete_function(batch_spec)


def trace_inference(model):
    """The ConcreteFunction of `model(images)` on uint8 batches of any size."""
    return tf.function(lambda images: model(images, training=False)).get_concrete_function(
        tf.TensorSpec([None, None, None, 3], tf.uint8))
