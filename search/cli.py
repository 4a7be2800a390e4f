"""What every command does the same way: one ``error:`` line and exit code 2 for a user's mistake, and the
command line checked before Hydra runs.

Hydra's own messages for an unknown option span several lines and exit with 1; a sweep with a bad value would
otherwise fail only when its job comes up. ``check_overrides`` composes every value of every sweep first.
"""
from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path
from typing import Iterator, NoReturn, Sequence

from search.contracts import LabError

_MISSING_OPTION = re.compile(r"Could not find '([^']+)/([^']+)'")
_NOT_A_FIELD = re.compile(r"Could not override '([^']+)'")
_ALREADY_A_FIELD = re.compile(r"An item is already at '([^']+)'")
_FLAGS_WITH_VALUE = {"--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--info", "-i",
                     "--experimental-rerun"}


def fail(message: str) -> NoReturn:
    """Print one ``error:`` line naming the problem and the fix, and exit with code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


@contextlib.contextmanager
def exit_on_lab_error() -> Iterator[None]:
    """Turn a LabError raised inside the block into one ``error:`` line and exit code 2."""
    try:
        yield
    except LabError as err:
        fail(str(err))


def composed(overrides: Sequence[str], config_name: str = "config", searchpath: Sequence[str] = ()):
    """``search.build.compose`` with a composition error turned into one line and exit code 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from search.build import CONF_DIR, compose

    try:
        return compose(overrides, config_name, searchpath)
    except (HydraException, OmegaConfBaseException) as err:
        fail(explain(str(err), CONF_DIR))


def _overrides(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _variants(overrides: list[str]) -> list[list[str]]:
    """The override lists to compose: the first value of every sweep, then each sweep value in turn."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for ov in parsed:
        if ov.is_sweep_override():
            choices.append([f"{ov.get_key_element()}={v}" for v in ov.sweep_string_iterator()])
        else:
            choices.append([ov.input_line])
    base = [c[0] for c in choices]
    variants = [base]
    for i, c in enumerate(choices):
        for value in c[1:]:
            variants.append(base[:i] + [value] + base[i + 1:])
    return variants


def _top_level_fields(conf_dir: str) -> list[str]:
    """The keys of conf/config.yaml besides its defaults list."""
    import yaml

    data = yaml.safe_load((Path(conf_dir) / "config.yaml").read_text()) or {}
    return [k for k in data if k != "defaults"]


def explain(message: str, conf_dir: str) -> str:
    """One line for a Hydra composition error."""
    missing = _MISSING_OPTION.search(message)
    if missing:
        group, option = missing.groups()
        folder = Path(conf_dir) / group
        options = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        return (f"unknown {group} '{option}': choose one of {', '.join(options) or '(none)'} "
                f"(or add conf/{group}/{option}.yaml)")
    absent = _NOT_A_FIELD.search(message)
    if absent:
        key = absent.group(1)
        if "." not in key:                       # a top-level key: a field of conf/config.yaml, not of a group
            fields = sorted(k for k in _top_level_fields(conf_dir) if k != "hydra")
            return (f"{key} is not a field of the run config: use one of {', '.join(fields)} (conf/config.yaml), "
                    f"or hydra.run.dir=DIR for where the run writes")
        group = key.split(".", 1)[0]
        route = (" (a verifier=plugin entry point takes its keyword arguments with +: its YAML has only name)"
                 if group == "verifier" else "")
        return (f"{key} is not a field of the chosen {group} config: add it with +{key}=VALUE{route}, or fix the "
                f"name (the fields are in conf/{group}/ or the plug-in's YAML)")
    present = _ALREADY_A_FIELD.search(message)
    if present:
        key = present.group(1)
        return (f"+{key} adds a field, but {key} is already a field of the chosen config (a _target_ YAML's own "
                f"field): set it without the +, as {key}=VALUE")
    first = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    return f"bad configuration: {first} (list the options with: {command_name()} --help)"


def command_name() -> str:
    """How the running command was called, for a hint: ``lab check-verifier``, ``python -m verifiers.contract``
    (``python -m search.run`` when it cannot tell)."""
    arg0 = sys.argv[0] if sys.argv else ""
    if arg0.startswith("lab"):
        return arg0
    path = Path(arg0).resolve()
    root = Path(__file__).resolve().parent.parent
    if path.suffix == ".py" and path.is_relative_to(root):
        return "python -m " + ".".join(path.relative_to(root).with_suffix("").parts)
    return "python -m search.run"


def check_overrides(argv: list[str], conf_dir: str, config_name: str = "config") -> None:
    """Compose the config for every value the command line asks for; on failure print one line and exit 2."""
    overrides = _overrides(argv)
    if not overrides:
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from search.build import check_run_fields

    servers: dict[str, str] = {}
    try:
        variants = _variants(overrides)
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            for variant in variants:
                cfg = compose(config_name=config_name, overrides=variant, return_hydra_config=True)
                try:
                    check_run_fields(cfg)
                except LabError as err:
                    fail(str(err))
                writable(cfg)
                for group in ("policy", "verifier"):
                    part = cfg.get(group) or {}
                    urls = part.get("base_urls") if "base_urls" in part else None   # "in" is False for ???
                    if urls and not isinstance(urls, str):
                        servers.update({str(u): group for u in urls})
    except (HydraException, OmegaConfBaseException) as err:
        fail(explain(str(err), conf_dir))
    for url, group in servers.items():
        problem = unreachable(url)
        if problem:
            fail(f"{group} server {url} is not reachable ({problem}): start it (python -m search.server "
                 f"CHECKPOINT prints a URL) or fix {group}.base_urls")


def writable(cfg) -> None:
    """Fail with one line when the output directory Hydra would create cannot be created (before Hydra tries, and
    ends in a traceback)."""
    import os

    from omegaconf import OmegaConf

    hydra = cfg.get("hydra")
    if hydra is None:
        return
    for key in ("run.dir", "sweep.dir"):
        try:
            target = OmegaConf.select(hydra, key)
        except Exception:            # an interpolation only Hydra's own runtime can resolve (${now:...} resolves)
            continue
        if not target:
            continue
        path = Path(str(target)).absolute()
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK) or str(existing).startswith(("/proc", "/sys")):
            fail(f"cannot create the output directory {path} (hydra.{key}): {existing} is not a writable "
                 f"directory; choose another with hydra.{key}=PATH")


def unreachable(url: str, timeout_s: float = 5.0) -> str | None:
    """Why a server given by URL cannot be used (None when it answers): checked once before a sweep starts, so a
    launcher never fans out jobs that would each fail on the same dead address."""
    import httpx

    base = url.rstrip("/").removesuffix("/v1")
    try:
        httpx.get(base + "/v1/models", timeout=timeout_s)
        return None
    except httpx.HTTPError as err:
        return f"{type(err).__name__}: {' '.join(str(err).split()) or 'no answer'}"
