"""``coolcore bench``: FLOP counting, the interleaved timer, the JSON, and the exact speed paths.

The benchmark's numbers are machine-dependent; what is tested is that they are
computed the way the docs say (FLOPs against torchvision's published count and
the convolution formula, medians and paired ratios by hand) and that the fast
paths of the network (boxes from row / column profiles, the CPU crop through
``grid_sample``) give the results of the slow ones they replace, checked
against brute-force NumPy references.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from torchvision.models import ResNet18_Weights
from torchvision.ops import roi_align

from coolcore.bench import suite as bench
from coolcore.bench.cost import bench_prepare, bench_step_times
from coolcore.bench.cvestimate import estimate_cv_minutes
from coolcore.bench.networks import _autocast, network_flops
from coolcore.bench.slow import bench_cv_memory, bench_simulate
from coolcore.bench.suite import format_table, run_bench, write_json
from coolcore.bench.timing import (
    Setting,
    gemm_flops,
    model_flops,
    paired_ratio,
    resnet18_flops,
    time_interleaved,
)
from coolcore.cli.bench import main as bench_main
from coolcore.nn.masks import crop_and_resize, profile_boxes, threshold_profiles
from coolcore.nn.model import MultiBranchAttentionNet
from coolcore.train import hardware
from coolcore.train.config import load_config

TINY = (Setting("paper", 64, 2, None), Setting("cpu", 64, 2, 32))
TOP_KEYS = (
    "train_ratio",
    "infer_ratio",
    "train_ratio_bf16",
    "infer_ratio_bf16",
    "gemm_share",
    "data_share",
    "simulate_s",
    "cv_peak_mem_gb",
    "bf16_train_speedup",
    "bf16_infer_speedup",
    "cv_minutes_cpu",
    "cv_minutes_cpu_note",
    "prepare_s_per_map",
)
# the cpu preset at the tiny settings' size (its folds, epochs and sample as shipped)
TINY_COST = ("preprocess.size=64", "model.aux_size=32", "train.batch_size=2")


# --------------------------------------------------------------------------- FLOPs
def test_resnet18_flops_are_twice_torchvision_multiply_adds() -> None:
    # torchvision's meta "_ops" (1.814 "GFLOPS") counts multiply-adds at 224 px;
    # FlopCounterMode counts 2 FLOPs per multiply-add.
    mac = ResNet18_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9
    flops = resnet18_flops(224)
    assert flops == pytest.approx(2 * mac, rel=1e-3)
    # Convolutions and the head scale with the batch; conv FLOPs with the pixels.
    assert resnet18_flops(64, batch=3) == 3 * resnet18_flops(64)


def test_flop_convention_by_hand_for_a_convolution_and_a_matrix_product() -> None:
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    x = torch.zeros(2, 3, 10, 10)
    # 2 x (output elements) x (multiply-adds per output) = 2 x (2*8*10*10) x (3*3*3)
    assert model_flops(lambda: conv(x)) == 2 * (2 * 8 * 10 * 10) * (3 * 3 * 3)
    a = torch.zeros(32, 32)
    assert model_flops(lambda: torch.mm(a, a)) == gemm_flops(32) == 2 * 32**3


def test_training_flops_are_three_forwards_less_the_first_convolution_input_gradient() -> None:
    # Backward of a convolution or linear layer costs two forwards (input and
    # weight gradients); the first convolution needs no input gradient.
    size = 64
    f = network_flops(Setting("t", size, 2, None))
    conv1 = 2 * 64 * 3 * 7 * 7 * (size // 2) ** 2 / 1e9
    assert f["resnet18_infer"] == pytest.approx(resnet18_flops(size) / 1e9, rel=1e-12)
    assert f["resnet18_train"] == pytest.approx(3 * f["resnet18_infer"] - conv1, rel=1e-9)
    # two trunks (the auxiliary one at the input size) plus heads and the CAM
    assert f["all_infer"] == pytest.approx(2 * f["resnet18_infer"], rel=2e-3)
    assert f["all_train"] == pytest.approx(2 * f["resnet18_train"], rel=2e-3)


# --------------------------------------------------------------------------- timing
def test_time_interleaved_warms_up_then_alternates_the_order() -> None:
    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = time_interleaved(fns, repeats=3, warmup=2)
    assert calls == ["a", "b", "a", "b"] + ["a", "b", "b", "a", "a", "b"]
    assert set(times) == {"a", "b"} and all(len(t) == 3 for t in times.values())
    assert all(t >= 0 for t in times["a"] + times["b"])
    with pytest.raises(ValueError):
        time_interleaved(fns, repeats=0)


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    # per round: 2/1, 4/1, 9/3 -> 2, 4, 3 -> median 3 (the ratio of medians would be 4/1)
    assert paired_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == pytest.approx(3.0)
    assert paired_ratio([1.0, 3.0], [1.0, 1.0]) == pytest.approx(2.0)  # even count: mean of two
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])


# --------------------------------------------------------------------------- the run
def _tiny_run(**kwargs):
    return run_bench(
        quick=True,
        repeats=1,
        settings=TINY,
        data_setting=TINY[1],
        data_batches=2,
        gemm_n=64,
        cost_overrides=TINY_COST,
        **kwargs,
    )


@pytest.fixture(scope="module")
def tiny_result() -> dict:
    """One quick tiny run shared by the tests of this module (about 25 s on 2 cores), on a
    CPU taken to lack native bf16 whatever this one has."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hardware, "cpu_has_native_bf16", lambda cpuinfo_text=None: False)
        return _tiny_run()


