"""The cooling-time regression head: its loss, the fold-ensemble mixture, the metrics,
the concentration baseline, the class from the predicted time, and the whole path
``cv --set model.regression=true`` -> ``export`` -> ``predict``."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_cli_here, tiny_args

from coolcore import CLASS_NAMES
from coolcore.apps.batches import PredictionBatch
from coolcore.apps.predictions import PREDICTION_COLUMNS, PredictionTable, catalog_metrics
from coolcore.data.inputs import MapInput
from coolcore.errors import UsageError
from coolcore.evaluate.intervals import cluster_multiplicities, percentile_interval
from coolcore.evaluate.regression import (
    classes_from_log10_tcool,
    concentration_regression,
    mixture_moments,
    profile_regression,
    regression_metrics,
)
from coolcore.nn.losses import class_weights, gaussian_nll, total_loss
from coolcore.nn.model import MultiBranchAttentionNet, build_network, network_config
from coolcore.train.config import load_config
from coolcore.train.fit import predictions_frame
from coolcore.train.loaders import log10_tcool_targets, make_loader

# The thresholds written out by hand (Gyr): CC <= 1.0 < WCC < 7.7 <= NCC.
HAND_CASES = [(0.99, "CC"), (1.01, "WCC"), (7.69, "WCC"), (7.71, "NCC")]


# --------------------------------------------------------------------------- loss
def test_gaussian_nll_equals_torch_gaussian_nll_loss() -> None:
    g = torch.Generator().manual_seed(0)
    mu, y = torch.randn(257, generator=g), torch.randn(257, generator=g)
    sigma = torch.rand(257, generator=g) * 2 + 0.05
    ours = gaussian_nll(mu, sigma, y)
    # torch's: mean of 0.5 (log var + (y - mu)^2 / var); 0.5 log sigma^2 = log sigma
    ref = torch.nn.GaussianNLLLoss(full=False, eps=1e-12)(mu, y, sigma**2)
    assert ours.dtype == torch.float32
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    full = torch.nn.GaussianNLLLoss(full=True, eps=1e-12)(mu, y, sigma**2)
    assert full.item() - ours.item() == pytest.approx(0.5 * math.log(2 * math.pi), rel=1e-6)


def test_gaussian_nll_in_float32_from_bf16() -> None:
    mu = torch.tensor([0.3, -0.2], dtype=torch.bfloat16)
    sigma = torch.tensor([0.5, 0.25], dtype=torch.bfloat16)
    y = torch.tensor([0.1, 0.4])
    got = gaussian_nll(mu, sigma, y)
    m, s = mu.double(), sigma.double()  # the bf16 values, then float64 by hand
    hand = (0.5 * ((y.double() - m) / s) ** 2 + s.log()).mean()
    assert got.dtype == torch.float32 and got.item() == pytest.approx(hand.item(), rel=1e-6)


def test_total_loss_adds_the_weighted_nll_and_needs_targets() -> None:
    torch.manual_seed(0)
    net = MultiBranchAttentionNet("baseline", regression=True).eval()
    x = torch.rand(4, 1, 32, 32)
    labels = torch.tensor([0, 1, 2, 1])
    tcool = torch.tensor([-0.2, 0.4, 1.1, 0.5])
    w = class_weights(labels)
    out = net(x)
    plain, _ = total_loss(out._replace(tcool_mu=None, tcool_sigma=None), labels, w)
    loss, parts = total_loss(out, labels, w, tcool=tcool, regression_weight=2.5)
    nll = (0.5 * ((tcool - out.tcool_mu) / out.tcool_sigma) ** 2 + out.tcool_sigma.log()).mean()
    assert parts["loss_tcool"].item() == pytest.approx(nll.item(), rel=1e-5)
    assert loss.item() == pytest.approx(plain.item() + 2.5 * nll.item(), rel=1e-5)
    with pytest.raises(ValueError, match="tcool"):
        total_loss(out, labels, w)


# --------------------------------------------------------------------------- network
# Computed with the code before the head existed (seed 0, aux_size 32, x from seed 1):
# sha256 of "name:shape;..." of the state dict (first 16 hex), and the logits.
BEFORE = {
    "baseline": (
        "37f997c7f621bceb",
        [0.034569, 0.046274, -0.071473, 0.031382, 0.082413, -0.050007],
    ),
    "all": ("04f254a58fa8505b", [-0.110007, 0.295259, -0.124724, -0.055382, 0.290174, -0.136712]),
}


def _net(variant: str, **kw) -> MultiBranchAttentionNet:
    torch.manual_seed(0)
    return MultiBranchAttentionNet(variant, aux_size=32, **kw).eval()


def _x() -> torch.Tensor:
    return torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("variant", ["baseline", "all"])
def test_without_the_option_the_network_is_the_papers(variant: str) -> None:
    net = _net(variant)
    state = net.state_dict()
    desc = ";".join(f"{k}:{tuple(v.shape)}" for k, v in state.items())
    digest, logits = BEFORE[variant]
    assert hashlib.sha256(desc.encode()).hexdigest()[:16] == digest
    assert not any("tcool" in k for k in state)
    with torch.no_grad():
        out = net(_x())
    np.testing.assert_allclose(out.logits.flatten().numpy(), logits, atol=2e-5)
    assert out.tcool_mu is None and out.tcool_sigma is None
    assert "t_cool" not in net.describe()


@pytest.mark.parametrize("variant", ["baseline", "all"])
def test_the_head_reads_the_class_heads_features_and_changes_nothing_else(variant: str) -> None:
    plain, net = _net(variant), _net(variant, regression=True)
    extra = set(net.state_dict()) - set(plain.state_dict())
    assert extra == {"head_tcool.weight", "head_tcool.bias"}
    for key, value in plain.state_dict().items():  # same seed: same initial weights
        assert torch.equal(net.state_dict()[key], value), key
    width = 1024 if variant == "all" else 512  # concat(V1, V2) as head_fusion; V1 alone
    assert net.head_tcool.in_features == width
    with torch.no_grad():
        out, ref = net(_x()), plain(_x())
    assert torch.equal(out.logits, ref.logits)
    assert out.tcool_mu.shape == out.tcool_sigma.shape == (2,)
    assert out.tcool_mu.dtype == out.tcool_sigma.dtype == torch.float32
    assert (out.tcool_sigma > 1e-3).all()
    # mu, s = head_tcool(features) by hand, with the features the class head reads
    feats = {}
    head = net.head_fusion if variant == "all" else net.head_primary
    hook = head.register_forward_hook(lambda _m, i, _o: feats.__setitem__("f", i[0]))
    with torch.no_grad():
        net(_x())
        mu_s = feats["f"] @ net.head_tcool.weight.T + net.head_tcool.bias
    hook.remove()
    torch.testing.assert_close(out.tcool_mu, mu_s[:, 0])
    torch.testing.assert_close(out.tcool_sigma, torch.log1p(torch.exp(mu_s[:, 1])) + 1e-3)
    assert net.explain(_x()).output.tcool_mu is not None


def test_head_float32_under_bf16_autocast_and_gradient_reaches_it() -> None:
    net = _net("baseline", regression=True).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.rand(2, 1, 32, 32))
    assert out.tcool_mu.dtype == torch.float32 and out.tcool_sigma.dtype == torch.float32
    loss = gaussian_nll(out.tcool_mu, out.tcool_sigma, torch.zeros(2))
    (grad,) = torch.autograd.grad(loss, net.head_tcool.weight)  # only the path to the head
    assert grad.abs().sum() > 0


def test_config_option_round_trips_and_is_checked() -> None:
    cfg = load_config("demo", ["model.regression=true", "loss.regression_weight=0.5"])
    assert network_config(cfg)["regression"] is True
    net = build_network(cfg)
    assert net.regression and net.config()["regression"] is True
    assert MultiBranchAttentionNet.from_config(net.config()).regression
    assert network_config(load_config("demo"))["regression"] is False
    old = {k: v for k, v in network_config(load_config("demo")).items() if k != "regression"}
    assert not MultiBranchAttentionNet.from_config(old).regression  # a model.json before it
    with pytest.raises(UsageError, match="config model.regression='maybe': must be true or false"):
        load_config("demo", ["model.regression=maybe"])
    with pytest.raises(UsageError, match="loss.regression_weight"):
        load_config("demo", ["loss.regression_weight=-1"])


# --------------------------------------------------------------------------- data
def test_targets_and_the_loader(tmp_path) -> None:
    cat = pd.DataFrame({"image_id": ["a", "b", "c"], "t_cool_gyr": [0.5, 1.0, 10.0]})
    np.testing.assert_allclose(log10_tcool_targets(cat, "cat.csv"), np.log10([0.5, 1.0, 10.0]))
    for bad in ([0.5, np.nan, 2.0], [0.5, 0.0, 2.0]):
        with pytest.raises(UsageError, match=r"^cat\.csv: t_cool_gyr missing .*image_id b\)"):
            log10_tcool_targets(cat.assign(t_cool_gyr=bad), "cat.csv")
    with pytest.raises(UsageError, match=r"^cat\.csv: no t_cool_gyr column"):
        log10_tcool_targets(cat.drop(columns="t_cool_gyr"), "cat.csv")
    images, labels = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    targets = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    rows = np.array([4, 1, 2])
    x, y = next(iter(make_loader(images, labels, 8, shuffle_seed=None, rows=rows)))
    x3, y3, t3 = next(
        iter(make_loader(images, labels, 8, shuffle_seed=None, rows=rows, targets=targets))
    )
    assert torch.equal(x, x3) and torch.equal(y, y3) and torch.equal(y, labels[rows])
    np.testing.assert_allclose(t3.numpy(), targets[rows], rtol=1e-7)


# --------------------------------------------------------------------------- ensemble
def test_mixture_moments_against_monte_carlo_and_total_variance() -> None:
    rng = np.random.default_rng(0)
    mu_k = np.array([0.2, 0.5, -0.1, 0.9, 0.35])
    sigma_k = np.array([0.3, 0.1, 0.25, 0.4, 0.2])
    mu, sigma = mixture_moments(mu_k[:, None], sigma_k[:, None], axis=0)
    n = 1_000_000
    comp = rng.integers(0, 5, n)  # a fold model, then a value from its Gaussian
    draws = rng.normal(mu_k[comp], sigma_k[comp])
    se_mean = draws.std() / math.sqrt(n)
    assert abs(mu[0] - draws.mean()) < 5 * se_mean
    var_mc = draws.var()
    se_var = math.sqrt((np.mean((draws - draws.mean()) ** 4) - var_mc**2) / n)
    assert abs(sigma[0] ** 2 - var_mc) < 5 * se_var
    # law of total variance, written out: E[Var] + Var[E]
    hand = sum(s**2 for s in sigma_k) / 5 + sum((m - mu_k.mean()) ** 2 for m in mu_k) / 5
    assert sigma[0] ** 2 == pytest.approx(hand, rel=1e-12)
    one_mu, one_sigma = mixture_moments(mu_k[:1, None], sigma_k[:1, None])
    assert one_mu[0] == mu_k[0] and one_sigma[0] == pytest.approx(sigma_k[0])


def test_prediction_table_combines_the_folds() -> None:
    truth = [(1.0, "CC"), (2.0, "WCC"), (10.0, "NCC")]
    items = [
        MapInput("", f"m{i}", array=np.zeros((4, 4)), label=c, t_cool_gyr=t, cluster_id=f"c{i}")
        for i, (t, c) in enumerate(truth)
    ]
    fold_tcool = np.array([[[0.1, 0.2], [0.95, 0.1]], [[0.3, 0.2], [0.85, 0.3]]])  # (F, map, 2)
    batch = PredictionBatch(
        start=0,
        items=items,
        ok=[0, 2],
        images=np.zeros((2, 4, 4), np.float32),
        errors={1: "m1: broken"},
        warnings=[],
        fold_probs=np.full((2, 2, 3), 1 / 3),
        fold_boxes=np.zeros((2, 2, 4)),
        fold_tcool=fold_tcool,
    )
    table = PredictionTable(items)
    table.add(batch)
    frame = table.frame()
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    cols = list(PREDICTION_COLUMNS)
    assert cols.index("log10_tcool") + 3 == cols.index("t_cool_gyr")
    np.testing.assert_allclose(frame["log10_tcool"], [0.2, np.nan, 0.9])
    np.testing.assert_allclose(  # sqrt(mean sigma^2 + mean (mu - mean)^2)
        frame["log10_tcool_sigma"], [math.sqrt(0.04 + 0.01), np.nan, math.sqrt(0.05 + 0.0025)]
    )
    assert frame["predicted_from_tcool"].tolist() == ["WCC", "", "NCC"]  # 1.58 and 7.94 Gyr
    reg = catalog_metrics(items, frame)["regression"]  # maps 0 and 2: residuals -0.2, 0.1
    assert reg["n"] == 2 and reg["bias_dex"] == pytest.approx(-0.05)
    without = PredictionTable(items)
    without.add(PredictionBatch(**{**batch.__dict__, "fold_tcool": None}))
    f2 = without.frame()
    assert f2["log10_tcool"].isna().all() and (f2["predicted_from_tcool"] == "").all()


# --------------------------------------------------------------------------- class
def test_class_from_the_predicted_time_follows_the_thresholds() -> None:
    t = np.array([t for t, _ in HAND_CASES])
    expected = [c for _, c in HAND_CASES]
    assert classes_from_log10_tcool(np.log10(t)).tolist() == expected
    assert classes_from_log10_tcool([0.0, np.log10(0.5), np.nan]).tolist() == ["CC", "CC", ""]
    catalog = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "cluster_id": ["1", "2", "3", "4"],
            "label": expected,
            "t_cool_gyr": t,
        }
    )
    probs = np.c_[np.full((4, 3), 1 / 3), np.log10(t), np.full(4, 0.2)]
    frame = predictions_frame(catalog, np.arange(4), probs, 0)
    assert frame["predicted_from_tcool"].tolist() == expected
    np.testing.assert_allclose(frame["t_cool_gyr"], t)
    assert list(frame.columns[-4:]) == [
        "log10_tcool",
        "log10_tcool_sigma",
        "t_cool_gyr",
        "predicted_from_tcool",
    ]
    plain = predictions_frame(catalog, np.arange(4), probs[:, :3], 0)
    assert "log10_tcool" not in plain and plain.columns[-1] == "predicted"
    no_truth = predictions_frame(catalog.drop(columns="t_cool_gyr"), np.arange(4), probs, 0)
    assert no_truth["t_cool_gyr"].isna().all()


# --------------------------------------------------------------------------- metrics
def test_regression_metrics_by_hand() -> None:
    y = np.zeros(5)
    mu = np.array([0.0, 0.5, 1.0, 1.5, 2.5])  # |residual| 0, 0.5, 1.0, 1.5, 2.5
    m = regression_metrics(y, mu, np.ones(5), n_boot=0)
    # z68 = 0.994458: 0 and 0.5 inside, 1.0 outside; z95 = 1.959964: all but 2.5
    assert m["n"] == 5 and m["coverage_68"] == 2 / 5 and m["coverage_95"] == 4 / 5
    r = [0.0, -0.5, -1.0, -1.5, -2.5]
    assert m["bias_dex"] == pytest.approx(-1.1)
    assert m["scatter_dex"] == pytest.approx(math.sqrt(sum((v + 1.1) ** 2 for v in r) / 4))
    assert m["mad_dex"] == pytest.approx(1.4826 * 0.5)  # |r - (-1)| = 1, .5, 0, .5, 1.5
    assert m["rms_dex"] == pytest.approx(math.sqrt(sum(v * v for v in r) / 5))
    # the interval edge: |r| = z sigma exactly counts as inside
    edge = regression_metrics([0.0], [0.994458], [1.0], n_boot=0)
    assert edge["coverage_68"] == 0.0  # 0.994458 > z68 = 0.99445788...
    # rows with a non-finite value are left out
    m2 = regression_metrics([0.0, np.nan, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0], n_boot=0)
    assert m2["n"] == 2 and m2["coverage_95"] == 0.5
    assert regression_metrics([], [], [], n_boot=0)["scatter_dex"] is None


def test_coverage_of_gaussian_draws_is_nominal() -> None:
    rng = np.random.default_rng(1)
    n = 20000
    mu = rng.normal(0.5, 0.4, n)
    sigma = rng.uniform(0.05, 0.5, n)
    y = rng.normal(mu, sigma)
    m = regression_metrics(y, mu, sigma, n_boot=0)
    for key, p in (("coverage_68", 0.68), ("coverage_95", 0.95)):
        assert abs(m[key] - p) < 4 * math.sqrt(p * (1 - p) / n), (key, m[key])
    assert m["scatter_dex"] == pytest.approx(np.sqrt(np.mean(sigma**2)), rel=0.03)


def test_cluster_bootstrap_against_a_brute_force_loop() -> None:
    rng = np.random.default_rng(2)
    clusters = np.repeat([f"c{i}" for i in range(12)], 3)
    y, mu = rng.normal(0, 0.5, 36), rng.normal(0, 0.5, 36)
    sigma = rng.uniform(0.2, 0.8, 36)
    m = regression_metrics(y, mu, sigma, cluster_id=clusters, n_boot=200, seed=4)
    order = np.unique(clusters)  # clusters in sorted order, as the bootstrap indexes them
    mult = cluster_multiplicities(len(order), 200, 4)
    scatter, cov68 = [], []
    for b in range(200):
        rows = np.concatenate(
            [
                np.flatnonzero(clusters == c).repeat(int(k))
                for c, k in zip(order, mult[b], strict=True)
            ]
        )
        r = y[rows] - mu[rows]
        scatter.append(r.std(ddof=1))
        cov68.append(np.mean(np.abs(r) <= 0.9944578832097535 * sigma[rows]))
    np.testing.assert_allclose(m["scatter_dex_ci"], percentile_interval(np.array(scatter), 0.95))
    np.testing.assert_allclose(m["coverage_68_ci"], percentile_interval(np.array(cov68), 0.95))


def test_concentration_regression_against_lstsq() -> None:
    rng = np.random.default_rng(3)
    c = 10 ** rng.uniform(-1.5, -0.3, 30)
    y = 0.2 - 1.3 * np.log10(c) + rng.normal(0, 0.1, 30)
    blocks = np.arange(30).reshape(3, 10)  # fold k tests on block k, validates on k + 1
    folds = [(blocks[(k + 2) % 3], blocks[(k + 1) % 3], blocks[k]) for k in range(3)]
    mu, sigma = concentration_regression(y, c, folds)
    for train, val, test in folds:
        fit = np.r_[train, val]
        a = np.c_[np.ones(fit.size), np.log10(c[fit])]
        coef, *_ = np.linalg.lstsq(a, y[fit], rcond=None)
        res = y[fit] - a @ coef
        np.testing.assert_allclose(mu[test], coef[0] + coef[1] * np.log10(c[test]), rtol=1e-10)
        np.testing.assert_allclose(sigma[test], math.sqrt(res @ res / (fit.size - 2)))
    c_bad = c.copy()
    c_bad[folds[0][2][0]] = 0.0  # no concentration: no prediction
    mu_bad, _ = concentration_regression(y, c_bad, folds)
    assert np.isnan(mu_bad[folds[0][2][0]]) and np.isfinite(np.delete(mu_bad, folds[0][2][0])).all()


def test_profile_regression_against_ridge_by_hand() -> None:
    """Ridge with an unpenalised intercept on standardised features, solved with NumPy."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 5)) * [1, 2, 3, 0.5, 1] + [0, 1, -2, 3, 0]
    y = x @ [0.3, -0.2, 0.1, 0.0, 0.5] + rng.normal(0, 0.1, 40)
    blocks = np.arange(40).reshape(4, 10)
    folds = [(blocks[(k + 2) % 4], blocks[(k + 1) % 4], blocks[k]) for k in range(4)]
    mu, sigma = profile_regression(y, x, folds, alpha=2.0)
    for train, val, test in folds:
        fit = np.r_[train, val]
        m, s = x[fit].mean(0), x[fit].std(0)
        z = (x[fit] - m) / s
        beta = np.linalg.solve(z.T @ z + 2.0 * np.eye(5), z.T @ (y[fit] - y[fit].mean()))
        res = y[fit] - (y[fit].mean() + z @ beta)
        np.testing.assert_allclose(mu[test], y[fit].mean() + ((x[test] - m) / s) @ beta, rtol=1e-9)
        np.testing.assert_allclose(sigma[test], math.sqrt(res @ res / (fit.size - 6)))
    x_bad = x.copy()
    x_bad[folds[0][2][0], 2] = np.nan  # no profile: no prediction
    mu_bad, _ = profile_regression(y, x_bad, folds)
    assert np.isnan(mu_bad[folds[0][2][0]]) and np.isfinite(np.delete(mu_bad, folds[0][2][0])).all()
    with pytest.raises(UsageError, match="profiles"):
        profile_regression(y, x[:, 0], folds)


