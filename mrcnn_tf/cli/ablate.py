"""`mrcnn-tf ablate`: rerun one of the paper's ablations (RoIPool vs RoIWarp vs RoIAlign, the
mask head's upsampling, sigmoid vs softmax, class-agnostic masks, FCN vs MLP) on synthetic
small shapes: every variant trained from scratch for each seed, COCO-evaluated, then a table
and a bar chart."""

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("study", None, "ablate: roi_pooler, mask_upsample, mask_loss, "
                    "mask_classes or mask_head.")
flags.DEFINE_integer("seeds", 3, "ablate: training runs per variant (seeds 0..N-1).")

TRAIN_IMAGES, EVAL_IMAGES = 1000, 200
SUMMARY = ("rerun a Mask R-CNN ablation (poolers, mask upsampling, mask loss, class-agnostic "
           "masks, mask head) on synthetic small shapes: table + chart (runs/ablations/STUDY)")
USAGE = ("--study roi_pooler|mask_upsample|mask_loss|mask_classes|mask_head [--seeds 3] "
         "[--out runs/ablations/STUDY] [--steps N] [--train_images N] [--eval_images N]")
FLAG_NAMES = ("study", "seeds", "out", "steps", "train_images", "eval_images")


def main():
    from mrcnn_tf.ablation import report, runner, studies  # noqa: PLC0415 (loads TensorFlow)
    common.require("study")
    study = studies.get_study(FLAGS.study)
    out = common.check_writable(FLAGS.out or f"runs/ablations/{study.name}", "--out")

    def show(result):
        metrics = result["metrics"]
        print(f"{result['variant']:>16} seed {result['seed']}: mask AP "
              f"{100 * metrics['segm/AP']:.1f}  AP75 {100 * metrics['segm/AP75']:.1f}  box AP "
              f"{100 * metrics['bbox/AP']:.1f}  ({result['train_seconds']:.0f} s)", flush=True)

    results = runner.run_study(
        study, out, seeds=FLAGS.seeds, steps=FLAGS.steps,
        train_images=common.value_or(FLAGS.train_images, TRAIN_IMAGES),
        eval_images=common.value_or(FLAGS.eval_images, EVAL_IMAGES), on_run=show)
    paths = report.write_report(study, results, out)
    with open(paths["table.md"], encoding="utf-8") as f:
        print("\n" + f.read())
    print(f"table: {paths['table.md']}\nchart: {paths['chart.png']}\nruns: {out}/runs/")
