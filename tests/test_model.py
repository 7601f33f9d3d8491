"""The network: shapes, boxes against an independent NumPy pipeline, gradients, weights."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models import resnet18

from coolcore.errors import UsageError
from coolcore.nn.losses import class_weights, total_loss
from coolcore.nn.model import MultiBranchAttentionNet, build_network
from coolcore.nn.options import VARIANTS
from coolcore.train.weights import read_trunk_state


def _images(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=g)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [64, 128])
def test_output_shapes_and_boxes(variant: str, size: int) -> None:
    torch.manual_seed(0)
    net = MultiBranchAttentionNet(variant).eval()
    with torch.no_grad():
        out = net(_images(size=size))
    assert out.logits.shape == (2, 3) and out.logits_primary.shape == (2, 3)
    assert net.has_aux == (variant != "baseline")
    assert out.uses_regression == net.uses_regression == (variant == "all")
    if variant == "baseline":
        assert out.logits_aux is None and out.boxes is None and out.cam is None
        assert not hasattr(net, "auxiliary")
        assert out.logits is out.logits_primary
        return
    assert out.logits_aux.shape == (2, 3)
    assert out.cam.shape == (2, size // 32, size // 32)
    x0, y0, x1, y1 = out.boxes.T
    assert out.boxes.dtype == torch.long
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 < size).all() and (y1 < size).all()
    assert (x0 <= x1).all() and (y0 <= y1).all()


def _reference_mask_box(
    net: MultiBranchAttentionNet, x: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of B1, B2 and their union/intersection, computed independently in NumPy."""
    captured: dict[str, torch.Tensor] = {}
    hook = net.primary.layer4.register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("M", out)
    )
    with torch.no_grad():
        out = net(x)
    hook.remove()
    m = captured["M"].double().numpy()
    w = net.head_primary.weight.detach().double().numpy()
    pred = out.logits_primary.argmax(1).numpy()
    size = x.shape[-1]
    boxes = {"cam": [], "gauss": [], "union": [], "intersection": []}
    for b in range(x.shape[0]):
        cam = np.tensordot(w[pred[b]], m[b], axes=(0, 0))  # (h, w)
        up = F.interpolate(torch.from_numpy(cam)[None, None], size=(size, size), mode="bilinear")[
            0, 0
        ].numpy()
        heat1 = (up - up.min()) / (up.max() - up.min())
        img = x[b, 0].numpy()
        row, col = np.unravel_index(np.argmax(img), img.shape)
        sigma = size / math.sqrt(net.lam)
        rr, cc = np.mgrid[0:size, 0:size]
        heat2 = np.exp(-((cc - col) ** 2 + (rr - row) ** 2) / (2 * sigma**2))
        b1, b2 = heat1 >= net.tau1, heat2 >= net.tau2
        for name, mask in (
            ("cam", b1),
            ("gauss", b2),
            ("union", b1 | b2),
            ("intersection", b1 & b2),
        ):
            r, c = np.where(mask)
            boxes[name].append(
                [c.min(), r.min(), c.max(), r.max()] if r.size else [0, 0, size - 1, size - 1]
            )
    return out.boxes.numpy(), {k: np.array(v) for k, v in boxes.items()}


@pytest.mark.parametrize(
    ("variant", "combine", "key"),
    [
        ("att", "union", "cam"),
        ("gauss", "union", "gauss"),
        ("att+gauss", "union", "union"),
        ("all", "intersection", "intersection"),
    ],
)
def test_boxes_match_independent_numpy_pipeline(variant: str, combine: str, key: str) -> None:
    torch.manual_seed(1)
    net = MultiBranchAttentionNet(variant, combine=combine).eval()
    got, ref = _reference_mask_box(net, _images(batch=3, seed=2))
    np.testing.assert_array_equal(got, ref[key])


def test_gauss_box_by_hand() -> None:
    # sigma = 64 / 5 = 12.8; H2 >= 0.7 within 12.8 * sqrt(2 ln(1/0.7)) = 10.81 px.
    net = MultiBranchAttentionNet("gauss").eval()
    x = torch.zeros(1, 1, 64, 64)
    x[0, 0, 20, 30] = 1.0
    with torch.no_grad():
        out = net(x)
    assert out.boxes.tolist() == [[20, 10, 40, 30]]


def test_aux_size_sets_the_crop_fed_to_the_auxiliary_branch() -> None:
    net = MultiBranchAttentionNet("att+gauss", aux_size=32).eval()
    seen: dict[str, tuple[int, ...]] = {}
    net.auxiliary.register_forward_pre_hook(
        lambda _m, args: seen.__setitem__("shape", args[0].shape)
    )
    with torch.no_grad():
        net(_images())
    assert seen["shape"] == (2, 3, 32, 32)


@pytest.mark.parametrize("variant", ["baseline", "att", "all"])
def test_backward_gives_finite_gradients(variant: str) -> None:
    torch.manual_seed(0)
    net = MultiBranchAttentionNet(variant).train()
    targets = torch.tensor([0, 2])
    out = net(_images())
    loss, _ = total_loss(out, targets, class_weights([0, 1, 2, 2]))
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.primary.conv1.weight.grad.abs().sum() > 0
    if net.has_aux:
        assert net.auxiliary.conv1.weight.grad.abs().sum() > 0
        assert net.head_fusion.weight.grad.abs().sum() > 0


def test_channels_last_and_bf16_autocast_in_train_and_eval() -> None:
    torch.manual_seed(0)
    net = MultiBranchAttentionNet("all").to_channels_last()
    assert net.auxiliary.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for train in (True, False):
        net.train(train)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(_images())
        assert torch.isfinite(out.logits.float()).all() and out.boxes.shape == (2, 4)
    net.eval()
    plain = MultiBranchAttentionNet("all").eval()
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            net(_images()).logits, plain(_images()).logits, atol=1e-4, rtol=1e-4
        )


