"""Times the official MIRD PyTorch code (github.com/qianfan1996/MIRD) on the batches of `mird_throughput.py`.

Runs in its OWN Python environment (torch 2.13 CPU and transformers 4.x, e.g. the one `torch_reference.py`
describes; the official code itself pins torch 1.12.1 and transformers 3.0.2) on an unmodified copy of the
official repository, whose path `--mird-src` gives (`git archive` of it, see `mird_throughput.py`). It imports
nothing from keras_mmsa, TensorFlow or the rest of `benchmarks/` and copies nothing of the official code: it
imports the official modules and patches them at run time (`PATCHES` below, also written into the result).

The official MIRD training script is `run_training_recon_mim.py` (WSA-BERT + modality reconstruction + mutual
information minimisation, labeled data only; `run_training_recon_mim_sl.py` adds the unlabeled data). This
script imports it with its own command-line flags (`sys.argv`: the batches' audio/vision sizes, the BERT's
hidden size and vocabulary, the batch size; every other flag at its default), builds the model, the six CLUB
networks, both optimizers and the scheduler with its `prep_for_training`, and times its `train_epoch` on a
loader of ONE batch: one iteration = the official per-batch step, unchanged: the model update (forward, the
log-losses of prediction and of text/audio/vision reconstruction plus the six CLUB estimates, backward, AdamW
step, scheduler step) then five CLUB updates, each of which runs the whole model forward again and
back-propagates the CLUB networks' negative log-likelihood (into the model's gradients too: the official code
does not detach the representations; only the CLUB networks step).

The BERTs (the official model has two: `encoder_l`'s BERT for z^L and the WSA-BERT for z^y) are built from a
`BertConfig` with random weights, "tiny" (hidden 64, 2 layers, 2 heads, intermediate 128) or "base"
(bert-base-uncased's sizes); `--output_dim_l` (the text decoder's vocabulary) = the batches' vocabulary.

The split of the iteration into the model update and the five CLUB updates is read off the scheduler's step
(the last call of the model update; the script wraps it to note the time).

Writes a JSON result (`--out`): iteration_s {median, min, max, iqr}, model_update_s, club_updates_s,
samples_per_s, peak_rss_mb, finite_losses, clubs_trained, the patches, versions, threads.
"""

import importlib
import os
import sys
import time
import types

os.environ.setdefault("TQDM_DISABLE", "1")

try:  # run as `python benchmarks/<script>.py` (its folder on the path) or imported as benchmarks.<script>
    import torch_common
except ImportError:
    import benchmarks.torch_common as torch_common

TRAIN_SCRIPT = "run_training_recon_mim"

# Every run-time patch of the official code, and why (also written into the result).
PATCHES = [
    (
        "sys.modules['transformers.modeling_bert'] = transformers.models.bert.modeling_bert",
        "models.py imports BertPreTrainedModel / BertEmbeddings / BertEncoder / BertPooler from transformers "
        "3's `transformers.modeling_bert`, moved to `transformers.models.bert.modeling_bert` in transformers 4",
    ),
    (
        "transformers.optimization.AdamW = torch.optim.AdamW",
        "transformers removed its own AdamW; torch's is the same decoupled-weight-decay Adam (its default "
        "eps is 1e-8 against transformers' 1e-6: no effect on the cost)",
    ),
    (
        "torch.Tensor.cuda = identity",
        "the LSTM encoders/decoders create their zero states with `.cuda()`, which a CPU-only torch rejects",
    ),
    (
        "stub modules `visdom` (Visdom().line does nothing) and `thop` (profile, clever_format)",
        "train_epoch plots the epoch's MI to a Visdom server; utils.py imports thop's FLOP counter at import "
        "time; neither is part of the training step and neither is installed",
    ),
    (
        "models.BertModel.from_pretrained and run_training_recon_mim.WSABERTReconMIM.from_pretrained build "
        "from a BertConfig (random weights)",
        "no pretrained weights can be downloaded here; the sizes are --backbone's",
    ),
    (
        "modules.WSA.__init__ defaults acoustic_dim, visual_dim, text_dim = the batches' audio and vision "
        "sizes and the BERT's hidden size",
        "BERTModel builds WSA(hidden, beta_shift, dropout) with WSA's hard-coded defaults 33 / 709 / 768 (the "
        "authors' features, bert-base); the --orig_d_a / --orig_d_v flags do not reach it",
    ),
]


class _Visdom:
    def __init__(self, *args, **kwargs):
        pass

    def line(self, *args, **kwargs):
        pass


def _stub_modules():
    visdom = types.ModuleType("visdom")
    visdom.Visdom = _Visdom
    thop = types.ModuleType("thop")
    thop_profile = types.ModuleType("thop.profile")
    thop_profile.profile = lambda *args, **kwargs: (0, 0)
    thop.profile = thop_profile
    thop.clever_format = lambda values, fmt="%.3f": values
    sys.modules.setdefault("visdom", visdom)
    sys.modules.setdefault("thop", thop)
    sys.modules.setdefault("thop.profile", thop_profile)


def official_argv(hidden, vocab, audio_dim, vision_dim, batch_size):
    """The official script's flags for these batches and this BERT (every other flag at its default)."""
    return [
        f"{TRAIN_SCRIPT}.py",
        "--orig_d_a",
        str(audio_dim),
        "--orig_d_v",
        str(vision_dim),
        "--hidden_size_l",
        str(hidden),
        "--hidden_size_multi",
        str(hidden),
        "--output_dim_l",
        str(vocab),
        "--train_batch_size",
        str(batch_size),
    ]


