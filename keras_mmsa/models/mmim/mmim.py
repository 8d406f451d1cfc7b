"""MMIM: MultiModal InfoMax (Han, Chen, Poria, EMNLP 2021), a method over a multimodal base model."""

import inspect
import warnings

import keras
from keras import ops

from keras_mmsa.configs import bert_lstm_mlp as bert_lstm_mlp_configs
from keras_mmsa.configs import mmim as mmim_configs
from keras_mmsa.configs.families import FAMILY_OF
from keras_mmsa.engine import Stage, weighted_mean
from keras_mmsa.estimators import CPCPredictor, GaussianConditional, PolarityGMMEntropy
from keras_mmsa.models.backbone_method import BackboneMethod
from keras_mmsa.models.bert_lstm_mlp import BertLSTMMLP
from keras_mmsa.models.multimodal_backbone import MultimodalBackbone, build_shapes

ENTROPY_PROJECTIONS = ("none", "trained", "frozen")
POLARITIES = ("non_negative", "strict")
ALTERNATIONS = ("epoch", "batch")


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MMIM(BackboneMethod):
    """MultiModal InfoMax: hierarchical mutual-information maximisation over a multimodal base model.

    The base model (`backbone`, a `MultimodalBackbone`; the paper's is `BertLSTMMLP`: h_t = BERT [CLS], h_v / h_a
    = LSTM encoders, eq. 1–2; Z, y_hat = F([h_t; h_v; h_a]), §3.2) gives `encode -> h`, `fuse -> Z`,
    `head -> y`. MMIM adds, at the input level, Barber–Agakov lower bounds I(h_t; h_v), I(h_t; h_a) (eq. 3, 9)
    with a Gaussian q(h_m | h_t) (eq. 4) and the entropy H(h_m) of a two-class (polarity) Gaussian mixture
    estimated on a FIFO history memory plus the current batch (eq. 5–8, App. A.1); at the fusion level, CPC /
    InfoNCE from Z back to each modality (eq. 10–12). Training (Algorithm 1) has two stages:

    1. `"lld"`: maximise the likelihood of q only (its own optimizer, `lr_lld`), eq. 4, on detached h's;
    2. `"main"`: everything but q on L_main = L_task + alpha * L_CPC + beta * L_BA (eq. 13–14), with q fixed.

    Schedule (`alternation`): `"epoch"` (the paper's Algorithm 1 and the default: every epoch is a pass of
    stage-1 batches over D_sub — the first `stage1_fraction` of the batches — followed by a pass of stage-2
    batches over D; `model.fit(dataset)` builds these passes from a plain dataset, and the workflow's stream
    carries the stage ids, see `keras_mmsa.data.staging`) or `"batch"` (both stages on every batch, sharing one
    encoder forward pass: cheaper, and q always sees the current encoders). The default is the paper's because
    results should be comparable with it; `"batch"` is the fast variant.

    Modalities: those of the base model, which must contain text. A term that needs a missing modality (BA t->v,
    CPC z->v, ...) is dropped, with one warning at construction.

    Per-example weights (a dataset of `(inputs, label, weight)`): the task loss is weighted; examples of
    weight 0 (unlabelled) stay out of the polarity classes of the entropy and of the memory; q's likelihood and
    CPC use every example (they need no label).

    Departures from the reference code (each the default here, each with a flag back to the reference):
    - q's log-likelihood is the full Gaussian one, with the -log sigma and -1/2 log 2pi terms, and log sigma^2 is
      bounded (`logvar_bound`); the reference drops the variance term and leaves log sigma^2 unbounded, so it
      drifts upward and the BA term vanishes (`variance_free=True` reproduces it).
    - The GMM entropy uses a Cholesky log-det with a jitter and defined fallbacks for classes with < 2 samples
      (the reference's plain `logdet` gives NaN). It is computed on h_m itself (`entropy_projection="none"`), the
      quantity eq. 3 names; the reference computes it on a Tanh(Linear(d -> d/4)) projection whose weights sit in
      the stage-1 optimizer while the entropy is only used in stage 2, so they are never trained
      (`"frozen"` reproduces that; `"trained"` trains the projection with the main stage).
    - Polarity classes are "non-negative / negative" as the paper says (`polarity="non_negative"`); the reference
      code drops label-0 samples (`"strict"`).
    - CPC normalises over h_m for each prediction, as eq. 11 writes it; the official code normalises over the
      predictions for each h_m (`cpc_normalize_over="prediction"` reproduces it).
    - The entropy term enters the loss once the memory holds `mem_size` batches, as in the reference (before that
      the covariance of a single small batch is ill-conditioned; the paper reports NaN without history).

    Args:
        backbone: the base model, a `keras_mmsa.models.MultimodalBackbone` with "text" among its modalities
            (e.g. `BertLSTMMLP`; `MMIM.from_config_name` builds one from presets).
        alpha, beta: weights of L_CPC and L_BA (eq. 14).
        mem_size: history memory size, in batches (Table 3: 1). 0: current batch only.
        batch_size: the largest batch the memory must hold.
        cpc_layers, cpc_activation: depth and activation of G_phi.
        cpc_normalize_over: the InfoNCE softmax of L_N^{z,m}: `"h"` normalises over the batch of h_m for each
            prediction G(Z_i) (eq. 11, the default), `"prediction"` over the predictions for each h_m (the
            official code's direction).
        q_activation: activation inside q's mean / log-variance networks.
        logvar_bound: bound on q's log sigma^2.
        variance_free: reproduce the reference's variance-free likelihood.
        entropy_projection: "none", "trained" or "frozen" (see above).
        entropy_jitter: relative jitter added to the covariance diagonal before the Cholesky log-det.
        polarity: "non_negative" (paper) or "strict" (reference code).
        alternation: "epoch" (Algorithm 1) or "batch".
        stage1_fraction: the fraction of the batches in Algorithm 1's D_sub (MOSI 1.0, MOSEI 0.5).
        clipnorm: global-norm gradient clipping of each stage (Table 3: 5.0).
        **kwargs: `keras.Model` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    model = MMIM(BertLSTMMLP(backbone, audio_dim=5, vision_dim=20))
    model.compile(**MMIM.default_optimizers("sample"))
    model.fit(keras_mmsa.data.load("sample", "train", 32, text_backbone=tokenizer), epochs=1)
    ```

    Reference:
        Han, Chen, Poria. "Improving Multimodal Fusion with Hierarchical Mutual Information Maximization for
        Multimodal Sentiment Analysis". EMNLP 2021. Eq. 2–14, Algorithm 1, Table 3, App. A.1.
    """

    def __init__(
        self,
        backbone,
        alpha=0.3,
        beta=0.1,
        mem_size=1,
        batch_size=32,
        cpc_layers=1,
        cpc_activation="tanh",
        cpc_normalize_over="h",
        q_activation="relu",
        logvar_bound=5.0,
        variance_free=False,
        entropy_projection="none",
        entropy_jitter=1e-3,
        polarity="non_negative",
        alternation="epoch",
        stage1_fraction=1.0,
        clipnorm=5.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, MultimodalBackbone):
            raise TypeError(
                "MMIM wraps a multimodal base model (e.g. keras_mmsa.models.BertLSTMMLP); got "
                f"{type(backbone).__name__}. MMIM.from_config_name(...) builds one from a text backbone."
            )
        if "text" not in backbone.modalities:
            raise ValueError(f"MMIM needs 'text' among its modalities; got {backbone.modalities}")
        for name, value, allowed in (
            ("entropy_projection", entropy_projection, ENTROPY_PROJECTIONS),
            ("polarity", polarity, POLARITIES),
            ("alternation", alternation, ALTERNATIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
        if not 0.0 < float(stage1_fraction) <= 1.0:
            raise ValueError(f"stage1_fraction must be in (0, 1]; got {stage1_fraction}")
        self.backbone = backbone
        self.alpha = alpha
        self.beta = beta
        self.mem_size = mem_size
        self.batch_size = batch_size
        self.cpc_layers = cpc_layers
        self.cpc_activation = cpc_activation
        self.cpc_normalize_over = cpc_normalize_over
        self.q_activation = q_activation
        self.logvar_bound = logvar_bound
        self.variance_free = variance_free
        self.entropy_projection = entropy_projection
        self.entropy_jitter = entropy_jitter
        self.polarity = polarity
        self.alternation = alternation
        self.stage1_fraction = stage1_fraction
        self.clipnorm = clipnorm

        modalities = list(backbone.modalities)
        sizes = dict(backbone.feature_dims)
        others = [m for m in ("vision", "audio") if m in modalities]
        dropped = [
            f"BA t->{m[0]}, CPC z->{m[0]}" for m in ("vision", "audio") if m not in modalities
        ]
        if dropped:
            warnings.warn(
                f"MMIM with modalities {modalities}: dropping the terms {'; '.join(dropped)}",
                stacklevel=2,
            )
        q, entropy, projections = {}, {}, {}
        for m in others:
            out = sizes[m]
            q[m] = GaussianConditional(
                out,
                hidden_dim=out,
                activation=q_activation,
                logvar_bound=logvar_bound,
                variance_free=variance_free,
                name=f"q_t{m[0]}",
            )
            entropy_dim = out
            if entropy_projection != "none":
                entropy_dim = max(1, out // 4)
                projections[m] = keras.layers.Dense(
                    entropy_dim,
                    activation="tanh",
                    kernel_initializer="glorot_normal",
                    trainable=entropy_projection == "trained",
                    name=f"entropy_projection_t{m[0]}",
                )
            entropy[m] = PolarityGMMEntropy(
                entropy_dim,
                mem_size=mem_size,
                batch_size=batch_size,
                jitter=entropy_jitter,
                name=f"entropy_t{m[0]}",
            )
        self.q, self.entropy = q, entropy
        self.entropy_projections = projections
        fusion_dim = backbone.fusion_dim
        self.cpc = {
            # G_phi: Z -> h_m; `cpc_layers` linear layers, the hidden ones as wide as h_m (reference code).
            m: CPCPredictor(
                fusion_dim,
                sizes[m],
                hidden_dims=(sizes[m],) * (cpc_layers - 1),
                activation=cpc_activation,
                normalize_over=cpc_normalize_over,
                name=f"cpc_z{m[0]}",
            )
            for m in modalities
        }

    # ------------------------------------------------------------------ building
    def build(self, input_shape=None):
        """Creates every variable by running the whole model once on a zero batch of two examples."""
        if self.built:
            return
        self.backbone.build(input_shape)
        features = self.compute_features(self.backbone.dummy_inputs(input_shape), training=False)
        y = ops.convert_to_tensor([1.0, -1.0])
        self._main_losses(features, y, None, training=False)
        self.built = True

    def _entropy_input(self, m, y_m):
        if m in self.entropy_projections:
            return self.entropy_projections[m](y_m)
        return y_m

    def _log_likelihood(self, h):
        """Sum over pairs of the batch-mean log q(h_m | h_t), eq. 4 without the minus sign."""
        total = 0.0
        for m, q in self.q.items():
            total = total + ops.mean(q.log_likelihood(h["text"], h[m]))
        return total

    def _main_losses(self, features, y, sample_weight, training):
        h, z = features["h"], features["z"]
        task = weighted_mean(
            ops.abs(features["prediction"] - ops.reshape(ops.cast(y, "float32"), (-1,))),
            sample_weight,
        )
        cpc = 0.0
        for m, predictor in self.cpc.items():
            cpc = cpc + predictor(z, h[m])
        lld = self._log_likelihood(h)
        entropy = 0.0
        labels, mask = self._polarity(y, sample_weight)
        for m, est in self.entropy.items():
            value = est(self._entropy_input(m, h[m]), labels, mask)
            if self.mem_size > 0:
                value = ops.where(self.memory_full(m), value, ops.zeros_like(value))
            entropy = entropy + value
        ba = -(lld + entropy)
        loss = task + self.alpha * cpc + self.beta * ba
        return loss, {"task": task, "cpc": cpc, "ba": ba, "entropy": entropy, "lld_main": lld}

    def _polarity(self, y, sample_weight=None):
        """(labels, mask) for the GMM: classes label >= 0 / < 0. "strict" leaves label-0 samples out; examples
        of weight 0 (unlabelled) are always left out."""
        y = ops.reshape(ops.cast(y, "float32"), (-1,))
        mask = None
        if self.polarity == "strict":
            mask = ops.not_equal(y, 0.0)
        if sample_weight is not None:
            labelled = ops.reshape(sample_weight, (-1,)) > 0
            mask = labelled if mask is None else ops.logical_and(mask, labelled)
        return y, mask

    def memory_full(self, m):
        """True once every slot of modality m's history memory holds a batch."""
        est = self.entropy[m]
        return ops.all(ops.sum(est.memory_valid, axis=1) > 0)

    # ------------------------------------------------------------------ engine contract
    def stages(self):
        base = tuple(self.backbone.variable_groups())
        main = base + (() if "main" in base else ("main",))
        if not self.q:  # text only: no input-level MI, one stage
            return [Stage("main", main, logs=("task", "cpc"), clipnorm=self.clipnorm)]
        return [
            Stage("lld", ("q",), logs=("lld",), clipnorm=self.clipnorm),
            Stage(
                "main",
                main,
                logs=("task", "cpc", "ba", "entropy", "lld_main"),
                clipnorm=self.clipnorm,
            ),
        ]

    def variable_groups(self):
        groups = {g: list(v) for g, v in self.backbone.variable_groups().items()}
        q = [v for layer in self.q.values() for v in layer.trainable_variables]
        taken = {id(v) for vs in groups.values() for v in vs} | {id(v) for v in q}
        # MMIM's own networks (CPC predictors, a trained entropy projection) train with the base's "main" group.
        groups.setdefault("main", [])
        groups["main"] += [v for v in self.trainable_variables if id(v) not in taken]
        if q:
            groups["q"] = q
        return groups

    def stage_schedule(self):
        """Algorithm 1 (`alternation="epoch"`): a pass of lld batches over D_sub (`stage1_fraction` of the
        batches), then a pass of main batches over D; None for `"batch"` or text only."""
        if self.alternation != "epoch" or not self.q:
            return None
        return (float(self.stage1_fraction), 1.0)

    def lr_decay_groups(self):
        """The reference decays its main optimizer (BERT's included) on plateau, not q's."""
        return tuple(g for g in self.stages()[-1].groups)

    def compute_stage_losses(self, stage, features, x, y, sample_weight=None, training=False):
        if stage.name == "lld":
            lld = self._log_likelihood(features["h"])
            return -lld, {"lld": lld}
        loss, logs = self._main_losses(features, y, sample_weight, training)
        if not self.q:
            logs = {"task": logs["task"], "cpc": logs["cpc"]}
        return loss, logs

    def update_state(self, stage, features, x, y, sample_weight, gather):
        if stage.name != "main":
            return
        labels, mask = self._polarity(y, sample_weight)
        labels = gather(labels)
        mask = None if mask is None else gather(mask)
        for m, est in self.entropy.items():
            est.update_memory(gather(self._entropy_input(m, features["h"][m])), labels, mask)

    # ------------------------------------------------------------------ explanation
    def explain(self, x):
        """Per-sample fusion-modality scores and predictions (MMIM §3.5, §5.2).

        Returns `{"prediction": [B], "cos_z<m>": [B], "s_z<m>": [B]}` per modality m (t, a, v):
        `cos_z<m>` = cos(h_m, G_phi(Z)), the normalised prediction–truth product inside eq. 10, in [-1, 1];
        `s_z<m>` = exp(cos_z<m>), eq. 10's score s(h_m, Z), in [1/e, e]. Table 5 prints "fusion-modality
        scores" without saying which form or normalisation its numbers (0.35–0.99) take, so they are not
        comparable with either column as they stand.
        """
        features = self.compute_features(x, training=False)
        out = {"prediction": features["prediction"]}
        for m, predictor in self.cpc.items():
            s = predictor.positive_scores(features["z"], features["h"][m])
            out[f"cos_z{m[0]}"] = ops.log(s)
            out[f"s_z{m[0]}"] = s
        return out

    # ------------------------------------------------------------------ presets and the workflow protocol
    @classmethod
    def preset(cls, dataset):
        return mmim_configs.get_preset(dataset)

    @classmethod
    def model_keys(cls):
        """Base-model settings plus every MMIM argument the run config may set."""
        own = set(inspect.signature(cls.__init__).parameters) - {"self", "backbone", "kwargs"}
        fixed = {"batch_size", "clipnorm", "alternation", "stage1_fraction"}  # train settings
        return tuple(sorted((own - fixed) | set(bert_lstm_mlp_configs.MODEL_KEYS)))

    @classmethod
    def from_run_config(cls, config, info, text_backbone):
        base = BertLSTMMLP(**BertLSTMMLP.init_kwargs(config, info, text_backbone))
        own = {k: v for k, v in config.model.items() if k not in bert_lstm_mlp_configs.MODEL_KEYS}
        train = config.train
        model = cls(
            base,
            batch_size=train["batch_size"],
            clipnorm=train["clipnorm"],
            alternation=train["alternation"],
            stage1_fraction=train["stage1_fraction"],
            **own,
        )
        model.build(build_shapes(info, config, base.audio_dim, base.vision_dim))
        return model

    @classmethod
    def from_config_name(
        cls, name, text_backbone=None, audio_dim=None, vision_dim=None, modalities=None, **overrides
    ):
        """Builds MMIM over a `BertLSTMMLP` with a dataset's preset hyper-parameters (`keras_mmsa.configs.mmim`).

        Args:
            name: "mosi", "mosei", "sims", "sample" or a dataset (builder config) name such as "mosi_sdk".
            text_backbone: a backbone object, or a spec for `keras_mmsa.backbones.load_text_backbone`
                (default: the preset's, e.g. `bert_base_en_uncased` for MOSI — needs network or a local copy).
            audio_dim, vision_dim: feature sizes (default: the dataset's standard features).
            modalities: subset of ("text", "audio", "vision").
            **overrides: any `BertLSTMMLP` or `MMIM` argument.
        """
        from keras_mmsa import backbones

        preset = mmim_configs.get_preset(name)
        dims = _standard_dims(name)
        audio_dim = dims[0] if audio_dim is None else audio_dim
        vision_dim = dims[1] if vision_dim is None else vision_dim
        if text_backbone is None or isinstance(text_backbone, str):
            text_backbone, _ = backbones.load_text_backbone(
                text_backbone or preset["text_backbone"]
            )
        kwargs = dict(preset["model"])
        kwargs.update(
            batch_size=preset["train"]["batch_size"],
            clipnorm=preset["train"]["clipnorm"],
            alternation=preset["train"]["alternation"],
            stage1_fraction=preset["train"]["stage1_fraction"],
        )
        kwargs.update(overrides)
        base_keys = set(inspect.signature(BertLSTMMLP.__init__).parameters)
        base = BertLSTMMLP(
            text_backbone,
            audio_dim=audio_dim,
            vision_dim=vision_dim,
            modalities=modalities,
            **{k: v for k, v in kwargs.items() if k in base_keys},
        )
        return cls(base, **{k: v for k, v in kwargs.items() if k not in base_keys})

    @staticmethod
    def default_optimizers(name, **overrides):
        """The per-group optimizers of a preset, as keyword arguments of `compile`.

        `model.compile(**MMIM.default_optimizers("mosi"))`; `overrides` replace train settings
        (e.g. `lr_main=5e-4`).
        """
        train = dict(mmim_configs.get_preset(name)["train"])
        train.update(overrides)
        return {"optimizers": MMIM.optimizers_from_settings(train)}

    @classmethod
    def optimizers_from_settings(cls, train):
        """`{group: optimizer}` from train settings (`lr_bert`, `lr_main`, `lr_lld`, `weight_decay`).

        Adam everywhere, as in the reference code; its L2 penalty (1e-4) becomes Keras' decoupled weight decay.
        """
        groups = BertLSTMMLP.optimizers_from_settings(train)
        groups["q"] = keras.optimizers.Adam(
            train["lr_lld"], weight_decay=train["weight_decay"], name="adam_q"
        )
        return groups

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "beta": self.beta,
                "mem_size": self.mem_size,
                "batch_size": self.batch_size,
                "cpc_layers": self.cpc_layers,
                "cpc_activation": self.cpc_activation,
                "cpc_normalize_over": self.cpc_normalize_over,
                "q_activation": self.q_activation,
                "logvar_bound": self.logvar_bound,
                "variance_free": self.variance_free,
                "entropy_projection": self.entropy_projection,
                "entropy_jitter": self.entropy_jitter,
                "polarity": self.polarity,
                "alternation": self.alternation,
                "stage1_fraction": self.stage1_fraction,
                "clipnorm": self.clipnorm,
            }
        )
        return config


def _standard_dims(name):
    """(audio_dim, vision_dim) of a dataset's standard features."""
    family = FAMILY_OF.get(name, name)
    if name.endswith("_label_csv"):
        return None, None
    if name == "mosi_sdk":
        return 73, None
    return {
        "mosi": (5, 20),
        "mosei": (74, 35),
        "sims": (33, 709),
        "sample": (5, 20),
    }.get(family, (None, None))
