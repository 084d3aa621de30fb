"""Specs: what a valid grid expands to, and the one-line error for every way one can be wrong."""

from __future__ import annotations

import json

import pytest
from helpers import REPO, scaling, tiny_spec, write_spec

from scaling import spec as spec_lib
from scaling.config import GPTConfig


def expand(raw: dict) -> list[spec_lib.TrialSpec]:
    return spec_lib.expand(spec_lib.parse(raw, "grid.yaml"), "grid.yaml")


def error_of(raw: dict) -> str:
    with pytest.raises(spec_lib.SpecError) as caught:
        expand(raw)
    return str(caught.value)


def test_a_grid_is_the_product_of_its_axes():
    raw = tiny_spec(
        model={
            "sizes": [
                {"n_layer": 1, "d_model": 32, "n_head": 2},
                {"n_layer": 2, "d_model": 64, "n_head": 4},
            ]
        },
        grid={"seq_len": [64, 128], "tokens": [32768], "seeds": [0, 1]},
    )
    trials = expand(raw)
    assert len(trials) == 2 * 2 * 2
    assert [t.name for t in trials[:4]] == [
        "L1-d32-T64-s0",
        "L1-d32-T64-s1",
        "L1-d32-T128-s0",
        "L1-d32-T128-s1",
    ]
    assert len({t.trial_id for t in trials}) == 8
    # The id is a hash of the resolved config: stable across loads, so reruns can skip.
    assert [t.trial_id for t in expand(raw)] == [t.trial_id for t in trials]


def test_attention_is_a_grid_axis_and_a_window_counts_only_its_keys():
    raw = tiny_spec(
        model={
            "sizes": [{"n_layer": 2, "d_model": 64, "n_head": 2}],
            "attention": ["dense", "sliding_window:128"],
        },
        grid={"seq_len": [64, 512], "tokens": [32768]},
    )
    trials = expand(raw)
    assert [t.name for t in trials] == [
        "L2-d64-T64-s0",
        "L2-d64-T512-s0",
        "L2-d64-T64-W128-s0",
        "L2-d64-T512-W128-s0",
    ]
    dense_64, dense_512, window_64, window_512 = trials
    assert window_512.gpt_config.window == 128
    attention_per_key = 12 * 2 * 64
    # Below the window a sliding window is dense attention; above it, min(T, window) keys.
    assert window_64.flops_per_token == dense_64.flops_per_token
    assert dense_512.flops_per_token - window_512.flops_per_token == attention_per_key * (512 - 128)
    assert len({t.trial_id for t in trials}) == 4
    # One spelling per attention: a leading zero names the same trial.
    raw["model"]["attention"] = ["sliding_window:0128"]
    assert expand(raw)[1].trial_id == window_512.trial_id
    assert expand(raw)[1].attention == "sliding_window:128"


def test_every_trial_trains_whole_optimizer_steps_of_constant_tokens():
    trials = expand(tiny_spec(grid={"seq_len": [64, 128, 256], "tokens": [50000]}))
    for t in trials:
        assert t.tokens % t.train.tokens_per_step == 0
        assert t.batch_size * t.seq_len == t.train.tokens_per_step
        assert abs(t.tokens - 50000) <= t.train.tokens_per_step / 2
        assert t.flops == t.flops_per_token * t.tokens


def test_tokens_per_param_scales_the_budget_with_the_model():
    raw = tiny_spec(grid={"seq_len": [64], "tokens_per_param": [20]})
    (t,) = expand(raw)
    assert t.params == GPTConfig(1, 32, 2, 64).params
    assert abs(t.tokens - 20 * t.params) <= t.train.tokens_per_step / 2


def test_compute_budgets_give_isoflop_trials():
    raw = tiny_spec(
        model={
            "sizes": [
                {"n_layer": 1, "d_model": 32, "n_head": 2},
                {"n_layer": 2, "d_model": 64, "n_head": 4},
            ]
        },
        grid={"seq_len": [64], "compute": [1e12, 4e12]},
    )
    trials = expand(raw)
    assert [t.name for t in trials] == [
        "L1-d32-T64-C1e+12-s0",
        "L1-d32-T64-C4e+12-s0",
        "L2-d64-T64-C1e+12-s0",
        "L2-d64-T64-C4e+12-s0",
    ]
    for t, budget in zip(trials, [1e12, 4e12, 1e12, 4e12]):
        # Within half an optimizer step of the budget.
        assert abs(t.flops - budget) <= t.flops_per_token * t.train.tokens_per_step / 2


