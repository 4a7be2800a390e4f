"""Run one configuration of the lab: task x policy x strategy x verifier, one record per problem.

    python -m search.run                                    # tiny world: shipped policy, best-of-64, exact oracle
    python -m search.run verifier=random n_problems=20      # any config value can be overridden
    python -m search.run -m verifier=outcome_oracle,random  # a Hydra multirun: one warm vLLM server for all jobs
    lab run ...                                             # the same, through the lab's front door

Writes ``records.jsonl`` (one line per problem, appended as each finishes) and ``summary.json`` (config as plain
fields, per-budget table with bootstrap intervals, versions, checkpoint hash) into the run's output directory, and
for a pool strategy ``scaling.png``. Running again into the same directory (``hydra.run.dir=...``) resumes: finished
problems are not redone. The run itself is ``search.engine.runner.run``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from search.analysis.summaries import format_table
from search.build import CONF_DIR
from search.cli import exit_on_lab_error
from search.engine.runner import run


def print_summary(summary: dict, cfg: DictConfig, out_dir: Path) -> None:
    print(f"\n{summary['task']}: {summary['n_problems']} problems | policy {summary['policy_model_id']} | "
          f"strategy {summary['strategy']} | verifier {summary['verifier']} | {summary['wall_s']:.0f} s")
    if "budgets" in summary:
        print("mean over problems [95% bootstrap interval]; tokens and FLOPs are what k samples cost per problem")
        ks = [r["k"] for r in summary["budgets"]]
        shown = [k for k in cfg.report_budgets if k in ks] or None
        print(format_table(summary["budgets"], shown))
        if "policy_profile" in summary:
            print("policy: " + "  ".join(f"{k}={v:.3f}" for k, v in summary["policy_profile"].items()))
    counted = {k: v for k, v in summary.get("verifier_counts", {}).items() if v}
    if counted:
        print(f"verifier {summary['verifier_base']}: " + "  ".join(f"{k}={v}" for k, v in counted.items())
              + " (candidates, counted in this process; docs/outputs-and-tables.md)")
    print(f"records: {out_dir / 'records.jsonl'}\nsummary: {out_dir / 'summary.json'}")
    if (out_dir / "scaling.png").exists():
        print(f"figure:  {out_dir / 'scaling.png'}")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    with exit_on_lab_error():
        summary = run(cfg, out_dir, tuple(HydraConfig.get().overrides.task))
    if summary["strategy_kind"] == "pool":     # curves over k
        from plots.run_curves import plot_run

        plot_run(out_dir)
    print_summary(summary, cfg, out_dir)


def main() -> None:
    from search.cli import check_overrides

    check_overrides(sys.argv[1:], CONF_DIR)
    hydra_main()


if __name__ == "__main__":
    main()
