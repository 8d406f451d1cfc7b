"""Paired comparison of methods trained on the same seeds: mean ± std per metric and paired p-values.

Reads the `results.json` that `benchmarks/real_mosi.py` writes (one per method), pairs the runs by seed, and
writes a markdown table (and JSON) with, for each method against the reference: the mean ± population std of
each metric, the mean paired difference, the paired t-test p-value (two-sided; scipy when installed, else the
closed form for 2 degrees of freedom) and the exact sign-flip permutation p-value (two-sided; needs no
distribution assumption, but with n seeds it cannot go below 2 / 2^n: 0.25 for 3 seeds).

    python benchmarks/paired_seeds.py --reference mmim=benchmarks/results/real_mosi/results.json \\
        self_mm=benchmarks/results/real_mosi/self_mm/results.json \\
        self_mi=benchmarks/results/real_mosi/self_mi/results.json \\
        --configuration text+audio --out benchmarks/results/self_mm/real_mosi
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pathlib
import sys

METRICS = ("mae", "corr", "acc7", "has0_acc2", "non0_acc2", "non0_f1")
PERCENT = {"acc7", "acc5", "has0_acc2", "non0_acc2", "has0_f1", "non0_f1"}
LOWER_IS_BETTER = {"mae"}


def per_seed(results_path, configuration):
    """`{seed: {metric: value}}` of one configuration of a `real_mosi.py` results.json."""
    data = json.loads(pathlib.Path(results_path).read_text())
    runs = data["results"].get(configuration)
    if runs is None:
        raise ValueError(
            f"{results_path}: no configuration {configuration!r}; it has {sorted(data['results'])}"
        )
    return {str(seed): dict(run["test"]) for seed, run in runs["seeds"].items()}


def sign_flip_p(differences):
    """Exact two-sided sign-flip permutation p-value of the mean of paired differences."""
    d = [float(v) for v in differences]
    observed = abs(sum(d))
    hits = 0
    total = 0
    for signs in itertools.product((1.0, -1.0), repeat=len(d)):
        total += 1
        if abs(sum(s * v for s, v in zip(signs, d))) >= observed - 1e-12:
            hits += 1
    return hits / total


def paired_t_p(differences):
    """Two-sided paired t-test p-value (None when the differences have no spread)."""
    d = [float(v) for v in differences]
    n = len(d)
    if n < 2:
        return None
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # equal differences (up to rounding): t is undefined
        return None
    t = mean / (sd / math.sqrt(n))
    try:
        from scipy import stats
    except ImportError:
        stats = None
    if stats is not None:
        return float(2.0 * stats.t.sf(abs(t), n - 1))
    if n - 1 == 2:  # Student's t with 2 degrees of freedom has a closed-form CDF
        return 1.0 - abs(t) / math.sqrt(2.0 + t * t)
    return None


def _mean_std(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def compare(reference, others, metrics=METRICS):
    """`reference` and `others`: `(name, {seed: {metric: value}})`; returns the report dict."""
    ref_name, ref = reference
    report = {"reference": ref_name, "rows": []}
    for name, runs in [reference, *others]:
        seeds = sorted(set(runs) & set(ref), key=int)
        if not seeds:
            raise ValueError(f"{name} and {ref_name} share no seed")
        row = {"name": name, "seeds": seeds, "metrics": {}}
        for metric in metrics:
            values = [float(runs[s][metric]) for s in seeds]
            mean, std = _mean_std(values)
            entry = {"mean": mean, "std": std, "values": values}
            if name != ref_name:
                diffs = [float(runs[s][metric]) - float(ref[s][metric]) for s in seeds]
                entry.update(
                    difference=sum(diffs) / len(diffs),
                    p_t=paired_t_p(diffs),
                    p_sign_flip=sign_flip_p(diffs),
                )
            row["metrics"][metric] = entry
        report["rows"].append(row)
    return report


def _fmt(entry, metric):
    scale = 100.0 if metric in PERCENT else 1.0
    digits = 2 if metric in PERCENT else 3
    return f"{entry['mean'] * scale:.{digits}f} ± {entry['std'] * scale:.{digits}f}"


def markdown(report, metrics=METRICS):
    names = {
        "mae": "MAE",
        "corr": "Corr",
        "acc7": "Acc-7",
        "has0_acc2": "Acc-2 Has0",
        "non0_acc2": "Acc-2 Non0",
        "non0_f1": "F1 Non0",
    }
    lines = [
        "| run | seeds | " + " | ".join(names.get(m, m) for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for row in report["rows"]:
        cells = [_fmt(row["metrics"][m], m) for m in metrics]
        lines.append(f"| {row['name']} | {','.join(row['seeds'])} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Paired by seed against **{report['reference']}** (difference = run − reference; "
        "p: two-sided paired t-test / exact sign-flip):",
        "",
        "| run | " + " | ".join(names.get(m, m) for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for row in report["rows"][1:]:
        cells = []
        for m in metrics:
            e = row["metrics"][m]
            scale = 100.0 if m in PERCENT else 1.0
            p_t = "–" if e["p_t"] is None else f"{e['p_t']:.3f}"
            cells.append(f"{e['difference'] * scale:+.3f} (p {p_t} / {e['p_sign_flip']:.3f})")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    n = min(len(r["seeds"]) for r in report["rows"])
    lines += ["", f"With {n} seeds the sign-flip p-value cannot go below {2 / 2**n:.3f}."]
    return "\n".join(lines) + "\n"


def _named(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH/results.json, got {text!r}")
    name, path = text.split("=", 1)
    return name, path


def main(argv=None):
    p = argparse.ArgumentParser(prog="paired_seeds.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=_named, required=True, help="NAME=PATH/results.json")
    p.add_argument("others", type=_named, nargs="+", help="NAME=PATH/results.json ...")
    p.add_argument("--configuration", default="text+audio")
    p.add_argument("--out", required=True, help="folder for paired.md and paired.json")
    args = p.parse_args(argv)
    reference = (args.reference[0], per_seed(args.reference[1], args.configuration))
    others = [(name, per_seed(path, args.configuration)) for name, path in args.others]
    report = compare(reference, others)
    report["configuration"] = args.configuration
    report["command"] = "python benchmarks/paired_seeds.py " + " ".join(argv or sys.argv[1:])
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paired.json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    (out / "paired.md").write_text(f"`{report['command']}`\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
