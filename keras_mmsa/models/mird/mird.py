"""MIRD: Mutual Information-based Representations Disentanglement (Qian et al.), on the stage engine."""

from __future__ import annotations

import inspect
import math

import keras
from keras import ops

from keras_mmsa.configs import mird as mird_configs
from keras_mmsa.data.spec import AUDIO_KEYS, TEXT_KEYS, VISION_KEYS
from keras_mmsa.engine import MultiStageModel, Stage
from keras_mmsa.estimators import CLUB
from keras_mmsa.layers.feature_standardizer import (
    FeatureStandardizer,
    adapt_standardizers,
    standardized_modalities,
)
from keras_mmsa.layers.sequence_decoder import SequenceDecoder
from keras_mmsa.layers.sequence_encoder import SequenceEncoder
from keras_mmsa.layers.wsa_text_encoder import WSATextEncoder
from keras_mmsa.models.mird.losses import (
    LOG_EPSILON,
    log_mse,
    masked_log_cross_entropy,
    masked_log_mse,
)
from keras_mmsa.models.mird.schedule import LinearWarmup
from keras_mmsa.models.multimodal_backbone import (
    MultimodalBackbone,
    build_shapes,
    check_modalities,
)

TEXT_TARGETS = ("tokens", "embedding")
_SHORT = {"text": "l", "audio": "a", "vision": "v", "shared": "s"}


