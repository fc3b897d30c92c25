"""Job keypoints_mrcnn_tf, a child of the keypoints task: mrcnn_tf's Keypoint R-CNN at one
size in a process of its own (its peak RSS its own), each part of
benchmarks/tasks/keypoints_results.py's PARTS timed.

  end_to_end         the whole model on one uint8 noise image
  without_keypoints  the backbone_fpn, rpn_proposals and box_detection stage functions
                     (benchmarks/stages.py) chained: the model without its keypoint branch
  keypoint_branch    keypoint RoIAlign + keypoint head + heatmap decode alone, fed the real
                     features and detections of that image (recorded once)
"""

import tensorflow as tf

from benchmarks import flops as flop_count
from benchmarks import stages, synthetic
from benchmarks.configs import model_config
from benchmarks.models import build_model
from benchmarks.tasks.keypoints_results import keypoint_head_flops, size_result, time_parts
from mrcnn_tf.modeling import branches


def run(spec):
    """mrcnn_tf's Keypoint R-CNN at each of spec["sizes"]: {"rows": [size_result, ...]}."""
    rows = []
    for size in spec["sizes"]:
        config = model_config(spec, size)
        if not config.num_keypoints:
            raise ValueError(f"preset {config.name} has no keypoint head (num_keypoints = 0)")
        model = build_model(config, folded=True)
        calls, facts = _timed_calls(model, size)
        parts = time_parts(calls, spec, size)
        head_shape = _head_shape(model)
        rows_run = facts["keypoint_rows"]
        rest, per_roi = _flops(model, size)  # after timing: the rows' own peak RSS
        rows.append(size_result(
            "mrcnn_tf", size, parts,
            {"min_detections": min(facts["min_detections"]),
             "keypoint_rows": rows_run,
             "detections_per_image": config.detections_per_image},
            head_shape,
            {"counted": per_roi * rows_run,
             "source": "benchmarks/flops.py conv_flops + transposed_conv_flops of the built "
                       "KeypointHead's kernels"},
            keypoints_shape=facts["keypoints_shape"], threads=spec["threads"],
            total_flops=rest + keypoint_head_flops(**head_shape)["per_roi"] * rows_run,
            model=f"mrcnn_tf MaskRCNN({config.name}), "
                  f"{'static' if config.static_shapes else 'dynamic'} shapes, "
                  f"{config.keypoint_decode_rule} keypoint decode, "
                  f"{config.rpn_post_nms_topk_test} proposals"))
        del model
    return {"rows": rows}


def _timed_calls(model, size):
    """The three timed callables of keypoints_results.PARTS for a keypoint MaskRCNN on one
    noise image, and what they saw: (calls, facts) with facts min_detections (a list, one per
    end-to-end run), keypoint_rows and keypoints_shape [1, D, K, 3]."""
    images = tf.constant(synthetic.random_images(1, size))
    inference = tf.function(lambda x: model(x, training=False),
                            input_signature=stages.image_signature(size))
    # Only the first three stage functions are called (so traced): there is no mask head.
    functions = stages.make_stage_functions(model, size)

    def before_keypoints():
        s1 = functions["backbone_fpn"](images)
        s2 = functions["rpn_proposals"](s1["features"], s1["image_shape"], s1["padded_hw"])
        return s1, functions["box_detection"](s1["features"], s2["proposals"], s2["valid"],
                                              s1["image_shape"])

    @tf.function(reduce_retracing=True)
    def keypoint_branch(features, boxes, scores, num_detections):
        # The model's own branch (RoIAlign on the real rows, head, decode, padding), exactly
        # what MaskRCNN.detect runs after the detection layer.
        detections = {"boxes": boxes, "scores": scores, "num_detections": num_detections}
        return branches.KEYPOINT.infer(model, features, detections, False)["keypoints"]

    s1, detections = before_keypoints()
    used = model.head_rows(detections)  # None: the builtin RoIAlign runs all D rows
    facts = {"min_detections": [], "keypoint_rows": int(
        model.config.detections_per_image if used is None else used)}

    def end_to_end():
        outputs = inference(images)
        facts["min_detections"].append(int(outputs["num_detections"].numpy().min()))
        facts["keypoints_shape"] = list(outputs["keypoints"].shape)

    def branch():
        return keypoint_branch(s1["features"], detections["boxes"], detections["scores"],
                               detections["num_detections"])[:, :, 0, 0].numpy()

    calls = {"end_to_end": end_to_end,
             "without_keypoints": lambda: before_keypoints()[1]["num_detections"].numpy(),
             "keypoint_branch": branch}
    return calls, facts


def _flops(model, size):
    """(FLOPs of one inference but the keypoint head, the keypoint head's FLOPs per RoI) from
    benchmarks/flops.py: its stage counts, and its conv_flops / transposed_conv_flops on the
    built KeypointHead's kernels (an independent count of `keypoint_head_flops`)."""
    config, head = model.config, model.keypoint_head
    pool = config.keypoint_pool_size
    per_roi = (sum(flop_count.conv_flops(pool, pool, conv.kernel.shape) for conv in head.convs)
               + flop_count.transposed_conv_flops(pool, pool, head.score_lowres.kernel.shape))
    hp, wp = flop_count.padded_size(config, size, size)
    rest = (flop_count.backbone_flops(config, hp, wp) + flop_count.fpn_flops(model, hp, wp)
            + flop_count.rpn_flops(model, hp, wp)
            + flop_count.box_head_flops(model, config.rpn_post_nms_topk_test))
    return rest, per_roi


def _head_shape(model):
    """`keypoint_head_flops` arguments read off a built KeypointHead (Keras kernels: conv
    [3, 3, in, out], transposed conv [k, k, K, in])."""
    head = model.keypoint_head
    deconv = [int(d) for d in head.score_lowres.kernel.shape]
    first = [int(d) for d in head.convs[0].kernel.shape] if head.convs else [0, 0, deconv[3],
                                                                            deconv[3]]
    return {"pool_size": model.config.keypoint_pool_size, "in_channels": first[2],
            "conv_dim": first[3], "num_convs": len(head.convs), "num_keypoints": deconv[2],
            "deconv_kernel": deconv[0]}