def test_explain_returns_all_maps() -> None:
    net = MultiBranchAttentionNet("all").eval()
    e = net.explain(_images())
    assert e.heat_cam.shape == e.heat_gauss.shape == e.mask.shape == (2, 64, 64)
    assert torch.equal(e.mask, e.mask_cam | e.mask_gauss)
    assert torch.equal(e.boxes, e.output.boxes) and e.crop.shape == (2, 1, 64, 64)
    base = MultiBranchAttentionNet("baseline").eval().explain(_images())
    assert base.crop is None and base.boxes.tolist() == [[0, 0, 63, 63]] * 2


# ------------------------------------------------------------------------ weights
def test_imagenet_weights_fail_fast_and_clearly_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    start = time.perf_counter()
    try:
        state = read_trunk_state("imagenet")
    except UsageError as exc:
        assert "not available offline" in str(exc) and "resnet18-f37072fd.pth" in str(exc)
        assert time.perf_counter() - start < 30.0
    else:  # a machine with internet downloaded the real weights
        assert state["conv1.weight"].shape == (64, 3, 7, 7)


def test_imagenet_weights_read_from_the_hub_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(5)
    reference = resnet18(weights=None).state_dict()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference, tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    net = build_network(
        {"model": {"variant": "att", "weights": "imagenet"}},
        trunk_state=read_trunk_state("imagenet"),
    )
    torch.testing.assert_close(
        net.primary.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"]
    )
    torch.testing.assert_close(net.auxiliary.conv1.weight, reference["conv1.weight"])
    torch.testing.assert_close(net.input_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_a_pretrained_label_needs_its_tensors() -> None:
    with pytest.raises(ValueError, match="trunk_state missing"):
        MultiBranchAttentionNet("baseline", weights="imagenet")
    state = {k: v for k, v in resnet18(weights=None).state_dict().items() if "fc." not in k}
    with pytest.raises(ValueError, match="trunk_state given"):
        MultiBranchAttentionNet("baseline", trunk_state=state)
    net = MultiBranchAttentionNet("baseline", weights="my.pt", trunk_state=state)
    for name, value in net.primary.state_dict().items():
        assert torch.equal(value, state[name])
    assert net.config()["weights"] == "my.pt"


def test_reading_weights_leaves_the_seeded_initialisation_alone(tmp_path) -> None:
    """Checking a weights file draws no random numbers: the heads start where they
    would without it."""
    path = tmp_path / "trunk.pt"
    torch.save(resnet18(weights=None).state_dict(), path)
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(11)
    read_trunk_state(path)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_from_a_state_dict_file(tmp_path, suffix: str) -> None:
    torch.manual_seed(3)
    reference = resnet18(weights=None).state_dict()
    path = tmp_path / f"trunk{suffix}"
    if suffix == ".pt":
        torch.save(reference, path)
    else:
        save_file({k: v.contiguous() for k, v in reference.items()}, str(path))
    net = MultiBranchAttentionNet("all", weights=path, trunk_state=read_trunk_state(path))
    for name, value in net.primary.state_dict().items():
        torch.testing.assert_close(value, reference[name])
    torch.testing.assert_close(net.auxiliary.bn1.running_var, reference["bn1.running_var"])


def test_bad_weight_files_raise_usage_errors_naming_them(tmp_path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(UsageError, match="nope.pt"):
        read_trunk_state(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="garbage.pth"):
        read_trunk_state(garbage)
    wrong = tmp_path / "wrong.pt"
    state = resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, wrong)
    with pytest.raises(UsageError, match="wrong.pt"):
        read_trunk_state(wrong)
    partial = tmp_path / "partial.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, partial)
    with pytest.raises(UsageError, match="missing"):
        read_trunk_state(partial)


# ------------------------------------------------------------------------- config
def test_config_round_trip_and_validation() -> None:
    net = MultiBranchAttentionNet("gauss", combine="intersection", aux_size=48, lam=16.0)
    again = MultiBranchAttentionNet.from_config(net.config())
    assert again.config() == net.config()
    assert "gauss" in net.describe()
    with pytest.raises(UsageError, match="lr"):
        MultiBranchAttentionNet.from_config({"variant": "all", "lr": 1e-3})
    for kwargs in ({"variant": "attention"}, {"combine": "or"}, {"tau1": 1.5}, {"lam": 0.0}):
        with pytest.raises(UsageError):
            MultiBranchAttentionNet(**kwargs)
    with pytest.raises(ValueError, match="grey"):
        MultiBranchAttentionNet("baseline")(torch.rand(1, 3, 64, 64))


def test_standardised_input_matches_the_imagenet_formula_by_hand() -> None:
    # the channels-last fast path (one fused pass) against (x - mean) / std written out
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    grey = torch.rand(3, 1, 20, 24, generator=torch.Generator().manual_seed(4))
    want = (grey.numpy().astype(np.float64) - mean[None, :, None, None]) / std[None, :, None, None]
    for net in (MultiBranchAttentionNet("all"), MultiBranchAttentionNet("all").to_channels_last()):
        # random weights standardise with mean 0, std 1: the ImageNet values, as
        # pretrained weights bring them, are set here by hand
        net.input_mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
        net.input_std.copy_(torch.tensor(std).view(1, 3, 1, 1))
        x = net._backbone_input(grey)
        assert x.shape == (3, 3, 20, 24) and x.dtype == torch.float32
        np.testing.assert_allclose(x.numpy(), want, rtol=0, atol=2e-6)
    assert x.is_contiguous(memory_format=torch.channels_last)
