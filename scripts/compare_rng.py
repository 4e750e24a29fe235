"""Distribution-level comparison of two `emorl reproduce v2-tabular` runs
(e.g. --rng numpy vs --rng fast over the same seeds): per experiment and arm,
the means, a two-sample Kolmogorov-Smirnov test and a Mann-Whitney U test on
the per-seed values, and the share of seeds in the upper mode for the bimodal
metrics. Prints a markdown table.

Usage: python scripts/compare_rng.py RUN_A RUN_B  (needs scipy)"""

import json
import pathlib
import sys

from scipy import stats

EXPERIMENTS = ["fear", "anger", "regret", "integration", "transfer"]
# Upper mode thresholds of the bimodal metrics (spec §3.7.1).
MODES = {"fear": 0.5, "transfer": 2.5}


def per_seed(run, exp, arm):
    files = sorted((pathlib.Path(run) / "seeds" / exp).glob("*.json"), key=lambda p: int(p.stem))
    return [json.loads(f.read_text())[arm] for f in files]


def main(a, b):
    print("| Experiment | Arm | mean A | mean B | KS p | Mann-Whitney p | upper mode A | upper mode B |")
    print("|---|---|---|---|---|---|---|---|")
    for exp in EXPERIMENTS:
        for arm in ["control", "treatment"]:
            x, y = per_seed(a, exp, arm), per_seed(b, exp, arm)
            ks = stats.ks_2samp(x, y).pvalue
            mw = stats.mannwhitneyu(x, y).pvalue
            mode = MODES.get(exp)
            ma = f"{sum(v > mode for v in x) / len(x):.2f}" if mode else "–"
            mb = f"{sum(v > mode for v in y) / len(y):.2f}" if mode else "–"
            print(f"| {exp} | {arm} | {sum(x)/len(x):.4f} | {sum(y)/len(y):.4f} | {ks:.3f} | {mw:.3f} | {ma} | {mb} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