def test_quick_run_has_the_numbers_and_nulls_the_slow_parts(tiny_result, tmp_path) -> None:
    result = tiny_result
    for key in TOP_KEYS:
        assert key in result
    for key in ("train_ratio", "infer_ratio", "gemm_share", "data_share"):
        assert math.isfinite(result[key]) and result[key] > 0
    assert result["simulate_s"] is None and result["cv_peak_mem_gb"] is None
    assert result["targets"]["simulate_s"]["met"] is None
    assert result["targets"]["train_ratio"]["bound"] == "<= 2.15"
    assert isinstance(result["targets"]["train_ratio"]["met"], bool)
    assert result["data"]["data_share"] < 1.0  # loading is part of the epoch
    assert set(result["models"]) == {"paper", "cpu"}
    # gemm_share is a ratio of rates: FLOPs counted for the setting's batch
    g = result["gemm"]
    assert g["resnet18_gflop"] == pytest.approx(resnet18_flops(64) / 1e9)
    m = result["machine"]
    for key in ("cpu", "cores", "torch", "torch_threads", "load_average_start", "load_average_end"):
        assert key in m
    path = write_json(result, tmp_path / "sub" / "bench.json")
    loaded = json.loads(path.read_text())
    assert loaded["simulate_s"] is None and loaded["train_ratio"] == result["train_ratio"]
    table = format_table(result)
    assert "skipped" in table and "train step" in table and "inference" in table