def test_target_parameter_counts_follow_the_aspect_ratio_rule():
    raw = tiny_spec(model={"sizes": [{"params": 1e6}, {"params": 1e7}], "aspect_ratio": 64})
    small, large = expand(raw)
    for t, target in ((small, 1e6), (large, 1e7)):
        assert t.d_model % 64 == 0 and t.n_head == t.d_model // 64
        # The closest shape on the rule's ladder: within a factor of two in either direction.
        assert 0.5 < t.params / target < 2
    assert large.n_layer > small.n_layer


def test_a_size_may_carry_its_own_learning_rate():
    raw = tiny_spec(
        model={
            "sizes": [
                {"n_layer": 1, "d_model": 32, "n_head": 2, "lr": 3e-2},
                {"n_layer": 2, "d_model": 64, "n_head": 4},
            ]
        },
        train={"lr": 1e-3},
    )
    small, large = expand(raw)
    assert (small.train.lr, large.train.lr) == (3e-2, 1e-3)


def test_a_learning_rate_axis_trains_every_point_at_each_lr_named_by_it():
    raw = tiny_spec(grid={"seq_len": [64], "tokens": [32768], "lr": [1e-3, 3e-3, 1e-2]})
    trials = expand(raw)
    assert [t.name for t in trials] == ["L1-d32-T64-lr0.001-s0", "L1-d32-T64-lr0.003-s0",
                                        "L1-d32-T64-lr0.01-s0"]  # fmt: skip
    assert [t.train.lr for t in trials] == [1e-3, 3e-3, 1e-2]
    assert len({t.trial_id for t in trials}) == 3
    assert {t.cell for t in trials} == {"L1-d32-T64-s0"}  # one cell: compared with each other


def test_lr_multipliers_sweep_around_each_sizes_own_learning_rate():
    raw = tiny_spec(
        model={
            "sizes": [
                {"n_layer": 1, "d_model": 32, "n_head": 2, "lr": 2e-2},
                {"n_layer": 2, "d_model": 64, "n_head": 4},
            ]
        },
        grid={"seq_len": [64], "tokens": [32768, 65536], "lr_multipliers": [0.5, 2]},
        train={"lr": 1e-3},
    )
    trials = expand(raw)
    assert [t.train.lr for t in trials] == [1e-2, 4e-2, 1e-2, 4e-2, 5e-4, 2e-3, 5e-4, 2e-3]
    assert trials[0].name == "L1-d32-T64-D32.8K-lr0.01-s0"
    assert len({t.cell for t in trials}) == 4  # (size, budget) cells of two LRs each


def test_without_an_lr_axis_or_mup_trials_keep_their_names_and_ids():
    (plain,) = expand(tiny_spec())
    (swept,) = expand(tiny_spec(grid={"seq_len": [64], "tokens": [32768], "lr": [1e-2]}))
    assert plain.name == "L1-d32-T64-s0" and swept.name == "L1-d32-T64-lr0.01-s0"
    assert plain.trial_id == swept.trial_id  # the same training: a rerun would skip it
    mup = tiny_spec(model={"sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2}],
                           "parametrization": "mup", "base_width": 32})  # fmt: skip
    (under_mup,) = expand(mup)
    assert under_mup.trial_id != plain.trial_id and under_mup.gpt_config.width_mult == 1


