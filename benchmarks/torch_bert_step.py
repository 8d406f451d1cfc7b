"""The PyTorch side of `bert_step.py`: BERT alone, training-mode forward and training step, one batch.

Runs in the PyTorch environment (torch, transformers, numpy) and imports nothing of keras_mmsa, TensorFlow or the
rest of `benchmarks/` except `torch_common.py`. `transformers.BertModel` built from a `BertConfig` of the
requested size (random weights, no download), [CLS] -> `torch.nn.Linear(hidden, 1)`, mean squared error,
`clip_grad_norm_`, then `torch.optim.Adam` or `SGD` (`--optimizer`). The forward is timed under `no_grad` in
`train()` mode (dropout on); peaks are `VmHWM` after building, after the forward timings, after the step timings.

    python benchmarks/torch_bert_step.py --backbone base --optimizer adam --batch BATCH.npz --out OUT.json
"""

import argparse

import torch_common


def vm_peak_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise OSError("no VmHWM in /proc/self/status (Linux only)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="torch_bert_step.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", choices=("base", "tiny"), required=True)
    p.add_argument("--optimizer", choices=("adam", "sgd"), required=True)
    p.add_argument(
        "--batch", required=True, help=".npz with token_ids, padding_mask, segment_ids, label"
    )
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clipnorm", type=float, default=5.0)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import numpy as np
    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = {"imports": vm_peak_mb()}
    data = np.load(args.batch)
    ids = torch.as_tensor(data["token_ids"].astype("int64"))
    mask = torch.as_tensor(data["padding_mask"].astype("int64"))
    segments = torch.as_tensor(data["segment_ids"].astype("int64"))
    y = torch.as_tensor(data["label"].astype("float32"))
    torch.manual_seed(args.seed)
    sizes = torch_common.BASE if args.backbone == "base" else torch_common.TINY
    vocab = 30522 if args.backbone == "base" else int(ids.max()) + 1
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=vocab, **sizes))
    head = torch.nn.Linear(sizes["hidden_size"], 1)
    params = list(bert.parameters()) + list(head.parameters())
    opt = (torch.optim.Adam if args.optimizer == "adam" else torch.optim.SGD)(params, lr=args.lr)
    bert.train()
    head.train()
    peaks["built"] = vm_peak_mb()

    def cls():
        out = bert(input_ids=ids, attention_mask=mask, token_type_ids=segments)
        return out.last_hidden_state[:, 0]

    def forward(i):
        with torch.no_grad():
            return cls()

    _, _, forward_walls, _ = torch_common.time_iterations(forward, args.warmup, args.repeats)
    peaks["forward"] = vm_peak_mb()

    def step(i):
        opt.zero_grad()
        loss = torch.mean((head(cls()) - y) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.clipnorm)
        opt.step()
        return float(loss)

    step_first, losses, step_walls, step_cpus = torch_common.time_iterations(
        step, args.warmup, args.repeats
    )
    peaks["step"] = vm_peak_mb()
    if not np.all(np.isfinite(losses)):
        raise RuntimeError(f"non-finite loss: {losses}")
    result = {
        "case": {
            "implementation": "torch",
            "optimizer": args.optimizer,
            "backbone": args.backbone,
            "batch_size": int(ids.shape[0]),
        },
        "forward_s": torch_common.summary_stats(forward_walls),
        "step_s": torch_common.summary_stats(step_walls),
        "step_cpu_s": torch_common.summary_stats(step_cpus),
        "step_first_s": step_first,
        "peak_mb": peaks,
    }
    torch_common.write_result(args.out, result, transformers_version=transformers.__version__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
