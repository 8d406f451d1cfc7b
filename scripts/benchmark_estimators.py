"""Benchmark the MI estimators on correlated Gaussians (DESIGN §2 "The estimator benchmark").

    python scripts/benchmark_estimators.py                      # full protocol: 5 levels x 4000 steps, both variants
    python scripts/benchmark_estimators.py --quick --out /tmp/b # a few hundred steps per level

Writes summary.csv (estimator,variant,true_mi,mean,var,bias,mse,nan_count), estimators_<variant>.png,
trajectories_<variant>.npz and run.json into --out.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from keras_mmsa.estimators.benchmark import (
        ALL_ESTIMATORS,
        VARIANTS,
        BenchmarkConfig,
        run_benchmark,
    )

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps-per-level", type=int, default=4000)
    p.add_argument(
        "--quick", action="store_true", help="300 steps per level; statistics over the last eighth"
    )
    p.add_argument("--out", default="benchmarks/results/estimators")
    p.add_argument("--estimators", nargs="+", default=list(ALL_ESTIMATORS), choices=ALL_ESTIMATORS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--critic", default="concat", choices=("concat", "separable"))
    p.add_argument("--learning-rate", type=float, default=5e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--hidden-dim", type=int, default=15, help="critic hidden width (CLUB notebook: 15)"
    )
    p.add_argument(
        "--q-hidden-dim", type=int, default=None, help="BA/CLUB q hidden width (default hidden/2)"
    )
    p.add_argument(
        "--logvar-bound", type=float, default=1.0, help="q's |log var| bound (1 = CLUB's Tanh)"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    steps = 300 if args.quick else args.steps_per_level
    window = steps // 8 if args.quick else min(500, steps)
    config = BenchmarkConfig(
        steps_per_level=steps,
        window=window,
        estimators=tuple(args.estimators),
        variants=tuple(args.variants),
        critic=args.critic,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        hidden_dim=args.hidden_dim,
        q_hidden_dim=args.q_hidden_dim,
        logvar_bound=args.logvar_bound,
        seed=args.seed,
        steps_per_call=next(n for n in (100, 50, 20, 10, 5, 2, 1) if steps % n == 0),
    )
    start = time.perf_counter()
    rows = run_benchmark(config, args.out, log=lambda msg: print(msg, flush=True))
    print(
        f"wrote {len(rows)} rows to {os.path.join(args.out, 'summary.csv')} in {time.perf_counter() - start:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
