"""`--config` (a preset or an experiments/*.py file) and `--override key=value`
(training/experiment.py)."""

import pathlib

import pytest

from mrcnn_tf.config import Config, get_config
from mrcnn_tf.training.experiment import load_experiment, parse_overrides

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.py"))


def write_experiment(folder, text, name="my_experiment.py"):
    path = folder / name
    path.write_text(text)
    return str(path)


# -- loading -----------------------------------------------------------------------------------

def test_preset():
    experiment = load_experiment("shapes_tiny")
    assert experiment.config == get_config("shapes_tiny")
    assert experiment.source == "shapes_tiny"
    assert experiment.defaults == {}


def test_preset_with_overrides():
    experiment = load_experiment("shapes_tiny", ["num_classes=5", "image_min_size=64",
                                                 "image_max_size=96"])
    assert experiment.config == get_config("shapes_tiny", num_classes=5, image_min_size=64,
                                           image_max_size=96)


def test_experiment_file(tmp_path):
    path = write_experiment(tmp_path, """
from mrcnn_tf.config import get_config
CONFIG = get_config("shapes_tiny", num_classes=5, name="mine")
DATA = {"train_annotations": "data/train.json", "train_image_dir": "data/train"}
TRAIN = {"steps_per_epoch": 7, "epochs": 2}
""")
    experiment = load_experiment(path, ["batch_size=4"])
    assert experiment.config == get_config("shapes_tiny", num_classes=5, name="mine",
                                           batch_size=4)
    assert experiment.source == path
    assert experiment.defaults == {"train_annotations": "data/train.json",
                                   "train_image_dir": "data/train", "steps_per_epoch": 7,
                                   "epochs": 2}


def test_experiment_file_without_data_or_train(tmp_path):
    path = write_experiment(tmp_path, "from mrcnn_tf.config import Config\n"
                                      "CONFIG = Config(name='bare', num_classes=2)\n"
                                      "DATA = None\n")
    experiment = load_experiment(path)
    assert experiment.config == Config(name="bare", num_classes=2)
    assert experiment.defaults == {}