def load_official(src, sizes, vocab, audio_dim, vision_dim, batch_size):
    """Imports the official training script from `src` with `PATCHES` applied; returns the module."""
    import torch
    import transformers
    import transformers.optimization
    from transformers.models.bert import modeling_bert

    sys.modules.setdefault("transformers.modeling_bert", modeling_bert)
    transformers.optimization.AdamW = torch.optim.AdamW
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    _stub_modules()
    sys.path.insert(0, os.path.abspath(src))
    bert_config = transformers.BertConfig(vocab_size=vocab, **sizes)

    modules = importlib.import_module("modules")
    defaults = list(modules.WSA.__init__.__defaults__)
    defaults[-3:] = [audio_dim, vision_dim, sizes["hidden_size"]]
    modules.WSA.__init__.__defaults__ = tuple(defaults)

    models = importlib.import_module("models")

    class ConfigBert(transformers.BertModel):
        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return transformers.BertModel(bert_config)

    models.BertModel = ConfigBert

    saved_argv = sys.argv
    sys.argv = official_argv(sizes["hidden_size"], vocab, audio_dim, vision_dim, batch_size)
    try:
        train = importlib.import_module(TRAIN_SCRIPT)
    finally:
        sys.argv = saved_argv

    def from_config(name, multimodal_config, model, num_labels=1):
        config = transformers.BertConfig(vocab_size=vocab, num_labels=num_labels, **sizes)
        return models.WSABERTReconMIM(config, multimodal_config, model)

    train.WSABERTReconMIM = types.SimpleNamespace(from_pretrained=from_config)
    return train


def main():
    p = torch_common.reference_parser(
        "torch_mird.py", __doc__.splitlines()[0], "mird_throughput.py"
    )
    p.add_argument("--mird-src", required=True, help="a copy of github.com/qianfan1996/MIRD")
    p.add_argument(
        "--num-train-steps",
        type=int,
        default=4000,
        help="num_train_optimization_steps of the official scheduler (MOSI: 1284 // 32 * 100 = 4000)",
    )
    args = p.parse_args()

    import numpy as np
    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    data = np.load(args.batches)
    n, batch_size, _ = data["token_ids"].shape
    audio_dim, vision_dim = int(data["audio"].shape[-1]), int(data["vision"].shape[-1])
    sizes = torch_common.BASE if args.backbone == "base" else torch_common.TINY
    vocab = args.vocab_size or (
        30522 if args.backbone == "base" else int(data["token_ids"].max()) + 1
    )
    train = load_official(args.mird_src, sizes, vocab, audio_dim, vision_dim, int(batch_size))
    train.set_random_seed(args.seed)
    (model, *clubs, optimizer, mi_optimizer, scheduler) = train.prep_for_training(
        args.num_train_steps
    )

    def batch(i):
        # the order of the official loader's TensorDataset: input_ids, visual, acoustic, input_mask,
        # segment_ids, label ([B, 1, 1]); ids and masks int64 as its tokenizer returns them
        return (
            torch.from_numpy(data["token_ids"][i].astype("int64")),
            torch.from_numpy(data["vision"][i]),
            torch.from_numpy(data["audio"][i]),
            torch.from_numpy(data["padding_mask"][i].astype("int64")),
            torch.from_numpy(data["segment_ids"][i].astype("int64")),
            torch.from_numpy(data["label"][i].astype("float32")).view(-1, 1, 1),
        )

    batches = [batch(i) for i in range(n)]
    marks = []
    scheduler_step = scheduler.step

    def marked_step(*a, **k):  # the model update's last call
        marks.append(time.perf_counter())
        return scheduler_step(*a, **k)

    scheduler.step = marked_step
    viz = _Visdom()
    club_before = [q.detach().clone() for c in clubs for q in c.parameters()]
    losses = []

    def iteration(i):
        """The official train_epoch over a loader of one batch: one model update, five CLUB updates."""
        marks.clear()
        t0 = time.perf_counter()
        loss, _ = train.train_epoch(
            model, *clubs, [batches[i % n]], optimizer, mi_optimizer, scheduler, 0, viz
        )
        t1 = time.perf_counter()
        losses.append(loss)
        return marks[0] - t0, t1 - marks[0]

    first, parts, _, cpus = torch_common.time_iterations(iteration, args.warmup, args.repeats)
    club_after = [q.detach() for c in clubs for q in c.parameters()]
    result = {
        "implementation": f"official MIRD (qianfan1996/MIRD, {TRAIN_SCRIPT}.train_epoch), PyTorch",
        "backbone": args.backbone,
        "batch_size": int(batch_size),
        "vocabulary_size": vocab,
        **torch_common.split_timing_fields(
            batch_size, first, parts, cpus, "model_update_s", "club_updates_s"
        ),
        "finite_losses": bool(np.all(np.isfinite(losses))),
        "clubs_trained": any(not torch.equal(a, b) for a, b in zip(club_before, club_after)),
        "parameters": sum(q.numel() for q in model.parameters()),
        "club_parameters": sum(q.numel() for c in clubs for q in c.parameters()),
    }
    torch_common.write_result(
        args.out,
        result,
        transformers_version=transformers.__version__,
        official_argv=official_argv(
            sizes["hidden_size"], vocab, audio_dim, vision_dim, int(batch_size)
        )[1:],
        patches=[{"patch": what, "why": why} for what, why in PATCHES],
    )


if __name__ == "__main__":
    main()