def test_mup_reads_the_base_models_head_width_from_the_sizes_family():
    def base_head_dim(sizes, **model):
        raw = tiny_spec(model={"sizes": sizes, "parametrization": "mup", "base_width": 32, **model})
        trials = expand(raw)
        assert len({t.base_head_dim for t in trials}) == 1
        return trials[0].base_head_dim

    wider_heads = [{"n_layer": 1, "d_model": d, "n_head": 2} for d in (32, 64, 128)]
    more_heads = [{"n_layer": 1, "d_model": d, "n_head": d // 16} for d in (32, 64, 128)]
    assert base_head_dim(wider_heads) == 16  # the base model's 2 heads of 16
    assert base_head_dim(more_heads) == 16  # every size's heads are 16 wide
    assert base_head_dim(wider_heads, base_head_dim=8) == 8
    deeper = [{"n_layer": n, "d_model": 64, "n_head": 4} for n in (2, 4)]
    assert base_head_dim(deeper) == base_head_dim(deeper[:1]) == 8  # neighbours change nothing
    targets = [{"params": p} for p in (1e5, 1e6)]
    assert base_head_dim(targets, head_dim=32) == base_head_dim(targets[:1], head_dim=32) == 32
    thirds = [
        {"n_layer": 1, "d_model": 48, "n_head": 3},
        {"n_layer": 1, "d_model": 96, "n_head": 3},
    ]
    assert error_of(
        tiny_spec(model={"sizes": thirds, "parametrization": "mup", "base_width": 32})
    ) == (
        "grid.yaml: model.base_head_dim: base_width 32 is not a multiple of the sizes' n_head 3, "
        "so the base model's head width is not whole; give it"
    )
    mixed = [{"n_layer": 1, "d_model": 32, "n_head": 2}, {"n_layer": 1, "d_model": 96, "n_head": 3}]
    assert error_of(
        tiny_spec(model={"sizes": mixed, "parametrization": "mup", "base_width": 32})
    ) == (
        "grid.yaml: model.base_head_dim: the sizes share neither n_head nor head_dim, so µP's "
        "attention scale needs the head width of the model at base_width; give base_head_dim"
    )


def test_a_wsd_lr_sweep_has_a_trunk_per_learning_rate():
    raw = tiny_spec(
        grid={"seq_len": [64], "tokens": [32768, 65536], "lr": [1e-3, 1e-2]},
        train={"schedule": "wsd"},
    )
    trunks = [t for t in expand(raw) if t.kind == "trunk"]
    assert [t.name for t in trunks] == ["L1-d32-T64-trunk-lr0.001-s0", "L1-d32-T64-trunk-lr0.01-s0"]


def test_the_experiment_defaults_to_the_spec_name():
    assert spec_lib.parse(tiny_spec("abc")).experiment == "abc"
    assert spec_lib.parse(tiny_spec("abc", tracking={"experiment": "other"})).experiment == "other"


def test_numbers_in_yaml_exponent_form_are_accepted(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        "name: g\nmodel: {sizes: [{n_layer: 1, d_model: 32, n_head: 2}]}\n"
        "grid: {seq_len: [64], tokens: [1e5]}\ntrain: {lr: 3e-4, tokens_per_step: 4096,"
        " eval_tokens: 4096}\n"
    )
    spec, (trial,) = spec_lib.load(path)
    assert spec.train.lr == 3e-4 and trial.tokens == 98304


BAD = [
    (
        dict(grid={"seq_len": [64, -3], "tokens": [1e5]}),
        "grid.yaml: grid.seq_len[1]: must be a positive integer, got -3",
    ),
    (
        dict(grid={"seq_len": [64.5], "tokens": [1e5]}),
        "grid.yaml: grid.seq_len[0]: must be a positive integer, got 64.5",
    ),
    (dict(grid={"seq_len": [], "tokens": [1e5]}), "grid.yaml: grid.seq_len: must not be empty"),
    (
        dict(grid={"seq_len": "64", "tokens": [1e5]}),
        "grid.yaml: grid.seq_len: must be a list, got '64'",
    ),
    (
        dict(grid={"seqlen": [64], "tokens": [1e5]}),
        "grid.yaml: grid: unknown key 'seqlen', did you mean 'seq_len'?",
    ),
    (
        dict(trian={"lr": 1e-3}),
        "grid.yaml: (top level): unknown key 'trian', did you mean 'train'?",
    ),
    (
        dict(grid={"seq_len": [64]}),
        "grid.yaml: grid: give exactly one of 'tokens', 'tokens_per_param' or 'compute'",
    ),
    (
        dict(grid={"seq_len": [64], "tokens": [1e5], "compute": [1e12]}),
        "grid.yaml: grid: give exactly one of 'tokens', 'tokens_per_param' or 'compute', "
        "got tokens and compute",
    ),
    (
        dict(grid={"seq_len": [64], "tokens": [0]}),
        "grid.yaml: grid.tokens[0]: must be a positive number, got 0",
    ),
    (
        dict(grid={"seq_len": [64], "tokens": [1e5], "seeds": [-1]}),
        "grid.yaml: grid.seeds[0]: must be a non-negative integer, got -1",
    ),
    (
        dict(model={"sizes": [{"n_layer": 2, "d_model": 65, "n_head": 2}]}),
        "grid.yaml: model.sizes[0]: d_model 65 is not divisible by n_head 2",
    ),
    (
        dict(model={"sizes": [{"n_layer": 2, "d_model": 64}]}),
        "grid.yaml: model.sizes[0]: needs 'n_layer', 'd_model' and 'n_head' (or a target 'params')",
    ),
    (
        dict(model={"sizes": [{"params": 1e6, "n_layer": 2}]}),
        "grid.yaml: model.sizes[0]: give either 'params' or 'n_layer, d_model, n_head', not both",
    ),
    (dict(model={"sizes": []}), "grid.yaml: model.sizes: must not be empty"),
    (
        dict(model={"sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2}], "attention": "sparse"}),
        "grid.yaml: model.attention[0]: must be 'dense' or 'sliding_window:W' with W a positive "
        "integer, got 'sparse'",
    ),
    (
        dict(
            model={
                "sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2}],
                "attention": ["dense", "sliding_window:-8"],
            }
        ),
        "grid.yaml: model.attention[1]: must be 'dense' or 'sliding_window:W' with W a positive "
        "integer, got 'sliding_window:-8'",
    ),
    (
        dict(train={"precision": "fp16"}),
        "grid.yaml: train.precision: must be 'auto', 'bf16' or 'fp32', got 'fp16'",
    ),
    (dict(train={"lr": "fast"}), "grid.yaml: train.lr: must be a positive number, got 'fast'"),
    (
        dict(train={"min_lr_ratio": 2}),
        "grid.yaml: train.min_lr_ratio: must be between 0 and 1, got 2",
    ),
    (
        dict(train={"tokens_per_step": 4096, "eval_tokens": 100}),
        "grid.yaml: train.eval_tokens: 100 is not a multiple of seq_len 64; every trial must be "
        "evaluated on the same tokens",
    ),
    (
        dict(grid={"seq_len": [64, 100], "tokens": [1e5]}),
        "grid.yaml: grid.seq_len[1]: 100 does not divide train.tokens_per_step 4096, so the batch "
        "would not be a whole number of sequences",
    ),
    (
        dict(train={"tokens_per_step": 4096, "micro_batch_size": 5}),
        "grid.yaml: train.micro_batch_size: 5 does not divide the batch of 64 sequences "
        "at seq_len 64",
    ),
    (
        dict(data={"source": "files"}),
        "grid.yaml: data: source 'files' needs 'path', a glob such as 'corpus/**/*.txt'",
    ),
    (
        dict(data={"source": "web"}),
        "grid.yaml: data.source: must be 'stdlib', 'files' or 'huggingface', got 'web'",
    ),
    (
        dict(name="has space"),
        "grid.yaml: name: String should match pattern "
        "'^[A-Za-z0-9][A-Za-z0-9_.\\-]*$', got 'has space'",
    ),
    (
        dict(model={"sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2}] * 2}),
        "grid.yaml: model.sizes: the grid repeats trial L1-d32-T64-s0",
    ),
    (
        dict(train={"schedule": "constant"}),
        "grid.yaml: train.schedule: must be 'cosine' or 'wsd', got 'constant'",
    ),
    (
        dict(train={"schedule": "wsd", "decay_fraction": 0}),
        "grid.yaml: train.decay_fraction: must be a fraction in (0, 1], got 0",
    ),
    (
        dict(train={"schedule": "wsd", "decay_fraction": 1.5}),
        "grid.yaml: train.decay_fraction: must be a fraction in (0, 1], got 1.5",
    ),
    (
        dict(train={"schedule": "wsd", "decay_shape": "cosine"}),
        "grid.yaml: train.decay_shape: must be '1-sqrt' or 'linear', got 'cosine'",
    ),
    (
        dict(grid={"seq_len": [64], "tokens": [1e5], "lr": [1e-3], "lr_multipliers": [2]}),
        "grid.yaml: grid: give 'lr' or 'lr_multipliers', not both",
    ),
    (
        dict(grid={"seq_len": [64], "tokens": [1e5], "lr": [1e-3, -1]}),
        "grid.yaml: grid.lr[1]: must be a positive number, got -1",
    ),
    (
        dict(grid={"seq_len": [64], "tokens": [1e5], "lr": []}),
        "grid.yaml: grid.lr: must not be empty",
    ),
    (
        dict(grid={"seq_len": [64], "tokens": [1e5], "lr": [0.003, 0.0030001]}),
        "grid.yaml: grid.lr: two LRs of model.sizes[0] round to the same name, lr0.003; make "
        "them differ in their first 3 significant figures",
    ),
    (
        dict(grid={"seq_len": [64], "tokens": [1e5], "lr_multipliers": [1, 2, 1]}),
        "grid.yaml: grid: lr_multipliers repeats 1.0",
    ),
    (
        dict(
            model={"sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2, "lr": 1e-3}]},
            grid={"seq_len": [64], "tokens": [1e5], "lr": [1e-3, 1e-2]},
        ),
        "grid.yaml: model.sizes[0].lr: conflicts with grid.lr; sweep around each size's own lr "
        "with grid.lr_multipliers instead",
    ),
    (
        dict(search={"stop_hopeless": True}),
        "grid.yaml: search.stop_hopeless: compares a trial with the other learning rates of its "
        "cell; give grid.lr or grid.lr_multipliers two or more values",
    ),
    (
        dict(search={"grace_fraction": 0.1}),
        "grid.yaml: search: grace_fraction must be at least 0.3 and below 1",
    ),
    (
        dict(
            model={"sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2}], "parametrization": "mup"}
        ),
        "grid.yaml: model: parametrization 'mup' needs 'base_width', the d_model it tunes at",
    ),
    (
        dict(model={"sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2}], "base_width": 32}),
        "grid.yaml: model: base_width applies to parametrization 'mup' only",
    ),
    (
        dict(
            model={"sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2}], "parametrization": "sp"}
        ),
        "grid.yaml: model.parametrization: must be 'standard' or 'mup', got 'sp'",
    ),
    (
        dict(train={"decay_fraction": 0.1}),
        "grid.yaml: train: decay_fraction applies to schedule 'wsd' only; add 'schedule: wsd'",
    ),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[m.split(": ")[1] for _, m in BAD])
def test_a_bad_spec_gets_one_line_naming_file_and_field(overrides, message):
    assert error_of(tiny_spec(**overrides)) == message


def test_a_missing_section_is_named():
    raw = tiny_spec()
    del raw["model"]
    assert error_of(raw) == "grid.yaml: model: is required"


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(spec_lib.SpecError, match=r"^missing.yaml: no such file$"):
        spec_lib.load("missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(spec_lib.SpecError, match=r"broken.yaml: line 2: invalid YAML"):
        spec_lib.load(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(spec_lib.SpecError, match=r"scalar.yaml: \(top level\): must be a mapping"):
        spec_lib.load(scalar)


@pytest.mark.slow  # the real command in a fresh process
def test_plan_json_lists_every_trial_with_the_contract_fields():
    result = scaling("plan", str(REPO / "experiments" / "smoke.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    trials = json.loads(result.stdout)
    assert len(trials) >= 6
    contract = {
        "name",
        "n_layer",
        "d_model",
        "n_head",
        "seq_len",
        "tokens",
        "params",
        "params_total",
        "flops_per_token",
        "flops",
    }
    for trial in trials:
        assert contract <= trial.keys()
        config = GPTConfig(trial["n_layer"], trial["d_model"], trial["n_head"], trial["seq_len"])
        assert trial["params"] == config.params
        assert trial["flops"] == trial["flops_per_token"] * trial["tokens"]


@pytest.mark.slow  # the real command in a fresh process
def test_plan_prints_a_table_with_totals():
    result = scaling("plan", str(REPO / "experiments" / "smoke.yaml"))
    assert result.returncode == 0, result.stderr
    assert "L3-d96-T512-D1.25M-s0" in result.stdout and "total" in result.stdout


@pytest.mark.slow  # the real command in a fresh process
def test_a_bad_spec_exits_2_with_one_line_and_no_traceback(tmp_path):
    path = write_spec(tmp_path / "smoke.yaml", tiny_spec(grid={"seq_len": [64, -3], "tokens": [1]}))
    for command in ("plan", "run"):
        result = scaling(command, str(path), cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"{path}: grid.seq_len[1]: must be a positive integer, got -3"
        ]
        assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke.yaml"]  # nothing written


@pytest.mark.slow  # the real command in a fresh process
def test_more_validation_tokens_than_the_corpus_holds_are_refused_before_running(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(20):
        (corpus / f"{i}.txt").write_text("some text " * 100)
    spec = write_spec(
        tmp_path / "small.yaml",
        tiny_spec(
            data={"source": "files", "path": str(corpus / "*.txt"), "val_fraction": 0.2},
            train={"eval_tokens": 65536},
        ),
    )
    result = scaling(
        "run", str(spec), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{spec}: train.eval_tokens: 65536 is more than the ")


@pytest.mark.slow  # the real command in a fresh process
def test_a_bad_flag_exits_2_with_one_line():
    result = scaling("plan", "x.yaml", "--bogus")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--bogus" in result.stderr


@pytest.mark.slow  # the real command in a fresh process
def test_plan_estimates_time_and_memory_here_and_on_a_named_gpu(tmp_path, cache_dir):
    spec = write_spec(
        tmp_path / "tiny.yaml", tiny_spec(grid={"seq_len": [64], "tokens": [8192 * 40]})
    )
    here = json.loads(scaling("plan", str(spec), "--json").stdout)[0]
    # Measured here, once per shape: the step time is cached for the next plan.
    cached = json.loads((cache_dir / "step_seconds.json").read_text())
    (step_s,) = [value for key, value in cached.items() if "L1-d32|T=64|dense|micro=64x1" in key]
    assert here["est_seconds"] > here["steps"] * step_s
    assert here["est_peak_bytes"] > 16 * here["params_total"] + 100 * 2**20  # + the process
    gpu = json.loads(
        scaling("plan", str(spec), "--json", "--device", "h100", "--mfu", "0.5").stdout
    )[0]
    train_s = here["flops"] / (989e12 * 0.5)
    assert train_s < gpu["est_seconds"] < train_s + 1  # + validations and set-up
    assert gpu["est_peak_bytes"] < here["est_peak_bytes"]  # no CPU process in a GPU's memory
    table = scaling("plan", str(spec), "--device", "H100")
    assert "one H100 per trial at an assumed MFU of 40%" in table.stdout


@pytest.mark.slow  # the real command in a fresh process
def test_plan_refuses_an_unknown_device_with_one_line(tmp_path):
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec())
    result = scaling("plan", str(spec), "--device", "tpu-v9")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "--device: unknown device 'tpu-v9': 'here' or one of H200, H100, A100, L40S, A10"
    )


def test_a_gpu_plan_says_what_it_assumes_and_where_the_assumption_fails():
    from scaling import estimate

    tiny = expand(tiny_spec())
    _, basis = estimate.estimates(tiny, "H100", 0.4)
    assert "assumed MFU of 40%" in basis
    assert f"{estimate.SETUP_S:g} s set-up" in basis  # the floor under every trial, said
    assert "1 of 1 trials" in basis and "lower bounds" in basis  # 12K parameters: far below
    big = expand(tiny_spec(model={"sizes": [{"n_layer": 12, "d_model": 1024, "n_head": 16}]}))
    _, basis = estimate.estimates(big, "H100", 0.4)
    assert "lower bounds" not in basis  # 151M parameters: the assumption is a fair one


SHIPPED = sorted((REPO / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_every_experiment_shipped_is_a_valid_spec(path):
    _, trials = spec_lib.load(path)
    assert trials