def test_the_repository_has_experiments():
    names = {p.name for p in EXPERIMENTS}
    assert {"coco_r50_fpn_1x.py", "coco_r50_fpn_1x_single_device.py"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_repository_experiments_load(path):
    experiment = load_experiment(str(path))
    from mrcnn_tf.cli import common, train as train_cli  # noqa: PLC0415

    assert isinstance(experiment.config, Config)
    assert experiment.config.name == path.stem
    # Only flags `mrcnn-tf train` knows (it refuses others).
    known = set(train_cli.DATA_FLAGS + train_cli.SCHEDULE_FLAGS + common.COCO_DATA_FLAGS)
    assert experiment.defaults and set(experiment.defaults) <= known
    assert experiment.defaults.get("steps_per_epoch", 1) >= 1


def test_coco_1x_schedule():
    config = load_experiment(str(REPO / "experiments" / "coco_r50_fpn_1x.py")).config
    assert config.total_steps == 90000
    assert config.batch_size == 16
    assert config.learning_rate == pytest.approx(0.02)
    assert config.warmup_steps == 1000
    assert config.decay_steps == (60000, 80000)
    assert config.momentum == pytest.approx(0.9)
    assert config.weight_decay == pytest.approx(1e-4)
    assert config.backbone == "resnet50" and config.num_classes == 80


def test_single_device_schedule_keeps_images_seen_and_scales_linearly():
    full = load_experiment(str(REPO / "experiments" / "coco_r50_fpn_1x.py")).config
    single = load_experiment(
        str(REPO / "experiments" / "coco_r50_fpn_1x_single_device.py")).config
    factor = full.batch_size / single.batch_size
    assert factor > 1
    assert single.batch_size * single.total_steps == full.batch_size * full.total_steps
    assert single.learning_rate == pytest.approx(full.learning_rate / factor)
    assert single.decay_steps == tuple(int(s * factor) for s in full.decay_steps)
    assert single.warmup_steps == int(full.warmup_steps * factor)
    # Everything else is the same model.
    differing = {k for k, v in full.to_dict().items() if single.to_dict()[k] != v}
    assert differing == {"name", "batch_size", "learning_rate", "warmup_steps", "decay_steps",
                         "total_steps"}


# -- loading errors ----------------------------------------------------------------------------

def test_unknown_preset():
    with pytest.raises(ValueError, match=r"--config='nope'.*shapes_tiny"):
        load_experiment("nope")


def test_missing_file(tmp_path):
    path = str(tmp_path / "missing.py")
    with pytest.raises(ValueError, match=r"--config=.*missing\.py: no such experiment file"):
        load_experiment(path)


@pytest.mark.parametrize("text, match", [
    ("X = 1\n", r"define CONFIG.*got NoneType"),
    ("CONFIG = {'num_classes': 3}\n", r"define CONFIG.*got dict"),
    ("raise RuntimeError('boom')\n", r"failed to load: RuntimeError: boom"),
    ("CONFIG = (\n", r"failed to load: SyntaxError"),
    ("from mrcnn_tf.config import get_config\nCONFIG = get_config('shapes_tiny', "
     "num_classes=0)\n", r"failed to load: ValueError: .*num_classes"),
    ("from mrcnn_tf.config import get_config\nCONFIG = get_config('shapes_tiny')\n"
     "DATA = ['train.json']\n", r"DATA must be a dict"),
    ("from mrcnn_tf.config import get_config\nCONFIG = get_config('shapes_tiny')\n"
     "TRAIN = 'steps_per_epoch=3'\n", r"TRAIN must be a dict"),
])
def test_bad_experiment_file(tmp_path, text, match):
    path = write_experiment(tmp_path, text)
    with pytest.raises(ValueError, match=match) as error:
        load_experiment(path)
    message = str(error.value)
    assert message.startswith(f"--config={path}")
    assert "\n" not in message


# -- overrides ---------------------------------------------------------------------------------

BASE = get_config("shapes_tiny")


@pytest.mark.parametrize("item, field, value", [
    ("num_classes=5", "num_classes", 5),
    (" num_classes = 7 ", "num_classes", 7),
    ("learning_rate=0.01", "learning_rate", 0.01),
    ("learning_rate=1e-3", "learning_rate", 0.001),
    ("learning_rate=2", "learning_rate", 2.0),
    ("mask_class_agnostic=false", "mask_class_agnostic", False),
    ("mask_class_agnostic=True", "mask_class_agnostic", True),
    ("mask_class_agnostic=0", "mask_class_agnostic", False),
    ("backbone=resnet50", "backbone", "resnet50"),
    ("name=my run", "name", "my run"),
    ("gradient_clip_norm=none", "gradient_clip_norm", None),
    ("gradient_clip_norm=None", "gradient_clip_norm", None),
    ("gradient_clip_norm=5", "gradient_clip_norm", 5.0),
    ("backbone_weights=imagenet", "backbone_weights", "imagenet"),
    ("backbone_weights=null", "backbone_weights", None),
    ("train_min_sizes=640,800", "train_min_sizes", (640, 800)),
    ("train_min_sizes=(640, 800)", "train_min_sizes", (640, 800)),
    ("train_min_sizes=[96]", "train_min_sizes", (96,)),
    ("train_min_sizes=96", "train_min_sizes", (96,)),
    ("decay_steps=100,200,300", "decay_steps", (100, 200, 300)),
    ("tiny_widths=8,16,32,64", "tiny_widths", (8, 16, 32, 64)),
    ("anchor_ratios=0.5,1,2", "anchor_ratios", (0.5, 1.0, 2.0)),
    ("pixel_std=(1, 1, 1)", "pixel_std", (1.0, 1.0, 1.0)),
])
def test_parse_override_types(item, field, value):
    changes = parse_overrides([item], BASE)
    assert changes == {field: value}
    assert type(changes[field]) is type(value)
    if isinstance(value, tuple):
        assert all(type(a) is type(b) for a, b in zip(changes[field], value))


def test_parse_several_overrides_last_wins():
    assert parse_overrides(["num_classes=2", "batch_size=4", "num_classes=3"], BASE) == {
        "num_classes": 3, "batch_size": 4}
    assert parse_overrides([], BASE) == {}


def test_unknown_field_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"--override 'nm_classes=3': unknown config field "
                                         r"'nm_classes'; known fields: .*num_classes") as e:
        parse_overrides(["nm_classes=3"], BASE)
    assert "train_min_sizes" in str(e.value)


@pytest.mark.parametrize("item", ["num_classes", "=3", ""])
def test_override_without_key_value(item):
    with pytest.raises(ValueError, match="expected key=value"):
        parse_overrides([item], BASE)


@pytest.mark.parametrize("item, match", [
    ("num_classes=three", r"num_classes=three: expected an integer \(current value 3\)"),
    ("num_classes=2.5", r"num_classes=2.5: expected an integer"),
    ("learning_rate=fast", r"learning_rate=fast: expected a number"),
    ("mask_class_agnostic=maybe", r"mask_class_agnostic=maybe: expected true or false"),
    ("train_min_sizes=a,b", r"train_min_sizes=a,b: expected a comma-separated list of int"),
    ("train_min_sizes=640.5,800",
     r"train_min_sizes=640.5,800: expected a comma-separated list of int"),
    ("decay_steps=(1e4, 2e4)", r"expected a comma-separated list of int"),
    ("anchor_ratios=1,x", r"anchor_ratios=1,x: expected a comma-separated list of float"),
    ("gradient_clip_norm=big", r"gradient_clip_norm=big: expected a number"),
])
def test_bad_override_values(item, match):
    with pytest.raises(ValueError, match=match) as error:
        parse_overrides([item], BASE)
    assert str(error.value).startswith("--override ")


def test_override_making_an_invalid_config():
    with pytest.raises(ValueError, match=r"^--override: .*image_min_size"):
        load_experiment("shapes_tiny", ["image_min_size=2000"])
    with pytest.raises(ValueError, match=r"^--override: .*num_classes"):
        load_experiment("shapes_tiny", ["num_classes=0"])
