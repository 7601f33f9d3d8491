"""The training options for CPUs: learning-rate schedule and warm-up, dihedral
augmentation, the auxiliary crop from the full-resolution map, and that their
defaults leave training exactly as it was (docs/method.md, "Training options for CPUs")."""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import run_cli_here, tiny_args
from torchvision.ops import roi_align

from coolcore.errors import UsageError
from coolcore.nn.losses import total_loss
from coolcore.nn.model import MultiBranchAttentionNet
from coolcore.train.config import load_config
from coolcore.train.loaders import (
    dihedral_batch,
    dihedral_elements,
    dihedral_transform,
    make_loader,
)
from coolcore.train.module import ClusterClassifier, make_optimizer, make_scheduler

TINY = ["preprocess.crop=64", "preprocess.size=32", "model.aux_size=32"]


@pytest.fixture(autouse=True)
def _quiet_log_without_trainer():
    """``self.log`` outside a Trainer only warns; the unit tests call the steps directly."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.trainer.* reference is not registered")
        yield


# --------------------------------------------------------------------------- schedule
def _rates(train: dict, steps_per_epoch: int) -> tuple[list[float], str]:
    """The learning rate each optimiser step uses, over the whole run."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=train["lr"])
    sched, interval = make_scheduler(opt, train, steps_per_epoch)
    seen = []
    for _ in range(train["epochs"] * steps_per_epoch):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen, interval


def _train(**changes) -> dict:
    t = {"lr": 1e-3, "epochs": 5, "step_size": 2, "gamma": 0.1, "min_lr_ratio": 0.01}
    return {**t, "schedule": "step", "warmup_epochs": 0, **changes}


@pytest.mark.parametrize("warm", [0, 1, 2])
def test_cosine_with_warmup_equals_the_formula(warm) -> None:
    spe, train = 3, _train(schedule="cosine", warmup_epochs=warm)
    lr, floor = train["lr"], train["lr"] * train["min_lr_ratio"]
    w, total = warm * spe, train["epochs"] * spe
    expected = [
        lr * (0.1 + 0.9 * s / w)
        if s < w
        else floor + (lr - floor) * (1 + math.cos(math.pi * (s - w) / (total - w))) / 2
        for s in range(total)
    ]
    seen, interval = _rates(train, spe)
    assert interval == "step"
    np.testing.assert_allclose(seen, expected, rtol=1e-9, atol=0)
    assert seen[0] == pytest.approx(lr / 10 if warm else lr)


