"""The GPT: its parameter and FLOP counts are exact, it is causal, a sliding window is exactly
banded attention, and decoding with the cache gives the tokens of full recomputation."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from scaling.config import BOS, GPTConfig
from scaling.model import GPT, KVCache, sliding_window_attention

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


def banded_attention(q, k, v, window):
    """The reference: dense attention with an explicit T×T causal band mask."""
    position = torch.arange(q.size(2))
    distance = position.view(-1, 1) - position.view(1, -1)
    band = (distance >= 0) & (distance < window)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=band)


@pytest.mark.parametrize("seq_len, window", [(64, 16), (37, 8), (100, 32), (12, 16), (20, 1)])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_sliding_window_attention_equals_dense_attention_with_a_banded_mask(
    seq_len, window, dtype, tolerance
):
    torch.manual_seed(seq_len)
    q, k, v = (torch.randn(2, 3, seq_len, 8, dtype=dtype, requires_grad=True) for _ in range(3))
    out = sliding_window_attention(q, k, v, window)
    reference = banded_attention(q, k, v, window)
    assert torch.allclose(out, reference, atol=tolerance, rtol=0)
    grad = torch.randn_like(out)
    for ours, theirs in zip(
        torch.autograd.grad(out, (q, k, v), grad),
        torch.autograd.grad(reference, (q, k, v), grad),
        strict=True,
    ):
        assert torch.allclose(ours, theirs, atol=tolerance, rtol=0)


def test_a_sliding_window_model_sees_only_its_window():
    # Two layers of window 8 see 2·(8 - 1) = 14 tokens back, and no further.
    torch.manual_seed(0)
    model = GPT(GPTConfig(2, 64, 4, 64, window=8)).eval()
    idx = torch.randint(0, 256, (1, 64))
    changed = idx.clone()
    changed[0, 10] = (changed[0, 10] + 1) % 256
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert not torch.allclose(a[0, 10:25], b[0, 10:25], atol=1e-5)
    assert torch.allclose(a[0, 25:], b[0, 25:], atol=1e-5)


def varied_model(window: int | None) -> GPT:
    """A random GPT with wide weights, so that greedy decoding does not settle into repeating
    one token and a cache mistake has many chances to change the output."""
    torch.manual_seed(1)
    model = GPT(GPTConfig(2, 64, 4, 96, window=window)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("window", [None, 8])
def test_greedy_decoding_with_the_cache_gives_the_tokens_of_full_recomputation(window):
    model = varied_model(window)
    prompt = torch.randint(0, 256, (2, 12))  # longer than the window: the ring wraps at once
    cached = model.generate(prompt, 84, temperature=0)
    recomputed = model.generate(prompt, 84, temperature=0, use_cache=False)
    assert torch.equal(cached, recomputed)
    assert len(set(cached[0, 12:].tolist())) > 10


@pytest.mark.parametrize("window, capacity", [(8, 8), (None, 96)])
def test_a_sliding_window_cache_keeps_only_the_window(window, capacity):
    model = GPT(GPTConfig(2, 64, 4, 96, window=window)).eval()
    cache = KVCache(model.config)
    with torch.no_grad():
        model(torch.zeros(1, 40, dtype=torch.long), cache=cache)
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)
    assert cache.length == 41
    assert cache.keys[0].shape == (1, 4, capacity, 16)


def test_seeded_sampling_is_reproducible():
    model = varied_model(window=8)
    prompt = torch.full((1, 1), BOS)

    def sample(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return model.generate(prompt, 60, temperature=0.8, top_k=40, generator=generator).tolist()

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_generation_past_the_trained_context_is_refused():
    model = varied_model(window=None)
    with pytest.raises(ValueError, match="= 97 exceeds the context of 96 the model was trained"):
        model.generate(torch.zeros(1, 5, dtype=torch.long), 92)


def test_generation_stops_at_the_stop_token():
    model = varied_model(window=None)
    prompt = torch.randint(0, 256, (1, 12))
    first = model.generate(prompt, 5, temperature=0)[0, 12].item()
    stopped = model.generate(prompt, 50, temperature=0, stop_token=first)
    assert stopped.shape == (1, 13) and stopped[0, -1].item() == first
