"""The WSD schedule and the grid it makes: one constant-LR trunk per size and a cooldown
branch per budget. What the trunks and branches are, before anything trains."""

from __future__ import annotations

import json
import math

import pytest
from helpers import scaling, tiny_spec, write_spec

from scaling.spec import expand, parse

SIZES = [{"n_layer": 1, "d_model": 32, "n_head": 2}, {"n_layer": 2, "d_model": 64, "n_head": 2}]


def wsd_grid(grid: dict, **train) -> list:
    train = {"schedule": "wsd", "tokens_per_step": 4096, **train}
    return expand(parse(tiny_spec(model={"sizes": SIZES}, grid=grid, train=train)))


@pytest.mark.parametrize("shape", ["1-sqrt", "linear"])
def test_the_lr_factor_at_the_key_steps_of_a_wsd_run(shape):
    # 100 steps of 4096 tokens: warm-up over 10 steps, the cooldown over the last 20.
    (_, branch) = wsd_grid(
        {"seq_len": [64], "tokens": [409600]},
        warmup_tokens=40960,
        min_lr_ratio=0.1,
        decay_shape=shape,
    )[:2]
    assert (branch.steps, branch.decay_steps, branch.branch_at) == (100, 20, 80 * 4096)
    factor = branch.lr_factor
    assert factor(0) == pytest.approx(0.1) and factor(4) == pytest.approx(0.5)
    assert factor(9) == 1.0  # the end of the warm-up
    assert factor(79) == 1.0  # the last step the trunk trains: the branch point
    first, quarter = (1 - math.sqrt(1 / 20), 0.5) if shape == "1-sqrt" else (19 / 20, 0.75)
    assert factor(80) == pytest.approx(0.1 + 0.9 * first)  # every cooldown step below peak
    assert factor(84) == pytest.approx(0.1 + 0.9 * quarter)  # a quarter through the cooldown
    assert factor(99) == pytest.approx(0.1)  # the last step reaches min_lr_ratio
    assert all(factor(s) > factor(s + 1) for s in range(80, 99))


def test_a_trunk_holds_the_peak_lr_after_its_warm_up():
    trunk = wsd_grid({"seq_len": [64], "tokens": [409600]}, warmup_tokens=40960)[0]
    assert trunk.kind == "trunk"
    assert [trunk.lr_factor(s) for s in (0, 9, 50, 79)] == [0.1, 1.0, 1.0, 1.0]


def test_a_token_grid_has_one_trunk_per_size_and_length_and_a_branch_per_budget():
    runs = wsd_grid({"seq_len": [64, 128], "tokens": [2e5, 5e5, 1.25e6]}, decay_fraction=0.2)
    trunks = [r for r in runs if r.kind == "trunk"]
    branches = [r for r in runs if r.kind == "branch"]
    assert len(trunks) == 4 and len(branches) == 12
    assert [t.name for t in trunks][:2] == ["L1-d32-T64-trunk-s0", "L1-d32-T128-trunk-s0"]
    for trunk in trunks:
        mine = [b for b in branches if b.trunk_id == trunk.trial_id]
        assert [b.trunk for b in mine] == [trunk.name] * 3
        # Each branch leaves the trunk 20% of its own budget before its end, on a step.
        assert [b.branch_at for b in mine] == [
            (b.steps - round(0.2 * b.steps)) * 4096 for b in mine
        ]
        assert trunk.branch_points == [b.branch_at for b in mine]
        assert trunk.tokens == max(trunk.branch_points)
        assert {(b.n_layer, b.seq_len) for b in mine} == {(trunk.n_layer, trunk.seq_len)}
    # Branches are the grid's points: the names and budgets a cosine grid would have.
    cosine = expand(
        parse(
            tiny_spec(
                model={"sizes": SIZES},
                grid={"seq_len": [64, 128], "tokens": [2e5, 5e5, 1.25e6]},
                train={"tokens_per_step": 4096},
            )
        )
    )
    assert [(b.name, b.tokens) for b in branches] == [(t.name, t.tokens) for t in cosine]
    assert {b.trial_id for b in branches}.isdisjoint(t.trial_id for t in cosine)


def test_an_isoflop_grid_branches_each_size_at_its_own_budgets():
    runs = wsd_grid({"seq_len": [64], "compute": [1e12, 4e12]}, decay_fraction=0.1)
    trunks = {r.trial_id: r for r in runs if r.kind == "trunk"}
    branches = [r for r in runs if r.kind == "branch"]
    assert len(trunks) == 2 and len(branches) == 4
    for branch in branches:
        trunk = trunks[branch.trunk_id]
        assert branch.branch_at in trunk.branch_points
        assert branch.tokens - branch.branch_at == round(0.1 * branch.steps) * 4096
    small, large = trunks.values()
    assert small.tokens > large.tokens  # the same FLOPs buy the smaller model more tokens


