"""MaskRCNN(keras.Model): backbone + FPN + RPN + box and mask heads, trained with model.fit.

`call(images)` is inference on a uint8 batch and returns detections in original-image pixels.
`train_step` / `test_step` take the batches of `mrcnn_tf.data.pipeline.make_training_dataset`
(a dict: images, image_shape, gt_boxes, gt_classes, gt_masks, gt_is_crowd, and gt_keypoints
for a keypoint model) and report the losses and their weighted total.

The stages are public, so inspection, benchmarks and tests run the model's own sequence
rather than rebuilding it: `features` (backbone + FPN), `propose` (RPN, anchors, proposals),
`sample_targets` (RPN and RoI targets), `compute_losses` (the training graph; Keras' own
`Model.losses` is the regularization-loss property, hence the name) and `detect` (inference),
with `head_rows` for how many detection rows the heads after the box head run on.

The heads after the box head are branches (modeling/branches.py, `model.branches`): the mask
head when `config.mask_on`, the keypoint head (Keypoint R-CNN) when `config.num_keypoints > 0`;
both, either, or neither (Faster R-CNN). Each adds its loss, batch keys and outputs.
"""

import keras
import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.labels import LabelMap
from mrcnn_tf.layers.detection import DetectionLayer
from mrcnn_tf.layers.detection_target import DetectionTargetLayer
from mrcnn_tf.layers.proposal import ProposalLayer
from mrcnn_tf.modeling import branches as branch_lib
from mrcnn_tf.modeling import losses
# Also registers WarmupStepDecay: a model saved after compile() carries it in its optimizer
# config, and keras.models.load_model must find it wherever MaskRCNN itself is found.
from mrcnn_tf.modeling.optimizer import clip_by_global_norm_across_replicas
from mrcnn_tf.modeling import predictor
from mrcnn_tf.modeling.backbones import build_backbone
from mrcnn_tf.modeling.fpn import FPN
from mrcnn_tf.modeling.heads import BoxHead, RPNHead
from mrcnn_tf.modeling.task import Task
from mrcnn_tf.ops import anchors as anchor_ops
from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import resize as resize_ops
from mrcnn_tf.ops import targets as target_ops

RPN_STRIDES = (4, 8, 16, 32, 64)  # P2..P6
# The losses and batch keys of the RPN and the box head, which every model has.
BOX_LOSS_NAMES = ("rpn_class_loss", "rpn_box_loss", "class_loss", "box_loss")
BOX_TRAINING_KEYS = ("images", "image_shape", "gt_boxes", "gt_classes")
# A Mask R-CNN's losses (the box head's and the mask branch's).
LOSS_NAMES = BOX_LOSS_NAMES + (branch_lib.MASK.loss_name,)


def loss_names(config):
    """The losses a model of `config` reports: the box head's, then each branch's."""
    return BOX_LOSS_NAMES + tuple(b.loss_name for b in branch_lib.branches(config))


