"""Self-MM (Yu et al., AAAI 2021) and Self-MI (Nguyen et al., 2023): a multimodal task plus unimodal subtasks
trained on unimodal labels that the method generates from the multimodal label during training."""

from __future__ import annotations

import inspect

import keras
import numpy as np
from keras import ops

from keras_mmsa.configs import self_mm as presets
from keras_mmsa.data.spec import INDEX_KEY, MODALITIES
from keras_mmsa.engine import Stage, weighted_mean
from keras_mmsa.estimators.cpc_predictor import CPCPredictor, l2_normalize
from keras_mmsa.models.backbone_method import BackboneMethod
from keras_mmsa.models.multimodal_backbone import MultimodalBackbone, build_shapes
from keras_mmsa.models.self_mm import ulgm

# A unimodal subtask's flat settings in the run config (`--set model.post_text_dim=64`).
_POST_KEYS = ("dim", "dropout")


@keras.saving.register_keras_serializable(package="keras_mmsa")
class UnimodalSubtask(keras.layers.Layer):
    """One unimodal subtask of Self-MM (Yu et al. 2021, Fig. 2): `F_s = ReLU(W1 dropout(h_s))` (the
    representation whose class centres and distances generate the labels), then `y_s = W3 ReLU(W2 F_s)`.

    `call(h)` -> `(F_s [B, dim], y_s [B])`.
    """

    def __init__(self, dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        self.layer_1 = keras.layers.Dense(self.dim, activation="relu", name="layer_1")
        self.layer_2 = keras.layers.Dense(self.dim, activation="relu", name="layer_2")
        self.layer_3 = keras.layers.Dense(1, name="layer_3")

    def build(self, input_shape):
        self.layer_1.build(input_shape)
        self.layer_2.build((None, self.dim))
        self.layer_3.build((None, self.dim))
        self.built = True

    def call(self, h, training=False):
        feature = self.layer_1(self.dropout_layer(h, training=training))
        return feature, ops.squeeze(self.layer_3(self.layer_2(feature)), -1)

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "dropout": self.dropout})
        return config


