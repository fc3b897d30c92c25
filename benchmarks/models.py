"""The benchmarked MaskRCNN: built with seeded random weights made numerically sane
(benchmarks/random_init.py), under a Keras dtype policy, and the same weights under each
policy a benchmark compares.
"""

import gc

import keras

from benchmarks import machine, random_init
from mrcnn_tf.modeling import rebuild
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.training.precision import global_policy


def build_model(config, seed=0, policy="float32", stem_statistics=None, folded=False):
    """A built MaskRCNN of `config` computing under Keras dtype policy `policy`, with seeded
    random weights made numerically sane for `config.image_max_size` images
    (benchmarks/random_init.py).

    The same seed gives every policy the same weights (variables are float32 in each) except
    the stem norm's calibrated statistics: pass a float32 model's `stem_statistics` to make
    those equal too. The global policy is set only while the layers are made (each layer
    takes it when constructed) and is float32 after.

    folded=True gives the model predict, evaluate and export run: its frozen BatchNorms folded
    into the convs (`mrcnn_tf.training.precision.inference_model`); inference benchmarks ask
    for it, training benchmarks do not.
    """
    keras.utils.set_random_seed(seed)
    with global_policy(policy):
        model = MaskRCNN(config)
        model.build()
    random_init.sane_random_init(model, config.image_max_size, stem_statistics)
    return fold(model, policy) if folded else model


def fold(model, policy="float32"):
    """`model`'s inference copy under `policy` (frozen BatchNorms folded into the convs)."""
    with global_policy(policy):
        return rebuild.folded(model)


def per_policy(config, policies, fn, seed=0, folded=False):
    """Calls `fn(policy, model)` for each policy, float32 first, on models of `config` with the
    same weights (`build_model`), and returns the list of what it returned.

    One model is alive at a time: the previous one is collected before the next is built, so
    each timed row's peak RSS holds a single model, as a one-precision run's does.
    folded=True times the inference copies (`build_model`).
    """
    results, stem = [], None
    for policy in sorted(policies, key=lambda p: p != "float32"):
        model = build_model(config, seed, policy, stem_statistics=stem)
        if stem is None:
            stem = random_init.stem_statistics(model)
        if folded:
            model = fold(model, policy)
        results.append(fn(policy, model))
        del model
        gc.collect()  # a model and its traced functions hold each other in cycles
    return results


def policies(spec, benchmark):
    """The Keras dtype policies benchmark `benchmark` runs (spec["precisions"]; float32 for a
    spec without them)."""
    return spec.get("precisions", {}).get(benchmark, ["float32"])


def precision_labels(policy):
    """Row labels of a policy: precision, and for mixed_bfloat16 whether the CPU has bf16
    instructions (without them the row still runs, in slow software conversion)."""
    labels = {"precision": policy}
    if policy == "mixed_bfloat16":
        labels["bf16_hardware"] = machine.bf16_hardware()
    return labels
