"""Times the PyTorch MMIM reference (PyPI `mmsa` 2.2.1) on the batches of `benchmarks/training_throughput.py`.

Runs in its OWN Python environment, never in keras_mmsa's: it imports nothing from keras_mmsa, TensorFlow or
the rest of `benchmarks/`, so it can be copied alone. `training_throughput.py --torch-python PATH/TO/PYTHON`
starts it with that interpreter. That environment needs torch and mmsa's MMIM imports:

    python -m venv PATH/TO/torch-venv
    PATH/TO/torch-venv/bin/pip install torch==2.13.0         # the CPU build (plain `torch` may pull CUDA)
    PATH/TO/torch-venv/bin/pip install --no-deps mmsa==2.2.1
    PATH/TO/torch-venv/bin/pip install easydict numpy nvidia-ml-py3 pandas scikit-learn tqdm transformers

and then `python benchmarks/training_throughput.py --torch-python PATH/TO/torch-venv/bin/python`.

What is timed: mmsa's own trainer methods, `train_mmilb` (stage 1: full forward, backward of -lld through
every weight, step of the q optimizer) then `train_others` (stage 2: forward, backward, step of the main
optimizer), each on one batch: one full iteration of Algorithm 1 as that code runs it. Its BERT is built
from a config with random weights (`transformers.BertModel(BertConfig(...))`, no download) in place of
`from_pretrained`, with the sizes of keras_mmsa's "base" (bert-base-uncased) or "tiny" backbone. The model
uses keras_mmsa's MOSI preset (unidirectional 1-layer LSTMs of 32 units, outputs 16, fusion 128, CPC 1 layer,
alpha 0.3, beta 0.1, clip 5, Adam lr 1e-3 / 5e-5 / 5e-3, weight decay 1e-4) so both sides compute the same
network. One difference in mmsa's loop: `train_others` starts its history memory empty at every call, so the
entropy term (a 16x16 log-det) is skipped in a one-batch call; it costs microseconds.

Writes a JSON result (`--out`) shaped like keras_mmsa's: iteration_s {median, min, max, iqr}, stage1_s,
stage2_s, samples_per_s, peak_rss_mb, torch_version, threads.
"""

import importlib
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

try:  # run as `python benchmarks/<script>.py` (its folder on the path) or imported as benchmarks.<script>
    import torch_common
except ImportError:
    import benchmarks.torch_common as torch_common


def main():
    p = torch_common.reference_parser(
        "torch_reference.py", __doc__.splitlines()[0], "training_throughput.py"
    )
    args = p.parse_args()

    import numpy as np
    import torch
    from easydict import EasyDict
    from torch import nn
    from transformers import BertConfig, BertModel

    # (`import MMSA.models.singleTask.MMIM as m` would bind the class the package re-exports, not the module)
    mmim_model = importlib.import_module("MMSA.models.singleTask.MMIM")
    mmim_train = importlib.import_module("MMSA.trains.singleTask.MMIM")

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = np.load(args.batches)
    n, batch_size, text_len = data["token_ids"].shape
    sizes = torch_common.BASE if args.backbone == "base" else torch_common.TINY

    class RandomBert(nn.Module):
        """mmsa's BertTextEncoder with a config-built, randomly initialised BERT (no download)."""

        def __init__(self, use_finetune=True, transformers="bert", pretrained=None):
            super().__init__()
            vocab = args.vocab_size or (
                30522 if args.backbone == "base" else int(data["token_ids"].max()) + 1
            )
            config = BertConfig(vocab_size=vocab, **sizes)
            self.model = BertModel(config)
            self.use_finetune = use_finetune

        def forward(self, text):
            ids, mask, segments = text[:, 0, :].long(), text[:, 1, :].float(), text[:, 2, :].long()
            return self.model(input_ids=ids, attention_mask=mask, token_type_ids=segments)[0]

    mmim_model.BertTextEncoder = RandomBert  # the name MMSA's MMIM module instantiates

    audio_dim, vision_dim = data["audio"].shape[-1], data["vision"].shape[-1]
    config = EasyDict(
        use_bert=True,
        use_finetune=True,
        transformers="bert",
        pretrained="bert-base-uncased",
        train_mode="regression",
        num_classes=1,
        need_data_aligned=False,
        add_va=False,
        feature_dims=[sizes["hidden_size"], audio_dim, vision_dim],
        d_ah=32,
        d_vh=32,
        d_aout=16,
        d_vout=16,
        n_layer=1,
        bidirectional=False,
        dropout_a=0.1,
        dropout_v=0.1,
        dropout_prj=0.1,
        d_prjh=128,
        cpc_layers=1,
        cpc_activation="Tanh",
        mmilb_mid_activation="ReLU",
        mmilb_last_activation="Tanh",
    )
    model = mmim_model.MMIM(config)
    train_args = EasyDict(
        train_mode="regression",
        dataset_name="mosi",
        device=torch.device("cpu"),
        need_data_aligned=False,
        grad_clip=5.0,
        mem_size=1,
        add_va=False,
        contrast=True,
        alpha=0.3,
        beta=0.1,
        train_samples=batch_size,
    )
    trainer = mmim_train.MMIM(train_args)
    trainer.model = model
    # parameter groups as mmsa's MMIM trainer makes them (by name: "bert", "mi", the rest)
    bert, mmilb, main = [], [], []
    for name, param in model.named_parameters():
        if "bert" in name:
            bert.append(param)
        elif "mi" in name:
            mmilb.append(param)
        else:
            main.append(param)
    for param in mmilb + main:
        if param.dim() > 1:
            nn.init.xavier_normal_(param)
    trainer.optimizer_mmilb = torch.optim.Adam(mmilb, lr=5e-3, weight_decay=1e-4)
    trainer.optimizer_main = torch.optim.Adam(
        [
            {"params": bert, "weight_decay": 1e-4, "lr": 5e-5},
            {"params": main, "weight_decay": 1e-4, "lr": 1e-3},
        ]
    )

    def batch(i):
        text = np.stack(
            [data["token_ids"][i], data["padding_mask"][i], data["segment_ids"][i]], axis=1
        ).astype("float32")
        return {
            "text": torch.from_numpy(text),
            "audio": torch.from_numpy(data["audio"][i]),
            "vision": torch.from_numpy(data["vision"][i]),
            "audio_lengths": torch.from_numpy(data["audio_lengths"][i].astype("int64")),
            "vision_lengths": torch.from_numpy(data["vision_lengths"][i].astype("int64")),
            "labels": {"M": torch.from_numpy(data["label"][i])},
        }

    batches = [batch(i) for i in range(n)]

    def iteration(i):
        b = batches[i % n]
        t0 = time.perf_counter()
        trainer.train_mmilb({"train": [b]})
        t1 = time.perf_counter()
        trainer.train_others({"train": [b]})
        return t1 - t0, time.perf_counter() - t1

    first, parts, _, cpus = torch_common.time_iterations(iteration, args.warmup, args.repeats)
    result = {
        "implementation": "mmsa 2.2.1 (PyTorch)",
        "backbone": args.backbone,
        "batch_size": int(batch_size),
        **torch_common.split_timing_fields(batch_size, first, parts, cpus, "stage1_s", "stage2_s"),
    }
    torch_common.write_result(args.out, result)


if __name__ == "__main__":
    main()
