"""Times THUIAR's PyTorch Self-MM (PyPI `mmsa` 2.2.1, `SELF_MM`) on the batches of `self_mm_throughput.py`.

Runs in its OWN Python environment (the one `torch_reference.py` describes: torch 2.13 CPU, `mmsa==2.2.1
--no-deps`, easydict numpy pandas scikit-learn tqdm transformers); it imports nothing from keras_mmsa, TensorFlow
or the rest of `benchmarks/`. `self_mm_throughput.py --torch-python PATH` starts it.

The model is mmsa's `SELF_MM` (models/multiTask/SELF_MM.py) with mmsa's own MOSI hyper-parameters
(`config_regression.json`, key `self_mm`: audio LSTM 5 -> 16 -> 16, vision LSTM 20 -> 32 -> 32, post-fusion 128,
post text/audio/vision 32/16/32, its dropouts, `excludeZero`, H = 3), except that its BERT is built from a
config with random weights (`transformers.BertModel(BertConfig(...))`, no download) with the sizes of
`--backbone`: "tiny" (hidden 64, 2 layers, 2 heads, intermediate 128) or "base" (bert-base-uncased's), and
`text_out` = that hidden size.

One timed iteration = the body of mmsa's `SELF_MM.do_train` loop for one batch, calling mmsa's own trainer
methods: forward (train mode), the loss `sum over M/T/A/V of weighted_loss(output, label_map[task][index])`
(weights tanh|y_s - y_m| for T/A/V), backward, `update_labels` (run because the epoch counter is 2, as from
mmsa's second epoch on), `update_features`, `update_centers`, and the optimizer step, with `zero_grad` before
the forward. Difference from mmsa's loop: mmsa accumulates gradients over `update_epochs` = 4 batches and steps
once per 4; here every batch steps once (one optimizer step per batch, as the Keras side's `train_on_batch`
does). The optimizer is mmsa's: Adam with its five parameter groups (BERT with / without weight decay, audio,
vision, the rest) and their MOSI learning rates and weight decays.

Before timing, the label memories are initialised as mmsa's `init_labels` does over the whole train set: the
npz's `train_labels` ([N], N = the train set size) for every index, and the feature memories start at zero (as
in mmsa). The batches' `index` ([B]) picks their rows.

Writes a JSON result (`--out`): iteration_s {median, min, max, iqr}, the parts forward_backward_s / ulgm_s /
step_s, samples_per_s, peak_rss_mb, labels_updated, torch/transformers/mmsa versions, threads.
"""

import importlib
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

try:  # run as `python benchmarks/<script>.py` (its folder on the path) or imported as benchmarks.<script>
    import torch_common
except ImportError:
    import benchmarks.torch_common as torch_common
TASKS = "MTAV"
NAME_MAP = {"M": "fusion", "T": "text", "A": "audio", "V": "vision"}


