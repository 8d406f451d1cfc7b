"""One configuration over several seeds, reported as mean ± std (how the papers report results)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

from keras_mmsa import metrics
from keras_mmsa.training.run import train_and_evaluate

MMSA_SEEDS = (1111, 1112, 1113, 1114, 1115)


def run_seeds(config, seeds=MMSA_SEEDS, workdir="runs", *, verbose=1, export=False):
    """Trains `config` once per seed (`<workdir>/<name>_seed<s>/`) and writes the aggregate.

    `<name>` is `config.name` when given, else the default run name without its seed (so the run of seed s is
    the one a single run with `--seed s` makes).

    Writes `<workdir>/<name>_seeds.json` (per-seed test metrics and the mean/std per metric) and
    `<workdir>/<name>_seeds.md` (the table in the papers' layout). Returns the aggregate dict.
    """
    base = config.name or config.default_name(with_seed=False)
    config = config.resolved()
    per_seed = {}
    for seed in seeds:
        run = dataclasses.replace(config, seed=int(seed), name=f"{base}_seed{seed}")
        per_seed[int(seed)] = train_and_evaluate(run, workdir, verbose=verbose, export=export)[
            "test"
        ]
    aggregate = metrics.aggregate_runs(list(per_seed.values()))
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{base}_seeds.json").write_text(
        json.dumps({"seeds": per_seed, "aggregate": aggregate}, indent=2) + "\n"
    )
    table = metrics.format_markdown({f"{base} ({len(per_seed)} seeds)": aggregate})
    (workdir / f"{base}_seeds.md").write_text(table + "\n")
    if verbose:
        print(table)
    return aggregate
