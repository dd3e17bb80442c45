"""The GPU benchmark's CPU-checkable parts: the ratios it derives, and a clear refusal without a GPU."""

from __future__ import annotations

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.gpu.run import ratios


def test_ratios_compare_deca_with_full_adam_and_the_papers_claims():
    # Prepare: 10 blocks, DECA at half of full Adam's peak and twice its speed
    deca = {"num_blocks": 10, "bf16_weight_bytes": 100,
            "bottom_block": {"peak_allocated_bytes": 50, "tokens_per_s": 200.0, "tensor_memory_bytes": {"total": 150}}}
    full = {"peak_allocated_bytes": 100, "tokens_per_s": 100.0}
    # Execute
    result = ratios(deca, full)
    # Assert: the paper's (1 + 10/B) / 9 and 1 + 10/B at B = 10
    assert result["peak_memory_deca_over_full_adam"] == 0.5 and result["tokens_per_s_deca_bottom_over_full_adam"] == 2
    assert result["paper_claim_deca_over_full_adam"] == pytest.approx(2 / 9) and result["paper_claim_deca_over_M"] == 2
    assert result["deca_tensor_memory_over_M"] == 1.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_the_command_says_so_and_writes_nothing(tmp_path, capsys):
    assert main(["gpu", str(tmp_path / "out")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err and not (tmp_path / "out").exists()