def test_cli_quick_writes_json_and_rejects_bad_arguments(
    tiny_result, tmp_path, monkeypatch, capsys
) -> None:
    asked = {}

    def tiny(**kwargs):  # the measurement itself is tested above: reuse its result
        asked.update(kwargs)
        return {**tiny_result, "quick": kwargs["quick"]}

    monkeypatch.setattr(bench, "run_bench", tiny)
    out = tmp_path / "b.json"
    assert bench_main(["--quick", "--repeats", "1", "--json", str(out), "--no-progress"]) == 0
    data = json.loads(out.read_text())
    assert asked["quick"] is True and asked["repeats"] == 1
    assert data["quick"] is True and data["cv_peak_mem_gb"] is None
    assert "ratio" in capsys.readouterr().out

    assert bench_main(["--quick", "--device", "nonsense"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device nonsense" in err
    assert bench_main(["--quick", "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bench_main(["--repeats", "0"])
    assert exc.value.code == 2


def test_simulate_timing_reports_the_sample(tmp_path) -> None:
    info = bench_simulate(tmp_path, n_clusters=3, size_px=32, workers=1)
    assert info["maps"] == 9 and info["simulate_s"] > 0
    assert len(list((tmp_path / "images").iterdir())) == 9


@pytest.mark.slow
def test_cv_memory_of_a_tiny_run(tmp_path) -> None:
    bench_simulate(tmp_path / "data", n_clusters=30, size_px=64, workers=1)
    info = bench_cv_memory(
        tmp_path / "data",
        overrides=[
            "train.epochs=1",
            "cv.folds=3",
            "train.batch_size=4",
            "preprocess.crop=64",
            "model.aux_size=32",
        ],
    )
    # torch alone takes a few hundred MB; a tiny run stays far below 4 GB
    assert 0.1 < info["cv_peak_mem_gb"] < 4.0
    assert info["vmhwm_kb"] is not None


# --------------------------------------------------------------------------- cost per result
def test_bf16_keys_are_null_and_unmeasured_without_native_bf16(tiny_result) -> None:
    assert tiny_result["bf16_train_speedup"] is None
    assert tiny_result["bf16_infer_speedup"] is None
    steps = tiny_result["cost"]["steps"]
    assert steps["precisions"] == ["32-true"] and steps["auto_precision"] == "32-true"
    assert "not measured" in format_table(tiny_result)
    assert json.loads(json.dumps(tiny_result["bf16_train_speedup"])) is None
    # the network-to-ResNet ratios are not measured under bf16 either
    assert tiny_result["train_ratio_bf16"] is None and tiny_result["infer_ratio_bf16"] is None
    assert tiny_result["models_bf16"] is None
    assert tiny_result["targets"]["train_ratio_bf16"]["met"] is None
    assert tiny_result["targets"]["infer_ratio_bf16"]["bound"] == "<= 2.1"
    assert all(r["precision"] == "32-true" for r in tiny_result["models"].values())


def test_autocast_of_the_bench_is_bf16_only_when_asked() -> None:
    a = torch.ones(4, 4)
    cpu = torch.device("cpu")
    with _autocast(cpu, True):
        assert torch.mm(a, a).dtype == torch.bfloat16
    with _autocast(cpu, False):
        assert torch.mm(a, a).dtype == torch.float32
    with _autocast(cpu):  # default: bf16 on CUDA only
        assert torch.mm(a, a).dtype == torch.float32


def test_network_ratios_under_bf16_when_bf16_is_native(monkeypatch, tiny_result) -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda cpuinfo_text=None: True)
    fp32 = {"precision": "32-true"}
    r = bench._bench_bf16_ratios(TINY[0], fp32, 1, torch.device("cpu"), lambda _m: None)
    assert r["precision"] == "bf16-mixed" and r["setting"]["name"] == "paper"
    for key in ("train_ratio", "infer_ratio"):
        assert math.isfinite(r[key]) and r[key] > 0
    # one round each: the ratio is that round's network time over the ResNet's
    t = r["rounds_s"]["train"]
    assert r["train_ratio"] == pytest.approx(t["all"][0] / t["resnet18"][0])
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda cpuinfo_text=None: False)
    assert bench._bench_bf16_ratios(TINY[0], fp32, 1, torch.device("cpu"), print) is None
    # the table gains a bf16 row for it
    shown = format_table({**tiny_result, "models_bf16": r})
    assert "(paper, bf16)" in shown
    assert "(paper, bf16)" not in format_table(tiny_result)


def test_bf16_speedups_are_fp32_over_bf16_when_bf16_is_native(monkeypatch) -> None:
    # emulated bf16 is slow but runs: a tiny setting keeps it quick
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda cpuinfo_text=None: True)
    cfg = load_config("cpu", [*TINY_COST])
    steps = bench_step_times(cfg, repeats=1, warmup=0)
    assert steps["precisions"] == ["32-true", "bf16-mixed"]
    assert steps["auto_precision"] == "bf16-mixed"
    for key in ("bf16_train_speedup", "bf16_infer_speedup"):
        assert isinstance(steps[key], float) and math.isfinite(steps[key]) and steps[key] > 0
    assert steps["setting"] == {"size_px": 64, "batch": 2, "aux_size_px": 32}
    # one round: the speed-up is exactly the round's fp32 time over its bf16 time
    t = steps["train_step_s"]
    assert steps["bf16_train_speedup"] == pytest.approx(t["32-true"] / t["bf16-mixed"])
    assert "native bf16" in steps["bf16_how"]


def test_cv_minutes_recomputed_by_hand_from_the_step_times(tiny_result) -> None:
    r = tiny_result
    assert isinstance(r["cv_minutes_cpu"], float) and r["cv_minutes_cpu"] > 0
    assert "ESTIMATE" in r["cv_minutes_cpu_note"] and "ESTIMATED" in format_table(r)
    steps, est = r["cost"]["steps"], r["cost"]["cv_estimate"]
    train_s = steps["train_step_s"]["32-true"]
    infer_s = steps["infer_step_s"]["32-true"]
    overhead = r["cost"]["fold_overhead"]
    epochs = load_config("cpu")["train"]["epochs"]  # 16: the preset's recipe
    fold_overhead = (
        2 * overhead["build_s"]
        + epochs * (overhead["save_full_s"] + overhead["save_weights_s"])
        + overhead["load_s"]
    )
    # default sample: 954 maps; cpu preset: 5 folds; batch 2 here
    # 954 / 5 = 190.8 -> 191 validation and 191 test maps, 572 training maps (286 steps)
    assert (est["train_maps"], est["val_maps"], est["test_maps"]) == (572, 191, 191)
    epoch_s = 286 * train_s + 191 * infer_s / 2
    fold_s = epochs * epoch_s + 191 * infer_s / 2 + fold_overhead
    assert r["cv_minutes_cpu"] == pytest.approx(5 * fold_s / 60, rel=1e-12)
    assert r["cost"]["fold_overhead"]["fold_overhead_s"] == pytest.approx(fold_overhead)
    # trained in fp32 here: no second, fp32 estimate beside it
    assert est["precision"] == "32-true" and est["fp32"] is None
    # where the estimate is bf16, the fp32 one is shown beside it with their ratio
    bf16_est = {**est, "precision": "bf16-mixed", "fp32": {**est, "cv_minutes": 3.0}}
    shown = format_table(
        {**r, "cv_minutes_cpu": 2.0, "cost": {**r["cost"], "cv_estimate": bf16_est}}
    )
    assert "the same in fp32, ESTIMATED: 3.0 min, so bf16-mixed 1.50x faster" in shown


def test_cv_estimate_drops_a_last_batch_of_one_map() -> None:
    # 100 maps, 4 folds: 25 validation, 25 test, 50 training maps; batch 7 -> 7 full
    # batches and one of a single map, which is dropped: 7 steps
    est = estimate_cv_minutes(
        n_maps=100,
        folds=4,
        epochs=3,
        batch_size=7,
        train_step_s=2.0,
        infer_step_s=0.7,
        test_infer_step_s=1.4,
        fold_overhead_s=5.0,
    )
    assert est["train_steps_per_epoch"] == 7
    fold_s = 3 * (7 * 2.0 + 25 * 0.1) + 25 * 0.2 + 5.0
    assert est["cv_minutes"] == pytest.approx(4 * fold_s / 60)


def test_prepare_s_per_map_times_the_prediction_path(tiny_result) -> None:
    assert isinstance(tiny_result["prepare_s_per_map"], float)
    assert tiny_result["prepare_s_per_map"] > 0
    prep = bench_prepare(load_config("cpu"), map_px=300, repeats=1)
    assert prep["prepare_s_per_map"] > 0 and prep["output_shape"] == [1, 128, 128]
    assert (prep["map_px"], prep["crop_px"], prep["input_px"]) == (300, 256, 128)
    assert tiny_result["cost"]["prepare"]["map_px"] == 1000


# --------------------------------------------------------------------------- exact speed paths
def _bilinear_reference(image: np.ndarray, y: float, x: float) -> float:
    height, width = image.shape
    y = min(max(y, 0.0), height - 1.0)
    x = min(max(x, 0.0), width - 1.0)
    ya, xa = math.floor(y), math.floor(x)
    yb, xb = min(ya + 1, height - 1), min(xa + 1, width - 1)
    fy, fx = y - ya, x - xa
    top = image[ya, xa] * (1 - fx) + image[ya, xb] * fx
    bottom = image[yb, xa] * (1 - fx) + image[yb, xb] * fx
    return top * (1 - fy) + bottom * fy


def test_cpu_crop_of_small_boxes_matches_brute_force_and_roi_align() -> None:
    # Boxes no larger than the output: one bilinear sample at each output pixel's
    # centre, mapped into the box (the grid_sample path).
    rng = np.random.default_rng(5)
    for height, width, out_h, out_w in [(12, 9, 12, 10), (20, 16, 7, 5), (8, 8, 8, 8)]:
        images = rng.random((3, 2, height, width))
        boxes = []
        for _ in range(3):
            bw, bh = rng.integers(1, min(width, out_w) + 1), rng.integers(1, min(height, out_h) + 1)
            x0, y0 = rng.integers(0, width - bw + 1), rng.integers(0, height - bh + 1)
            boxes.append([x0, y0, x0 + bw - 1, y0 + bh - 1])
        crop = crop_and_resize(torch.from_numpy(images), torch.tensor(boxes), (out_h, out_w))
        for b, (x0, y0, x1, y1) in enumerate(boxes):
            sy, sx = (y1 + 1 - y0) / out_h, (x1 + 1 - x0) / out_w
            for c, i, j in itertools.product(range(2), range(out_h), range(out_w)):
                ref = _bilinear_reference(
                    images[b, c], y0 + (i + 0.5) * sy - 0.5, x0 + (j + 0.5) * sx - 0.5
                )
                assert crop[b, c, i, j].item() == pytest.approx(ref, abs=1e-10)
        rois = torch.cat(
            [torch.arange(3.0)[:, None], torch.tensor(boxes).double() + torch.tensor([0, 0, 1, 1])],
            dim=1,
        ).double()
        expected = roi_align(torch.from_numpy(images), rois, (out_h, out_w), 1.0, 0, True)
        torch.testing.assert_close(crop, expected, rtol=0, atol=1e-12)


def test_threshold_profiles_and_profile_boxes_match_numpy() -> None:
    rng = np.random.default_rng(6)
    maps = rng.normal(size=(5, 9, 13)).astype(np.float32)
    maps[0] = 2.0  # constant map: normalised to zeros
    for tau in (0.0, 0.3, 0.9, 1.0):
        rows, cols = threshold_profiles(torch.from_numpy(maps), tau)
        for b in range(len(maps)):
            m = maps[b].astype(np.float64)
            span = m.max() - m.min()
            norm = (m - m.min()) / span if span > 0 else np.zeros_like(m)
            mask = norm >= tau
            assert rows[b].tolist() == mask.any(axis=1).tolist()
            assert cols[b].tolist() == mask.any(axis=0).tolist()
            box = profile_boxes(rows[b : b + 1], cols[b : b + 1])[0].tolist()
            ys, xs = np.where(mask)
            expected = [0, 0, 12, 8] if ys.size == 0 else [xs.min(), ys.min(), xs.max(), ys.max()]
            assert box == expected


@pytest.mark.parametrize(
    ("variant", "combine"),
    [("att", "union"), ("gauss", "union"), ("all", "union"), ("all", "intersection")],
)
def test_forward_boxes_equal_the_full_mask_boxes_of_explain(variant: str, combine: str) -> None:
    # forward() takes the boxes from row/column profiles; explain() builds the
    # (B, H, W) masks of METHOD.md. Edge cases: a constant image, a hot pixel,
    # thresholds 0 and 1, a constant CAM (zero head weights).
    torch.manual_seed(0)
    x = torch.rand(4, 1, 64, 64)
    x[1] = 0.25
    x[2, 0, 3, 60] = 4.0
    for tau1, tau2 in [(0.7, 0.7), (0.0, 1.0), (1.0, 0.2), (0.4, 0.9)]:
        net = MultiBranchAttentionNet(variant, combine=combine, tau1=tau1, tau2=tau2).eval()
        with torch.no_grad():
            assert torch.equal(net(x).boxes, net.explain(x).boxes)
    with torch.no_grad():
        net.head_primary.weight.zero_()
        assert torch.equal(net(x).boxes, net.explain(x).boxes)
