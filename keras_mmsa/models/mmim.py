"""MMIM: MultiModal InfoMax (Han, Chen, Poria, EMNLP 2021)."""

import warnings

import keras
from keras import ops

from keras_mmsa.configs import mmim as mmim_configs
from keras_mmsa.data.spec import AUDIO_KEYS, MODALITIES, TEXT_KEYS, VISION_KEYS
from keras_mmsa.estimators import CPCPredictor, GaussianConditional, PolarityGMMEntropy
from keras_mmsa.layers.feature_standardizer import FeatureStandardizer
from keras_mmsa.layers.mlp_fusion import MLPFusion
from keras_mmsa.layers.sequence_encoder import SequenceEncoder
from keras_mmsa.layers.text_encoder import TextEncoder
from keras_mmsa.models.multi_stage_model import MultiStageModel, Stage

ENTROPY_PROJECTIONS = ("none", "trained", "frozen")
POLARITIES = ("non_negative", "strict")
ALTERNATIONS = ("epoch", "batch")


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MMIM(MultiStageModel):
    """MultiModal InfoMax: hierarchical mutual-information maximisation for multimodal sentiment analysis.

    h_t = BERT [CLS] of the last layer, h_v / h_a = LSTM encoders (eq. 2); Z, y_hat = F([h_t; h_v; h_a]) (§3.2).
    Input level: Barber–Agakov lower bounds I(h_t; h_v), I(h_t; h_a) (eq. 3, 9) with a Gaussian q(h_m | h_t)
    (eq. 4) and the entropy H(h_m) of a two-class (polarity) Gaussian mixture estimated on a FIFO history memory
    plus the current batch (eq. 5–8, App. A.1). Fusion level: CPC/InfoNCE from Z back to each modality
    (eq. 10–12). Training (Algorithm 1) has two stages:

    1. `"lld"`: maximise the likelihood of q only (its own optimizer, `lr_lld`), eq. 4, on detached h's;
    2. `"main"`: everything but q on L_main = L_task + alpha * L_CPC + beta * L_BA (eq. 13–14), with q fixed.

    Alternation (`alternation`): `"epoch"` (the paper's Algorithm 1 and the default: every epoch is a pass of
    stage-1 batches over D_sub followed by a pass of stage-2 batches over D; the batches carry the stage id, see
    `keras_mmsa.data.stage_batches`) or `"batch"` (both stages on every batch, sharing one encoder forward pass:
    cheaper, and q always sees the current encoders). The default is the paper's because results should be
    comparable with it; `"batch"` is the fast variant (see `scripts/benchmark_training.py`).

    Modalities: any subset that contains text. A term that needs a missing modality (BA t->v, CPC z->v, ...) is
    dropped, with one warning at construction.

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
    - The entropy term enters the loss once the memory holds `mem_size` batches, as in the reference (before that
      the covariance of a single small batch is ill-conditioned; the paper reports NaN without history).

    Input standardisation (`standardize`, off by default, not in the paper): the acoustic/visual frames of the
    listed modalities pass through a `FeatureStandardizer` before their LSTM. Its mean/std are fitted on the
    training split's valid frames by `adapt(train_dataset)` (the workflow calls it before the first epoch) and
    are saved with the weights, so evaluation and the SavedModel take raw features. Meant for raw features
    with mixed scales such as `mosi_sdk`'s per-clip COVAREP vector (F0 in Hz next to unit-scale features).

    Args:
        text_backbone: a KerasHub backbone (e.g. from `keras_mmsa.backbones.load_text_backbone`) or a
            `TextEncoder`.
        audio_dim: feature size of the acoustic frames (None: no audio).
        vision_dim: feature size of the visual frames (None: no vision).
        modalities: the modalities used (must contain "text"); the default uses every one with a dimension.
        audio_hidden, vision_hidden: LSTM units of the acoustic / visual encoders (Table 3).
        audio_out, vision_out: sizes of h_a, h_v.
        lstm_layers: stacked LSTM layers per encoder.
        bidirectional: bidirectional LSTM encoders.
        dropout_audio, dropout_vision, dropout_fusion: dropout rates.
        fusion_dim: size of Z (128).
        alpha, beta: weights of L_CPC and L_BA (eq. 14).
        mem_size: history memory size, in batches (Table 3: 1). 0: current batch only.
        batch_size: the largest batch the memory must hold.
        cpc_layers, cpc_activation: depth and activation of G_phi.
        q_activation: activation inside q's mean / log-variance networks.
        logvar_bound: bound on q's log sigma^2.
        variance_free: reproduce the reference's variance-free likelihood.
        entropy_projection: "none", "trained" or "frozen" (see above).
        entropy_jitter: relative jitter added to the covariance diagonal before the Cholesky log-det.
        polarity: "non_negative" (paper) or "strict" (reference code).
        standardize: modalities among ("audio", "vision") whose frames are standardised with training-split
            statistics (see above and `adapt`); a listed modality that is not used is ignored. Default: none.
        alternation: "epoch" (Algorithm 1) or "batch".
        clipnorm: global-norm gradient clipping of each stage (Table 3: 5.0).
        **kwargs: `keras.Model` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    model = MMIM(backbone, audio_dim=5, vision_dim=20)
    model.compile(**MMIM.default_optimizers("sample"))
    model.fit(keras_mmsa.data.load("sample", "train", 32, text_backbone=tokenizer), epochs=1)
    ```

    Reference:
        Han, Chen, Poria. "Improving Multimodal Fusion with Hierarchical Mutual Information Maximization for
        Multimodal Sentiment Analysis". EMNLP 2021. Eq. 2–14, Algorithm 1, Table 3, App. A.1.
    """

    def __init__(
        self,
        text_backbone,
        audio_dim=None,
        vision_dim=None,
        modalities=None,
        audio_hidden=32,
        vision_hidden=32,
        audio_out=16,
        vision_out=16,
        lstm_layers=1,
        bidirectional=False,
        dropout_audio=0.1,
        dropout_vision=0.1,
        dropout_fusion=0.1,
        fusion_dim=128,
        alpha=0.3,
        beta=0.1,
        mem_size=1,
        batch_size=32,
        cpc_layers=1,
        cpc_activation="tanh",
        q_activation="relu",
        logvar_bound=5.0,
        variance_free=False,
        entropy_projection="none",
        entropy_jitter=1e-3,
        polarity="non_negative",
        standardize=(),
        alternation="epoch",
        clipnorm=5.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if modalities is None:
            modalities = ["text"] + [
                m for m, d in (("audio", audio_dim), ("vision", vision_dim)) if d is not None
            ]
        modalities = [m for m in MODALITIES if m in set(modalities)]
        unknown = set(modalities) - set(MODALITIES)
        if unknown or "text" not in modalities:
            raise ValueError(f"MMIM needs 'text' among its modalities; got {modalities}")
        for m, d in (("audio", audio_dim), ("vision", vision_dim)):
            if m in modalities and d is None:
                raise ValueError(f"modality {m!r} selected but {m}_dim is None")
        for name, value, allowed in (
            ("entropy_projection", entropy_projection, ENTROPY_PROJECTIONS),
            ("polarity", polarity, POLARITIES),
            ("alternation", alternation, ALTERNATIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
        if isinstance(standardize, str):
            standardize = [standardize]
        standardize = list(standardize or ())
        bad = [m for m in standardize if m not in ("audio", "vision")]
        if bad:
            raise ValueError(f"standardize takes modalities among ('audio', 'vision'); got {bad}")
        self.audio_dim = audio_dim
        self.vision_dim = vision_dim
        self.modalities = modalities
        self.audio_hidden = audio_hidden
        self.vision_hidden = vision_hidden
        self.audio_out = audio_out
        self.vision_out = vision_out
        self.lstm_layers = lstm_layers
        self.bidirectional = bidirectional
        self.dropout_audio = dropout_audio
        self.dropout_vision = dropout_vision
        self.dropout_fusion = dropout_fusion
        self.fusion_dim = fusion_dim
        self.alpha = alpha
        self.beta = beta
        self.mem_size = mem_size
        self.batch_size = batch_size
        self.cpc_layers = cpc_layers
        self.cpc_activation = cpc_activation
        self.q_activation = q_activation
        self.logvar_bound = logvar_bound
        self.variance_free = variance_free
        self.entropy_projection = entropy_projection
        self.entropy_jitter = entropy_jitter
        self.polarity = polarity
        self.standardize = standardize
        self.alternation = alternation
        self.clipnorm = clipnorm

        self.text_encoder = (
            text_backbone if isinstance(text_backbone, TextEncoder) else TextEncoder(text_backbone)
        )
        text_dim = self.text_encoder.backbone.hidden_dim
        self.text_dim = text_dim
        others = [m for m in ("vision", "audio") if m in modalities]
        dropped = [
            f"BA t->{m[0]}, CPC z->{m[0]}" for m in ("vision", "audio") if m not in modalities
        ]
        if dropped:
            warnings.warn(
                f"MMIM with modalities {modalities}: dropping the terms {'; '.join(dropped)}",
                stacklevel=2,
            )
        encoders, q, entropy, projections = {}, {}, {}, {}
        sizes = {"text": text_dim}
        for m in others:
            hidden = vision_hidden if m == "vision" else audio_hidden
            out = vision_out if m == "vision" else audio_out
            drop = dropout_vision if m == "vision" else dropout_audio
            sizes[m] = out
            encoders[m] = SequenceEncoder(
                hidden,
                out,
                num_layers=lstm_layers,
                bidirectional=bidirectional,
                dropout=drop,
                name=f"{m}_encoder",
            )
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
        self.encoders, self.q, self.entropy = encoders, q, entropy
        self.standardizers = {
            m: FeatureStandardizer(name=f"{m}_standardizer") for m in others if m in standardize
        }
        self.entropy_projections = projections
        self.fusion = MLPFusion(fusion_dim, dropout=dropout_fusion, name="fusion")
        self.cpc = {
            # G_phi: Z -> h_m; `cpc_layers` linear layers, the hidden ones as wide as h_m (reference code).
            m: CPCPredictor(
                fusion_dim,
                sizes[m],
                hidden_dims=(sizes[m],) * (cpc_layers - 1),
                activation=cpc_activation,
                name=f"cpc_z{m[0]}",
            )
            for m in modalities
        }

    # ------------------------------------------------------------------ building
    def input_keys(self):
        keys = list(TEXT_KEYS)
        if "audio" in self.modalities:
            keys += list(AUDIO_KEYS)
        if "vision" in self.modalities:
            keys += list(VISION_KEYS)
        return keys

    def build(self, input_shape=None):
        """Creates every variable by running the whole model once on a zero batch of two examples."""
        if self.built:
            return
        shapes = dict(input_shape or {})
        x = {}
        length = shapes.get("token_ids", (None, 8))[1] or 8
        for k in TEXT_KEYS:
            x[k] = ops.ones((2, length), dtype="bool" if k == "padding_mask" else "int32")
        for m, dim in (("audio", self.audio_dim), ("vision", self.vision_dim)):
            if m in self.modalities:
                steps = shapes.get(m, (None, 4, dim))[1] or 4
                x[m] = ops.zeros((2, steps, dim))
                x[f"{m}_lengths"] = ops.ones((2,), dtype="int32")
        features = self.compute_features(x, training=False)
        y = ops.convert_to_tensor([1.0, -1.0])
        self._main_losses(features, y, training=False)
        self.built = True

    # ------------------------------------------------------------------ forward
    def compute_features(self, x, training=False):
        h = {"text": self.text_encoder(x, training=training)}
        for m, enc in self.encoders.items():
            frames = x[m]
            if m in self.standardizers:
                frames = self.standardizers[m](frames, x[f"{m}_lengths"])
            h[m] = enc(frames, x[f"{m}_lengths"], training=training)
        z, prediction = self.fusion([h[m] for m in self.modalities], training=training)
        return {"h": h, "z": z, "prediction": prediction}

    def call(self, x, training=False):
        return self.compute_features(x, training=training)["prediction"]

    def adapt(self, dataset):
        """Fits the input standardisers (`standardize`) on a dataset of the training split.

        Args:
            dataset: an iterable of `(inputs, label)` batches (the spec inputs dict), e.g. the training split
                of `keras_mmsa.data.load(..., shuffle=False)`. Nothing happens when `standardize` is empty.
        """
        if not self.standardizers:
            return
        if not self.built:
            raise ValueError("MMIM.adapt: build the model first (model.build(shapes))")
        for m, layer in self.standardizers.items():
            # One streaming pass per standardised modality: nothing but running sums is kept in memory.
            layer.adapt(_modality_frames(dataset, m))

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

    def _main_losses(self, features, y, training):
        h, z = features["h"], features["z"]
        task = ops.mean(ops.abs(features["prediction"] - y))
        cpc = 0.0
        for m, predictor in self.cpc.items():
            cpc = cpc + predictor(z, h[m])
        lld = self._log_likelihood(h)
        entropy = 0.0
        labels, mask = self._polarity(y)
        for m, est in self.entropy.items():
            value = est(self._entropy_input(m, h[m]), labels, mask)
            if self.mem_size > 0:
                value = ops.where(self.memory_full(m), value, ops.zeros_like(value))
            entropy = entropy + value
        ba = -(lld + entropy)
        loss = task + self.alpha * cpc + self.beta * ba
        return loss, {"task": task, "cpc": cpc, "ba": ba, "entropy": entropy, "lld_main": lld}

    def _polarity(self, y):
        """(labels, mask) for the GMM: classes label >= 0 / < 0; "strict" leaves label-0 samples out."""
        y = ops.reshape(ops.cast(y, "float32"), (-1,))
        if self.polarity == "strict":
            return y, ops.not_equal(y, 0.0)
        return y, None

    def memory_full(self, m):
        """True once every slot of modality m's history memory holds a batch."""
        est = self.entropy[m]
        return ops.all(ops.sum(est.memory_valid, axis=1) > 0)

    # ------------------------------------------------------------------ engine contract
    def stages(self):
        if not self.q:  # text only: no input-level MI, one stage
            return [Stage("main", ("bert", "main"), logs=("task", "cpc"), clipnorm=self.clipnorm)]
        return [
            Stage("lld", ("q",), logs=("lld",), clipnorm=self.clipnorm),
            Stage(
                "main",
                ("bert", "main"),
                logs=("task", "cpc", "ba", "entropy", "lld_main"),
                clipnorm=self.clipnorm,
            ),
        ]

    def variable_groups(self):
        bert = list(self.text_encoder.trainable_variables)
        q = [v for layer in self.q.values() for v in layer.trainable_variables]
        taken = {id(v) for v in bert + q}
        main = [v for v in self.trainable_variables if id(v) not in taken]
        groups = {"bert": bert, "main": main}
        if q:
            groups["q"] = q
        return groups

    def compute_stage_losses(self, stage, features, x, y, training=False):
        if stage.name == "lld":
            lld = self._log_likelihood(features["h"])
            return -lld, {"lld": lld}
        loss, logs = self._main_losses(features, y, training)
        if not self.q:
            logs = {"task": logs["task"], "cpc": logs["cpc"]}
        return loss, logs

    def update_state(self, features, x, y, gather):
        labels, mask = self._polarity(y)
        labels = gather(labels)
        mask = None if mask is None else gather(mask)
        for m, est in self.entropy.items():
            est.update_memory(gather(self._entropy_input(m, features["h"][m])), labels, mask)

    # ------------------------------------------------------------------ explanation
    def explain(self, x):
        """Per-sample fusion-modality scores s(h_m, Z) = exp(cos(h_m, G(Z))) (MMIM Table 5) and predictions."""
        features = self.compute_features(x, training=False)
        out = {"prediction": features["prediction"]}
        for m, predictor in self.cpc.items():
            out[f"s_z{m[0]}"] = predictor.positive_scores(features["z"], features["h"][m])
        return out

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_config_name(
        cls, name, text_backbone=None, audio_dim=None, vision_dim=None, modalities=None, **overrides
    ):
        """Builds MMIM with a dataset's preset hyper-parameters (`keras_mmsa.configs.mmim`).

        Args:
            name: "mosi", "mosei", "sims", "sample" or a dataset (builder config) name such as "mosi_sdk".
            text_backbone: a backbone object, or a spec for `keras_mmsa.backbones.load_text_backbone`
                (default: the preset's, e.g. `bert_base_en_uncased` for MOSI — needs network or a local copy).
            audio_dim, vision_dim: feature sizes (default: the dataset's standard features).
            modalities: subset of ("text", "audio", "vision").
            **overrides: any `MMIM.__init__` argument.
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
        )
        kwargs.update(overrides)
        return cls(
            text_backbone,
            audio_dim=audio_dim,
            vision_dim=vision_dim,
            modalities=modalities,
            **kwargs,
        )

    @staticmethod
    def default_optimizers(name, **overrides):
        """The per-group optimizers of a preset, as keyword arguments of `compile`.

        `model.compile(**MMIM.default_optimizers("mosi"))`; `overrides` replace train settings
        (e.g. `lr_main=5e-4`).
        """
        train = dict(mmim_configs.get_preset(name)["train"])
        train.update(overrides)
        return {"optimizers": MMIM.optimizers_from_settings(train)}

    @staticmethod
    def optimizers_from_settings(train):
        """`{group: optimizer}` from train settings (`lr_bert`, `lr_main`, `lr_lld`, `weight_decay`).

        Adam everywhere, as in the reference code; its L2 penalty (1e-4) becomes Keras' decoupled weight decay.
        """
        wd = train["weight_decay"]
        return {
            "bert": keras.optimizers.Adam(train["lr_bert"], weight_decay=wd, name="adam_bert"),
            "main": keras.optimizers.Adam(train["lr_main"], weight_decay=wd, name="adam_main"),
            "q": keras.optimizers.Adam(train["lr_lld"], weight_decay=wd, name="adam_q"),
        }

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "text_backbone": keras.saving.serialize_keras_object(self.text_encoder),
                "audio_dim": self.audio_dim,
                "vision_dim": self.vision_dim,
                "modalities": list(self.modalities),
                "audio_hidden": self.audio_hidden,
                "vision_hidden": self.vision_hidden,
                "audio_out": self.audio_out,
                "vision_out": self.vision_out,
                "lstm_layers": self.lstm_layers,
                "bidirectional": self.bidirectional,
                "dropout_audio": self.dropout_audio,
                "dropout_vision": self.dropout_vision,
                "dropout_fusion": self.dropout_fusion,
                "fusion_dim": self.fusion_dim,
                "alpha": self.alpha,
                "beta": self.beta,
                "mem_size": self.mem_size,
                "batch_size": self.batch_size,
                "cpc_layers": self.cpc_layers,
                "cpc_activation": self.cpc_activation,
                "q_activation": self.q_activation,
                "logvar_bound": self.logvar_bound,
                "variance_free": self.variance_free,
                "entropy_projection": self.entropy_projection,
                "entropy_jitter": self.entropy_jitter,
                "polarity": self.polarity,
                "standardize": list(self.standardize),
                "alternation": self.alternation,
                "clipnorm": self.clipnorm,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["text_backbone"] = keras.saving.deserialize_keras_object(config["text_backbone"])
        return cls(**config)


def _modality_frames(dataset, m):
    """Yields (frames, lengths) of modality m from batches of (inputs, label) or of inputs dicts."""
    for batch in dataset:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        if m not in inputs or f"{m}_lengths" not in inputs:
            raise ValueError(
                f"MMIM.adapt: the batches carry no {m!r}/{m}_lengths keys (keys: {sorted(inputs)})"
            )
        yield inputs[m], inputs[f"{m}_lengths"]


def _standard_dims(name):
    """(audio_dim, vision_dim) of a dataset's standard features."""
    family = mmim_configs.FAMILY_OF.get(name, name)
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