class _EpochCounter(keras.callbacks.Callback):
    """Writes the 1-based number of the epoch that starts into the model's `epoch_counter` (also on resume:
    `fit(initial_epoch=k)` starts at epoch k + 1), so the train step knows when label generation begins."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_epoch(epoch + 1)


@keras.saving.register_keras_serializable(package="keras_mmsa")
class SelfMM(BackboneMethod):
    """Self-MM: the multimodal task of a base model plus one unimodal subtask per modality, each trained on
    unimodal labels that the unimodal label generation module (ULGM) makes from the multimodal label.

    Over a `MultimodalBackbone` (default `BertLSTMMLP`: BERT [CLS], LSTM audio/vision, an MLP fusion — the
    network of Self-MM's Fig. 2) giving `h_s = encode(x)` and `Z = fuse(h)`: each subtask s reads h_s through
    `UnimodalSubtask` (F_s = ReLU(W1 h_s), y_s = W3 ReLU(W2 F_s); MMSA's post-layers, sizes `post_<m>_dim`).

    Label generation (§3.3; as MMSA's trainer `SELF_MM` runs it, checked against it in tests):

    - Per training example i a label memory holds y_m(i) (the human multimodal label) and y_s(i) for each
      subtask; at epoch 1 every y_s(i) is y_m(i) (so tanh|y_s − y_m| = 0 and the subtasks do not train yet).
    - A feature memory per task holds the last F_s(i) (and Z(i) for the fusion); after every batch the positive
      and negative class centres are the means of the memory's rows whose label (that task's memory) is > 0 /
      < 0 (`exclude_zero`; a class with no row keeps its last centre where MMSA's mean over nothing gives NaN).
    - From epoch 2 (`label_start_epoch`) after every batch: relative distances δ_s = (d_n − d_p)/d_p of F_s
      and δ_f of Z to their centres give ŷ_s = ½ (δ_s/δ_f) y_m + ½ (y_m + δ_s − δ_f), clipped to ±H
      (`label_bound`, the label range), and the memory moves as y_s ← (n−1)/(n+1) y_s + 2/(n+1) ŷ_s (epoch n).
      The batch's labels for its loss are read before the update (MMSA updates after the backward pass; the
      engine's `update_state` runs after the step on the features of the forward pass: the same order).
    - Loss (eq. 8): |ŷ_m − y_m| + Σ_s tanh(|y_s − y_m|) |ŷ_s − y_s|, the weights detached; means over the batch.

    State lives in non-trainable variables (`label_memory` [N, 1 + tasks], `feature_memory_<task>`,
    `centres_<task>` [2, dim], `epoch_counter`), so checkpoints and the workflow's backups carry it and a
    resumed run continues exactly. The inputs must carry the example index `"index"` (`keras_mmsa.data.load(...,
    with_index=True)`; the workflow asks for it), which never reaches an exported model. `fit` keeps
    `epoch_counter` in step with Keras' epochs; `set_epoch(n)` sets it for a custom loop.

    Not reproduced from MMSA: gradient accumulation over `update_epochs` = 4 batches (one update per batch
    here, as in the paper). The fusion features of the centres are Z, the base model's fusion representation
    (MMSA: the output of its first post-fusion layer; with `BertLSTMMLP(fusion_activation="relu")` Z is the
    second ReLU layer of the same fusion MLP).

    Args:
        backbone: the base model, a `keras_mmsa.models.MultimodalBackbone` with `encode`/`fuse`.
        num_train_examples: N, the size of the training split (the memories' first dimension).
        tasks: the modalities with a unimodal subtask (default: every modality of the base model; the paper's
            Table 5 ablations use subsets).
        post_text_dim, post_audio_dim, post_vision_dim: F_s sizes (MMSA MOSI: 32, 16, 32).
        post_text_dropout, post_audio_dropout, post_vision_dropout: dropout on h_s.
        label_bound: H, labels are clipped to [−H, H] (3 for MOSI/MOSEI, 1 for SIMS).
        label_start_epoch: the first epoch whose batches update the labels (2).
        exclude_zero: label 0 counts in neither centre (MMSA's `excludeZero`, true); False: 0 is positive.
        clipnorm: global-norm gradient clipping of the model stage.
        **kwargs: `keras.Model` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    model = SelfMM(BertLSTMMLP(backbone, audio_dim=5, vision_dim=20), num_train_examples=600)
    model.build()
    model.compile(optimizers=SelfMM.optimizers_from_settings(SelfMM.preset("sample")["train"]))
    train = keras_mmsa.data.load("sample", "train", 32, text_backbone=tokenizer, with_index=True)
    model.fit(train, epochs=3)
    model.generated_labels()["audio"]  # [600]: the generated audio labels, by example index
    ```

    Reference:
        Yu, Xu, Yuan, Wu. "Learning Modality-Specific Representations with Self-Supervised Multi-Task Learning
        for Multimodal Sentiment Analysis". AAAI 2021, §3.3–3.4, eq. 1–8.
    """

    method_name = "self_mm"
    needs_example_index = True
    uses_feature_memory = True

    def __init__(
        self,
        backbone,
        num_train_examples,
        tasks=None,
        post_text_dim=32,
        post_audio_dim=16,
        post_vision_dim=32,
        post_text_dropout=0.1,
        post_audio_dropout=0.1,
        post_vision_dropout=0.0,
        label_bound=3.0,
        label_start_epoch=2,
        exclude_zero=True,
        clipnorm=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, MultimodalBackbone):
            raise TypeError(
                f"{type(self).__name__} wraps a multimodal base model (a keras_mmsa.models."
                f"MultimodalBackbone, e.g. BertLSTMMLP); got {type(backbone).__name__}"
            )
        if int(num_train_examples) < 1:
            raise ValueError(
                f"{type(self).__name__}: num_train_examples must be >= 1 (the size of the training split, "
                f"which the label memories are indexed by); got {num_train_examples}"
            )
        tasks = list(backbone.modalities if tasks is None else tasks)
        unknown = [t for t in tasks if t not in backbone.modalities]
        if unknown or not tasks:
            raise ValueError(
                f"{type(self).__name__}: tasks must be a non-empty subset of the base model's modalities "
                f"{list(backbone.modalities)}; got {tasks}"
            )
        if int(label_start_epoch) < 2:
            raise ValueError(
                f"label_start_epoch must be >= 2 (epoch 1 initialises the labels); got {label_start_epoch}"
            )
        self.backbone = backbone
        self.num_train_examples = int(num_train_examples)
        self.tasks = [m for m in MODALITIES if m in tasks]
        self.post_dims = {
            "text": int(post_text_dim),
            "audio": int(post_audio_dim),
            "vision": int(post_vision_dim),
        }
        self.post_dropouts = {
            "text": float(post_text_dropout),
            "audio": float(post_audio_dropout),
            "vision": float(post_vision_dropout),
        }
        self.label_bound = float(label_bound)
        self.label_start_epoch = int(label_start_epoch)
        self.exclude_zero = bool(exclude_zero)
        self.clipnorm = clipnorm
        self.subtasks = {
            m: UnimodalSubtask(self.post_dims[m], self.post_dropouts[m], name=f"{m}_subtask")
            for m in self.tasks
        }

    # ------------------------------------------------------------------ building
    def build(self, input_shape=None):
        if self.built:
            return
        self.backbone.build(input_shape)
        for m, sub in self.subtasks.items():
            sub.build((None, self.backbone.feature_dims[m]))
        n = self.num_train_examples
        # State written from gathered (global-batch) values: every replica writes the same rows.
        state = dict(
            initializer="zeros",
            trainable=False,
            dtype="float32",
            autocast=False,
            aggregation="only_first_replica",
        )
        self.epoch_counter = self.add_weight(shape=(), name="epoch_counter", **state)
        # column 0: the multimodal label y_m; column 1 + j: the label of task j
        self.label_memory = self.add_weight(
            shape=(n, 1 + len(self.tasks)), name="label_memory", **state
        )
        self.feature_memory = {}
        self.centres = {}
        if self.uses_feature_memory:
            for task, dim in self._centre_dims().items():
                self.feature_memory[task] = self.add_weight(
                    shape=(n, dim), name=f"feature_memory_{task}", **state
                )
                self.centres[task] = self.add_weight(
                    shape=(2, dim), name=f"centres_{task}", **state
                )
        self._build_label_generator()
        self.built = True

    def _centre_dims(self):
        return {"fusion": self.backbone.fusion_dim, **{m: self.post_dims[m] for m in self.tasks}}

    def _build_label_generator(self):
        """Self-MI builds its CPC predictors and label MLPs here."""

    # ------------------------------------------------------------------ engine contract
    def stages(self):
        logs = ("task",) + tuple(f"loss_{m}" for m in self.tasks)
        groups = tuple(g for g in self.variable_groups() if g != "ulg")
        return [Stage("model", groups, logs=logs, clipnorm=self.clipnorm)]

    def variable_groups(self):
        """The base model's groups (`BertLSTMMLP`: `"bert"`, `"main"`), with its per-modality sequence encoders
        (`encoders`, when it has them) split off `"main"` into `"audio"` / `"vision"`, MMSA's groups with their
        own learning rates; the subtasks join `"main"`."""
        out = {g: list(v) for g, v in self.backbone.variable_groups().items()}
        encoders = getattr(self.backbone, "encoders", {})
        if "main" in out:
            for m in ("audio", "vision"):
                if m in encoders:
                    out[m] = list(encoders[m].trainable_variables)
                    taken = {id(v) for v in out[m]}
                    out["main"] = [v for v in out["main"] if id(v) not in taken]
        out.setdefault("main", [])
        for sub in self.subtasks.values():
            out["main"] += list(sub.trainable_variables)
        return out

    def compute_features(self, x, training=False):
        out = dict(self.backbone.forward(x, training=training))
        feats, preds = {}, {}
        for m, sub in self.subtasks.items():
            feats[m], preds[m] = sub(out["h"][m], training=training)
        out["unimodal_features"] = feats
        out["unimodal_predictions"] = preds
        return out

    def _index(self, x):
        if not isinstance(x, dict) or INDEX_KEY not in x:
            keys = sorted(x) if isinstance(x, dict) else type(x).__name__
            raise KeyError(
                f"{type(self).__name__} keeps a label memory per training example: its training batches need "
                f"the key {INDEX_KEY!r} (int32 [B], the example's position in the training split; "
                f"keras_mmsa.data.load(..., with_index=True)). The batch has {keys}."
            )
        return ops.reshape(ops.cast(x[INDEX_KEY], "int32"), (-1,))

    def _first_epochs(self):
        """True while the labels are still the multimodal ones (epochs before `label_start_epoch`)."""
        return self.epoch_counter < float(self.label_start_epoch)

    def task_labels(self, x, y):
        """The batch's unimodal labels `[B, tasks]` as the memory holds them (y_m before label generation)."""
        y = ops.reshape(ops.cast(y, "float32"), (-1, 1))
        memory = ops.take(self.label_memory, self._index(x), axis=0)[:, 1:]
        return ops.where(self._first_epochs(), ops.broadcast_to(y, ops.shape(memory)), memory)

    def compute_stage_losses(self, stage, features, x, y, sample_weight=None, training=False):
        return self._model_loss(features, x, y, sample_weight)

    def _model_loss(self, features, x, y, sample_weight):
        y_flat = ops.reshape(ops.cast(y, "float32"), (-1,))
        task = weighted_mean(ops.abs(features["prediction"] - y_flat), sample_weight)
        labels = self.task_labels(x, y)
        logs = {"task": task}
        total = task
        for j, m in enumerate(self.tasks):
            y_s = labels[:, j]
            weight = ops.stop_gradient(ops.tanh(ops.abs(y_s - y_flat)))
            error = ops.abs(features["unimodal_predictions"][m] - y_s)
            loss = weighted_mean(weight * error, sample_weight)
            logs[f"loss_{m}"] = loss
            total = total + loss
        return total, logs

    def update_state(self, stage, features, x, y, sample_weight, gather):
        if stage.name != "model":
            return
        index = gather(self._index(x))
        y = gather(ops.reshape(ops.cast(y, "float32"), (-1,)))
        feats = {"fusion": gather(features["z"])}
        for m in self.tasks:
            feats[m] = gather(features["unimodal_features"][m])
        old = ops.take(self.label_memory, index, axis=0)[:, 1:]
        generated = self.generate_labels(feats, y)  # [B, tasks]
        moved = self.move_labels(old, generated)
        first = self._first_epochs()
        labels = ops.where(first, ops.broadcast_to(y[:, None], ops.shape(moved)), moved)
        rows = ops.concatenate([y[:, None], labels], axis=1)
        self.label_memory.assign(ops.scatter_update(self.label_memory, index[:, None], rows))
        if self.uses_feature_memory:
            for task, memory in self.feature_memory.items():
                memory.assign(ops.scatter_update(memory, index[:, None], feats[task]))
            self._update_centres()

    def move_labels(self, old, generated):
        """The momentum of epochs (Self-MM eq. 7): (n−1)/(n+1) old + 2/(n+1) new at epoch n."""
        return ulgm.momentum_of_epochs(old, generated, self.epoch_counter)

    def _update_centres(self):
        labels = {"fusion": self.label_memory[:, 0]}
        for j, m in enumerate(self.tasks):
            labels[m] = self.label_memory[:, 1 + j]
        for task, memory in self.feature_memory.items():
            previous = (self.centres[task][0], self.centres[task][1])
            pos, neg = ulgm.class_centres(
                memory, labels[task], previous=previous, exclude_zero=self.exclude_zero
            )
            self.centres[task].assign(ops.stack([pos, neg]))

    def generate_labels(self, feats, y):
        """Self-MM's ULGM (eq. 4–6): the new labels `[B, tasks]` of a batch from its features and y_m."""

        def delta(task):
            return ulgm.relative_distance(feats[task], self.centres[task][0], self.centres[task][1])

        delta_f = delta("fusion")
        cols = [ulgm.unimodal_label(y, delta(m), delta_f, self.label_bound) for m in self.tasks]
        return ops.stack(cols, axis=1)

    # ------------------------------------------------------------------ fit: the epoch counter
    def set_epoch(self, epoch):
        """Sets the 1-based epoch the next batches belong to (`fit` does it at every epoch start)."""
        self.epoch_counter.assign(float(epoch))

    def fit(self, x=None, y=None, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, keeping `epoch_counter` in step with the epochs (labels are generated from
        `label_start_epoch` on, also after `initial_epoch=k`)."""
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = list(callbacks.callbacks)
        callbacks = [_EpochCounter(), *(callbacks or [])]
        return super().fit(x, y, *args, callbacks=callbacks, **kwargs)

    # ------------------------------------------------------------------ reading the generated labels
    def generated_labels(self):
        """`{modality: float32 [N]}`: the label memory of each subtask, by example index (numpy)."""
        memory = np.asarray(keras.ops.convert_to_numpy(self.label_memory))
        return {m: memory[:, 1 + j] for j, m in enumerate(self.tasks)}

    def unimodal_predictions(self, x):
        """`{modality: [B]}`: the unimodal subtasks' predictions (inference mode)."""
        return self.compute_features(x, training=False)["unimodal_predictions"]

    def method_report(self, data):
        """What the workflow adds to `metrics.json` (`unimodal_label_report`)."""
        return unimodal_label_report(self, data.get("train_examples"), data.get("test"))

    # ------------------------------------------------------------------ workflow protocol
    @classmethod
    def preset(cls, dataset):
        return presets.get_preset(dataset, method=cls.method_name)

    @classmethod
    def own_keys(cls):
        own = set()
        for klass in cls.__mro__:
            if klass is BackboneMethod:
                break
            if "__init__" in vars(klass):
                own |= set(inspect.signature(klass.__init__).parameters)
        return own - {"self", "backbone", "num_train_examples", "clipnorm", "kwargs"}

    @classmethod
    def model_keys(cls):
        """The method's own settings and its base model's (`BertLSTMMLP`)."""
        from keras_mmsa.models.bert_lstm_mlp import BertLSTMMLP

        return tuple(sorted(cls.own_keys() | set(BertLSTMMLP.model_keys())))

    @classmethod
    def from_run_config(cls, config, info, text_backbone):
        from keras_mmsa.models.bert_lstm_mlp import BertLSTMMLP

        num_train = (info.num_examples or {}).get("train")
        if not num_train:
            raise ValueError(
                f"{cls.__name__} needs the size of {info.name!r}'s training split for its label memories; "
                "prepare the dataset first (keras_mmsa.data.prepare_builder)"
            )
        base = BertLSTMMLP(**BertLSTMMLP.init_kwargs(config, info, text_backbone))
        own = cls.own_keys()
        model = cls(
            base,
            num_train_examples=num_train,
            clipnorm=config.train.get("clipnorm"),
            **{k: v for k, v in config.model.items() if k in own},
        )
        model.build(build_shapes(info, config, base.audio_dim, base.vision_dim))
        return model

    @classmethod
    def optimizers_from_settings(cls, train):
        """Adam per group with MMSA's per-group learning rates and weight decays (`lr_bert`, `lr_audio`,
        `lr_vision`, `lr_main`; `weight_decay_<group>`), decoupled; BERT's biases and LayerNorm weights get no
        decay (MMSA's `bert_no_decay`)."""
        out = {}
        for group in ("bert", "audio", "vision", "main"):
            if f"lr_{group}" not in train:
                continue
            opt = keras.optimizers.Adam(
                train[f"lr_{group}"],
                weight_decay=train.get(f"weight_decay_{group}") or None,
                name=f"adam_{group}",
            )
            if group == "bert" and opt.weight_decay:
                opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
            out[group] = opt
        return out

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_train_examples": self.num_train_examples,
                "tasks": list(self.tasks),
                **{f"post_{m}_dim": self.post_dims[m] for m in MODALITIES},
                **{f"post_{m}_dropout": self.post_dropouts[m] for m in MODALITIES},
                "label_bound": self.label_bound,
                "label_start_epoch": self.label_start_epoch,
                "exclude_zero": self.exclude_zero,
                "clipnorm": self.clipnorm,
            }
        )
        return config


def _mae_corr(pred, true):
    pred, true = np.asarray(pred, "float64"), np.asarray(true, "float64")
    corr = float(np.corrcoef(pred, true)[0, 1]) if pred.std() > 0 and true.std() > 0 else 0.0
    return {"mae": float(np.abs(pred - true).mean()), "corr": corr}


def unimodal_label_report(model, train_examples=None, test=None):
    """How close a Self-MM / Self-MI model's unimodal labels and heads come to a dataset's unimodal labels.

    Args:
        model: a trained `SelfMM` / `SelfMI`.
        train_examples: the training split, unbatched `(inputs, label)` with `"index"` and `label_T/A/V`
            (`load(..., with_index=True, unimodal_labels=True).unbatch()`), or None.
        test: batched `(inputs, label)` of the test split with `label_T/A/V`, or None.

    Returns:
        `{"generated_labels": {m: {"mae", "corr", "corr_multimodal_label"}}, "unimodal_heads": {m: {"mae",
        "corr"}}}` for the parts the data allows (empty when it has no unimodal labels): `corr` of the
        generated training labels with the dataset's, beside `corr_multimodal_label`, the correlation of the
        multimodal label itself with them — the labels a generator starts from (epoch 1), the bar it has to beat.
    """
    from keras_mmsa.data.spec import UNIMODAL_LABEL_OF

    report = {}
    spec = getattr(train_examples, "element_spec", None)
    if spec is not None and all(UNIMODAL_LABEL_OF[m] in spec[0] for m in model.tasks):
        if INDEX_KEY in spec[0]:
            rows = {k: [] for k in (INDEX_KEY, "label", *UNIMODAL_LABEL_OF.values())}
            for x, y in train_examples.batch(1024):
                rows[INDEX_KEY].append(np.asarray(x[INDEX_KEY]))
                rows["label"].append(np.asarray(y))
                for m in model.tasks:
                    rows[UNIMODAL_LABEL_OF[m]].append(np.asarray(x[UNIMODAL_LABEL_OF[m]]))
            index = np.concatenate(rows[INDEX_KEY])
            y_m = np.concatenate(rows["label"])
            generated = model.generated_labels()
            report["generated_labels"] = {}
            for m in model.tasks:
                truth = np.concatenate(rows[UNIMODAL_LABEL_OF[m]])
                entry = _mae_corr(generated[m][index], truth)
                entry["corr_multimodal_label"] = _mae_corr(y_m, truth)["corr"]
                report["generated_labels"][m] = entry
    spec = getattr(test, "element_spec", None)
    if spec is not None and all(UNIMODAL_LABEL_OF[m] in spec[0] for m in model.tasks):
        preds = {m: [] for m in model.tasks}
        truths = {m: [] for m in model.tasks}
        for x, _ in test:
            out = model.unimodal_predictions(x)
            for m in model.tasks:
                preds[m].append(np.asarray(out[m]))
                truths[m].append(np.asarray(x[UNIMODAL_LABEL_OF[m]]))
        report["unimodal_heads"] = {
            m: _mae_corr(np.concatenate(preds[m]), np.concatenate(truths[m])) for m in model.tasks
        }
    return report


LABEL_INPUTS = ("cpc", "unimodal")


@keras.saving.register_keras_serializable(package="keras_mmsa")
class SelfMI(SelfMM):
    """Self-MI: Self-MM's multimodal task and unimodal subtasks with the unimodal labels generated by ULG_MI,
    CPC between the fusion Z^m and each unimodal representation Z^s followed by a regression MLP (Algorithm 1).

    Everything but the label generator is `SelfMM`'s (subtasks, label memory, detached weights tanh|y_s − y_m|
    of eq. 17, labels equal to y_m in epoch 1 and generated from epoch 2, `label_start_epoch`). Z^m is the base
    model's fusion Z (eq. 6), Z^s the subtask's F_s (eq. 8).

    ULG_MI, per subtask s:

    - CPC (eq. 11–15): a predictor G_φ^s(Z^m) scored against Z^s by the cosine of the unit-normalised vectors,
      InfoNCE over the batch (`keras_mmsa.estimators.CPCPredictor`, normalising over Z^s as eq. 14 does);
      L_CPC = Σ_s L_N^{ms}.
    - "The CPC output will be passed through a regression MLP to generate the unimodal label" (eq. 16,
      L = MAE(y_s, y_m)): the MLP reads the two unit vectors whose inner product is the CPC score, [Ḡ_φ^s(Z^m);
      Z̄^s] (`label_input="cpc"`), and is trained to regress y_m; its output, clipped to ±H, is the new y_s.
      `label_input="unimodal"` reads Z̄^s only.
    - The G_φ and the MLPs form the group `"ulg"`, trained in their own stage (`"ulg"`, before the model stage,
      on the batch's detached features: L_CPC + eq. 16); the MLP's input is detached from G_φ there, so eq. 16
      trains the MLP only.
    - From epoch 2, after each batch, y_s(i) ← (n−1)/(n+1) y_s(i) + 2/(n+1) MLP_s(...) (Self-MM's momentum,
      `label_momentum=True`; False: the memory takes the new label as it is). Algorithm 1 writes the new labels
      without saying how they combine with the old ones; Self-MI is Self-MM with ULG_MI, so Self-MM's rule.

    Where the paper is vague, decided (each a flag):

    - Does L_CPC enter the model's loss? Eq. 17 has no CPC term, but §3.4 says Z^m "reversely predicts
      representation across modalities so that more modality-invariant information can be passed to Z^m" — a
      gradient into the encoders. The model stage minimises eq. 17 + `cpc_weight` · L_CPC (G_φ held fixed
      there); `cpc_weight` = 0.1 (MMIM's weight of its fusion-level CPC on MOSI); 0 gives eq. 17 as printed.
    - Algorithm 1's "global representations F^g" (Self-MM's feature memory) feed nothing in ULG_MI, so Self-MI
      keeps no feature memory or centres.
    - Table 2's BERT and visual learning rates are unreadable ("59.4", "10.3"): the presets take Self-MM's
      (MMSA's `self_mm` entry); the readable rows (batch size, audio learning rate, embedding sizes, dropouts)
      are Self-MI's.

    Extra args (beyond `SelfMM`'s):
        cpc_weight: weight of L_CPC in the model stage.
        label_input: "cpc" or "unimodal" (see above).
        label_hidden: width of the label MLP's hidden layer (one ReLU layer, then a linear output).
        cpc_hidden_dims: hidden widths of G_φ (empty: one linear layer, as MMIM's CPC).
        label_momentum: Self-MM's momentum of epochs on the generated labels.

    Logs: `cpc` (L_CPC in the ulg stage), `ulg_mae` (eq. 16, summed over subtasks), `task`, `loss_<s>`.

    Reference:
        Nguyen, Tran, Nguyen, ... "Self-MI: Efficient Multimodal Fusion via Self-Supervised Multi-Task Learning
        with Auxiliary Mutual Information Maximization" (2023), §3.2–3.5, eq. 6–17, Algorithm 1.
    """

    method_name = "self_mi"
    uses_feature_memory = False

    def __init__(
        self,
        backbone,
        num_train_examples,
        cpc_weight=0.1,
        label_input="cpc",
        label_hidden=32,
        cpc_hidden_dims=(),
        label_momentum=True,
        **kwargs,
    ):
        if label_input not in LABEL_INPUTS:
            raise ValueError(
                f"SelfMI: label_input must be one of {LABEL_INPUTS}; got {label_input!r}"
            )
        super().__init__(backbone, num_train_examples, **kwargs)
        self.cpc_weight = float(cpc_weight)
        self.label_input = label_input
        self.label_hidden = int(label_hidden)
        self.cpc_hidden_dims = [int(d) for d in cpc_hidden_dims]
        self.label_momentum = bool(label_momentum)
        self.cpc = {
            m: CPCPredictor(
                backbone.fusion_dim,
                self.post_dims[m],
                hidden_dims=self.cpc_hidden_dims,
                name=f"cpc_{m}",
            )
            for m in self.tasks
        }
        self.label_mlps = {
            m: keras.Sequential(
                [
                    keras.layers.Dense(self.label_hidden, activation="relu"),
                    keras.layers.Dense(1),
                ],
                name=f"label_mlp_{m}",
            )
            for m in self.tasks
        }

    def _build_label_generator(self):
        width = {"cpc": 2, "unimodal": 1}[self.label_input]
        for m in self.tasks:
            self.cpc[m].build((None, self.backbone.fusion_dim))
            self.label_mlps[m].build((None, width * self.post_dims[m]))

    def stages(self):
        model_stage = super().stages()[0]
        return [Stage("ulg", ("ulg",), logs=("cpc", "ulg_mae")), model_stage]

    def variable_groups(self):
        groups = super().variable_groups()
        groups["ulg"] = [v for m in self.tasks for v in self.cpc[m].trainable_variables] + [
            v for m in self.tasks for v in self.label_mlps[m].trainable_variables
        ]
        return groups

    def _label_features(self, z, feature, m):
        parts = [l2_normalize(feature)]
        if self.label_input == "cpc":
            parts.insert(0, l2_normalize(self.cpc[m].predict_representation(z)))
        return ops.concatenate(parts, axis=-1)

    def _cpc(self, features):
        z = features["z"]
        return sum(self.cpc[m](z, features["unimodal_features"][m]) for m in self.tasks)

    def compute_stage_losses(self, stage, features, x, y, sample_weight=None, training=False):
        if stage.name == "ulg":
            cpc = self._cpc(features)
            y_flat = ops.reshape(ops.cast(y, "float32"), (-1,))
            mae = 0.0
            for m in self.tasks:
                inputs = ops.stop_gradient(
                    self._label_features(features["z"], features["unimodal_features"][m], m)
                )
                pred = ops.squeeze(self.label_mlps[m](inputs, training=training), -1)
                mae = mae + weighted_mean(ops.abs(pred - y_flat), sample_weight)
            return cpc + mae, {"cpc": cpc, "ulg_mae": mae}
        total, logs = self._model_loss(features, x, y, sample_weight)
        if self.cpc_weight:
            total = total + self.cpc_weight * self._cpc(features)
        return total, logs

    def generate_labels(self, feats, y):
        """ULG_MI: the label MLPs' outputs on the CPC features, clipped to ±H: `[B, tasks]`."""
        cols = []
        for m in self.tasks:
            inputs = self._label_features(feats["fusion"], feats[m], m)
            pred = ops.squeeze(self.label_mlps[m](inputs, training=False), -1)
            cols.append(ops.clip(pred, -self.label_bound, self.label_bound))
        return ops.stack(cols, axis=1)

    def move_labels(self, old, generated):
        if self.label_momentum:
            return super().move_labels(old, generated)
        return generated

    @classmethod
    def optimizers_from_settings(cls, train):
        out = super().optimizers_from_settings(train)
        out["ulg"] = keras.optimizers.Adam(train["lr_ulg"], name="adam_ulg")
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cpc_weight": self.cpc_weight,
                "label_input": self.label_input,
                "label_hidden": self.label_hidden,
                "cpc_hidden_dims": list(self.cpc_hidden_dims),
                "label_momentum": self.label_momentum,
            }
        )
        return config
