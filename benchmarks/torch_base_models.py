"""Times THUIAR's PyTorch ports (PyPI `mmsa` 2.2.1) of the base models on the batches of `base_models_throughput.py`.

Runs in its OWN Python environment (the one `torch_reference.py` describes: torch 2.13 CPU, `mmsa==2.2.1
--no-deps`, easydict numpy nvidia-ml-py3 pandas scikit-learn tqdm, and `"transformers<5"`: mmsa 2.2.1's
BERT_MAG fails to initialise under transformers 5, measured with 5.24 and fine with 4.57); it imports nothing from keras_mmsa,
TensorFlow or the rest of `benchmarks/`. `base_models_throughput.py --torch-python PATH` starts it.

One timed iteration = what mmsa's trainer does per batch: forward, L1 loss (mmsa's regression criterion),
backward, optimizer step, with the optimizer mmsa's trainer of that model builds (Adam; LMF: factor and main
learning rates, weight decay) and the model's MOSI hyper-parameters from mmsa's own `config_regression.json`.
The inputs are what mmsa's data loader hands that model:

* TFN, LMF, MFN (`need_normalized`): audio and vision averaged over time (mmsa's loader keeps one frame per
  clip); MFN, being word-aligned (`need_model_aligned`), gets that frame repeated over the text length, as
  mmsa's `AlignSubNet` does with a one-frame sequence. Text: the 768-d BERT token features of the pickles
  (here: the batch's `text_features`).
* EF-LSTM: the word-aligned sequences, text features concatenated per token.
* BERT_MAG: token ids, mask and segments; the BERT is built from a config (random weights, no download) with
  the sizes of the Keras side's backbone, and fine-tuned (Adam over every parameter).

Writes a JSON result (`--out`): iteration_s {median, min, max, iqr}, samples_per_s, peak_rss_mb, torch_version,
threads.
"""

import argparse
import importlib
import os

os.environ.setdefault("TQDM_DISABLE", "1")

MODELS = ("tfn", "lmf", "mfn", "ef_lstm", "bert_mag")

try:  # run as `python benchmarks/<script>.py` (its folder on the path) or imported as benchmarks.<script>
    import torch_common
except ImportError:
    import benchmarks.torch_common as torch_common


def main():
    p = argparse.ArgumentParser(prog="torch_base_models.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, required=True)
    p.add_argument("--batches", required=True, help=".npz written by base_models_throughput.py")
    p.add_argument(
        "--bert", default="64,2,2,128", help="hidden,layers,heads,intermediate (bert_mag)"
    )
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = np.load(args.batches)
    n, batch_size, text_len = data["token_ids"].shape
    config = torch_common.mmsa_config(args.model)
    config.update(
        train_mode="regression",
        num_classes=1,
        device=torch.device("cpu"),
        language="en",
        seq_lens=text_len,  # what AMIO sets for word-aligned models (AlignSubNet.get_seq_len)
    )
    audio_dim, vision_dim = data["audio"].shape[-1], data["vision"].shape[-1]
    text_dim = data["text_features"].shape[-1] if "text_features" in data else 0

    if args.model == "bert_mag":
        from transformers import BertConfig

        bert_mod = importlib.import_module("MMSA.models.singleTask.BERT_MAG")
        hidden, layers, heads, inter = (int(v) for v in args.bert.split(","))
        config.feature_dims = [hidden, audio_dim, vision_dim]
        bert_config = BertConfig(
            vocab_size=int(data["token_ids"].max()) + 1,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=inter,
            num_labels=1,
        )
        model = bert_mod.MAG_BertForSequenceClassification(bert_config, args=config)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )

        def forward(i):
            ids = torch.from_numpy(data["token_ids"][i].astype("int64"))
            mask = torch.from_numpy(data["padding_mask"][i].astype("float32"))
            segments = torch.from_numpy(data["segment_ids"][i].astype("int64"))
            out = model(
                ids,
                torch.from_numpy(data["vision"][i]),
                torch.from_numpy(data["audio"][i]),
                attention_mask=mask,
                token_type_ids=segments,
            )
            return out[0].view(-1)

    else:
        module = importlib.import_module(f"MMSA.models.singleTask.{args.model.upper()}")
        cls = getattr(module, args.model.upper())
        config.feature_dims = [text_dim, audio_dim, vision_dim]
        model = cls(config)
        if args.model == "lmf":
            factors = [
                model.audio_factor,
                model.video_factor,
                model.text_factor,
                model.fusion_weights,
                model.fusion_bias,
            ]
            ids = {id(p) for p in factors}
            optimizer = torch.optim.Adam(
                [
                    {"params": factors, "lr": config.factor_lr},
                    {
                        "params": [p for p in model.parameters() if id(p) not in ids],
                        "lr": config.learning_rate,
                    },
                ],
                weight_decay=config.weight_decay,
            )
        else:
            optimizer = torch.optim.Adam(
                model.parameters(),
                lr=config.learning_rate,
                weight_decay=config.get("weight_decay", 0.0),
            )
        normalized = bool(config.get("need_normalized"))

        def modality(key, i):
            x = data[key][i]
            if normalized:  # mmsa's loader: the mean over the padded time axis, one frame kept
                x = x.mean(axis=1, keepdims=True)
                if (
                    args.model == "mfn"
                ):  # AlignSubNet repeats a one-frame sequence to the text length
                    x = np.repeat(x, text_len, axis=1)
            return torch.from_numpy(np.ascontiguousarray(x, dtype="float32"))

        def forward(i):
            text = torch.from_numpy(data["text_features"][i])
            return model(text, modality("audio", i), modality("vision", i))["M"].view(-1)

    model.train()
    criterion = nn.L1Loss()

    def iteration(i):
        i = i % n
        optimizer.zero_grad()
        loss = criterion(forward(i), torch.from_numpy(data["label"][i]))
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    first, _, walls, cpus = torch_common.time_iterations(iteration, args.warmup, args.repeats)
    result = {
        "implementation": "mmsa 2.2.1 (PyTorch)",
        "model": args.model,
        "batch_size": int(batch_size),
        **torch_common.timing_fields(batch_size, first, walls, cpus),
    }
    torch_common.write_result(args.out, result)


if __name__ == "__main__":
    main()