def test_step_schedule_with_warmup_keeps_its_epoch_boundaries() -> None:
    spe, train = 4, _train(warmup_epochs=1)
    w = spe
    expected = [
        1e-3 * min(0.1 + 0.9 * s / w, 1.0) * 0.1 ** ((s // spe) // train["step_size"])
        for s in range(train["epochs"] * spe)
    ]
    seen, interval = _rates(train, spe)
    assert interval == "step"
    np.testing.assert_allclose(seen, expected, rtol=1e-9, atol=0)


def test_default_schedule_is_steplr_per_epoch_and_adamw_only_with_decay() -> None:
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = make_optimizer(p, _train())
    sched, interval = make_scheduler(opt, _train(), None)
    assert type(opt) is torch.optim.Adam
    assert type(sched) is torch.optim.lr_scheduler.StepLR and interval == "epoch"
    decayed = make_optimizer(p, _train(weight_decay=0.05))
    assert type(decayed) is torch.optim.AdamW
    assert decayed.param_groups[0]["weight_decay"] == 0.05


def test_config_options_are_checked() -> None:
    cfg = load_config("paper")  # the options' defaults are the paper's
    assert (cfg["train"]["schedule"], cfg["train"]["warmup_epochs"]) == ("step", 0)
    assert (cfg["train"]["augment"], cfg["model"]["crop_source"]) == ("none", "input")
    assert cfg["train"]["weight_decay"] == 0.0
    for bad, match in [
        ("train.schedule=linear", "train.schedule='linear': must be one of step, cosine"),
        ("train.augment=flip", "train.augment='flip': must be one of none, dihedral"),
        ("model.crop_source=raw", "crop_source='raw': must be one of input, full"),
        ("train.warmup_epochs=16", "warmup_epochs=16: must be less than train.epochs=16"),
        ("train.warmup_epochs=1.5", "warmup_epochs=1.5: must be an integer"),
        ("train.min_lr_ratio=2", "min_lr_ratio=2: must lie in"),
        ("train.weight_decay=-1", "weight_decay=-1: must lie in"),
    ]:
        with pytest.raises(UsageError, match=match):
            load_config("cpu", [bad])


# --------------------------------------------------------------------------- dihedral
def _numpy_group(img: np.ndarray) -> list[np.ndarray]:
    """D4 by NumPy: k quarter turns, then a left-right flip for the last four."""
    return [np.rot90(img, k) for k in range(4)] + [np.fliplr(np.rot90(img, k)) for k in range(4)]


def test_dihedral_transforms_are_the_eight_symmetries_of_the_square() -> None:
    img = np.arange(25, dtype=np.float32).reshape(5, 5) ** 1.5  # no symmetry of its own
    batch = torch.from_numpy(np.repeat(img[None, None], 8, axis=0))
    out = dihedral_transform(batch, torch.arange(8)).numpy()[:, 0]
    group = _numpy_group(img)
    for e in range(8):
        np.testing.assert_array_equal(out[e], group[e])
    flat = {o.tobytes() for o in out}
    assert len(flat) == 8  # distinct
    # the same set as every composition of np.rot90 and np.flipud, built another way
    other = {
        np.ascontiguousarray(np.rot90(f, k)).tobytes()
        for f in (img, np.flipud(img))
        for k in range(4)
    }
    assert flat == other


def test_dihedral_batch_keeps_labels_and_moves_full_maps_alike() -> None:
    gen = torch.Generator().manual_seed(1)
    x, full = torch.rand(6, 1, 4, 4, generator=gen), torch.rand(6, 1, 8, 8, generator=gen)
    y, t = torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6.0)
    elements = torch.tensor([0, 3, 4, 7, 5, 1])
    ax, ay, at, afull = dihedral_batch((x, y, t, full), elements)
    assert torch.equal(ay, y) and torch.equal(at, t)
    for i, e in enumerate(elements.tolist()):
        np.testing.assert_array_equal(ax[i, 0].numpy(), _numpy_group(x[i, 0].numpy())[e])
        np.testing.assert_array_equal(afull[i, 0].numpy(), _numpy_group(full[i, 0].numpy())[e])
    two = dihedral_batch((x, y), elements)
    assert len(two) == 2 and torch.equal(two[0], ax)


def test_dihedral_draws_are_seeded() -> None:
    a = dihedral_elements(64, seed=7, epoch=2, batch=3)
    assert torch.equal(a, dihedral_elements(64, seed=7, epoch=2, batch=3))
    assert a.min() >= 0 and a.max() <= 7 and len(torch.unique(a)) == 8
    for other in ((8, 2, 3), (7, 3, 3), (7, 2, 4)):
        assert not torch.equal(a, dihedral_elements(64, *other))


def _seen_inputs(cfg: dict, batch: tuple, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What the network receives in a training step and in a validation step."""
    torch.manual_seed(0)
    module = ClusterClassifier(cfg, [1.0, 1.0, 1.0], seed=seed)
    seen = []
    module.net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    module.training_step(batch, 0)
    module.validation_step(batch, 0)
    return seen[0], seen[1]


def test_only_training_batches_are_augmented_and_reproducibly() -> None:
    cfg = load_config("demo", [*TINY, "model.variant=baseline", "train.augment=dihedral"])
    x = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    batch = (x, torch.tensor([0, 1, 2, 0, 1, 2]))
    train_in, val_in = _seen_inputs(cfg, batch, seed=11)
    assert torch.equal(val_in, x)  # validation untouched
    expected = dihedral_transform(x, dihedral_elements(6, 11, 0, 0))
    assert torch.equal(train_in, expected) and not torch.equal(train_in, x)
    again, _ = _seen_inputs(cfg, batch, seed=11)
    assert torch.equal(again, train_in)  # same seed, same transforms
    plain_cfg = load_config("demo", [*TINY, "model.variant=baseline"])
    plain, _ = _seen_inputs(plain_cfg, batch, seed=11)
    assert torch.equal(plain, x)


# --------------------------------------------------------------------------- crop source
def _bright_square() -> tuple[torch.Tensor, torch.Tensor]:
    """A 64 px map: a square with a one-pixel checkerboard (0.6 / 1.0) on a dim background,
    and its antialiased bilinear resize to 32 px (the preprocessing's resize)."""
    full = np.full((64, 64), 0.05, dtype=np.float32)
    rows, cols = np.mgrid[24:40, 20:36]
    full[24:40, 20:36] = np.where((rows + cols) % 2 == 0, 1.0, 0.6)
    full_t = torch.from_numpy(full)[None, None]
    small = F.interpolate(full_t, size=(32, 32), mode="bilinear", antialias=True)
    return small, full_t


def _variation(crop: torch.Tensor) -> float:
    return float((crop[..., 1:, :] - crop[..., :-1, :]).abs().mean())


def test_crop_from_the_full_map_is_roi_align_of_the_scaled_box() -> None:
    x, full = _bright_square()
    torch.manual_seed(0)
    net = MultiBranchAttentionNet("gauss", aux_size=32, crop_source="full").eval()
    ref = MultiBranchAttentionNet("gauss", aux_size=32).eval()
    ref.load_state_dict(net.state_dict())
    ex = net.explain(x, full)
    x0, y0, x1, y1 = ex.boxes[0].tolist()
    assert 0 < x1 - x0 < 31  # a box inside the map, found on the 32 px input
    # the box's rectangle [x0, x1 + 1) x [y0, y1 + 1), times 64 / 32, on the full map
    rect = torch.tensor([[0.0, 2 * x0, 2 * y0, 2 * (x1 + 1), 2 * (y1 + 1)]])
    by_hand = roi_align(
        full, rect, output_size=32, spatial_scale=1.0, sampling_ratio=0, aligned=True
    )
    torch.testing.assert_close(ex.crop, by_hand, atol=1e-5, rtol=0)
    from_input = ref.explain(x).crop
    assert torch.equal(ref.explain(x).boxes, ex.boxes)
    assert _variation(ex.crop) > 3 * _variation(from_input)  # the checkerboard survives
    out, out_ref = net(x, full), ref(x)
    for name in ("logits", "logits_primary", "logits_aux", "boxes", "cam"):
        assert getattr(out, name).shape == getattr(out_ref, name).shape
    assert torch.equal(out.logits_primary, out_ref.logits_primary)
    with pytest.raises(ValueError, match="crop_source='full' needs net"):
        net(x)


def test_crop_source_full_without_a_resize_is_the_input_crop() -> None:
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    net = MultiBranchAttentionNet("all", aux_size=32, crop_source="full").eval()
    ref = MultiBranchAttentionNet("all", aux_size=32).eval()
    ref.load_state_dict(net.state_dict())
    assert torch.equal(net(x, x).logits, ref(x).logits)
    assert net.config()["crop_source"] == "full"
    assert MultiBranchAttentionNet.from_config(net.config()).crop_source == "full"


def test_loader_carries_the_full_maps() -> None:
    images, full = torch.rand(5, 1, 4, 4), torch.rand(5, 1, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1])
    rows = np.array([4, 1, 3])
    x, y, t, f = next(iter(make_loader(images, labels, 8, shuffle_seed=None, rows=rows, full=full)))
    assert t is None and torch.equal(x, images[rows]) and torch.equal(f, full[rows])
    assert torch.equal(y, labels[rows])


def test_dataset_keeps_the_maps_before_the_resize(tiny_sample) -> None:
    from coolcore.data.cache import load_dataset
    from coolcore.data.images import read_image
    from coolcore.data.transforms import PreprocessConfig

    ds = load_dataset(tiny_sample, PreprocessConfig(crop=48, size=32), full_resolution=True)
    assert ds.full_images.shape == (len(ds), 48, 48) and ds.full_images.dtype == np.float32
    # by hand: the central 48 px of the 64 px map, log, min-max to [0, 1]
    raw = read_image(ds.catalog["path"].iloc[5])[8:56, 8:56].astype(np.float64)
    logs = np.log(np.maximum(raw, raw[raw > 0].min()))
    np.testing.assert_allclose(
        ds.full_images[5], (logs - logs.min()) / (logs.max() - logs.min()), atol=1e-6
    )
    small = F.interpolate(
        torch.from_numpy(ds.full_images[:, None]), size=(32, 32), mode="bilinear", antialias=True
    )
    np.testing.assert_allclose(small[:, 0].clamp(0, 1).numpy(), ds.images, atol=1e-6)
    assert load_dataset(tiny_sample, PreprocessConfig(crop=48, size=32)).full_images is None
    same = load_dataset(tiny_sample, PreprocessConfig(crop=48), full_resolution=True)
    assert same.full_images is same.images


# --------------------------------------------------------------------------- defaults
def _one_step(cfg: dict, batch: tuple) -> tuple[ClusterClassifier, object]:
    torch.manual_seed(0)
    module = ClusterClassifier(cfg, [1.0, 2.0, 0.5], seed=3)
    setup = module.configure_optimizers()
    opt = setup["optimizer"]
    loss = module.training_step(batch, 0)
    loss.backward()
    opt.step()
    return module, setup


def test_defaults_train_exactly_as_before() -> None:
    defaults = load_config("demo", TINY)
    explicit = load_config(
        "demo",
        [
            *TINY,
            "train.schedule=step",
            "train.warmup_epochs=0",
            "train.min_lr_ratio=0.01",
            "train.weight_decay=0.0",
            "train.augment=none",
            "model.crop_source=input",
        ],
    )
    gen = torch.Generator().manual_seed(4)
    batch = (torch.rand(4, 1, 32, 32, generator=gen), torch.tensor([0, 1, 2, 1]))
    a, setup = _one_step(defaults, batch)
    b, _ = _one_step(explicit, batch)
    assert type(setup["optimizer"]) is torch.optim.Adam
    assert type(setup["lr_scheduler"]["scheduler"]) is torch.optim.lr_scheduler.StepLR
    assert setup["lr_scheduler"]["interval"] == "epoch"
    # the reference: the paper's step written out (Adam 1e-3 on the total loss)
    torch.manual_seed(0)
    ref = copy.deepcopy(ClusterClassifier(defaults, [1.0, 2.0, 0.5]).net)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    loss, _ = total_loss(
        ref(batch[0]), batch[1], torch.tensor([1.0, 2.0, 0.5]), (0.8, 0.1, 0.1, 0.1)
    )
    loss.backward()
    opt.step()
    params = zip(a.net.named_parameters(), b.net.parameters(), ref.parameters(), strict=True)
    for (name, pa), pb, pr in params:
        assert torch.equal(pa, pb), name
        assert torch.equal(pa, pr), name


# --------------------------------------------------------------------------- the command
def test_cv_with_every_option(tiny_sample, tmp_path) -> None:
    out = tmp_path / "run"
    options = [
        "--set",
        "train.schedule=cosine",
        "--set",
        "train.augment=dihedral",
        "--set",
        "model.crop_source=full",
    ]
    r = run_cli_here(
        "cv", str(tiny_sample), "--out", str(out), *tiny_args(epochs=1), *options, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert (out / "metrics.json").is_file() and (out / "predictions.csv").is_file()
    assert "crop_source: full" in (out / "config.yaml").read_text()
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 3  # one epoch per fold (the schedule's steps: unit tests above)
    np.testing.assert_allclose(history["lr"], 1e-3, rtol=1e-6)  # the cosine starts at lr
    # the exported ensemble predicts with crop_source=full: each fold model's probabilities
    # on its own test maps are those the run recorded (same full-resolution crops)
    model_dir = tmp_path / "model"
    assert run_cli_here("export", str(out), "--out", str(model_dir), cwd=tmp_path).returncode == 0
    from coolcore.apps.export import export_model
    from coolcore.apps.inference import load_model
    from coolcore.data.inputs import collect_inputs

    preds = pd.read_csv(out / "predictions.csv", dtype={"image_id": str})
    one = load_model(export_model(out, tmp_path / "fold0", fold=0), device="cpu")
    expected = preds[preds["fold"] == 0].set_index("image_id")
    items = [
        i
        for i in collect_inputs(catalog=tiny_sample / "catalog.csv")
        if i.image_id in expected.index
    ]
    got = one.predict(items).set_index("image_id").loc[expected.index]
    # predict divides the logits by the fold's temperature; the run's table is unscaled
    from coolcore.evaluate.calibration import scale_temperature

    t0 = json.loads((out / "fold_00" / "fold.json").read_text())["temperature"]
    cols = ["p_CC", "p_WCC", "p_NCC"]
    np.testing.assert_allclose(got[cols], scale_temperature(expected[cols], t0), atol=1e-4)
    res = run_cli_here(
        "explain", str(model_dir), str(tiny_sample / "images" / "c0000_x.fits"),
        "--out", str(tmp_path / "ex"), "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