def club_pairs(modalities, use_input_club=True):
    """The CLUB networks of eq. 20 as `(name, condition, target)`, q(target | condition).

    Latent pairs (eq. 10-12): q(z^S | z^m) for each modality m, and q(z^m2 | z^m1) for the modality pairs in
    the paper's order (V, L), (V, A), (L, A) (θ_var^(V,L), ...; the first conditions). Input pairs (eq. 14):
    q(z^S | X̄^m), X̄^m the summary of modality m's input (see `MIRD`). Names: `club_<cond>_<target>`,
    e.g. `club_v_l`, `club_l_s`, `club_xa_s`.
    """
    latent = [(m, "shared") for m in ("vision", "text", "audio") if m in modalities]
    latent += [
        (a, b)
        for a, b in (("vision", "text"), ("vision", "audio"), ("text", "audio"))
        if a in modalities and b in modalities
    ]
    pairs = [(f"club_{_SHORT[a]}_{_SHORT[b]}", ("z", a), ("z", b)) for a, b in latent]
    if use_input_club:
        pairs += [
            (f"club_x{_SHORT[m]}_s", ("x", m), ("z", "shared"))
            for m in ("vision", "text", "audio")
            if m in modalities
        ]
    return pairs


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MIRD(MultiStageModel):
    """MIRD: one modality-agnostic z^S from WSA-BERT, modality-specific z^L, z^A, z^V, CLUB minimisation of
    their mutual information, LSTM reconstruction of the inputs, log-losses (Qian et al., eq. 1-22).

    Representations (all `latent_dim` = d wide, the paper's d = 64):

    - z^S (eq. 2-7): WSA-BERT (`keras_mmsa.layers.WSATextEncoder`: BERT layers `[0, split_index)`, word-wise
      sparse attention of the unaligned audio/vision sequences onto every word, the remaining layers, masked
      mean pooling) then one Dense (`f_θFC`, linear).
    - z^L, z^A, z^V (eq. 1): "LSTM and subsequent fully connected networks" for every modality
      (`SequenceEncoder`: LSTM over the valid frames, final state, Dense). Audio/vision read their raw frames
      with their lengths. Text reads W^mid, BERT's token states at the injection point *before* the injection
      (`WSATextEncoder.states`): the paper does not say what the text LSTM reads; W^mid costs no second BERT
      pass and holds no audio/vision, so z^L is text-specific by construction.
    - Prediction (eq. 16-17): a two-layer regressor (Dense `regressor_hidden` ReLU, dropout, Dense 1) over
      p = [z^V; z^L; z^A; z^S].

    Reconstruction (eq. 8, 19; `use_reconstruction`): per modality an LSTM decoder (`SequenceDecoder`) reads
    [z^S; z^m] at every step and emits the modality's input sequence over its valid frames. Audio/vision:
    masked MSE against the input frames. Text (`text_reconstruction`): `"tokens"` (default, eq. 19's cross
    entropy): the decoder emits logits over BERT's vocabulary for every real token (a Dense from
    `decoder_hidden` to the vocabulary: 64 x 30522 = 2M weights for bert-base, ~6 GFLOP per batch of 32 x 50
    tokens against BERT's ~350); `"embedding"`: the cheap alternative, MSE against BERT's input token embeddings
    of the same tokens, detached (the target must not move to meet the decoder). Each term enters as
    log(loss + ε) (eq. 19), ε = `log_epsilon` (`keras_mmsa.models.mird.losses.LOG_EPSILON` = 1e-6: caps a
    perfect fit at log 1e-6 instead of −inf).

    Mutual-information minimisation (eq. 10-15, 20; `use_club`): nine `keras_mmsa.estimators.CLUB` networks
    (Gaussian q, hidden `club_hidden` = 32: the paper's "two-layer FC with hidden 32"), see `club_pairs`:
    q(z^S | z^m) for m in V, L, A; q(z^L | z^V), q(z^A | z^V), q(z^A | z^L); q(z^S | X̄^m) for m in V, L, A.
    Each q's log-variance is bounded to [−1, 1] (`club_logvar_bound` = 1, the Tanh of the CLUB reference
    networks): with the estimators' default bound of 10, measured on the sample, q's variances collapse within
    two epochs (eq. 22's summed NLL reached −690), the estimates' gradients scale with 1/σ² and the model stage's
    task loss rose while L_mim fell. The paper conditions the last three on the whole input sequence X^m without saying how q reads a sequence;
    here X̄^m is the masked mean of the input frames (audio/vision) or of BERT's detached input token
    embeddings (text): the cheapest fixed summary, so these three bound I(X̄^m; z^S), a lower bound of the
    paper's I(X^m; z^S) (`use_input_club=False` drops them: Table 4's ablation 2).

    Objective of the model stage (eq. 21): L = L_reg + β·L_recon + α·L_mim, L_reg = log(MSE + ε) (eq. 18),
    L_mim = the sum of the nine CLUB estimates (not logged: they can be negative). The paper's eq. 21 has no β
    (β = 1); α is 0.1 on MOSI and 1 on MOSEI (§5.7, Fig. 7).

    Training (Algorithm 1), two engine stages per batch:

    1. `"club"`: `club_steps` (T' = 5) updates of the CLUB networks only (group `"club"`, Adam 1e-3) on
       eq. 22's summed negative log-likelihoods, on the batch's detached representations (one encoder pass);
    2. `"model"`: one update of everything else (groups `"bert"`: the BERT backbone, AdamW with a linear
       warm-up then linear decay, `LinearWarmup` with its step counts the right way round — the official code
       swaps them so its rate only ever warms up; `"main"`: WSA, encoders, decoders, regressor, Adam) on eq. 21,
       the CLUB networks fixed.

    Unlabeled data (Algorithm 1's X^unlabeled): examples of per-sample weight 0 stay out of L_reg (its MSE is
    weighted) and enter reconstruction and every CLUB term (estimates and likelihoods use the whole batch).
    The workflow mixes them in with `--unlabeled-dataset NAME` (that dataset's train split, labels ignored, all
    of it: the paper's labeled/unlabeled ratio is then the two splits' sizes; `sample_unlabeled` gives 1:1).

    Ablations: `use_club=False` (no CLUB networks, no club stage: Table 4's "−L_mim"), `use_input_club=False`
    ("−L_mim^(Xm,S)"), `use_reconstruction=False` (no decoders).

    XLA: off by default (`compile(jit_compile=False)`, and the workflow ignores `jit_compile` for MIRD,
    `xla_train_step = False`): the XLA compile of its train step took over 15 minutes on the sample (measured),
    the plain TensorFlow graph traces in about a minute.

    Input standardisation (`standardize`, off by default, not in the paper; as `BertLSTMMLP`'s): the listed
    modalities' frames pass through a `FeatureStandardizer` fitted on the training split by `adapt` (the
    workflow calls it before the first epoch) before anything reads them: WSA's injection, the encoders, the
    X̄^m summaries and the reconstruction targets. Meant for `mosi_sdk`'s per-clip COVAREP vector (F0 in Hz
    beside unit-scale features), whose raw scale would otherwise dominate eq. 19's audio MSE.

    Logs: model stage `task` (L_reg), `recon` and `recon_<m>` (the log-losses), `mim` (L_mim) and the nine
    `club_<cond>_<target>` estimates; club stage `club_loss` (eq. 22, the summed NLL). The engine reports each
    per step and epoch to TensorBoard.

    Args:
        text_backbone: a KerasHub `BertBackbone` (e.g. from `keras_mmsa.backbones.load_text_backbone`).
        audio_dim, vision_dim: input feature sizes (None: modality unused).
        modalities: used modalities; "text" and at least one of audio/vision (WSA injects them).
        split_index: BERT layers before the injection (None: the middle one; the paper: "middle").
        attention_dim, wsa_epsilon, wsa_layer_norm: `WSATextEncoder`'s `attention_dim`, eq. 6's ε (paper: 1),
            its optional LayerNorm.
        latent_dim: d, the size of z^S and each z^m.
        text_hidden, audio_hidden, vision_hidden: LSTM units of the modality-specific encoders.
        decoder_hidden: LSTM units of each decoder.
        regressor_hidden: hidden width of the regressor.
        dropout: dropout on p before the regressor's hidden layer.
        club_hidden: hidden width of each CLUB network's μ and log σ² MLPs.
        club_logvar_bound: bound b on each q's |log σ²| (`GaussianConditional`; None: unbounded).
        club_steps: T', CLUB updates per model update.
        alpha, beta: weights of L_mim and L_recon in eq. 21.
        use_club, use_input_club, use_reconstruction: the ablation flags above.
        text_reconstruction: "tokens" or "embedding".
        log_epsilon: ε of the log-losses.
        clipnorm: global-norm clipping of the model stage (None: none, as the paper).
        standardize: modalities among ("audio", "vision") whose frames are standardised (see above).
        **kwargs: `keras.Model` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    model = MIRD(backbone, audio_dim=5, vision_dim=20)
    model.build()
    model.compile(optimizers=model.optimizers_for(MIRD.preset("sample")["train"], total_steps=19 * 8))
    model.fit(keras_mmsa.data.load("sample", "train", 32, text_backbone=tokenizer), epochs=8)
    ```

    Reference:
        Qian, Han, Li, He, Zheng, Zheng. "Mutual Information-based Representations Disentanglement for
        Unaligned Multimodal Language Sequences". §3.2-3.7, eq. 1-22, Algorithm 1, §4.3.
    """

    # XLA: measured on the bundled sample (2 shared CPU cores, tiny BERT, batch 32, 375/500 frames), the XLA
    # compile of the train step did not finish in 15 minutes (seven packed LSTMs, each with its three row
    # budgets and its explicit backward recurrence, plus the T' unrolled CLUB updates), while the plain graph
    # traces in ~65 s and steps in ~1.2 s. So `compile` defaults to `jit_compile=False` and the workflow
    # (`train.py`) does not use XLA for MIRD.
    xla_train_step = False

    def __init__(
        self,
        text_backbone,
        audio_dim=None,
        vision_dim=None,
        modalities=None,
        split_index=None,
        attention_dim=32,
        wsa_epsilon=1.0,
        wsa_layer_norm=False,
        latent_dim=64,
        text_hidden=64,
        audio_hidden=32,
        vision_hidden=32,
        decoder_hidden=64,
        regressor_hidden=64,
        dropout=0.1,
        club_hidden=32,
        club_logvar_bound=1.0,
        club_steps=5,
        alpha=0.1,
        beta=1.0,
        use_club=True,
        use_input_club=True,
        use_reconstruction=True,
        text_reconstruction="tokens",
        log_epsilon=LOG_EPSILON,
        clipnorm=None,
        standardize=(),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.modalities = check_modalities(
            modalities,
            {"audio": audio_dim, "vision": vision_dim},
            owner="MIRD",
            needs=("text",),
        )
        nonverbal = [m for m in ("audio", "vision") if m in self.modalities]
        if not nonverbal:
            raise ValueError(
                "MIRD's WSA-BERT injects audio and/or vision into the words: it needs at least one of them "
                f"among its modalities; got {self.modalities}"
            )
        if text_reconstruction not in TEXT_TARGETS:
            raise ValueError(
                f"MIRD: text_reconstruction must be one of {TEXT_TARGETS}; got {text_reconstruction!r}"
            )
        if int(club_steps) < 1:
            raise ValueError(f"MIRD: club_steps must be >= 1; got {club_steps}")
        self.audio_dim = audio_dim
        self.vision_dim = vision_dim
        self.split_index = split_index
        self.attention_dim = attention_dim
        self.wsa_epsilon = wsa_epsilon
        self.wsa_layer_norm = wsa_layer_norm
        self.latent_dim = int(latent_dim)
        self.text_hidden = text_hidden
        self.audio_hidden = audio_hidden
        self.vision_hidden = vision_hidden
        self.decoder_hidden = decoder_hidden
        self.regressor_hidden = regressor_hidden
        self.dropout = dropout
        self.club_hidden = club_hidden
        self.club_logvar_bound = club_logvar_bound
        self.club_steps = int(club_steps)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.use_club = bool(use_club)
        self.use_input_club = bool(use_input_club)
        self.use_reconstruction = bool(use_reconstruction)
        self.text_reconstruction = text_reconstruction
        self.log_epsilon = float(log_epsilon)
        self.clipnorm = clipnorm
        # only the used audio/vision: the standardised frames feed WSA, the encoders and the decoders' targets
        self.standardize = standardized_modalities(standardize, nonverbal, owner="MIRD")
        self.standardizers = {m: FeatureStandardizer(name=f"{m}_standardizer") for m in standardize}
        # the number of optimizer steps of the run, for the warm-up schedule (set by `from_run_config`)
        self.total_steps = None

        d = self.latent_dim
        self.text_encoder = WSATextEncoder(
            text_backbone,
            nonverbal=nonverbal,
            split_index=split_index,
            attention_dim=attention_dim,
            epsilon=wsa_epsilon,
            layer_norm=wsa_layer_norm,
            name="wsa_bert",
        )
        self.shared_projection = keras.layers.Dense(d, name="shared_projection")
        hidden = {"text": text_hidden, "audio": audio_hidden, "vision": vision_hidden}
        self.encoders = {
            m: SequenceEncoder(hidden[m], d, name=f"{m}_encoder") for m in self.modalities
        }
        self.regressor_hidden_layer = keras.layers.Dense(
            regressor_hidden, activation="relu", name="regressor_hidden"
        )
        self.regressor_dropout = keras.layers.Dropout(dropout)
        self.regressor_output = keras.layers.Dense(1, name="regressor_output")
        self.decoders = {}
        if self.use_reconstruction:
            out = {
                "text": (
                    self.text_backbone.vocabulary_size
                    if text_reconstruction == "tokens"
                    else self.text_backbone.hidden_dim
                ),
                "audio": audio_dim,
                "vision": vision_dim,
            }
            self.decoders = {
                m: SequenceDecoder(decoder_hidden, out[m], name=f"{m}_decoder")
                for m in self.modalities
            }
        self.pairs = club_pairs(self.modalities, self.use_input_club) if self.use_club else []
        input_dims = {
            "text": self.text_backbone.hidden_dim,
            "audio": audio_dim,
            "vision": vision_dim,
        }
        self.clubs = {}
        for name, cond, _ in self.pairs:
            club = CLUB(d, club_hidden, logvar_bound=club_logvar_bound, name=name)
            club.build((None, d if cond[0] == "z" else input_dims[cond[1]]))
            self.clubs[name] = club

    def compile(self, optimizers=None, *, jit_compile=False, **kwargs):
        """`MultiStageModel.compile`, without XLA by default (see `xla_train_step`)."""
        return super().compile(optimizers, jit_compile=jit_compile, **kwargs)

    @property
    def text_backbone(self):
        return self.text_encoder.backbone

    # ------------------------------------------------------------------ the inputs
    def input_keys(self):
        keys = list(TEXT_KEYS)
        if "audio" in self.modalities:
            keys += list(AUDIO_KEYS)
        if "vision" in self.modalities:
            keys += list(VISION_KEYS)
        return keys

    def dummy_inputs(self, input_shape=None, batch=2):
        return MultimodalBackbone.dummy_inputs(self, input_shape, batch=batch)

    def build(self, input_shape=None):
        """Creates every variable by running the model and both stages' losses once on a zero batch of two."""
        if self.built:
            return
        x = self.dummy_inputs(input_shape)
        features = self.compute_features(x, training=False)
        y = ops.convert_to_tensor([1.0, -1.0])
        for stage in self.stages():
            self.compute_stage_losses(stage, features, x, y, training=False)
        self.built = True

    # ------------------------------------------------------------------ forward pass
    def adapt(self, dataset):
        """Fits the input standardisers (`standardize`) on batches `(inputs, label)` of the training split."""
        if not self.standardizers:
            return
        if not self.built:
            raise ValueError("MIRD.adapt: build the model first")
        adapt_standardizers(self.standardizers, dataset)

    def training_callbacks(self, data, train):
        """The workflow's hook: `CLUBProbe` (fitted on the training split, scored on the validation split)
        when `train.club_probe` is true (`keras_mmsa.models.mird.probe`)."""
        if not train.get("club_probe"):
            return []
        from keras_mmsa.models.mird.probe import CLUBProbe

        return [CLUBProbe(data["train_examples"].batch(256), data["validation"])]

    def model_inputs(self, x):
        """The inputs as the model reads them: `x` with the `standardize` modalities' frames standardised."""
        if not self.standardizers:
            return x
        x = dict(x)
        for m, layer in self.standardizers.items():
            x[m] = layer(x[m], x[f"{m}_lengths"])
        return x

    def compute_features(self, x, training=False):
        """`{"z": {m: z^m, "shared": z^S}, "x": {m: X̄^m}, "text_embeddings", "prediction", "inputs"}`
        (`inputs`: `model_inputs(x)`, what the reconstruction targets)."""
        x = self.model_inputs(x)
        states = self.text_encoder.states(x, training=training)
        mask = states["padding_mask"]
        tokens = ops.sum(ops.cast(mask, "int32"), axis=1)
        z = {"shared": self.shared_projection(states["pooled"])}
        for m, enc in self.encoders.items():
            if m == "text":
                z[m] = enc(states["mid"], tokens, training=training)
            else:
                z[m] = enc(x[m], x[f"{m}_lengths"], training=training)
        p = ops.concatenate(
            [z[m] for m in ("vision", "text", "audio") if m in z] + [z["shared"]], axis=-1
        )
        hidden = self.regressor_hidden_layer(self.regressor_dropout(p, training=training))
        prediction = ops.reshape(self.regressor_output(hidden), (-1,))
        # BERT's input token embeddings, detached: the text reconstruction target and X̄^L's frames
        embeddings = ops.stop_gradient(
            self.text_backbone.token_embedding(ops.cast(x["token_ids"], "int32"))
        )
        summaries = {"text": _masked_mean(embeddings, mask)}
        for m in self.modalities:
            if m != "text":
                summaries[m] = _masked_mean(x[m], _frame_mask(x[m], x[f"{m}_lengths"]))
        return {
            "z": z,
            "x": summaries,
            "text_embeddings": embeddings,
            "prediction": prediction,
            "inputs": x,
        }

    def call(self, x, training=False):
        return self.compute_features(x, training=training)["prediction"]

    # ------------------------------------------------------------------ losses
    def _pair(self, features, key):
        return features[key[0]][key[1]]

    def club_estimates(self, features):
        """`{name: CLUB estimate}` of every pair (eq. 12, 14), over the whole batch (unlabeled included)."""
        return {
            name: self.clubs[name](self._pair(features, cond), self._pair(features, target))
            for name, cond, target in self.pairs
        }

    def club_loss(self, features):
        """Eq. 22: the summed negative log-likelihoods of the CLUB networks."""
        total = 0.0
        for name, cond, target in self.pairs:
            total = total + self.clubs[name].learning_loss(
                self._pair(features, cond), self._pair(features, target)
            )
        return total

    def reconstruction_losses(self, features, x):
        """`{m: log(loss_m + ε)}` (eq. 19) over every example."""
        z = features["z"]
        out = {}
        for m, dec in self.decoders.items():
            condition = ops.concatenate([z["shared"], z[m]], axis=-1)
            if m == "text":
                mask = ops.cast(x["padding_mask"], "bool")
                lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
                steps = ops.shape(x["token_ids"])[1]
                decoded = dec(condition, lengths, steps=steps)
                if self.text_reconstruction == "tokens":
                    out[m] = masked_log_cross_entropy(
                        token_ids=x["token_ids"],
                        logits=decoded,
                        mask=mask,
                        epsilon=self.log_epsilon,
                    )
                else:
                    out[m] = masked_log_mse(
                        x_true=features["text_embeddings"],
                        x_pred=decoded,
                        mask=mask,
                        epsilon=self.log_epsilon,
                    )
            else:
                frames = x[m]
                lengths = x[f"{m}_lengths"]
                decoded = dec(condition, lengths, steps=ops.shape(frames)[1])
                out[m] = masked_log_mse(
                    x_true=frames,
                    x_pred=decoded,
                    mask=_frame_mask(frames, lengths),
                    epsilon=self.log_epsilon,
                )
        return out

    # ------------------------------------------------------------------ engine contract
    def stages(self):
        logs = ["task"]
        if self.use_reconstruction:
            logs += ["recon"] + [f"recon_{m}" for m in self.modalities]
        if self.use_club:
            logs += ["mim"] + [name for name, _, _ in self.pairs]
        model = Stage("model", ("bert", "main"), logs=tuple(logs), clipnorm=self.clipnorm)
        if not self.use_club:
            return [model]
        return [Stage("club", ("club",), logs=("club_loss",), repeats=self.club_steps), model]

    def variable_groups(self):
        bert = list(self.text_backbone.trainable_variables)
        club = [v for c in self.clubs.values() for v in c.trainable_variables]
        taken = {id(v) for v in bert} | {id(v) for v in club}
        groups = {
            "bert": bert,
            "main": [v for v in self.trainable_variables if id(v) not in taken],
        }
        if self.use_club:
            groups["club"] = club
        return groups

    def lr_decay_groups(self):
        """A plateau may decay "main" (Adam); "bert" follows its warm-up schedule, the CLUB networks theirs."""
        return ("main",)

    def compute_stage_losses(self, stage, features, x, y, sample_weight=None, training=False):
        if stage.name == "club":
            loss = self.club_loss(features)
            return loss, {"club_loss": loss}
        task = log_mse(
            y_true=y,
            y_pred=features["prediction"],
            sample_weight=sample_weight,
            epsilon=self.log_epsilon,
        )
        logs = {"task": task}
        loss = task
        if self.use_reconstruction:
            recon = self.reconstruction_losses(features, features["inputs"])
            total = sum(recon.values())
            logs["recon"] = total
            logs.update({f"recon_{m}": v for m, v in recon.items()})
            loss = loss + self.beta * total
        if self.use_club:
            estimates = self.club_estimates(features)
            mim = sum(estimates.values())
            logs["mim"] = mim
            logs.update(estimates)
            loss = loss + self.alpha * mim
        return loss, logs

    # ------------------------------------------------------------------ presets and the workflow protocol
    @classmethod
    def preset(cls, dataset):
        return mird_configs.get_preset(dataset)

    @classmethod
    def model_keys(cls):
        own = set(inspect.signature(cls.__init__).parameters)
        return tuple(
            sorted(
                own
                - {
                    "self",
                    "kwargs",
                    "text_backbone",
                    "audio_dim",
                    "vision_dim",
                    "modalities",
                    "clipnorm",
                }
            )
        )

    @classmethod
    def from_run_config(cls, config, info, text_backbone):
        keys = set(cls.model_keys())
        model = cls(
            text_backbone,
            audio_dim=info.audio_dim,
            vision_dim=info.vision_dim,
            modalities=config.modalities or list(info.modalities),
            clipnorm=config.train.get("clipnorm"),
            **{k: v for k, v in config.model.items() if k in keys},
        )
        model.build(build_shapes(info, config, model.audio_dim, model.vision_dim))
        num_train = (info.num_examples or {}).get("train")
        if num_train and config.unlabeled_dataset:
            from keras_mmsa.data import pipeline

            other = pipeline.dataset_info(config.unlabeled_dataset, data_dir=config.data_dir)
            unlabeled = (other.num_examples or {}).get("train")
            num_train = num_train + unlabeled if unlabeled else None
        if num_train:  # the warm-up schedule's length: every batch of the run's stream
            model.total_steps = total_steps(
                num_train, int(config.train["batch_size"]), int(config.train["epochs"])
            )
        return model

    def optimizers_for(self, train, total_steps=None):
        """`{group: optimizer}` for `compile(optimizers=...)` (see `optimizers_from_settings`); `total_steps`
        defaults to the run's (`self.total_steps`, set by `from_run_config`)."""
        steps = total_steps if total_steps is not None else self.total_steps
        groups = type(self).optimizers_from_settings(train, total_steps=steps)
        if not self.use_club:
            groups.pop("club")
        return groups

    run_optimizers = optimizers_for

    @classmethod
    def optimizers_from_settings(cls, train, total_steps=None):
        """`"bert"`: AdamW at `lr_bert` (weight decay `weight_decay`) following `LinearWarmup` over
        `total_steps` with `warmup_proportion` of them warming up (constant `lr_bert` when `total_steps` is
        None); `"main"`: Adam at `lr_main`; `"club"`: Adam at `lr_club` (§4.3)."""
        lr_bert = train["lr_bert"]
        if total_steps:
            warmup = int(round(float(train.get("warmup_proportion", 0.1)) * total_steps))
            lr_bert = LinearWarmup(lr_bert, warmup_steps=warmup, total_steps=int(total_steps))
        return {
            "bert": keras.optimizers.AdamW(
                lr_bert, weight_decay=train.get("weight_decay", 0.01), name="adamw_bert"
            ),
            "main": keras.optimizers.Adam(train["lr_main"], name="adam_main"),
            "club": keras.optimizers.Adam(train["lr_club"], name="adam_club"),
        }

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "text_backbone": keras.saving.serialize_keras_object(self.text_backbone),
                "audio_dim": self.audio_dim,
                "vision_dim": self.vision_dim,
                "modalities": list(self.modalities),
                "split_index": self.split_index,
                "attention_dim": self.attention_dim,
                "wsa_epsilon": self.wsa_epsilon,
                "wsa_layer_norm": self.wsa_layer_norm,
                "latent_dim": self.latent_dim,
                "text_hidden": self.text_hidden,
                "audio_hidden": self.audio_hidden,
                "vision_hidden": self.vision_hidden,
                "decoder_hidden": self.decoder_hidden,
                "regressor_hidden": self.regressor_hidden,
                "dropout": self.dropout,
                "club_hidden": self.club_hidden,
                "club_logvar_bound": self.club_logvar_bound,
                "club_steps": self.club_steps,
                "alpha": self.alpha,
                "beta": self.beta,
                "use_club": self.use_club,
                "use_input_club": self.use_input_club,
                "use_reconstruction": self.use_reconstruction,
                "text_reconstruction": self.text_reconstruction,
                "log_epsilon": self.log_epsilon,
                "clipnorm": self.clipnorm,
                "standardize": list(self.standardize),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("text_backbone"), dict):
            config["text_backbone"] = keras.saving.deserialize_keras_object(config["text_backbone"])
        return cls(**config)


def total_steps(num_examples, batch_size, epochs):
    """Optimizer steps of a run: batches per epoch (the last one partial) times epochs."""
    return math.ceil(num_examples / batch_size) * epochs


def _frame_mask(frames, lengths):
    steps = ops.shape(frames)[1]
    return ops.arange(steps)[None, :] < ops.cast(lengths, "int32")[:, None]


def _masked_mean(frames, mask):
    w = ops.cast(mask, frames.dtype)[..., None]
    return ops.sum(frames * w, axis=1) / ops.maximum(ops.sum(w, axis=1), 1.0)
