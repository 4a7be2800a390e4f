"""Every config in conf/ composes and builds; bad input on the command line ends in one line and exit code 2."""
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from search.build import CONF_DIR, build, compose
from search.engine.runner import resolve_budgets

OVERLAYS = {"cpu"}
"""Groups that overlay other groups' fields (+cpu=policy): tested in test_overlays_change_only_existing_fields."""
NOT_HYDRA = {"scaling", "frontier", "expert"}
"""Folders of grid files a command reads itself (search.verifier_scaling, search.frontier, search.expert_iteration):
tested in their own test files."""
GROUPS = sorted(p.name for p in Path(CONF_DIR).iterdir() if p.is_dir() and p.name not in OVERLAYS | NOT_HYDRA)
REQUIRED = {
    ("policy", "remote"): ["policy.base_urls=[http://127.0.0.1:1]", "policy.model=m", "policy.n_params=1"],
    ("verifier", "prm_remote"): ["verifier.base_urls=[http://127.0.0.1:1]", "verifier.model=m", "verifier.n_params=1",
                                 "verifier.step_separator=' '"],
    ("verifier", "judge_instruct"): ["verifier.base_urls=[http://127.0.0.1:1]", "verifier.model=m",
                                     "verifier.n_params=1"],
    ("verifier", "plugin"): ["verifier.name=calculator"],
    ("verifier", "orm"): ["verifier.checkpoint=tiny-prm-exact"],
    ("task", "math500"): ["task.path=math_sample.jsonl"],
    ("task", "gsm8k"): ["task.path=math_sample.jsonl"],
}
GPU_ONLY = {("verifier", "qwen2.5-math-prm"), ("verifier", "math-shepherd")}
"""Configured for real models that are not on this machine: building them must name the missing checkpoint."""
"""The values an option leaves to the user (???), given so that it can be built (servers are not contacted: a
served verifier connects on its first score)."""
NEEDS_SERVER = {"policy"}          # building a policy starts or contacts a server: covered by the integration test


def options(group):
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_builds(group, option):
    # sweep presets are not in the defaults list: they are added with +sweep=NAME
    overrides = [f"+{group}={option}" if group == "sweep" else f"{group}={option}"]
    overrides += REQUIRED.get((group, option), [])
    cfg = compose(overrides)
    if group == "sweep":
        hydra_cfg = compose(overrides, return_hydra_config=True)
        assert hydra_cfg.hydra.sweeper.params, option          # a preset that sweeps nothing is a mistake
        resolve_budgets(cfg.budgets, instantiate(cfg.strategy))
        return
    assert cfg[group] is not None
    if (group, option) in GPU_ONLY:
        with pytest.raises(Exception, match=r"checkpoint not found at .*/models/"):
            instantiate(cfg[group], task=instantiate(cfg.task))
        return
    if group not in NEEDS_SERVER:
        task = instantiate(cfg.task)
        if group == "verifier":        # through the composition root, which drops the checker's _check_grid_
            built = build(cfg, group, task=task)
        elif group == "noise":         # a wrapper: _partial_, applied to whichever verifier was chosen
            base = instantiate(cfg.verifier, task=task)
            built = instantiate(cfg.noise)(base) if "_target_" in cfg.noise else base
            assert built.kind == base.kind
        else:
            built = instantiate(cfg[group])
        assert built is not None
    if group == "strategy":
        resolve_budgets(cfg.budgets, instantiate(cfg.strategy))


@pytest.mark.parametrize("policy", ["qwen2.5-math-1.5b", "llama-3.2-1b"])
@pytest.mark.parametrize("verifier", ["qwen2.5-math-prm", "math-shepherd"])
def test_overlays_change_only_existing_fields(policy, verifier):
    """The CPU overlay changes fields a GPU config already has (a typo would add a new one), and nothing else."""
    from omegaconf import OmegaConf

    base = OmegaConf.to_container(compose([f"policy={policy}", f"verifier={verifier}"]))
    over = OmegaConf.to_container(compose([f"policy={policy}", f"verifier={verifier}", "+cpu=[policy,prm]"]))
    for group in ("policy", "verifier"):
        assert set(over[group]) == set(base[group])
        changed = {k for k in base[group] if base[group][k] != over[group][k]}
        assert changed <= {"dtype", "max_model_len", "kv_cache_gib"} and "dtype" in changed
    assert {k: v for k, v in over.items() if k not in ("policy", "verifier")} == \
        {k: v for k, v in base.items() if k not in ("policy", "verifier")}


@pytest.mark.parametrize("override", ["policy=tiny", "verifier=prm", "verifier=prm_exact", "verifier=orm"])
def test_tiny_server_configs_start_their_servers_as_the_code_defaults_do(override):
    """The tiny world's YAML repeats the server settings of managed_policy/managed_prm's defaults; a config that
    drifts (e.g. loses OMP_NUM_THREADS) would serve scores that differ between requests (tests/test_prm.py)."""
    from search.serving.vllm_server import TINY_SERVER_ARGS, TINY_SERVER_ENV

    group = override.split("=")[0]
    cfg = compose([override])[group]
    assert tuple(cfg.extra_args) == TINY_SERVER_ARGS and dict(cfg.env) == dict(TINY_SERVER_ENV)


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "search.run", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(CONF_DIR).parent)


def one_error_line(proc):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_unknown_group_option(tmp_path):
    line = one_error_line(run_cli("strategy=beam_serch", f"hydra.run.dir={tmp_path}"))
    assert "unknown strategy 'beam_serch'" in line and "best_of_k" in line


