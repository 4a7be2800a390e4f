"""The composition root: the one place that turns a config into the lab's parts.

    from search.build import compose, build_world
    cfg = compose(["strategy=beam_search", "verifier=process_oracle"])
    world = build_world(cfg)          # task, strategy, verifier (under its noise), policy (behind the cache)

Every entry point (run, measure, the verifier study, the contract checker, the benches) builds through here; no
library module imports an entry point. ``compose`` is Hydra's composition outside a Hydra app (for commands that run
many configs in one process); inside ``@hydra.main`` the config arrives composed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from search.contracts import LabError, Policy, Strategy, Task, Verifier

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
"""The lab's Hydra config tree (``conf/``)."""


NOT_IDENTITY = ("n_problems", "concurrency", "report_budgets", "cache_path", "bootstrap_resamples",
                "policy.max_concurrency", "policy.timeout_s", "policy.max_retries", "policy.startup_timeout_s",
                "policy.log_dir", "policy.base_urls", "policy.api_key", "verifier.base_urls", "verifier.timeout_s",
                "verifier.max_retries", "verifier.max_concurrency", "verifier.startup_timeout_s", "verifier.log_dir")
"""Config fields that do not change a problem's record, so a rerun may change them: how many problems (a rerun
with more extends the run), how fast or where requests go, and what is only recomputed from the records (the
printed rows, the bootstrap). Every other field is part of the run's identity."""


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


CHECK_GRID = "_check_grid_"
"""A verifier YAML's optional map of field -> values that ``lab check-verifier`` also checks (every combination);
the lab removes it before the verifier is built, and it is not part of a run's identity."""


def identity(config: dict) -> dict[str, Any]:
    """The fields of a resolved config (plain dict) that make a run's records what they are, flattened. A config
    written before ``split`` existed drew the evaluation set: it reads as ``split: eval``, so its directory resumes."""
    flat = {"split": "eval", **_flatten(config)}
    return {k: v for k, v in flat.items() if k not in NOT_IDENTITY and not k.startswith("hydra.")
            and f".{CHECK_GRID}." not in k}


RUN_FIELDS: dict[str, tuple[str, str, str]] = {
    "n_problems": ("int>=1|null", "how many eval problems to run; null = all", "200"),
    "split": ("split", "the problems a run draws: the fixed evaluation set or the training stream", "train"),
    "budgets": ("ints>=1|null", "the budgets a pool strategy evaluates; null = powers of two", "[1,4,16,64]"),
    "report_budgets": ("ints>=1", "the budgets printed at the end", "[1,4,16,64]"),
    "fp_cost": ("float>=0", "the cost of answering with an accepted wrong sample", "1.0"),
    "cache_path": ("str|null", "the generation cache file; null = off", ".lab_cache/generations.sqlite"),
    "seed": ("int", "the base seed of the run's own randomness", "0"),
    "concurrency": ("int>=1", "problems in flight at once", "16"),
    "bootstrap_resamples": ("int>=1", "resamples of problems for every interval", "1000"),
    "weighted_vote_draws": ("int>=1", "random k-subsets per problem for the weighted vote", "2000"),
}
"""The run-level fields of conf/config.yaml: name -> (the values it takes, what it is, an example)."""
WANT = {"int>=1|null": "an integer >= 1, or null", "ints>=1|null": "a list of integers >= 1, or null",
        "ints>=1": "a list of integers >= 1", "float>=0": "a number >= 0", "str|null": "a path, or null",
        "int": "an integer", "int>=1": "an integer >= 1", "split": "eval or train"}
"""How each kind of value is named in an error line."""


def _fits(value: Any, kind: str) -> bool:
    if value is None:
        return kind.endswith("|null")
    kind = kind.removesuffix("|null")
    if kind == "split":
        return value in ("eval", "train")
    if kind == "str":
        return isinstance(value, str) and bool(value)
    if kind.startswith("ints"):
        return isinstance(value, (list, tuple)) and all(_fits(v, "int>=1") for v in value)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind.startswith("int"):
        return number and float(value).is_integer() and (kind == "int" or value >= 1)
    return number and value >= 0           # float>=0


