"""Config presets, overrides and validation."""

import pytest

from coolcore.errors import UsageError
from coolcore.train.config import DEFAULTS, PRESETS, load_config


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_validate(name):
    cfg = load_config(name)
    assert set(cfg) == set(DEFAULTS)
    assert cfg["loss"]["alphas"] == [0.8, 0.1, 0.1, 0.1]
    assert cfg["train"]["lr"] == pytest.approx(1e-3)
    # StepLR(10, 0.1) as in the paper; the cpu preset's recipe: warm-up, then cosine
    assert (cfg["train"]["step_size"], cfg["train"]["gamma"]) == (10, pytest.approx(0.1))
    recipe = ("cosine", 1, "dihedral", "full", 16)
    got = (
        cfg["train"]["schedule"],
        cfg["train"]["warmup_epochs"],
        cfg["train"]["augment"],
        cfg["model"]["crop_source"],
        cfg["train"]["epochs"],
    )
    assert (got == recipe) == (name == "cpu")
    # one brightness scale for all maps: the cpu preset's (README); the paper scales each map
    assert cfg["preprocess"]["scaling"] == ("dataset" if name == "cpu" else "image")


def test_paper_preset_is_the_papers_protocol():
    cfg = load_config("paper")
    assert cfg["cv"]["folds"] == 10
    assert cfg["preprocess"]["crop"] == 256 and cfg["preprocess"]["size"] is None
    assert (cfg["model"]["tau1"], cfg["model"]["tau2"], cfg["model"]["lam"]) == (0.7, 0.7, 25.0)


def test_cpu_preset_keeps_a_4x4_cam():
    cfg = load_config("cpu")
    # ResNet-18 reduces by 32: the CAM has size/32 cells a side
    assert cfg["preprocess"]["size"] // 32 >= 4


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(
        "cpu", ["train.epochs=3", "model.aux_size=null", "loss.alphas=[1, 0, 0, 0.5]"]
    )
    assert cfg["train"]["epochs"] == 3
    assert cfg["model"]["aux_size"] is None
    assert cfg["loss"]["alphas"] == [1.0, 0.0, 0.0, 0.5]


@pytest.mark.parametrize(
    "override, needle",
    [
        (["nosuch.key=1"], "unknown config section 'nosuch'"),
        (["train.nosuch=1"], "unknown key 'train.nosuch'"),
        (["train.epochs=0"], "train.epochs=0"),
        (["train.epochs=2.5"], "must be an integer"),
        (["train.lr=abc"], "train.lr='abc': must be a number"),
        (["model.variant=resnet"], "model.variant='resnet'"),
        (["model.tau1=1.5"], "model.tau1=1.5"),
        (["loss.alphas=[1, 2]"], "loss.alphas"),
        (["loss.alphas=[1, 2, 3, -1]"], "loss.alphas"),
        (["cv.folds=2"], "cv.folds=2"),
        (["preprocess.size=512"], "preprocess.size=512 exceeds"),
        (["train.deterministic=maybe"], "train.deterministic"),
        (["epochs"], "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(UsageError, match=None) as info:
        load_config("cpu", override)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_file_with_unknown_key(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("train:\n  epochs: 2\n  learning_rate: 0.1\n")
    with pytest.raises(UsageError, match="learning_rate"):
        load_config(str(path))
    path.write_text("train: [1, 2\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_config(str(path))
    with pytest.raises(UsageError, match="neither a preset"):
        load_config(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(
    "value, stored",
    [("32", "32"), ("auto", "auto"), ("bf16-mixed", "bf16-mixed"), ("16-mixed", "16-mixed")],
)
def test_precision_values(value, stored):
    assert load_config("cpu", [f"train.precision={value}"])["train"]["precision"] == stored
    with pytest.raises(UsageError, match="train.precision='fp16': must be one of auto, 32"):
        load_config("cpu", ["train.precision=fp16"])


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("variant", "resnet", "must be one of baseline, att, gauss, att+gauss, all"),
        ("combine", "or", "must be one of union, intersection"),
        ("tau1", 1.5, "must lie in [0.0, 1.0]"),
        ("tau2", -0.25, "must lie in [0.0, 1.0]"),
        ("tau1", "high", "must be a number"),
        ("lam", 0, "must lie in [1e-06, 1000000.0]"),
        ("aux_size", 16, "must lie in [32, 4096]"),
        ("center_smoothing", 2, "must be 0 or odd"),
        ("center_smoothing", 1.5, "must be an integer"),
    ],
)
def test_config_and_network_apply_the_same_rules(key, value, problem):
    """One rule, two callers: the run config (at the edge) and the network itself."""
    from coolcore.nn.model import MultiBranchAttentionNet

    shown = value if isinstance(value, int | float) else repr(value)
    with pytest.raises(UsageError) as from_config:
        load_config("cpu", [f"model.{key}={value}"])
    assert str(from_config.value) == f"config model.{key}={shown}: {problem}"
    with pytest.raises(UsageError) as from_network:
        MultiBranchAttentionNet(**{key: value})
    assert str(from_network.value) == f"{key}={shown}: {problem}"


def test_good_model_values_pass_both():
    from coolcore.nn.model import build_network

    cfg = load_config("cpu", ["model.center_smoothing=5", "model.tau1=0", "model.tau2=1"])
    net = build_network(cfg)
    assert (net.center_smoothing, net.tau1, net.tau2, net.aux_size) == (5, 0.0, 1.0, 64)
