"""The GPT's shape and its exact parameter and FLOP counts, without importing torch.

`spec.py` needs these counts to plan a grid (tokens per parameter, IsoFLOP budgets) on a
machine that may not even have torch; `model.py` builds the network from the same config and
a test holds the counts below against the real module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from scaling import contract

BOS = 256  # token id that starts every document; bytes are 0..255
VOCAB_SIZE = 257


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    d_model: int
    n_head: int
    seq_len: int  # the context the position table is sized for
    vocab_size: int = VOCAB_SIZE
    # Sliding-window attention: each token sees itself and the window-1 tokens before it.
    window: int | None = None
    # `mup`: the maximal-update parametrization (Tensor Programs V), equal to `standard` at
    # d_model = base_width; its multipliers below, the LR's in module.py.
    parametrization: str = "standard"
    base_width: int | None = None
    base_head_dim: int | None = None  # µP: the head width of the model at the base width

    @property
    def width_mult(self) -> float:
        """How many times wider than the base width µP reads this model as (1 if standard)."""
        if self.parametrization != "mup" or self.base_width is None:
            return 1.0
        return self.d_model / self.base_width

    @property
    def attention_scale(self) -> float | None:
        """What attention scores are multiplied by: None is SDPA's own 1/sqrt(head_dim).

        µP scales them by 1/head_dim: a query and a key grow correlated in training, so their
        dot product grows like head_dim, not like its square root. The factor is
        sqrt(base_head_dim)/head_dim: 1/sqrt(head_dim) at the base model's head width, as
        under standard. (A family that widens by adding heads keeps head_dim, and the scale.)"""
        if self.parametrization != "mup":
            return None
        return (self.base_head_dim or self.head_dim) ** 0.5 / self.head_dim

    @property
    def attention_span(self) -> int:
        """Keys a query attends to at most: the window, or the whole context when dense."""
        return contract.keys_attended(self.seq_len, self.window)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def name(self) -> str:
        """The shape's name, `L4-d256`: the window is not part of the weights."""
        return contract.ModelName(self.n_layer, self.d_model).shape

    @property
    def params(self) -> int:
        """Non-embedding parameters (Kaplan et al.): blocks and the final LayerNorm.

        A block holds the fused QKV (3d²) and output (d²) projections, the MLP (4d² + 4d²)
        and two bias-free LayerNorms (d each).
        """
        d = self.d_model
        per_block = 12 * d * d + 2 * d
        return self.n_layer * per_block + d

    @property
    def params_total(self) -> int:
        """Every parameter: the token table is tied to the output head, so counted once."""
        return self.params + self.vocab_size * self.d_model + self.seq_len * self.d_model

    @property
    def matmul_params(self) -> int:
        """Weights that take part in a matmul per token: the blocks' and the output head's."""
        return contract.matmul_weights(self.n_layer, self.d_model, self.vocab_size)

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward), as `contract.flops_per_token`."""
        T = self.seq_len if seq_len is None else seq_len
        return contract.flops_per_token(self.n_layer, self.d_model, T, self.vocab_size, self.window)

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)