def training_keys(config):
    """The batch keys `compute_losses` needs for `config`."""
    return BOX_TRAINING_KEYS + tuple(k for b in branch_lib.branches(config)
                                     for k in b.batch_keys)


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class MaskRCNN(Task, keras.Model):
    """Mask R-CNN (He et al., 2017) with a ResNet/tiny backbone and FPN.

    Args:
      config: a `Config` (or its dict, as saved by get_config).
      class_names: optional K names for classes 1..K; saved with the model.
      category_ids: optional K dataset category ids for classes 1..K (any integers, default
        1..K); saved with the model, so outputs can use the dataset's own ids.
      load_backbone_weights: False leaves the backbone random even when
        config.backbone_weights names pretrained weights (the model is about to get its own).

    `MaskRCNN.from_preset(name_or_dir)`, `save_to_preset(dir)`, `compile()` with the
    config's optimizer, and `save` / `save_weights` refused for a model never built come from
    `modeling.task.Task` (KerasHub's conventions and the model's files).
    """

    def __init__(self, config, class_names=None, category_ids=None,
                 load_backbone_weights=True, **kwargs):
        # Images reach `call` as given: under a mixed policy Keras would otherwise round float
        # pixel values to float16 / bfloat16 before the in-graph resize and normalization.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = Config.from_dict(config)
        if not isinstance(config, Config):
            raise TypeError(f"MaskRCNN config: expected a mrcnn_tf.config.Config, got "
                            f"{type(config).__name__}")
        if class_names is not None and len(class_names) != config.num_classes:
            raise ValueError(f"class_names has {len(class_names)} names: expected "
                             f"config.num_classes = {config.num_classes}")
        self.config = config
        if category_ids is not None and len(category_ids) != config.num_classes:
            raise ValueError(f"category_ids has {len(category_ids)} ids: expected "
                             f"config.num_classes = {config.num_classes}")
        self.class_names = list(class_names) if class_names is not None else [
            f"class_{i}" for i in range(1, config.num_classes + 1)]
        self.category_ids = ([int(i) for i in category_ids] if category_ids is not None
                             else list(range(1, config.num_classes + 1)))

        # A model about to receive saved weights (from_config inside keras.models.load_model,
        # a preset) skips config.backbone_weights: loading them would be wasted work, and a
        # download offline. The config keeps the field: it says how training started.
        self.backbone = build_backbone(config if load_backbone_weights
                                       else config.replace(backbone_weights=None))
        self.fpn = FPN(channels=config.fpn_channels, norm=config.fpn_norm_kind, name="fpn")
        self.rpn_head = RPNHead(config.num_anchors_per_location, config.fpn_channels,
                                num_convs=config.rpn_head_num_convs, name="rpn_head")
        self.proposals = ProposalLayer.from_model_config(config, name="proposals")
        self.detection_targets = DetectionTargetLayer.from_model_config(
            config, name="detection_targets")
        self.box_pooler = branch_lib.pooler(config, config.box_pool_size, "box_roi_align")
        self.box_head = BoxHead(config.num_classes, config.box_head_fc_dim,
                                num_convs=config.box_head_num_convs,
                                conv_dim=config.box_head_conv_dim,
                                num_fcs=config.box_head_num_fcs, norm=config.box_head_norm,
                                name="box_head")
        # The heads after the box head: each branch's layers become attributes of the model
        # (so Keras tracks them, under their historical names).
        self.branches = branch_lib.branches(config)
        for branch in self.branches:
            for attribute, layer in branch.build(config).items():
                setattr(self, attribute, layer)
        self.detector = DetectionLayer.from_model_config(config, name="detections")

        self._mean = tf.constant(config.pixel_mean, tf.float32)
        self._std = tf.constant(config.pixel_std, tf.float32)
        self.loss_names = loss_names(config)
        self.loss_trackers = {name: keras.metrics.Mean(name=name)
                              for name in ("loss",) + self.loss_names}

    # -- shared pieces ---------------------------------------------------------------------
    def normalize_images(self, images, image_shape):
        """images [B, H, W, 3] 0..255 -> normalized, with zeros outside each valid region."""
        x = (tf.cast(images, tf.float32) - self._mean) / self._std
        rows = tf.range(tf.shape(x)[1])[None, :, None] < image_shape[:, 0:1, None]
        cols = tf.range(tf.shape(x)[2])[None, None, :] < image_shape[:, None, 1:2]
        return x * tf.cast((rows & cols)[..., None], x.dtype)

    # -- stages (Detectron2's order: features -> proposals -> targets -> heads) -------------
    def features(self, images, image_shape, training=False):
        """The FPN pyramid of resized, padded images.

        Args:
          images: [B, Hp, Wp, 3] float 0..255 (Hp, Wp multiples of size_divisibility).
          image_shape: [B, 2] int32 valid size of each image (zeros beyond it).
          training: batch-norm mode of the backbone and FPN.
        Returns:
          [P2, ..., P6]: [B, Hp / s, Wp / s, fpn_channels] for s = 4, 8, 16, 32, 64.
        """
        return self.fpn(self.backbone(self.normalize_images(images, image_shape),
                                      training=training), training=training)

    def propose(self, features, padded_hw, image_shape, training=False):
        """The RPN on the pyramid: anchors, objectness, deltas and the proposals.

        Args:
          features: [P2..P6] from `features`.
          padded_hw: [2] int32, the padded image size (Hp, Wp).
          image_shape: [B, 2] int32 valid image sizes (proposals are clipped to them).
          training: the training or the test pre/post-NMS counts (R).
        Returns dict: "objectness" per level [B, H_l, W_l, A], "deltas" per level
          [B, H_l, W_l, 4 A], "anchors" per level [H_l * W_l * A, 4], "proposals" [B, R, 4]
          (y1, x1, y2, x2 pixels, best first) and "valid" [B, R] bool.
        """
        objectness, deltas = self.rpn_head(features)
        anchors = self.anchors(features, padded_hw)
        proposals, valid = self.proposals(objectness, deltas, anchors, image_shape,
                                          training=training)
        return {"objectness": objectness, "deltas": deltas, "anchors": anchors,
                "proposals": proposals, "valid": valid}

    def sample_targets(self, anchors, proposals, valid, data):
        """What the losses compare with: RPN labels of the anchors, and sampled RoIs with
        their class, box, mask and keypoint targets.

        Args:
          anchors: per level [H_l * W_l * A, 4] (from `propose`).
          proposals, valid: [B, R, 4], [B, R] training proposals (from `propose`).
          data: the batch (see `compute_losses`); its "sample_seed" [B, 2] makes sampling a
            function of each image (without it sampling uses stateful randomness).
        Returns:
          (rpn, rois): `ops.targets.rpn_targets`' dict ("labels" [B, N], "box_targets"
          [B, N, 4]) and `DetectionTargetLayer`'s ("rois", "class_targets", "box_targets",
          "is_positive", "valid", "mask_rois", and the mask / keypoint targets of the
          branches the config has).
        """
        gt = _ground_truth(data)
        seeds = data.get("sample_seed")
        rpn = target_ops.rpn_targets(tf.concat(anchors, axis=0), gt["boxes"], gt["classes"],
                                     gt["is_crowd"], self.config, seeds=seeds)
        rois = self.detection_targets(proposals, valid, gt["boxes"], gt["classes"],
                                      gt["is_crowd"],
                                      data.get("gt_masks") if branch_lib.MASK in self.branches
                                      else None,
                                      seeds=seeds, gt_keypoints=data.get("gt_keypoints"))
        return rpn, rois

    def anchors(self, features, padded_hw):
        """Anchors per level for the pyramid `features` [P2..P6] of images padded to
        `padded_hw` ([2] int32): a list of [H_l * W_l * A, 4] (y1, x1, y2, x2) pixels."""
        shapes = [(tf.shape(p)[1], tf.shape(p)[2]) for p in features]
        strides = RPN_STRIDES
        if self.config.anchor_stride_from_grid:
            strides = [(padded_hw[0] // h, padded_hw[1] // w) for h, w in shapes]
        return anchor_ops.pyramid_anchors(shapes, strides, self.config.anchor_sizes,
                                          self.config.anchor_ratios,
                                          round_to_int=self.config.anchor_round_to_int)

    # -- inference -------------------------------------------------------------------------
    def call(self, images, training=False):
        """Detects objects in a batch of same-sized images.

        Args:
          images: [B, H, W, 3] uint8 (or float 0..255) RGB.
        Returns a dict, D = config.detections_per_image:
          "boxes" [B, D, 4] (y1, x1, y2, x2) in original-image pixels;
          "class_ids" [B, D] int32 in 1..K (0 on padding); "scores" [B, D];
          "masks" [B, D, mask_size, mask_size] box-relative mask probabilities (when
          config.mask_on);
          "keypoints" [B, D, K, 3] (y, x, score) in original-image continuous pixels (when
          config.num_keypoints = K > 0; see `branches.KEYPOINT`);
          "num_detections" [B] int32.
        """
        images = tf.convert_to_tensor(images)
        _check_image_batch(images)
        resized, image_shape, scale = resize_ops.preprocess_for_inference(images, self.config)
        outputs = self.detect(resized, image_shape, training=training)
        original = tf.cast(tf.shape(images)[1:3], tf.float32)
        return self._to_original(outputs, scale,
                                 tf.tile(original[None], [tf.shape(images)[0], 1]))

    def detect(self, images, image_shape, training=False):
        """Inference on already resized and padded images.

        Args:
          images: [B, Hp, Wp, 3] float 0..255, Hp and Wp multiples of size_divisibility.
          image_shape: [B, 2] int32 valid size of each image.
        Returns the dict of `call`, boxes in the resized frame.
        """
        features = self.features(images, image_shape, training)
        rpn = self.propose(features, tf.shape(images)[1:3], image_shape, training=False)
        proposals, valid = rpn["proposals"], rpn["valid"]
        class_logits, box_deltas = self.box_head(self.box_pooler(features[:4], proposals),
                                                 training=training)
        detections = self.detector(proposals, valid, class_logits, box_deltas, image_shape)
        for branch in self.branches:
            detections.update(branch.infer(self, features, detections, training))
        return detections

    def head_rows(self, detections):
        """How many detection rows the mask and keypoint heads run on: None for all D.

        Without config.static_shapes (TensorFlow / SavedModel inference) the heads run on the
        first max_b(num_detections[b]) rows only: detections are sorted with the padding
        last, and the mask head costs about half of all inference FLOPs at D = 100, so an
        image with 10 detections skips 90% of it. With static shapes (TFLite, XLA) they run
        on all D rows.
        """
        if self.config.static_shapes:
            return None
        # At least one row: TensorFlow's oneDNN convolutions mis-shape an empty batch.
        return tf.minimum(tf.reduce_max(tf.concat([detections["num_detections"], [1]], 0)),
                          tf.shape(detections["boxes"])[1])

    def predict_images(self, images, score_threshold=0.0, batch_size=1):
        """Detects objects in a list of images of any sizes.

        Each image's detections are finished by `mrcnn_tf.postprocess.finish_detections`:
        kept by score, masks pasted by config.paste_rule, labels attached.

        Args:
          images: list of uint8 arrays [H, W, 3] (or [H, W] grayscale).
          score_threshold: detections scoring below it are dropped (before their masks are
            pasted); the model's own config.score_threshold has already applied.
          batch_size: images run together, at most; only images with the same padded size
            share a batch (`modeling.predictor`), so the detections are those of one image at
            a time (to float rounding).
        Returns:
          list of dicts of NumPy arrays, one per image in input order, with only the kept
          detections: "boxes" [n, 4] (y1, x1, y2, x2) pixels, "class_ids" [n] int32 1..K,
          "scores" [n], "masks" [n, H, W] bool full-image masks (pasted by config.paste_rule,
          thresholded at 0.5; when config.mask_on), "keypoints" [n, K, 3] (y, x, score)
          continuous pixels (when config.num_keypoints = K > 0), and the dataset's own labels:
          "category_ids" [n] int64 and "class_names" (list of n str).
        """
        return predictor.predict_images(self, images, score_threshold, batch_size)

    @tf.function(reduce_retracing=True)
    def predict_one(self, images):
        """`call` in a tf.function (one trace per image size)."""
        return self(images, training=False)

    @tf.function(reduce_retracing=True)
    def predict_batch(self, padded, image_shape, scale, original):
        """`call` on images already resized and padded to one canvas one by one
        (`predictor._batch_inputs`): padded [B, Hp, Wp, 3], image_shape and scale [B, 2] as
        `preprocess_for_inference` gives them, original [B, 2] float32 sizes."""
        return self._to_original(self.detect(padded, image_shape, training=False), scale,
                                 original)

    def _to_original(self, outputs, scale, original):
        """Detections in the resized frame -> original-image pixels (boxes clipped to the
        image, padding rows zero); scale and original [B, 2] float32."""
        boxes = outputs["boxes"] / tf.tile(scale, [1, 2])[:, None, :]
        boxes = box_ops.clip(boxes, original)
        outputs["boxes"] = boxes * tf.cast(outputs["scores"] > 0, tf.float32)[..., None]
        if "keypoints" in outputs:
            outputs["keypoints"] = outputs["keypoints"] / tf.concat(
                [scale, tf.ones_like(scale[:, :1])], axis=1)[:, None, None, :]
        return outputs

    # -- training --------------------------------------------------------------------------
    def compute_losses(self, data, training=True):
        """Runs the training graph on a batch from the training pipeline.

        Args:
          data: dict with "images" [B, P, P, 3] float 0..255, "image_shape" [B, 2],
            "gt_boxes" [B, M, 4], "gt_classes" [B, M] (0 = padding), "gt_masks" [B, M, P, P]
            (when config.mask_on), "gt_keypoints" [B, M, K, 3] (when config.num_keypoints),
            optional "gt_is_crowd" [B, M].
          training: batch-norm mode of the backbone, FPN and heads (sampling is done either
            way).
        Returns:
          dict of the scalar losses (unweighted; `self.loss_names`) and "loss", their weighted
          sum.
        """
        keys = training_keys(self.config)
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"MaskRCNN training batch is missing {missing}; expected the keys "
                             f"{list(keys)} (+ optional gt_is_crowd) as made by "
                             "mrcnn_tf.data.pipeline.make_training_dataset")
        config = self.config
        image_shape = tf.cast(data["image_shape"], tf.int32)
        features = self.features(data["images"], image_shape, training)
        rpn = self.propose(features, tf.shape(data["images"])[1:3], image_shape, training=True)
        rpn_targets, targets = self.sample_targets(rpn["anchors"], rpn["proposals"],
                                                   rpn["valid"], data)
        batch = tf.shape(image_shape)[0]
        flat_objectness = tf.concat(
            [tf.reshape(o, tf.stack([batch, -1])) for o in rpn["objectness"]], axis=1)
        flat_deltas = tf.concat(
            [tf.reshape(d, tf.stack([batch, -1, 4])) for d in rpn["deltas"]], axis=1)
        result = {
            "rpn_class_loss": losses.rpn_class_loss(
                flat_objectness, rpn_targets["labels"], config.rpn_batch_size_per_image),
            "rpn_box_loss": losses.rpn_box_loss(
                flat_deltas, rpn_targets["box_targets"], rpn_targets["labels"],
                config.rpn_batch_size_per_image, config.rpn_smooth_l1_beta),
        }
        class_logits, box_deltas = self.box_head(self.box_pooler(features[:4], targets["rois"]),
                                                 training=training)
        result["class_loss"] = losses.class_loss(class_logits, targets["class_targets"],
                                                 targets["valid"])
        result["box_loss"] = losses.box_loss(
            box_deltas, targets["box_targets"], targets["class_targets"],
            targets["is_positive"], targets["valid"], config.box_smooth_l1_beta)
        for branch in self.branches:
            result[branch.loss_name] = branch.loss(self, features, targets, training)
        weights = {"rpn_class_loss": config.loss_weight_rpn_class,
                   "rpn_box_loss": config.loss_weight_rpn_box,
                   "class_loss": config.loss_weight_class, "box_loss": config.loss_weight_box}
        weights.update({b.loss_name: getattr(config, b.loss_weight_field)
                        for b in self.branches})
        result["loss"] = tf.add_n([weights[n] * result[n] for n in self.loss_names])
        return result

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            result = self.compute_losses(x, training=True)
            # Each replica's gradients are summed across replicas: scale so the sum is the
            # mean over the global batch.
            loss = result["loss"] / tf.distribute.get_strategy().num_replicas_in_sync
            loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(loss, variables)
        if self.config.gradient_clip_norm:
            gradients = clip_by_global_norm_across_replicas(
                gradients, self.config.gradient_clip_norm,
                getattr(self.optimizer, "dynamic_scale", None))
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update_trackers(result)

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._update_trackers(self.compute_losses(x, training=False))

    def _update_trackers(self, result):
        """Updates the loss means and returns them as the step's logs."""
        for name, tracker in self.loss_trackers.items():
            tracker.update_state(result[name])
        logs = {name: tracker.result() for name, tracker in self.loss_trackers.items()}
        strategy = tf.distribute.get_strategy()
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and strategy.extended._in_multi_worker_mode()):
            # Keras averages logs across workers with reduce(MEAN, axis=0), which needs
            # rank >= 1; the average of these [1] values comes back as a scalar.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    # -- Keras plumbing --------------------------------------------------------------------
    def build(self, input_shape=None):
        """Creates every weight by running inference once on a small blank image."""
        if self.built:
            return
        side = self.config.size_divisibility
        self.detect(tf.zeros([1, side, side, 3]), tf.constant([[side, side]], tf.int32))
        # The target layer runs only in training and has no weights; marked built so Keras
        # sees a fully built model (fit under a tf.distribute strategy checks every layer).
        self.detection_targets.built = True
        self.built = True

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Builds the model and optimizer before fit/evaluate without touching the data.

        Keras' default, under a tf.distribute strategy, averages one distributed input batch
        over the replicas to trace the model on it; that fails on dict batches under
        MultiWorkerMirroredStrategy and on boolean fields. `build` needs no data.
        """
        del iterator, data_batch
        with self.distribute_strategy.scope():
            self.build()
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)

    @property
    def label_map(self):
        """The model's classes 1..K as a `LabelMap` (dataset category ids and names)."""
        return LabelMap(self.category_ids, self.class_names)

    def get_config(self):
        return {"config": self.config.to_dict(), "class_names": self.class_names,
                "category_ids": self.category_ids, "name": self.name}

    @classmethod
    def from_config(cls, config):
        # Keras loads the saved weights next, so the backbone's pretrained ones are not fetched.
        return cls(**config, load_backbone_weights=False)


def _ground_truth(data):
    """The batch's ground truth in the dtypes the targets want: boxes float32 [B, M, 4],
    classes int32 [B, M], is_crowd bool [B, M] (all False when the batch has none)."""
    classes = tf.cast(data["gt_classes"], tf.int32)
    crowd = data.get("gt_is_crowd")
    return {"boxes": tf.cast(data["gt_boxes"], tf.float32), "classes": classes,
            "is_crowd": (tf.zeros_like(classes, tf.bool) if crowd is None
                         else tf.cast(crowd, tf.bool))}


def _check_image_batch(images):
    """Rejects, before the graph runs, a batch that is not [B, H, W, 3] or is empty."""
    shape = images.shape
    if shape.rank is not None and (shape.rank != 4 or shape[-1] not in (None, 3)):
        raise ValueError(f"MaskRCNN images: expected a batch of shape [B, H, W, 3], got shape "
                         f"{shape.as_list()} (use predict_images for a list of HxW or HxWx3 "
                         "images)")
    if shape.rank == 4 and 0 in shape.as_list():
        raise ValueError(f"MaskRCNN images: empty batch or image, shape {shape.as_list()}")
