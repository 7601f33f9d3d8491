"""Precision (issue 13, item 1): bf16 where the CPU has it, fp32 elsewhere, and
deterministic bf16 training that repeats itself exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coolcore.errors import UsageError
from coolcore.train import hardware
from coolcore.train.config import load_config
from coolcore.train.fit import fit_fold
from coolcore.train.hardware import Hardware, cpu_has_native_bf16, resolve_precision

# Abridged /proc/cpuinfo texts (one processor each; real files repeat the block per core).
INTEL_SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
AMD_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9354 32-Core Processor
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 avx512_vbmi2
"""
AMD_ZEN2_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 avx avx2 fma bmi2 sha_ni
"""
INTEL_SKYLAKE_AVX512 = """processor\t: 0
model name\t: Intel(R) Xeon(R) CPU @ 2.00GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni
"""
ARM_BF16 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16 i8mm
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (INTEL_SAPPHIRE_RAPIDS, True),
        (AMD_ZEN4, True),
        (AMD_ZEN2_AVX2, False),
        (INTEL_SKYLAKE_AVX512, False),  # AVX-512 without its BF16 extension
        (ARM_BF16, False),  # only the x86 flags are looked for
        ("flags\t\t: fpu avx512_bf16x\n", False),  # whole flags only
        ("model name\t: avx512_bf16 lookalike\n", False),  # only on a flags line
        ("", False),
    ],
)
def test_native_bf16_detected_from_cpu_flags(text: str, expected: bool) -> None:
    assert cpu_has_native_bf16(text) is expected


def test_native_bf16_of_this_machine_reads_proc_cpuinfo() -> None:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    flags = {
        flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()
    }
    assert cpu_has_native_bf16() is bool(flags & {"amx_bf16", "avx512_bf16"})


@pytest.mark.parametrize(
    "requested, accelerator, cuda, cuda_bf16, cpu_bf16, expected",
    [
        # explicit requests are kept, whatever the hardware
        ("32", "cpu", False, False, True, "32-true"),
        ("32", "gpu", True, True, True, "32-true"),
        ("bf16-mixed", "cpu", False, False, False, "bf16-mixed"),
        ("16-mixed", "gpu", True, True, False, "16-mixed"),
        # auto on a CPU: bf16 only where it is native
        ("auto", "cpu", False, False, True, "bf16-mixed"),
        ("auto", "cpu", False, False, False, "32-true"),
        ("auto", "cpu", True, True, False, "32-true"),  # a GPU is there but not asked for
        ("auto", "auto", False, False, True, "bf16-mixed"),
        ("auto", "auto", False, False, False, "32-true"),
        # auto on a CUDA GPU: bf16 where the GPU supports it
        ("auto", "auto", True, True, False, "bf16-mixed"),
        ("auto", "gpu", True, True, False, "bf16-mixed"),
        ("auto", "cuda", True, False, True, "32-true"),
        ("auto", "gpu", False, False, True, "32-true"),  # no GPU: Lightning refuses anyway
        # other accelerators: fp32
        ("auto", "mps", False, False, True, "32-true"),
    ],
)
def test_resolve_precision_table(
    monkeypatch, requested, accelerator, cuda, cuda_bf16, cpu_bf16, expected
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda text=None: cpu_bf16)
    assert resolve_precision(requested, accelerator) == expected


def test_resolve_precision_refuses_unknown_values() -> None:
    with pytest.raises(UsageError, match="precision 'fp8': must be one of auto, 32"):
        resolve_precision("fp8", "cpu")


def _fit_tiny(tmp_path, precision: str, name: str) -> tuple[np.ndarray, dict]:
    """One epoch of the baseline on 24 random 32 px maps (12 train, 6 val, 6 test)."""
    cfg = load_config(
        "demo",
        [
            "preprocess.crop=64",
            "preprocess.size=32",
            "model.variant=baseline",
            "model.aux_size=32",
            "train.epochs=1",
            "train.batch_size=4",
            "train.deterministic=true",
            f"train.precision={precision}",
        ],
    )
    g = torch.Generator().manual_seed(0)
    images = torch.rand(24, 1, 32, 32, generator=g)
    labels = np.arange(24) % 3
    split = (np.arange(12), np.arange(12, 18), np.arange(18, 24))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = fit_fold(
            images,
            labels,
            split,
            cfg,
            tmp_path / name,
            seed=7,
            hardware=Hardware(accelerator="cpu"),
            progress=False,
        )
    finally:
        torch.set_num_threads(before)
    assert result is not None
    probs, info, val_probs = result
    # the validation maps are predicted by the same model: (6, 3) probabilities
    assert val_probs.shape == (6, 3)
    np.testing.assert_allclose(val_probs.sum(axis=1), 1.0, rtol=1e-5)
    return probs, info


def test_deterministic_bf16_training_repeats_exactly(tmp_path) -> None:
    first, info = _fit_tiny(tmp_path, "bf16-mixed", "a")
    again, _ = _fit_tiny(tmp_path, "bf16-mixed", "b")
    assert info["precision"] == "bf16-mixed"
    assert np.array_equal(first, again)
    # bf16 was really used: fp32 training from the same start ends elsewhere
    fp32, info32 = _fit_tiny(tmp_path, "32", "c")
    assert info32["precision"] == "32-true"
    difference = np.abs(first - fp32).max()
    assert 0 < difference < 0.2, difference
    np.testing.assert_allclose(first.sum(axis=1), 1.0, rtol=1e-6)


# --------------------------------------------------------------------------- allocator
_MMAPPED_BLOCKS = r"""
import ctypes, sys
import torch
from coolcore.train.hardware import tune_allocator

class MallInfo2(ctypes.Structure):  # glibc >= 2.33, malloc.h
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
state = tune_allocator() if sys.argv[1] == "tuned" else {"tuned": False}
before = libc.mallinfo2().hblks
big = torch.empty(64 << 20, dtype=torch.uint8)  # 64 MiB, above glibc's largest mmap threshold
big.fill_(1)
print(int(state["tuned"]), libc.mallinfo2().hblks - before)
"""


def _glibc_with_mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc 2.33 or newer")
def test_tuned_allocator_serves_large_blocks_from_the_heap() -> None:
    # glibc's own count of mmapped blocks (mallinfo2().hblks) is the reference: a
    # 64 MiB tensor adds one mmapped block by default and none with COOLCORE_MALLOC=reuse
    import subprocess
    import sys

    def blocks(mode: str, **env: str) -> tuple[int, int]:
        import os

        out = subprocess.run(
            [sys.executable, "-c", _MMAPPED_BLOCKS, mode],
            capture_output=True,
            text=True,
            check=True,
            env={
                **{k: v for k, v in os.environ.items() if k != "COOLCORE_MALLOC"},
                "OMP_NUM_THREADS": "1",
                **env,
            },
        ).stdout.split()
        return int(out[0]), int(out[1])

    assert blocks("default") == (0, 1)
    assert blocks("tuned", COOLCORE_MALLOC="reuse") == (1, 0)
    # off unless asked for: tune_allocator leaves glibc as it is
    assert blocks("tuned") == (0, 1)
    assert blocks("tuned", COOLCORE_MALLOC="system") == (0, 1)


def test_allocator_state_reports_what_was_done() -> None:
    state = hardware.tune_allocator()
    assert set(state) == {"tuned", "how"}
    assert hardware.allocator_state() == state
    if state["tuned"]:
        assert "glibc" in state["how"] and "1 GiB" in state["how"]
