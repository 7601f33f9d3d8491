"""Losses against hand values, NumPy and SciPy."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import energy_distance

from coolcore.nn.losses import class_weights, cramer_distance, total_loss, weighted_cross_entropy


# ------------------------------------------------------------------ class weights
def test_class_weights_by_hand() -> None:
    labels = [0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2]  # counts 4, 1, 9
    w = class_weights(labels)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor([0.5, 1.0, 1.0 / 3.0]))
    torch.testing.assert_close(class_weights(np.array(labels)), w)


def test_class_weights_absent_class_is_zero_and_bad_labels_raise() -> None:
    torch.testing.assert_close(
        class_weights(torch.tensor([0, 0, 2])), torch.tensor([0.5**0.5, 0.0, 1.0])
    )
    with pytest.raises(ValueError, match="0..2"):
        class_weights([0, 3])
    with pytest.raises(ValueError):
        class_weights([0.5, 1.0])


# ---------------------------------------------------------------- weighted CE
def test_weighted_cross_entropy_against_numpy_divides_by_n() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 3)) * 2.0
    targets = np.array([0, 1, 2, 2, 1, 0, 2])
    weight = np.array([0.5, 1.0, 1.0 / 3.0])
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(weight[targets] * log_softmax[np.arange(7), targets])

    got = weighted_cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(targets), torch.from_numpy(weight)
    )
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # PyTorch's weighted mean divides by the sum of the weights instead: different.
    torch_mean = F.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(targets), weight=torch.from_numpy(weight)
    )
    assert torch_mean.item() == pytest.approx(expected * 7 / weight[targets].sum(), rel=1e-6)


def test_weighted_cross_entropy_uniform_logits_by_hand() -> None:
    # Uniform prediction: -log softmax = log 3 for every sample.
    w = torch.tensor([0.5, 1.0, 1.0 / 3.0])
    got = weighted_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 2]), w)
    assert got.item() == pytest.approx((0.5 + 1.0 / 3.0) * math.log(3.0) / 2.0, rel=1e-6)


# ------------------------------------------------------------------ Cramer
def test_cramer_distance_by_hand() -> None:
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
    # CDF (0.2, 0.5, 1) against (1, 1, 1): 0.8^2 + 0.5^2 = 0.89;
    # against (0, 0, 1): 0.2^2 + 0.5^2 = 0.29; mean 0.59.
    assert cramer_distance(probs, torch.tensor([0, 2])).item() == pytest.approx(0.59, rel=1e-6)
    assert cramer_distance(torch.eye(3), torch.arange(3)).item() == 0.0
    # Everything on NCC for a CC sample: (1 - 0)^2 + (1 - 0)^2 = 2.
    assert cramer_distance(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([0])).item() == 2.0


def _cdf_integral_loops(p: np.ndarray, target: int) -> float:
    """Integral over thresholds t of (F_p(t) - F_onehot(t))^2 for classes at 0, 1, 2, ..."""
    n = p.size
    step = 1e-3
    total = 0.0
    for t in np.arange(step / 2, n, step):  # midpoints avoid the jumps at integers
        f_p = sum(p[k] for k in range(n) if k <= t)
        f_q = 1.0 if target <= t else 0.0
        total += (f_p - f_q) ** 2 * step
    return total


def test_cramer_distance_against_cdf_integral_and_scipy_energy_distance() -> None:
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(3), size=6)
    targets = np.array([0, 1, 2, 0, 2, 1])
    got = cramer_distance(torch.from_numpy(probs), torch.from_numpy(targets)).item()

    loops = np.mean([_cdf_integral_loops(p, t) for p, t in zip(probs, targets, strict=True)])
    assert got == pytest.approx(loops, rel=1e-6)

    # SciPy's 1-D energy distance is sqrt(2 * integral of (F - G)^2).
    support = np.arange(3.0)
    scipy_values = [
        energy_distance(support, [float(t)], u_weights=p) ** 2 / 2.0
        for p, t in zip(probs, targets, strict=True)
    ]
    assert got == pytest.approx(float(np.mean(scipy_values)), rel=1e-6)


# ------------------------------------------------------------------ total loss
def _outputs(aux: bool, regression: bool, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    p, a, f = (torch.randn(4, 3, generator=g, requires_grad=True) for _ in range(3))
    return SimpleNamespace(
        logits=f if aux else p,
        logits_primary=p,
        logits_aux=a if aux else None,
        uses_regression=regression,
    )


def _np_wce(logits: torch.Tensor, targets: np.ndarray, w: np.ndarray) -> float:
    z = logits.detach().double().numpy()
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(w[targets] * log_softmax[np.arange(len(targets)), targets]))


def _np_cramer(logits: torch.Tensor, targets: np.ndarray) -> float:
    z = logits.detach().double().numpy()
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    onehot = np.eye(3)[targets]
    return float(np.mean(((p.cumsum(1) - onehot.cumsum(1)) ** 2).sum(1)))


def test_total_loss_combines_terms_per_variant() -> None:
    targets_np = np.array([0, 1, 2, 2])
    targets = torch.from_numpy(targets_np)
    w_np = np.array([0.5, 1.0, 1.0 / 3.0])
    w = torch.from_numpy(w_np).float()

    out = _outputs(aux=True, regression=True)
    lp, la, lf = (
        _np_wce(z, targets_np, w_np) for z in (out.logits_primary, out.logits_aux, out.logits)
    )
    lr = _np_cramer(out.logits_primary, targets_np)
    loss, parts = total_loss(out, targets, w, alphas=(0.8, 0.1, 0.1, 0.1))
    assert loss.item() == pytest.approx(0.8 * lp + 0.1 * la + 0.1 * lf + 0.1 * lr, rel=1e-5)
    assert set(parts) == {"loss", "loss_primary", "loss_aux", "loss_fusion", "loss_regression"}
    assert parts["loss_regression"].item() == pytest.approx(lr, rel=1e-5)
    assert all(not v.requires_grad for v in parts.values())
    loss.backward()
    assert all(z.grad is not None for z in (out.logits_primary, out.logits_aux, out.logits))

    two_branch = _outputs(aux=True, regression=False)
    loss2, parts2 = total_loss(two_branch, targets, w, alphas=(0.5, 0.2, 0.3, 9.0))
    expected2 = sum(
        a * _np_wce(z, targets_np, w_np)
        for a, z in zip(
            (0.5, 0.2, 0.3),
            (two_branch.logits_primary, two_branch.logits_aux, two_branch.logits),
            strict=True,
        )
    )
    assert loss2.item() == pytest.approx(expected2, rel=1e-5)
    assert "loss_regression" not in parts2

    baseline = _outputs(aux=False, regression=False)
    loss3, parts3 = total_loss(baseline, targets, w)
    assert loss3.item() == pytest.approx(
        _np_wce(baseline.logits_primary, targets_np, w_np), rel=1e-5
    )
    assert set(parts3) == {"loss", "loss_primary"}
    with pytest.raises(ValueError, match="alphas"):
        total_loss(baseline, targets, w, alphas=(1.0, 0.0))


def test_total_loss_is_float32_under_bf16_logits() -> None:
    out = _outputs(aux=True, regression=True)
    out.logits_primary = out.logits_primary.detach().bfloat16()
    loss, _ = total_loss(out, torch.tensor([0, 1, 2, 0]), torch.ones(3))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