def check_run_fields(cfg: DictConfig) -> None:
    """Refuse a run-level field of the wrong type or range with one line naming the field, the value and the fix,
    before anything is built (a negative n_problems used to run for minutes while memory grew)."""
    from omegaconf import OmegaConf

    for name, (kind, meaning, example) in RUN_FIELDS.items():
        if name not in cfg:
            continue
        node = cfg[name]
        value = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        if not _fits(value, kind):
            raise LabError(f"{name}={value!r} must be {WANT[kind]}: it is {meaning}; e.g. {name}={example}")


def compose(overrides: Sequence[str] = (), config_name: str = "config", searchpath: Sequence[str] = (),
            return_hydra_config: bool = False) -> DictConfig:
    """The config that ``python -m search.run OVERRIDES`` would run, composed without starting a Hydra app.
    ``searchpath`` holds ``hydra.searchpath=[...]`` overrides (a plug-in's conf folder). Composition errors are
    Hydra's exceptions; ``search.cli.composed`` turns them into one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=[*searchpath, *overrides],
                             return_hydra_config=return_hydra_config)


def build(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """Instantiate ``cfg[key]``, turning the errors a user can cause into one LabError line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf.errors import MissingMandatoryValue

    node = cfg[key]
    if isinstance(node, DictConfig) and CHECK_GRID in node:      # the checker's grid is not an argument
        from omegaconf import open_dict

        node = node.copy()
        with open_dict(node):
            del node[CHECK_GRID]
    try:
        return instantiate(node, **kwargs)
    except MissingMandatoryValue as err:
        raise LabError(f"{err.full_key} is not set: give it on the command line ({err.full_key}=...) or in "
                       f"conf/{key}/") from None
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, LabError):
            raise cause from None
        if isinstance(cause, MissingMandatoryValue):
            raise LabError(f"{cause.full_key} is not set: give it on the command line ({cause.full_key}=...)") from None
        if isinstance(cause, TypeError):
            raise LabError(f"{key} config does not fit {cfg[key].get('_target_')}: {cause}") from None
        if "Error locating target" in str(err):
            raise LabError(f"{key}._target_ {cfg[key].get('_target_')} cannot be imported: pip install the package "
                           f"that provides it (non-editable installs need its YAML as package data), or fix "
                           f"_target_") from None
        raise


def build_task(cfg: DictConfig) -> Task:
    """The run's task (problems and the only grader)."""
    return build(cfg, "task")


def build_strategy(cfg: DictConfig) -> Strategy:
    """The run's search strategy."""
    return build(cfg, "strategy")


def build_verifier(cfg: DictConfig, task: Task) -> tuple[Verifier, Verifier]:
    """The run's verifier and the one under its noise: ``cfg.verifier`` for ``task``, wrapped in ``cfg.noise`` when
    a noise family is chosen (else both are the same object). Returns (verifier under noise, base verifier)."""
    base = build(cfg, "verifier", task=task)
    return (build(cfg, "noise")(base) if cfg.get("noise") and "_target_" in cfg.noise else base), base


def build_policy(cfg: DictConfig) -> Policy:
    """The run's policy client, behind the generation cache when ``cache_path`` is set."""
    policy = build(cfg, "policy")
    if cfg.get("cache_path"):
        from search.serving.cache import CachedPolicy, GenerationCache

        policy = CachedPolicy(policy, GenerationCache(cfg.cache_path))
    return policy


@dataclass
class World:
    """Everything one config builds."""

    task: Task
    """Problems and the grader."""
    strategy: Strategy
    """How the budget is spent."""
    verifier: Verifier
    """The verifier the strategy sees (under its noise, if any)."""
    base_verifier: Verifier
    """The verifier before noise (the same object when there is no noise)."""
    policy: Policy
    """The policy client (behind the generation cache when ``cache_path`` is set); a managed server starts lazily."""


def build_world(cfg: DictConfig) -> World:
    """Task, strategy, verifier (checked against the strategy's needs) and policy, in that order, so a config
    mistake is reported before any server or cache is touched."""
    task = build_task(cfg)
    strategy = build_strategy(cfg)
    verifier, base = build_verifier(cfg, task)
    strategy.check_verifier(verifier)
    return World(task=task, strategy=strategy, verifier=verifier, base_verifier=base, policy=build_policy(cfg))
