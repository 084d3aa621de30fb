"""The GPT: its parameter and FLOP counts are exact, and it is causal."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from scaling.config import GPTConfig
from scaling.model import GPT

SHAPES = [(1, 32, 2, 64), (2, 64, 4, 128), (4, 128, 4, 256), (2, 256, 4, 1024), (3, 96, 3, 512)]


@pytest.mark.parametrize("n_layer, d_model, n_head, seq_len", SHAPES)
def test_parameter_counts_match_the_module(n_layer, d_model, n_head, seq_len):
    config = GPTConfig(n_layer, d_model, n_head, seq_len)
    model = GPT(config)
    assert model.count_params(non_embedding=True) == config.params
    assert model.count_params(non_embedding=False) == config.params_total
    # Kaplan's approximation, 12·L·d², is what `params` reduces to for wide models.
    assert config.params == pytest.approx(12 * n_layer * d_model**2, rel=0.05)


@pytest.mark.parametrize("n_layer, d_model, n_head, seq_len", SHAPES)
def test_flops_per_token_match_torch_flop_counter(n_layer, d_model, n_head, seq_len):
    config = GPTConfig(n_layer, d_model, n_head, seq_len)
    model = GPT(config)
    batch = 2
    idx = torch.randint(0, config.vocab_size, (batch, seq_len))
    # The math backend spells attention as matmuls, which FlopCounterMode counts; the fused
    # CPU kernel has no FLOP formula registered. Same arithmetic either way.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(idx, idx)
        loss.backward()
    measured = counter.get_total_flops() / (batch * seq_len)
    assert measured == pytest.approx(config.flops_per_token(), rel=0.05)


def test_attention_is_a_growing_share_of_flops_with_sequence_length():
    config = GPTConfig(4, 128, 4, 4096)
    dense = 6 * config.matmul_params
    # 12·L·d·T overtakes the 72·L·d² of the blocks' matmuls at T = 6·d.
    assert config.flops_per_token(6 * 128) - dense == pytest.approx(72 * 4 * 128**2)


def test_the_model_is_causal():
    torch.manual_seed(0)
    model = GPT(GPTConfig(2, 64, 4, 32)).eval()
    idx = torch.randint(0, 256, (1, 32))
    changed = idx.clone()
    changed[0, 20:] = (changed[0, 20:] + 1) % 256
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.allclose(a[0, :20], b[0, :20], atol=1e-5)
    assert not torch.allclose(a[0, 20:], b[0, 20:], atol=1e-5)


def test_embedding_and_head_are_tied():
    model = GPT(GPTConfig(1, 32, 2, 16))
    assert model.lm_head.weight is model.wte.weight


def test_a_sequence_longer_than_the_context_is_refused():
    model = GPT(GPTConfig(1, 32, 2, 16))
    with pytest.raises(ValueError, match="exceeds the context of 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
