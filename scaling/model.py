"""A decoder-only transformer (GPT), in the spirit of nanoGPT's model file.

Pre-LayerNorm blocks, causal self-attention through `scaled_dot_product_attention` (flash or
memory-efficient kernels where the device has them), dense or within a sliding window, learned
absolute positions, and the token embedding tied to the output head. No biases: they add little
and complicate the counts. Generation decodes one token at a time with a key/value cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scaling.config import GPTConfig


def sliding_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, scale: float | None = None
) -> torch.Tensor:
    """Causal attention in which each query sees itself and the `window`-1 keys before it,
    in O(T·window) time and memory: no T×T mask or score matrix is ever made.

    The sequence is cut into blocks of `window` queries. Every key a block's queries may see
    lies in that block or the one before, so each block attends to those 2·window keys and one
    (window, 2·window) band mask, the same for every block, picks out each query's window.
    """
    B, H, T, D = q.shape
    if T <= window:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    pad = -T % window  # padded at the end: no real query can see a padded key
    q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    blocks = (T + pad) // window
    # Blocks stand where heads stood, (B·H, blocks, window, D): the fused CPU and GPU kernels
    # take 4-D inputs only, and the one band mask below broadcasts over the first dimension.
    q, k, v = (t.reshape(B * H, blocks, window, D) for t in (q, k, v))
    # Each block's keys: the previous block (zeros before the first) followed by its own.
    k, v = (torch.cat([F.pad(t, (0, 0, 0, 0, 1, 0))[:, :-1], t], dim=2) for t in (k, v))
    query = torch.arange(window, device=q.device).view(window, 1)
    key = torch.arange(2 * window, device=q.device).view(1, 2 * window)
    # Key j of a block's 2·window lies query + window - j positions before query `query`:
    # visible when that distance is 0 (itself) up to window - 1.
    band = (key > query) & (key <= query + window)
    first_block = key >= window  # the first block has no block before it
    # 4-D, (1, blocks, window, 2·window): a 3-D mask sends SDPA to its slow math kernel.
    mask = torch.stack([band & first_block] + [band] * (blocks - 1)).unsqueeze(0)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return y.reshape(B, H, blocks * window, D)[:, :, :T]


class KVCache:
    """Each layer's keys and values of the tokens generated so far, for decoding one token at a
    time. Dense attention keeps the whole context; a sliding window keeps only its last `window`
    keys in a ring (the slot is the position modulo the window), so memory stays O(window).
    Slot order does not matter: a single query attends to every key it is given."""

    def __init__(self, config: GPTConfig):
        self.capacity = config.attention_span
        # Allocated at the first store, in the keys' own dtype (bf16 under autocast).
        self.keys: list[torch.Tensor | None] = [None] * config.n_layer
        self.values: list[torch.Tensor | None] = [None] * config.n_layer
        self.length = 0  # tokens seen: the next token's position

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Write the new tokens' keys and values; return every key and value now visible."""
        keys, values = self.keys[layer], self.values[layer]
        if keys is None or values is None:
            B, H, _, D = k.shape
            keys = self.keys[layer] = k.new_zeros(B, H, self.capacity, D)
            values = self.values[layer] = v.new_zeros(B, H, self.capacity, D)
        T = k.size(2)
        kept = min(T, self.capacity)  # of a long prompt, only the last window's keys matter
        positions = torch.arange(self.length + T - kept, self.length + T, device=k.device)
        slots = positions % self.capacity
        keys[:, :, slots] = k[:, :, T - kept :]
        values[:, :, slots] = v[:, :, T - kept :]
        filled = min(self.length + T, self.capacity)
        return keys[:, :, :filled], values[:, :, :filled]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.n_head = config.n_head
        self.window = config.window
        self.scale = config.attention_scale
        self.layer = layer
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None and cache.length > 0:
            # Decoding: one new query, attending to every cached key (all inside its window).
            assert T == 1, "decode one token at a time once the cache holds the prompt"
            k, v = cache.store(self.layer, k, v)
            y = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            if cache is not None:
                cache.store(self.layer, k, v)  # the prompt: attend as in training, then keep
            if self.window is None:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
            else:
                y = sliding_window_attention(q, k, v, self.window, self.scale)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, 4 * config.d_model, bias=False)
        self.proj = nn.Linear(4 * config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, bias=False)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.d_model, bias=False)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.seq_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, bias=False)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2·n_layer) so the residual stream's
        # variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        # µP: a hidden matrix's init variance goes as 1/fan_in, so relative to the base width
        # its std is 1/sqrt(width_mult) (scaled in place: the standard init draws as before).
        with torch.no_grad():
            for p in self.hidden_matrices():
                p.div_(math.sqrt(config.width_mult))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # The input-like weights: µP keeps their init and LR as at the base width. The output head
    # is the token table (tied), so under µP its logits are divided by width_mult instead.
    embedding_names = ("wte.weight", "wpe.weight")

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The matrices µP trains at the base LR divided by width_mult."""
        return [
            p
            for name, p in self.named_parameters()
            if p.dim() >= 2 and name not in self.embedding_names
        ]

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ):
        """Logits for every position; with `targets`, also the mean cross-entropy. With a
        `cache`, `idx` continues the tokens the cache holds (positions count on from there)."""
        start = cache.length if cache is not None else 0
        end = start + idx.size(1)
        if self.config.seq_len < end:
            raise ValueError(
                f"sequence of {end} tokens exceeds the context of {self.config.seq_len}"
            )
        pos = torch.arange(start, end, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x, cache)
        if cache is not None:
            cache.length = end
        logits = self.lm_head(self.ln_f(x))
        if self.config.width_mult != 1:
            logits = logits / self.config.width_mult  # µP's output multiplier
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def count_params(self, non_embedding: bool = True) -> int:
        """Counted from the module itself; a test holds `GPTConfig.params` to this."""
        total = sum(p.numel() for p in self.parameters())  # tied weights are yielded once
        if non_embedding:
            total -= self.wte.weight.numel() + self.wpe.weight.numel()
        return total

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        stop_token: int | None = None,
    ) -> torch.Tensor:
        """Continue `idx` (B, T) by up to `max_new_tokens`, one token at a time, stopping early
        once every row has produced `stop_token`. Temperature 0 is greedy. With `use_cache` each
        step runs only the new token through the network; without, every step recomputes the
        whole sequence (the reference the cache must match). The learned position table ends
        at `seq_len`, so the whole sequence must fit in it."""
        total = idx.size(1) + max_new_tokens
        if total > self.config.seq_len:
            raise ValueError(
                f"{idx.size(1)} prompt tokens + {max_new_tokens} new tokens = {total} exceeds the "
                f"context of {self.config.seq_len} the model was trained with"
            )
        cache = KVCache(self.config)
        new = idx if use_cache else None
        stopped = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            logits = self(new, cache=cache) if use_cache else self(idx)
            logits = logits[:, -1, :]
            if temperature == 0:
                token = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits.float(), dim=-1)
                token = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat([idx, token], dim=1)
            new = token
            if stop_token is not None:
                stopped |= token[:, 0] == stop_token
                if stopped.all():
                    break
        return idx