def main():
    p = torch_common.reference_parser(
        "torch_self_mm.py", __doc__.splitlines()[0], "self_mm_throughput.py"
    )
    p.add_argument(
        "--epoch", type=int, default=2, help="mmsa's epoch counter (>= 2: labels update)"
    )
    args = p.parse_args()

    import numpy as np
    import torch
    import transformers
    from torch import nn, optim
    from transformers import BertConfig, BertModel

    # (`import MMSA.models.multiTask.SELF_MM as m` would bind the class the package re-exports, not the module)
    model_module = importlib.import_module("MMSA.models.multiTask.SELF_MM")
    train_module = importlib.import_module("MMSA.trains.multiTask.SELF_MM")

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = np.load(args.batches)
    n, batch_size, text_len = data["token_ids"].shape
    train_labels = torch.from_numpy(data["train_labels"].astype("float32"))
    num_train = int(train_labels.shape[0])
    sizes = torch_common.BASE if args.backbone == "base" else torch_common.TINY
    vocab = args.vocab_size or (
        30522 if args.backbone == "base" else int(data["token_ids"].max()) + 1
    )

    class RandomBert(nn.Module):
        """mmsa's BertTextEncoder (same forward) with a config-built, randomly initialised BERT."""

        def __init__(self, use_finetune=True, transformers="bert", pretrained=None):
            super().__init__()
            self.model = BertModel(BertConfig(vocab_size=vocab, **sizes))
            self.use_finetune = use_finetune

        def forward(self, text):
            ids, mask, segments = text[:, 0, :].long(), text[:, 1, :].float(), text[:, 2, :].long()
            return self.model(input_ids=ids, attention_mask=mask, token_type_ids=segments)[0]

    model_module.BertTextEncoder = RandomBert  # the name mmsa's SELF_MM module instantiates

    cfg = torch_common.mmsa_config("self_mm", "mosi")
    cfg.update(
        train_mode="regression",
        dataset_name="mosi",
        device=torch.device("cpu"),
        feature_dims=[sizes["hidden_size"], data["audio"].shape[-1], data["vision"].shape[-1]],
        text_out=sizes["hidden_size"],
        train_samples=num_train,
        model_name="self_mm",
    )
    model = model_module.SELF_MM(cfg)
    trainer = train_module.SELF_MM(cfg)

    # mmsa's do_train parameter groups (`model.Model` there is this SELF_MM inside mmsa's AMIO wrapper)
    no_decay = ["bias", "LayerNorm.bias", "LayerNorm.weight"]
    bert = list(model.text_model.named_parameters())
    groups = [
        {
            "params": [q for name, q in bert if not any(nd in name for nd in no_decay)],
            "weight_decay": cfg.weight_decay_bert,
            "lr": cfg.learning_rate_bert,
        },
        {
            "params": [q for name, q in bert if any(nd in name for nd in no_decay)],
            "weight_decay": 0.0,
            "lr": cfg.learning_rate_bert,
        },
        {
            "params": list(model.audio_model.parameters()),
            "weight_decay": cfg.weight_decay_audio,
            "lr": cfg.learning_rate_audio,
        },
        {
            "params": list(model.video_model.parameters()),
            "weight_decay": cfg.weight_decay_video,
            "lr": cfg.learning_rate_video,
        },
        {
            "params": [
                q
                for name, q in model.named_parameters()
                if "text_model" not in name
                and "audio_model" not in name
                and "video_model" not in name
            ],
            "weight_decay": cfg.weight_decay_other,
            "lr": cfg.learning_rate_other,
        },
    ]
    optimizer = optim.Adam(groups)
    trainer.init_labels(torch.arange(num_train), train_labels)

    def batch(i):
        text = np.stack(
            [data["token_ids"][i], data["padding_mask"][i], data["segment_ids"][i]], axis=1
        ).astype("float32")
        return {
            "text": torch.from_numpy(text),
            "audio": torch.from_numpy(data["audio"][i]),
            "vision": torch.from_numpy(data["vision"][i]),
            # mmsa's loader hands lengths as int64 CPU tensors (pack_padded_sequence wants them on the CPU)
            "audio_lengths": torch.from_numpy(data["audio_lengths"][i].astype("int64")),
            "vision_lengths": torch.from_numpy(data["vision_lengths"][i].astype("int64")),
            "index": torch.from_numpy(data["index"][i].astype("int64")),
        }

    batches = [batch(i) for i in range(n)]
    model.train()
    losses = []

    def iteration(i):
        """One pass of mmsa's do_train loop body (one optimizer step per batch)."""
        b = batches[i % n]
        indexes = b["index"].view(-1)
        t0 = time.perf_counter()
        optimizer.zero_grad()
        outputs = model(
            b["text"], (b["audio"], b["audio_lengths"]), (b["vision"], b["vision_lengths"])
        )
        loss = 0.0
        for m in TASKS:
            mode = NAME_MAP[m]
            loss += trainer.weighted_loss(
                outputs[m], trainer.label_map[mode][indexes], indexes=indexes, mode=mode
            )
        loss.backward()
        losses.append(loss.item())
        t1 = time.perf_counter()
        f_fusion = outputs["Feature_f"].detach()
        f_text = outputs["Feature_t"].detach()
        f_audio = outputs["Feature_a"].detach()
        f_vision = outputs["Feature_v"].detach()
        if args.epoch > 1:
            trainer.update_labels(f_fusion, f_text, f_audio, f_vision, args.epoch, indexes, outputs)
        trainer.update_features(f_fusion, f_text, f_audio, f_vision, indexes)
        trainer.update_centers()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    first, parts, _, cpus = torch_common.time_iterations(iteration, args.warmup, args.repeats)
    mmsa_version = "2.2.1"
    try:
        from importlib.metadata import version

        mmsa_version = version("MMSA")
    except Exception:  # noqa: BLE001 - the metadata lookup is informative only
        pass
    result = {
        "implementation": f"mmsa {mmsa_version} SELF_MM (PyTorch)",
        "backbone": args.backbone,
        "batch_size": int(batch_size),
        "num_train_examples": num_train,
        "epoch": args.epoch,
        "gradient_accumulation": 1,
        **torch_common.split_timing_fields(
            batch_size, first, parts, cpus, "forward_backward_s", "ulgm_s", "step_s"
        ),
        "finite_losses": bool(np.all(np.isfinite(losses))),
        # whether update_labels ran and moved the text labels off their initial (multimodal) values
        "labels_updated": bool((trainer.label_map["text"] != train_labels).any()),
    }
    torch_common.write_result(
        args.out,
        result,
        transformers_version=transformers.__version__,
        mmsa_version=mmsa_version,
    )


if __name__ == "__main__":
    main()
