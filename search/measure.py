"""Measure a verifier against the exact oracles: ROC and AUROC, calibration, the rates at an operating threshold,
and the flip-noise setting with the same rates.

    python -m search.measure verifier=prm                      # the tiny PRM on the eval split
    python -m search.measure verifier=judge strategy.budget=16

The pool is the one best-of-k draws (its own ``solve``, with the same config and seeds, so the generation cache
answers a sweep's pools). Every candidate is scored by the verifier under test and labelled by the task: at the *outcome* level the
label is the grader's verdict on the final answer and the score is the verifier's whole-solution score
(``Scores.final``); at the *step* level (process verifiers only) the label of step i is whether steps 1..i all match
the reference (the process oracle) and the score is the verifier's score of step i.

The matched flip noise is the (TPR, FPR) pair at the threshold: an exact oracle wrapped in ``noise=flip`` with those
rates accepts right and wrong candidates as often as the verifier does at that threshold, which places the verifier
on the synthetic-noise axis (``python -m search.verifier_study`` runs both side by side).

Writes, into the run directory: ``verifier_scores.parquet`` (one row per labelled score), ``verifier_quality.json``
(the numbers) and ``roc.png`` / ``calibration.png``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from plots.verifier_quality import quality_figures
from search.analysis.verifier_metrics import sentence
from search.build import CONF_DIR
from search.contracts import LabError
from search.engine.measuring import measure, write


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="measure")
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        table, quality = measure(cfg)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    write(out_dir, table, quality)
    quality_figures(table, quality, out_dir)
    def num(x) -> str:             # a rate is None when its class is empty (no right candidate: no TPR)
        return "n/a" if x is None else f"{x:.3f}"

    for level, q in quality["levels"].items():
        print(f"{level:8s} n={q['n']:6d}  positives={q['positives']:6d}  AUROC={num(q['auroc'])}  "
              f"TPR={num(q['tpr'])}  FPR={num(q['fpr'])}  ECE={num(q['ece'])}  Brier={num(q['brier'])}")
    print(sentence(quality))
    print(f"wrote {out_dir}/verifier_quality.json, verifier_scores.parquet, roc.png, calibration.png")


def main() -> None:
    from search.cli import check_overrides

    check_overrides(sys.argv[1:], CONF_DIR, config_name="measure")
    hydra_main()


if __name__ == "__main__":
    main()