# --------------------------------------------------------------------------- end to end
def test_cv_export_predict_with_the_head(tiny_sample, tmp_path) -> None:
    run, model = tmp_path / "cv", tmp_path / "model"
    res = run_cli_here(
        "cv", tiny_sample, *tiny_args(epochs=1, folds=3), "--set", "model.regression=true",
        "--variant", "baseline", "--out", run, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    pred = pd.read_csv(run / "predictions.csv")
    assert list(pred.columns[-4:]) == [
        "log10_tcool",
        "log10_tcool_sigma",
        "t_cool_gyr",
        "predicted_from_tcool",
    ]
    assert np.isfinite(pred["log10_tcool"]).all()
    assert (np.isfinite(pred["log10_tcool_sigma"]) & (pred["log10_tcool_sigma"] > 0)).all()
    catalog = pd.read_csv(tiny_sample / "catalog.csv", dtype={"image_id": str})
    truth = catalog.set_index("image_id")["t_cool_gyr"]
    np.testing.assert_allclose(pred["t_cool_gyr"], truth.loc[pred["image_id"].astype(str)], 1e-5)
    block = json.loads((run / "metrics.json").read_text())["regression"]
    assert block["network"]["n"] == len(pred) and block["concentration"]["n"] == len(pred)
    assert 0 <= block["network"]["coverage_68"] <= block["network"]["coverage_95"] <= 1
    assert block["profile"]["n"] == len(pred)
    # each fold's sigma factor: the Gaussian likelihood's maximum on its validation maps,
    # by a loop over the rows; the scaled coverage counted by hand
    scales, covered, cols = [], 0, ["t_cool_gyr", "log10_tcool", "log10_tcool_sigma"]
    for k in range(3):
        val = pd.read_csv(run / f"fold_{k:02d}" / "val_predictions.csv")
        z2 = [((math.log10(t) - m) / s) ** 2 for t, m, s in val[cols].itertuples(index=False)]
        scales.append(math.sqrt(sum(z2) / len(z2)))
        info = json.loads((run / f"fold_{k:02d}" / "fold.json").read_text())
        assert info["tcool_sigma_scale"] == pytest.approx(scales[k], rel=1e-4)
        test = pred[pred["fold"] == k]
        for t, m, s in test[cols].itertuples(index=False):
            covered += abs(math.log10(t) - m) <= 0.994458 * s * scales[k]
    assert block["network_scaled"]["sigma_scale"] == pytest.approx(scales, rel=1e-9)
    assert block["network_scaled"]["coverage_68"] == pytest.approx(covered / len(pred))
    assert block["network_scaled"]["scatter_dex"] == block["network"]["scatter_dex"]
    from coolcore.apps.inference import load_model  # predict multiplies each fold's sigma

    loaded = load_model(run, device="cpu")
    assert loaded.sigma_scales == pytest.approx(scales, rel=1e-4)
    x = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    _, _, tcool = loaded.forward(x)
    with torch.inference_mode():
        for k, net in enumerate(loaded.nets):
            raw = net(torch.from_numpy(x)[:, None]).tcool_sigma.double().numpy()
            np.testing.assert_allclose(tcool[k, :, 1], raw * loaded.sigma_scales[k], rtol=1e-6)
    # benchmarks/add_baselines.py gives a run made without the profile baseline the same block
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "add_baselines.py"
    spec = importlib.util.spec_from_file_location("add_baselines", path)
    add = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(add)
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["regression"]["profile"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert add.main([str(tiny_sample), str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["regression"] == block
    assert run_cli_here("export", run, "--out", model, cwd=tmp_path).returncode == 0
    out = tmp_path / "preds.csv"
    maps = sorted((tiny_sample / "images").glob("*.fits"))[:2]
    res = run_cli_here("predict", model, *maps, "--out", out, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = pd.read_csv(out)
    assert list(got.columns) == list(PREDICTION_COLUMNS)
    assert np.isfinite(got["log10_tcool"]).all() and (got["log10_tcool_sigma"] > 0).all()
    assert got["predicted_from_tcool"].isin(CLASS_NAMES).all()


def test_cv_with_the_head_refuses_a_catalogue_without_cooling_times(tiny_sample, tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    catalog = pd.read_csv(tiny_sample / "catalog.csv")
    catalog["file"] = [str(tiny_sample / f) for f in catalog["file"]]
    catalog.drop(columns="t_cool_gyr").to_csv(data / "catalog.csv", index=False)
    res = run_cli_here(
        "cv", data, *tiny_args(), "--set", "model.regression=true", "--out", tmp_path / "cv",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "catalog.csv: no t_cool_gyr column" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "cv").exists() and not (tmp_path / "cv.partial").exists()


def test_cooling_time_head_starts_at_its_stated_prior() -> None:
    # zero weights and a fixed bias: mu = 0.5 dex and sigma = 0.5 dex for any map, so
    # the first Gaussian likelihoods are of order one (a random head gave hundreds)
    from coolcore.nn.model import MultiBranchAttentionNet
    from coolcore.nn.tcool import TCOOL_INIT_MU_DEX, TCOOL_INIT_SIGMA_DEX

    torch.manual_seed(0)
    net = MultiBranchAttentionNet("all", regression=True).eval()
    with torch.no_grad():
        out = net(torch.rand(4, 1, 64, 64))
    assert torch.allclose(out.tcool_mu, torch.full((4,), TCOOL_INIT_MU_DEX))
    assert torch.allclose(out.tcool_sigma, torch.full((4,), TCOOL_INIT_SIGMA_DEX), atol=1e-6)
    # the likelihood of a 1 Gyr and a 50 Gyr cluster, by hand
    y = torch.tensor([0.0, math.log10(50.0)])
    want = np.mean([0.5 * ((v - 0.5) / 0.5) ** 2 + math.log(0.5) for v in y.tolist()])
    assert gaussian_nll(out.tcool_mu[:2], out.tcool_sigma[:2], y).item() == pytest.approx(
        want, rel=1e-6
    )