def test_a_single_budget_is_one_trunk_and_one_branch_and_a_full_decay_needs_no_trunk():
    trunk, branch = wsd_grid({"seq_len": [64], "tokens": [409600]})[:2]
    assert (trunk.kind, branch.kind, trunk.branch_points) == ("trunk", "branch", [branch.branch_at])
    (alone, *_) = wsd_grid({"seq_len": [64], "tokens": [409600]}, decay_fraction=1)
    assert (alone.kind, alone.branch_at, alone.trunk) == ("branch", 0, None)
    assert alone.trained_tokens == alone.tokens


def test_adding_a_budget_keeps_the_trunk_and_its_saved_branch_points():
    three = wsd_grid({"seq_len": [64], "tokens": [2e5, 5e5, 1.25e6]})
    two = wsd_grid({"seq_len": [64], "tokens": [2e5, 5e5]})
    assert three[0].trial_id == two[0].trial_id
    assert three[0].branch_points[:2] == two[0].branch_points


@pytest.mark.slow  # the real command in a fresh process
def test_the_plan_prices_trunks_and_cooldowns_against_the_same_grid_under_cosine(tmp_path):
    spec = tiny_spec(
        model={"sizes": SIZES},
        grid={"seq_len": [64], "tokens": [2e5, 5e5, 1.25e6]},
        train={"schedule": "wsd", "tokens_per_step": 4096, "decay_fraction": 0.25},
    )
    path = write_spec(tmp_path / "wsd.yaml", spec)
    result = scaling("plan", str(path), "--device", "h100", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["kind"] for r in rows] == ["trunk", "branch", "branch", "branch"] * 2
    spent = sum(r["trained_flops"] for r in rows)
    trunks = sum(r["flops"] for r in rows if r["kind"] == "trunk")
    cooldowns = sum(
        r["flops_per_token"] * (r["tokens"] - r["branch_at"]) for r in rows if r["kind"] == "branch"
    )
    assert spent == trunks + cooldowns
    cosine = sum(r["flops"] for r in rows if r["kind"] == "branch")
    table = scaling("plan", str(path), "--device", "h100")
    assert table.returncode == 0, table.stderr
    assert (
        f"{spent:.3g} FLOPs, {spent / cosine:.2f}x the {cosine:.3g} of the same grid under cosine"
        in " ".join(table.stdout.split())
    )


def test_the_report_counts_what_trunks_and_branches_spent_against_cosine():
    import pandas as pd

    from analysis.analyse import branching
    from analysis.runs import Runs

    rows = [  # run_id, kind, branch_at, tokens; 10 FLOPs a token
        ("trunk", "trunk", 0, 80),
        ("short", "branch", 40, 50),
        ("long", "branch", 80, 100),
        ("orphan", "branch", 90, 110),  # its trunk never got there: it trained nothing
    ]
    table = pd.DataFrame(rows, columns=["run_id", "kind", "branch_at", "tokens"])
    table = table.assign(status="FINISHED", flops_per_token=10, flops=10 * table["tokens"])
    curves = {
        run_id: pd.DataFrame({"tokens": [branch_at, tokens] if run_id != "orphan" else []})
        for run_id, _, branch_at, tokens in rows
    }
    spend = branching(Runs(table, curves))
    assert (spend.trunks, spend.branches) == (1, 3)
    assert spend.spent_flops == 10 * (80 + 10 + 20)
    assert spend.cosine_flops == 10 * (50 + 100 + 110)
    assert list(Runs(table, curves).finished["run_id"]) == ["short", "long", "orphan"]
    assert branching(Runs(table.assign(kind="trial"), curves)) is None


def test_approach_1_of_a_wsd_grid_joins_each_sizes_annealed_final_losses():
    import pandas as pd

    from analysis.analyse import annealed_curves

    points = pd.DataFrame(
        {
            "run_id": ["a2", "a1", "b1"],
            "size": ["L1-d32", "L1-d32", "L2-d64"],
            "seed": 0,
            "tokens": [200, 100, 100],
            "flops": [2000, 1000, 3000],
            "val_loss": [2.5, 3.0, 2.8],
        }
    )
    curves = annealed_curves(points)
    assert sorted(curves) == ["a2", "b1"]  # keyed by each size's longest branch
    assert curves["a2"]["val_loss"].tolist() == [3.0, 2.5]  # in order of tokens


def test_a_branchs_loss_comes_from_its_trunks_training_run():
    """Approach 3's bootstrap shifts the points of one training run together: a branch's
    run is its trunk, a plain trial's its own."""
    import pandas as pd

    from analysis.analyse import training_runs

    points = pd.DataFrame(
        {
            "run_id": ["b1", "b2", "c1"],
            "trunk": ["L1-d32-T64-trunk-s0", "L1-d32-T64-trunk-s0", None],
        }
    )
    assert training_runs(points).tolist() == ["L1-d32-T64-trunk-s0"] * 2 + ["c1"]
    assert training_runs(points.drop(columns="trunk")).tolist() == ["b1", "b2", "c1"]
