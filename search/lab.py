"""The lab's front door: one command that lists every other and dispatches to it.

    lab --help                        # every command, a line each
    lab run -m +sweep=noise_flip      # = python -m search.run -m +sweep=noise_flip (a Hydra app: overrides, -m)
    lab report multirun/noise_flip    # = python -m search.report multirun/noise_flip

Each command is a module with a ``main`` that reads its own arguments; ``lab CMD ARGS`` runs it exactly as
``python -m MODULE ARGS`` does (the ``python -m`` forms keep working).
"""
from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("search.run", "run one config, or a sweep with -m (Hydra overrides: strategy=..., verifier=..., noise=...)"),
    "collect": ("search.collect", "collect a sweep directory into results.parquet/.csv (one row per job, rule, k)"),
    "report": ("search.report", "a sweep's report page (report.md/.html) with every figure; collects first if stale"),
    "plot": ("plots", "figures of one run directory, or of a collected results.parquet"),
    "measure": ("search.measure", "measure a verifier against the exact oracles (ROC, AUROC, calibration, rates)"),
    "study": ("search.verifier_study", "verifier study: measure it, then search with it beside oracle and matched noise"),
    "labels": ("search.prm_labels", "Monte-Carlo process labels from the tiny policy's rollouts (PRM training data)"),
    "train-policy": ("search.training.train_policy", "train the tiny policy (docs/tiny-world.md has its measured time)"),
    "train-prm": ("search.training.train_prm", "train a tiny PRM or outcome reward model from labels (at most --minutes)"),
    "verifier-scaling": ("search.verifier_scaling", "verifier scaling study: train verifiers over families x sizes x "
                                                    "labels, measure each in search (resumable)"),
    "frontier": ("search.frontier", "train-versus-test compute frontier: policies of several sizes and checkpoints, "
                                    "best-of-k on each, the fitted trade-off (resumable)"),
    "expert-iteration": ("search.expert_iteration", "expert iteration: search with a verifier, fine-tune on what it "
                                                    "accepts, measure, repeat; one loop per verifier (resumable)"),
    "train-judge": ("search.training.train_judge", "train the tiny generative verifier from graded samples"),
    "stand-ins": ("search.training.stand_ins", "random-weight stand-ins of the real checkpoints (LAB_MODELS=DIR, +cpu=...)"),
    "serve": ("search.server", "start a vLLM server on a checkpoint for sweeps and launchers to share"),
    "check-verifier": ("verifiers.contract", "check a verifier (built-in or plug-in) against the verifier contract"),
    "plugins": ("verifiers.plugins", "list the verifier plug-ins installed in this environment"),
    "new-verifier": ("verifiers.template", "write a verifier plug-in package (entry point, YAML, class, contract test)"),
    "offline": ("search.offline", "check and measure a verifier on a finished run's stored pools (no server)"),
    "confidence-vote": ("search.confidence_vote", "confidence-filtered majority vote on a run's pools (no server)"),
    "pools": ("search.pools", "check, import or export pool files (samples from any engine; no server)"),
    "allocate": ("search.allocate", "allocation report from existing pools: compute-optimal by difficulty, early stopping"),
}
"""Command name -> (module whose ``main`` runs it, what it does)."""


def usage() -> str:
    """The help text: every command with its line and its ``python -m`` form."""
    width = max(map(len, COMMANDS))
    lines = ["usage: lab COMMAND [ARGS...]     (lab COMMAND --help for a command's own options)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "each is also python -m MODULE: " + ", ".join(f"{n}={m}" for n, (m, _) in COMMANDS.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``lab COMMAND ARGS`` to the command's module, with ``sys.argv`` as ``python -m`` would set it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}': choose one of {', '.join(COMMANDS)} (lab --help)", file=sys.stderr)
        return 2
    module = COMMANDS[name][0]
    sys.argv = [f"lab {name}", *rest]
    result = importlib.import_module(module).main()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
