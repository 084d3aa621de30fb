"""µP (Tensor Programs V): activations keep their size as the model widens, where under the
standard parametrization they grow; and at its base width µP is the standard model exactly."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import tiny_spec

from scaling.module import GPTModule
from scaling.spec import expand, parse

WIDTHS = [32, 64, 128, 256, 512]


def module(
    d_model: int, parametrization: str, base_width: int = 32, weight_decay: float = 0
) -> GPTModule:
    """A 2-layer, 2-head model of width `d_model`, built as a grid would build it."""
    model = {"sizes": [{"n_layer": 2, "d_model": d_model, "n_head": 2}]}
    model["parametrization"] = parametrization
    if parametrization == "mup":
        model["base_width"] = base_width
    train = {"lr": 3e-3, "weight_decay": weight_decay}
    (trial,) = expand(parse(tiny_spec(model=model, train=train)))
    torch.manual_seed(0)
    return GPTModule(trial)


def text_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight 64-byte windows of real text (the standard library's `os` module): on random
    tokens the gradients are noise, and the check would measure nothing of training."""
    with open(os.__file__, "rb") as f:
        data = torch.tensor(list(f.read(8 * 65)), dtype=torch.long).view(8, 65)
    return data[:, :-1], data[:, 1:]


def coordinates(d_model: int, parametrization: str, steps: int = 5) -> dict[str, float]:
    """Mean |activation| of each block's output and of the logits, after `steps` AdamW
    steps at the peak LR with the optimizer the LightningModule configures."""
    lightning = module(d_model, parametrization)
    optimizer = lightning.configure_optimizers()["optimizer"]
    x, y = text_batch()
    for _ in range(steps):
        _, loss = lightning.model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sizes: dict[str, float] = {}
    for i, block in enumerate(lightning.model.blocks):
        block.register_forward_hook(
            lambda _m, _i, out, i=i: sizes.__setitem__(f"block {i}", out.abs().mean().item())
        )
    with torch.no_grad():
        sizes["logits"] = lightning.model(x).abs().mean().item()
    return sizes


@pytest.fixture(scope="module")
def coordinate_check() -> dict[str, dict[int, dict[str, float]]]:
    return {p: {w: coordinates(w, p) for w in WIDTHS} for p in ("standard", "mup")}


def spread(by_width: dict[int, dict[str, float]], layer: str) -> float:
    values = [sizes[layer] for sizes in by_width.values()]
    return max(values) / min(values)


@pytest.mark.parametrize("layer", ["block 0", "block 1", "logits"])
def test_under_mup_activations_keep_their_size_from_width_32_to_512(coordinate_check, layer):
    assert spread(coordinate_check["mup"], layer) <= 1.5


@pytest.mark.parametrize("layer", ["block 0", "block 1", "logits"])
def test_under_standard_activations_grow_with_width(coordinate_check, layer):
    standard = coordinate_check["standard"]
    assert standard[512][layer] > 3 * standard[32][layer]
    assert spread(standard, layer) > 3


def test_mup_at_its_base_width_trains_exactly_as_standard():
    losses = {}
    for parametrization in ("standard", "mup"):
        lightning = module(64, parametrization, base_width=64)
        optimizer = lightning.configure_optimizers()["optimizer"]
        x, y = text_batch()
        losses[parametrization] = []
        for _ in range(5):
            _, loss = lightning.model(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[parametrization].append(loss.item())
    assert losses["mup"] == pytest.approx(losses["standard"], abs=1e-6)
    assert losses["mup"][-1] < losses["mup"][0] - 0.1  # it trained: the comparison means something


def test_mup_scales_the_hidden_learning_rate_and_init_with_width():
    wide = module(128, "mup", base_width=32)
    groups = wide.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([3e-3 / 4, 3e-3, 3e-3])
    # AdamW decays by lr·weight_decay: the hidden matrices decay per step as at the base width.
    assert [g["weight_decay"] for g in groups] == pytest.approx([0, 0, 0])  # the check's wd 0
    decayed = module(128, "mup", base_width=32, weight_decay=0.1)
    hidden, embeddings, vectors = decayed.configure_optimizers()["optimizer"].param_groups
    assert hidden["lr"] * hidden["weight_decay"] == pytest.approx(3e-3 * 0.1)
    assert (embeddings["weight_decay"], vectors["weight_decay"]) == (0.1, 0.0)
    narrow = module(32, "mup", base_width=32)
    ratio = wide.model.blocks[0].mlp.fc.weight.std() / narrow.model.blocks[0].mlp.fc.weight.std()
    assert ratio.item() == pytest.approx(0.5, rel=0.05)  # std as 1/sqrt(width_mult)
    assert wide.model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_mup_attention_scores_go_as_one_over_head_dim_and_match_standard_at_the_base():
    at_base = module(64, "mup", base_width=64).model.config
    assert at_base.attention_scale == pytest.approx(at_base.head_dim**-0.5)
    for width in WIDTHS:
        config = module(width, "mup", base_width=64).model.config
        assert config.attention_scale * config.head_dim == pytest.approx(32**0.5)
