"""MDM: Mutual Dependency Maximisation (Colombo et al., EMNLP 2021), a penalty over any multimodal base model."""

from __future__ import annotations

import inspect

import keras
from keras import ops

from keras_mmsa.configs import mdm as mdm_configs
from keras_mmsa.data.spec import MODALITY_KEYS, TEXT_FEATURES
from keras_mmsa.engine import Stage, weighted_mean
from keras_mmsa.estimators import (
    MINEMovingAverage,
    StatisticNetwork,
    sample_product_of_marginals,
    total_correlation_lower_bound,
)
from keras_mmsa.models.backbone_method import BackboneMethod
from keras_mmsa.models.multimodal_backbone import MultimodalBackbone, build_shapes

PENALTIES = ("none", "kl", "f", "wasserstein")
NEGATIVES = ("inputs", "features")
LIPSCHITZ = ("spectral", "gradient_penalty")
CRITIC_OUTPUTS = ("sigmoid", "linear")
# penalty -> measure of `keras_mmsa.estimators.total_correlation_lower_bound`
_MEASURE = {"kl": "kl", "f": "f", "wasserstein": "w"}


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MDM(BackboneMethod):
    """Mutual Dependency Maximisation: a multivariate dependency penalty on the fusion representation of a base model.

    Any `MultimodalBackbone` (`backbone`: TFN, LMF, BertLSTMMLP, ... with at least two modalities) gives
    Z = `fuse(encode(x))`, the representation its final regression layer reads (the paper's Z_avl, §4.3). A
    statistic network T_θ (App. Table 4, `keras_mmsa.estimators.StatisticNetwork` over `fusion_dim` inputs)
    scores Z of the real batch (a sample of the joint p(x_a, x_v, x_l)) against Z̄, the fusion of the same batch
    with each modality permuted independently (a sample of the product of marginals, Algorithm 1's σ_a, σ_v,
    σ_l). The dependency estimate L_MDM is, by `penalty`:

    - `"kl"`: the Donsker–Varadhan bound of the total correlation, E_p[T] − log E_q[e^T] (eq. 6);
    - `"f"`: the f-divergence (NWJ) bound E_p[T] − E_q[e^(T−1)] (eq. 7; see "Typos" below);
    - `"wasserstein"`: the Kantorovich–Rubinstein dual E_p[T] − E_q[T] with a 1-Lipschitz T (eq. 8);
    - `"none"`: no penalty and no critic: the base model alone on the task loss (the paper's L_∅ rows), so
      one class gives both arms of a paired comparison.

    The bounds are the estimators' own (`total_correlation_lower_bound`, `keras_mmsa.estimators.bounds`).

    Training (Algorithm 1) has two stages per batch, run by the engine:

    1. `"critic"`: `unroll` updates of θ (T's weights only; its own optimizer group `"critic"`) maximising
       L_MDM on the batch's detached Z and Z̄ (the engine's stage `repeats`: the encoders run once per batch);
    2. `"model"`: one update of the base model (all its groups, with its own optimizers) on eq. 5,
       L = L_task − λ·L_MDM, T held fixed.

    Sign (eq. 5). The model MAXIMISES the dependency: it minimises L_task − λ·L_MDM, so the penalty lowers the
    loss when the modalities' fusion is more dependent. The paper says so throughout (the title; §3: "jointly
    maximising the MDM between the different modalities and minimising the task loss"; §3.2: "minimising a
    multi-task objective (5) by using minus the estimator"); Algorithm 1's caption ("to minimise multivariate
    dependency measures") speaks of minimising the objective, eq. 5, not the measure. Critic and model both
    maximise L_MDM: the scheme is cooperative, not a min-max game.

    Negatives (`negatives`). `"inputs"` (default, Algorithm 1's negative dataset): the inputs dict's
    modality groups are permuted independently, each group together (token ids with their padding mask and
    segment ids, frames with their lengths; `sample_product_of_marginals`), and Z̄ is the base model's fusion of
    that batch: a second encoder pass per batch, valid for any base model. One permutation per batch, shared by
    the `unroll` critic steps and the model step. `"features"`: the unimodal representations h = `encode(x)` are
    permuted instead and Z̄ = `fuse(h^σ)`: the same sample when each h_m depends on x_m only (the
    `MultimodalBackbone` contract; true of TFN, LMF, BertLSTMMLP), without the second encoder pass (for TFN/LMF
    the frozen BERT runs once), and every critic step draws a fresh permutation. Algorithm 1 also samples a
    fresh batch for every critic step; the engine repeats a stage on the batch it has (one encoder pass for the
    `unroll` updates, ten times cheaper), and a per-step batch schedule would need interleaved stage ids in the
    data stream, which the engine's schedules (per batch or per epoch) do not offer.

    Decisions where the paper is vague (each a flag):

    - λ (`lam`) is never given in the paper; 0.1 here (with Table 4's sigmoid output every L_MDM is below 1
      nat, so the penalty moves the loss by at most 0.1 against a task MAE near 1).
    - Z for TFN: the output of its post-fusion layers (`fusion_dim` = 64 on MOSI), the representation the final
      linear layer reads, as §4.3 defines Z_avl — not the flattened 140,481-wide fusion tensor, on which Table 4's
      critic (first layer d/2 wide) would have ~10^10 weights.
    - T's widths are Table 4's (d/2, d, d, d/4, d/4 of d = `fusion_dim`) but at least `critic_min_width` = 16
      units. For LMF, Z is the `rank` products (3 on MOSI), and Table 4 gives layers of 1 unit: measured on the
      sample, their LeakyReLU units die and T is constant to 1e-5 within 3 epochs, so every penalty is exactly
      0. The floor changes nothing for TFN (64) or BertLSTMMLP (128); `critic_hidden_dims` sets any widths.
    - The critic's optimizer is not given (the paper's AdamW and grid {2e-3, 1e-3, 5e-4, 1e-4} is for eq. 5):
      Adam at `lr_critic` = 1e-3 (`train.lr_critic`); the base model keeps its own optimizers.
    - Eq. 7 prints E_q[e^(T^{-1})]; the f-divergence (NWJ) bound it cites (Nguyen et al.) is E_q[e^(T−1)], which
      is what `"f"` computes.
    - Eq. 8 prints E_p[T] − log E_q[T]; the Kantorovich–Rubinstein duality it cites has no logarithm, so the
      default is E_p[T] − E_q[T]; `wasserstein_log=True` reproduces eq. 8 as printed (T > 0: sigmoid output).
    - The Lipschitz constraint of eq. 8 is not said: `lipschitz="spectral"` (default: every Dense of T is
      spectrally normalised, so T is 1-Lipschitz) or `"gradient_penalty"` (WGAN-GP, weight
      `gradient_penalty_weight`, on the critic loss only). Training-mode dropout scales activations by 1/(1−p)
      and breaks the constraint, so T's dropout defaults to 0 for the Wasserstein penalty (`critic_dropout`);
      Table 4's 0.4 for the others. The constraint applies to `"wasserstein"` only.
    - T's output is Table 4's sigmoid (`critic_output="linear"` for an unbounded one). The sigmoid caps the
      estimates (DV ≤ 1 nat): a training signal, not an MI measurement.
    - `"kl"` uses the plain DV bound of eq. 6; `mine_decay` (e.g. 0.99) switches to MINE's bias-corrected gradient
      with a moving average of E_q[e^T] (`MINEMovingAverage`, updated after each critic stage).

    Measured (the bundled sample; Z and Z̄ of a TFN trained 3 epochs, 64-wide, negatives permuted per batch of
    32; 2000 critic steps of Adam 1e-3): Table 4's critic (dropout 0.4 after each of its five narrow layers)
    learns next to nothing — DV 0.001 nats with a sigmoid or a linear output — while without dropout it reaches
    DV 0.12 (sigmoid) and 0.22 (linear). With the sigmoid output the f penalty stays near 0 whatever the
    dropout: its optimal critic 1 + log p/q exceeds 1 wherever p > q. The presets keep the paper's values;
    `critic_dropout=0.0` (and `critic_output="linear"`, for `"f"` above all) is what makes the penalty bite on
    small fusion sizes such as TFN's 64 or LMF's 3.

    Logs (progress bar, History, TensorBoard): `task` (L_task), `mdm` (L_MDM in the model step: the penalty
    value), `critic_loss` (the critic's objective, −L_MDM plus the gradient penalty) and `mdm_critic` (L_MDM
    in the last critic step), `gp` (the unweighted gradient penalty, with `lipschitz="gradient_penalty"`).

    `explain(x)` gives T_θ(Z) per sample (inference mode): high where the modalities' fusion looks like a joint
    sample (complementary modalities), low where it looks like a mismatched one (§5.4, Tables 3 and 5).

    Args:
        backbone: the base model, a `keras_mmsa.models.MultimodalBackbone` with at least two modalities.
        penalty: "wasserstein" (default), "kl", "f" or "none".
        lam: λ of eq. 5.
        unroll: critic updates per model update (Algorithm 1's Unroll; App. A.1.2: 10).
        negatives: "inputs" or "features" (see above).
        critic_hidden_dims: widths of T's hidden layers (None: Table 4's d/2, d, d, d/4, d/4 of d = fusion_dim,
            each at least `critic_min_width`).
        critic_min_width: the narrowest hidden layer of T when `critic_hidden_dims` is None.
        critic_dropout: dropout of T (None: 0.4 as in Table 4, 0.0 for the Wasserstein penalty).
        critic_output: "sigmoid" (Table 4) or "linear".
        lipschitz: "spectral" or "gradient_penalty" (Wasserstein only).
        gradient_penalty_weight: weight of the gradient penalty.
        wasserstein_log: eq. 8 as printed (with the log).
        mine_decay: None (plain DV) or the decay of MINE's moving average ("kl" only).
        clipnorm: global-norm gradient clipping of the model stage (the base model's setting).
        seed: seed of the permutations and of the gradient penalty's interpolations (None: drawn from the
            global seed that `keras.utils.set_random_seed` sets; the workflow leaves it None).
        **kwargs: `keras.Model` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    model = MDM(TFN(backbone, audio_dim=5, vision_dim=20), penalty="kl", lam=0.1)
    model.build()
    model.compile(optimizers=model.optimizers_for(MDM.preset("sample")["train"]))
    model.fit(keras_mmsa.data.load("sample", "train", 32, text_backbone=tokenizer), epochs=1)
    ```

    Reference:
        Colombo, Chapuis, Labeau, Clavel. "Improving Multimodal fusion via Mutual Dependency Maximisation".
        EMNLP 2021. Eq. 5–8, Theorem 1, Algorithm 1, §4.3, §5.3–5.4, App. A.1 (Table 4).
    """

    explain_sort_key = "t_score"

    def __init__(
        self,
        backbone,
        penalty="wasserstein",
        lam=0.1,
        unroll=10,
        negatives="inputs",
        critic_hidden_dims=None,
        critic_min_width=16,
        critic_dropout=None,
        critic_output="sigmoid",
        lipschitz="spectral",
        gradient_penalty_weight=10.0,
        wasserstein_log=False,
        mine_decay=None,
        clipnorm=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, MultimodalBackbone):
            raise TypeError(
                "MDM wraps a multimodal base model (a keras_mmsa.models.MultimodalBackbone, e.g. TFN); got "
                f"{type(backbone).__name__}"
            )
        for name, value, allowed in (
            ("penalty", penalty, PENALTIES),
            ("negatives", negatives, NEGATIVES),
            ("lipschitz", lipschitz, LIPSCHITZ),
            ("critic_output", critic_output, CRITIC_OUTPUTS),
        ):
            if value not in allowed:
                raise ValueError(f"MDM: {name} must be one of {allowed}; got {value!r}")
        if int(unroll) < 1:
            raise ValueError(f"MDM: unroll must be >= 1; got {unroll}")
        if penalty != "none" and len(backbone.modalities) < 2:
            raise ValueError(
                "MDM's penalty measures the dependency between modalities: it needs at least two; the base "
                f"model has {list(backbone.modalities)} (penalty='none' trains it alone)"
            )
        if mine_decay is not None and not (
            isinstance(mine_decay, (int, float)) and 0.0 <= float(mine_decay) < 1.0
        ):
            raise ValueError(f"MDM: mine_decay must be None or in [0, 1); got {mine_decay}")
        self.backbone = backbone
        self.penalty = penalty
        self.lam = float(lam)
        self.unroll = int(unroll)
        self.negatives = negatives
        self.critic_hidden_dims = None if critic_hidden_dims is None else list(critic_hidden_dims)
        self.critic_min_width = int(critic_min_width)
        self.critic_dropout = critic_dropout
        self.critic_output = critic_output
        self.lipschitz = lipschitz
        self.gradient_penalty_weight = float(gradient_penalty_weight)
        self.wasserstein_log = bool(wasserstein_log)
        self.mine_decay = mine_decay
        self.clipnorm = clipnorm
        self.seed = seed

        self.critic = None
        self.mine = None
        if penalty != "none":
            wasserstein = penalty == "wasserstein"
            if critic_dropout is None:
                critic_dropout = 0.0 if wasserstein else 0.4
            hidden = self.critic_hidden_dims
            if hidden is None:  # Table 4's widths, at least `critic_min_width` units
                d = backbone.fusion_dim
                hidden = [max(self.critic_min_width, w) for w in (d // 2, d, d, d // 4, d // 4)]
            self.critic = StatisticNetwork(
                backbone.fusion_dim,
                hidden_dims=hidden,
                dropout=critic_dropout,
                output_activation=critic_output,
                lipschitz=lipschitz if wasserstein else None,
                gradient_penalty_weight=gradient_penalty_weight,
                seed=seed,
                name="statistic_network",
            )
            if penalty == "kl" and mine_decay is not None:
                self.mine = MINEMovingAverage(decay=float(mine_decay), name="mine_moving_average")
        self.permutation_seed = keras.random.SeedGenerator(seed, name="permutation_seed")

    # ------------------------------------------------------------------ building
    def build(self, input_shape=None):
        """Builds the base model and T (and runs both once on a zero batch of two examples)."""
        if self.built:
            return
        self.backbone.build(input_shape)
        if self.critic is not None:
            x = self.backbone.dummy_inputs(input_shape)
            features = self.compute_features(x, training=False)
            self.critic(features["z"], training=False)
            self._scores(features, training=False)
        self.built = True

    # ------------------------------------------------------------------ negatives and scores
    def marginal_inputs(self, x):
        """The inputs dict with each modality's group of keys permuted independently (a Π_j p(x_j) sample)."""
        # a training run's cached text features (`text_features`) travel with the token ids they encode
        groups = [
            [k for k in MODALITY_KEYS[m] + ((TEXT_FEATURES,) if m == "text" else ()) if k in x]
            for m in self.backbone.modalities
        ]
        keys = [k for group in groups for k in group]
        permuted, _ = sample_product_of_marginals(
            {k: x[k] for k in keys}, seed=self.permutation_seed, groups=groups
        )
        return {**x, **permuted}

    def marginal_features(self, h):
        """The unimodal representations with each modality permuted independently."""
        permuted, _ = sample_product_of_marginals(dict(h), seed=self.permutation_seed)
        return permuted

    def compute_features(self, x, training=False):
        """The base model's forward pass (`h`, `z`, `prediction`), plus `z_marginal` with `negatives="inputs"`.

        With `"inputs"` the real and the permuted batch go through the base model as one stacked batch of 2B
        (one traced forward pass instead of two: half the XLA compile time). Rows do not interact in a base
        model, except through batch normalisation, whose batch statistics per modality are the same over the
        stacked batch as over the real one (the permuted half holds the same rows of each modality).
        """
        if self.critic is None or self.negatives != "inputs":
            return self.backbone.forward(x, training=training)
        keys = [k for k in [*self.backbone.input_keys(), TEXT_FEATURES] if k in x]
        permuted = self.marginal_inputs(x)
        stacked = {k: ops.concatenate([x[k], permuted[k]], axis=0) for k in keys}
        out = self.backbone.forward(stacked, training=training)
        z, z_marginal = ops.split(out["z"], 2, axis=0)
        return {
            "h": {m: ops.split(v, 2, axis=0)[0] for m, v in out["h"].items()},
            "z": z,
            "z_marginal": z_marginal,
            "prediction": ops.split(out["prediction"], 2, axis=0)[0],
        }

    def _scores(self, features, training):
        """(T(Z), T(Z̄), Z, Z̄); Z̄ from the features (`"inputs"`) or from freshly permuted h (`"features"`)."""
        z = features["z"]
        if self.negatives == "inputs":
            z_marginal = features["z_marginal"]
        else:
            z_marginal = self.backbone.fuse(
                self.marginal_features(features["h"]), training=training
            )
        joint = self.critic(z, training=training)
        marginal = self.critic(z_marginal, training=training)
        return joint, marginal, z, z_marginal

    def dependency(self, joint_scores, marginal_scores):
        """L_MDM from T's scores on joint and product-of-marginals samples (eq. 6, 7 or 8)."""
        if self.mine is not None:
            return self.mine(joint_scores, marginal_scores)
        kwargs = (
            {"log_marginal": True} if self.penalty == "wasserstein" and self.wasserstein_log else {}
        )
        return total_correlation_lower_bound(
            joint_scores=joint_scores,
            marginal_scores=marginal_scores,
            measure=_MEASURE[self.penalty],
            **kwargs,
        )

    # ------------------------------------------------------------------ engine contract
    def stages(self):
        base = tuple(self.backbone.variable_groups())
        if self.critic is None:
            return [Stage("model", base, logs=("task",), clipnorm=self.clipnorm)]
        critic_logs = ("critic_loss", "mdm_critic")
        if self.critic.lipschitz == "gradient_penalty":
            critic_logs += ("gp",)
        return [
            Stage("critic", ("critic",), logs=critic_logs, repeats=self.unroll),
            Stage("model", base, logs=("task", "mdm"), clipnorm=self.clipnorm),
        ]

    def variable_groups(self):
        groups = {g: list(v) for g, v in self.backbone.variable_groups().items()}
        if self.critic is not None:
            groups["critic"] = list(self.critic.trainable_variables)
        return groups

    def lr_decay_groups(self):
        """A plateau of the validation loss decays the base model's learning rates, not the critic's."""
        return tuple(self.stages()[-1].groups)

    def compute_stage_losses(self, stage, features, x, y, sample_weight=None, training=False):
        if stage.name == "critic":
            joint, marginal, z, z_marginal = self._scores(features, training)
            estimate = self.dependency(joint, marginal)
            loss = -estimate
            logs = {"mdm_critic": estimate}
            if self.critic.lipschitz == "gradient_penalty":
                gp = self.critic.gradient_penalty(z, z_marginal, training=training)
                loss = loss + self.gradient_penalty_weight * gp
                logs["gp"] = gp
            logs["critic_loss"] = loss
            return loss, logs
        task = weighted_mean(
            ops.abs(features["prediction"] - ops.reshape(ops.cast(y, "float32"), (-1,))),
            sample_weight,
        )
        if self.critic is None:
            return task, {"task": task}
        joint, marginal, _, _ = self._scores(features, training)
        estimate = self.dependency(joint, marginal)
        return task - self.lam * estimate, {"task": task, "mdm": estimate}

    def update_state(self, stage, features, x, y, sample_weight, gather):
        """After the critic stage: MINE's moving average of E_q[e^T] (with `mine_decay`)."""
        if stage.name != "critic" or self.mine is None:
            return
        _, marginal, _, _ = self._scores(features, training=False)
        self.mine.update_state(marginal_scores=gather(marginal))

    # ------------------------------------------------------------------ explanation
    def explain(self, x):
        """Per-sample `{"prediction": [B], "t_score": [B]}`: T_θ(Z) in inference mode (§5.4).

        High scores: the fused representation looks like a joint sample of the three modalities (the paper
        finds complementary modalities there); low: like a product-of-marginals sample (contradictions).
        """
        if self.critic is None:
            raise ValueError("MDM(penalty='none') has no statistic network to explain with")
        features = self.backbone.forward(x, training=False)
        return {
            "prediction": features["prediction"],
            "t_score": self.critic(features["z"], training=False),
        }

    # ------------------------------------------------------------------ presets and the workflow protocol
    @classmethod
    def preset(cls, dataset):
        """The preset over the default base model (`keras_mmsa.configs.mdm.DEFAULT_BASE`)."""
        return mdm_configs.get_preset(dataset)

    @classmethod
    def base_model_class(cls, model=None):
        """The class of the base model the run's model settings name (`model["base"]`): the workflow reads its
        `requires_aligned` (`--set model.base=ef_lstm` defaults to `sample_aligned`)."""
        return base_model_class((model or {}).get("base", mdm_configs.DEFAULT_BASE))

    @classmethod
    def preset_for_settings(cls, dataset, model):
        """The preset over the base model that the run's model settings name (`model["base"]`)."""
        base = (model or {}).get("base", mdm_configs.DEFAULT_BASE)
        if not isinstance(base, str):
            raise ValueError(
                f"model.base={base!r}: expected a base model name; set it with --set model.base=..."
            )
        return mdm_configs.get_preset(dataset, base=base)

    @classmethod
    def model_keys(cls):
        """MDM's own settings (`base` and every constructor argument); the base model's come from its preset."""
        own = set(inspect.signature(cls.__init__).parameters) - {"self", "backbone", "kwargs"}
        return tuple(sorted((own - {"clipnorm", "seed"}) | {"base"}))

    @classmethod
    def from_run_config(cls, config, info, text_backbone):
        base_cls = base_model_class(config.model.get("base", mdm_configs.DEFAULT_BASE))
        base = base_cls(**base_cls.init_kwargs(config, info, text_backbone))
        own = set(cls.model_keys()) - {"base"}
        model = cls(
            base,
            clipnorm=config.train.get("clipnorm"),
            **{k: v for k, v in config.model.items() if k in own},
        )
        model.build(build_shapes(info, config, base.audio_dim, base.vision_dim))
        return model

    def optimizers_for(self, train):
        """`{group: optimizer}` for `compile(optimizers=...)`: the base model's own (its class's
        `optimizers_from_settings(train)`) plus Adam at `train["lr_critic"]` for the critic."""
        groups = dict(type(self.backbone).optimizers_from_settings(train))
        if self.critic is not None:
            groups["critic"] = keras.optimizers.Adam(train["lr_critic"], name="adam_critic")
        return groups

    # The workflow (`train_and_evaluate`) asks the built model: its groups depend on the base model it wraps.
    run_optimizers = optimizers_for

    @classmethod
    def optimizers_from_settings(cls, train):
        raise ValueError(
            "MDM's optimizer groups depend on its base model: use model.optimizers_for(train) on a built MDM"
        )

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "penalty": self.penalty,
                "lam": self.lam,
                "unroll": self.unroll,
                "negatives": self.negatives,
                "critic_hidden_dims": self.critic_hidden_dims,
                "critic_min_width": self.critic_min_width,
                "critic_dropout": self.critic_dropout,
                "critic_output": self.critic_output,
                "lipschitz": self.lipschitz,
                "gradient_penalty_weight": self.gradient_penalty_weight,
                "wasserstein_log": self.wasserstein_log,
                "mine_decay": self.mine_decay,
                "clipnorm": self.clipnorm,
                "seed": self.seed,
            }
        )
        return config


def base_model_names():
    """The registered method names that are base models (`MultimodalBackbone`s), in registry order."""
    from keras_mmsa.training import registry

    names = []
    for name in registry.METHODS:
        cls = registry.get_method(name)
        if isinstance(cls, type) and issubclass(cls, MultimodalBackbone):
            names.append(name)
    return names


def base_model_class(name):
    """The base-model class registered as `name` (e.g. "tfn"); a ValueError naming the base models otherwise."""
    from keras_mmsa.training import registry

    cls = None
    try:
        cls = registry.get_method(name)
    except ValueError:
        pass
    if not (isinstance(cls, type) and issubclass(cls, MultimodalBackbone)):
        raise ValueError(
            f"model.base={name!r} is not a base model; choose one of {base_model_names()} "
            "(--set model.base=...)"
        )
    return cls
