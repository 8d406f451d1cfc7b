"""MMIM training throughput and peak memory, against the PyTorch reference (issue 6; DESIGN §7 "Speed").

    python scripts/benchmark_training.py --torch-python /work/torchvenv/bin/python     # the full run (~1 h)
    python scripts/benchmark_training.py --quick --out /tmp/tp                         # tiny backbone, minutes

Every configuration runs in a fresh process (peak RSS per configuration). Writes throughput.json and
throughput.md into --out. The PyTorch reference needs a separate environment with torch and mmsa 2.2.1; see
keras_mmsa/training/benchmark_torch_reference.py for the commands. Without --torch-python the ratios to it
are left out.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from keras_mmsa.training.benchmark import (
        BACKBONES,
        Case,
        Settings,
        default_cases,
        run_benchmark,
    )

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="benchmarks/results/training")
    p.add_argument("--quick", action="store_true", help="tiny backbone, B=32, XLA only, 3 repeats")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 64])
    p.add_argument("--repeats", type=int, default=None, help="timed iterations (default 5; base 3)")
    p.add_argument("--warmup", type=int, default=None, help="default 1; base 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--torch-python", default=None, help="a Python with torch and mmsa 2.2.1 (the reference)"
    )
    p.add_argument(
        "--torch-threads",
        nargs="+",
        type=int,
        default=[0, 1],
        help="torch thread counts to time (0 = torch's default); the fastest is the reference",
    )
    p.add_argument(
        "--case",
        action="append",
        default=None,
        metavar="BACKBONE,BATCH,XLA,ALTERNATION[,ENCODER[,DROPOUT_RNG]]",
        help="run only these cases, e.g. tiny,32,1,epoch,keras (repeatable)",
    )
    args = p.parse_args(argv)

    if args.case:
        cases = []
        for spec in args.case:
            parts = spec.split(",")
            cases.append(
                Case(parts[0], int(parts[1]), parts[2] in ("1", "true", "xla"), *parts[3:])
            )
    else:
        cases = default_cases(
            quick=args.quick, backbones=args.backbones, batch_sizes=tuple(args.batch_sizes)
        )

    def settings_for(backbone):
        # BERT-base iterations take seconds: 3 timed iterations, no extra warm-up (the first, compiling
        # iteration already warms up)
        repeats = args.repeats or (3 if args.quick or backbone == "base" else 5)
        warmup = args.warmup if args.warmup is not None else (0 if backbone == "base" else 1)
        return Settings(warmup=warmup, repeats=repeats, seed=args.seed)

    torch_backbones = sorted({c.backbone for c in cases}, key=list(BACKBONES).index)
    start = time.perf_counter()
    report = run_benchmark(
        cases,
        settings_for("tiny"),
        out_dir=args.out,
        torch_python=args.torch_python,
        torch_backbones=torch_backbones,
        torch_threads=tuple(args.torch_threads),
        settings_for=settings_for,
        log=lambda msg: print(msg, flush=True),
    )
    print(
        f"wrote {len(report['results'])} configurations to {os.path.join(args.out, 'throughput.json')}"
        f" in {time.perf_counter() - start:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