def test_unknown_option_inside_a_sweep(tmp_path):
    line = one_error_line(run_cli("-m", "verifier=random,oracel", f"hydra.sweep.dir={tmp_path}"))
    assert "unknown verifier 'oracel'" in line and "outcome_oracle" in line


def test_unknown_key(tmp_path):
    line = one_error_line(run_cli("n_problem=3", f"hydra.run.dir={tmp_path}"))
    # a top-level key is a field of the run config, not of a group: the line lists the real ones
    assert line.startswith("error: n_problem is not a field of the run config: use one of ")
    assert "n_problems" in line and "seed" in line and "hydra.run.dir=DIR" in line and "chosen" not in line


def test_budget_larger_than_the_pool(tmp_path):
    line = one_error_line(run_cli("budgets=[1,128]", f"hydra.run.dir={tmp_path}"))
    assert "budget" in line and "128" in line


def test_missing_checkpoint(tmp_path):
    line = one_error_line(run_cli("policy.checkpoint=/nonexistent/ckpt", f"hydra.run.dir={tmp_path}"))
    assert "/nonexistent/ckpt" in line and "checkpoint" in line


def test_unreachable_server(tmp_path):
    line = one_error_line(run_cli("policy=remote", "policy.base_urls=[http://127.0.0.1:9]", "policy.model=m",
                                  "policy.n_params=1000", "policy.max_retries=0", "policy.timeout_s=2",
                                  "n_problems=1", f"hydra.run.dir={tmp_path}"))
    assert "127.0.0.1:9" in line


def test_remote_policy_without_its_required_fields(tmp_path):
    line = one_error_line(run_cli("policy=remote", f"hydra.run.dir={tmp_path}"))
    assert "base_urls" in line


def test_stepwise_strategy_with_an_outcome_verifier_stops_with_one_line(tmp_path):
    line = one_error_line(run_cli("strategy=mcts", "verifier=outcome_oracle", f"hydra.run.dir={tmp_path}"))
    assert "mcts needs a process verifier" in line and "verifier=process_oracle" in line


@pytest.mark.parametrize("outcome, kind, name", [("true", "outcome", "orm"), ("false", "process", "prm")])
def test_a_remote_reward_model_can_be_an_outcome_model(outcome, kind, name):
    # verifier=orm's twin for a server someone else runs: an ORM is an outcome verifier, whatever serves it
    cfg = compose(["verifier=prm_remote", *REQUIRED[("verifier", "prm_remote")], f"verifier.outcome={outcome}"])
    built = build(cfg, "verifier", task=instantiate(cfg.task))
    assert (built.kind, built.name) == (kind, name)


def test_prm_without_a_step_separator_stops_with_one_line(tmp_path):
    line = one_error_line(run_cli("strategy=beam_search", "verifier=prm", "verifier.step_separator=''",
                                  f"hydra.run.dir={tmp_path}"))
    assert "verifier.step_separator is not set" in line


def test_gpu_configs_name_the_missing_model(tmp_path):
    line = one_error_line(run_cli("strategy=beam_search", "verifier=qwen2.5-math-prm", f"hydra.run.dir={tmp_path}"))
    assert "checkpoint not found at /models/Qwen2.5-Math-PRM-7B" in line and "verifier.checkpoint=PATH" in line


@pytest.mark.parametrize("args,needle", [
    (["n_problems=-5"], "n_problems=-5 must be an integer >= 1, or null"),   # used to run for minutes, memory growing
    (["n_problems=abc"], "n_problems='abc' must be an integer"),             # used to end in a TypeError traceback
    (["concurrency=0"], "concurrency=0 must be an integer >= 1"),
    (["fp_cost=-1"], "fp_cost=-1 must be a number >= 0"),
    (["bootstrap_resamples=x"], "bootstrap_resamples='x' must be an integer >= 1"),
    (["seed=1.5"], "seed=1.5 must be an integer"),
    (["budgets=[4,x]"], "budgets=[4, 'x'] must be a list of integers >= 1"),
    (["-m", "n_problems=10,-1"], "n_problems=-1 must be"),                  # every value of a sweep, before it starts
    (["split=valid"], "split='valid' must be eval or train"),
])
def test_run_fields_of_the_wrong_type_or_range_end_in_one_line(tmp_path, args, needle):
    line = one_error_line(run_cli(*args, f"hydra.run.dir={tmp_path}", f"hydra.sweep.dir={tmp_path}"))
    assert needle in line and "e.g." in line


def test_an_output_directory_that_cannot_be_written(tmp_path):
    line = one_error_line(run_cli("hydra.run.dir=/proc/lab-test"))
    assert "cannot create the output directory /proc/lab-test" in line and "hydra.run.dir=PATH" in line


def test_an_empty_task_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    line = one_error_line(run_cli("task=math_sample", f"task.path={empty}", "cache_path=null",
                                  f"hydra.run.dir={tmp_path}/run"))
    assert "no evaluation problems" in line and "task.path" in line


def test_a_cpu_bind_the_server_would_ignore_stops_with_one_line(tmp_path):
    # vLLM binds threads only in its own worker process; the tiny env runs the worker inside the engine core, where
    # VLLM_CPU_OMP_THREADS_BIND is never read: the binding asked for would silently not happen
    line = one_error_line(run_cli("verifier=prm", "verifier.cpu_bind=1", f"hydra.run.dir={tmp_path}"))
    assert "verifier.cpu_bind" in line and "VLLM_ENABLE_V1_MULTIPROCESSING" in line and "verifier.env" in line
