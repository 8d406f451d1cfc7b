"""`WSATextEncoder`: WSA-BERT, a KerasHub BERT with word-wise sparse attention injected after a chosen layer."""

import keras
from keras import ops

from keras_mmsa.layers.split_text_backbone import SplitTextBackbone
from keras_mmsa.layers.word_wise_sparse_attention import WordWiseSparseAttention


@keras.saving.register_keras_serializable(package="keras_mmsa")
class WSATextEncoder(keras.layers.Layer):
    """WSA-BERT (MIRD §3.3): BERT's layers `[0, split_index)` give W^mid, `WordWiseSparseAttention` injects the
    audio and vision sequences into it (eq. 2-6), the remaining layers give W^last, and the output is the
    masked mean of W^last over real tokens (eq. 7's Pooling; the FC to z^S belongs to the model).

    Audio/vision are the unaligned sequences of the inputs dict (`audio` `[B, T_a, D_a]` with `audio_lengths`,
    likewise vision): each word attends over all valid frames; padding frames get zero weight. BERT is not
    re-implemented: the halves are `SplitTextBackbone`'s.

    Which layer: the paper says only "the middle word representations"; the default `split_index=None` takes
    `num_layers // 2` (layer 6 of bert-base), an explicit integer overrides it (0 = right after the embeddings,
    MAG-BERT's place).

    Call arguments: `x`, the inputs dict (`token_ids`, `padding_mask`, [`segment_ids`], and for each modality in
    `nonverbal` its sequence and `<m>_lengths`); returns `[B, H]`.

    Args:
        backbone: a KerasHub `BertBackbone`.
        nonverbal: the injected modalities, a subset of ("audio", "vision").
        split_index: BERT layers before the injection (None: the middle layer).
        attention_dim, epsilon, layer_norm: passed to `WordWiseSparseAttention`.
        **kwargs: base layer arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    encoder = WSATextEncoder(backbone)
    pooled = encoder(x)  # [B, hidden]
    ```

    Reference:
        Qian et al. "MIRD", §3.3, eq. 2-7.
    """

    def __init__(
        self,
        backbone,
        nonverbal=("audio", "vision"),
        split_index=None,
        attention_dim=32,
        epsilon=1.0,
        layer_norm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.nonverbal = tuple(nonverbal)
        self.split_index = split_index
        self.attention_dim = attention_dim
        self.epsilon = epsilon
        self.layer_norm = layer_norm
        index = backbone.num_layers // 2 if split_index is None else split_index
        self.split = SplitTextBackbone(backbone, split_index=index, name="split")
        self.wsa = WordWiseSparseAttention(
            attention_dim=attention_dim, epsilon=epsilon, layer_norm=layer_norm, name="wsa"
        )

    def call(self, x, training=None):
        return self.states(x, training=training)["pooled"]

    def states(self, x, training=None):
        """`{"mid", "last", "pooled", "padding_mask"}`: W^mid before the injection `[B, L, H]` (text only),
        W^last `[B, L, H]`, the masked mean of W^last `[B, H]` (what `call` returns) and the bool padding mask.
        MIRD reads W^mid for its text-specific encoder, so that z^L sees no audio or vision."""
        others, masks = [], []
        for m in self.nonverbal:
            if m not in x or f"{m}_lengths" not in x:
                raise KeyError(
                    f"WSATextEncoder needs `{m}` [B, T, D] and `{m}_lengths` [B] in the inputs dict; got "
                    f"{sorted(x)}"
                )
            seq = ops.convert_to_tensor(x[m], dtype=self.compute_dtype)
            if len(seq.shape) != 3:
                raise ValueError(f"WSATextEncoder: `{m}` must be [B, T, D]; got shape {seq.shape}")
            lengths = ops.cast(x[f"{m}_lengths"], "int32")
            masks.append(ops.arange(ops.shape(seq)[1])[None, :] < lengths[:, None])
            others.append(seq)
        mid, context = self.split.bottom(x, training=training)
        states = self.wsa(mid, others, masks)
        states = self.split.top(states, context, training=training)
        weights = ops.cast(context["padding_mask"], states.dtype)[..., None]
        pooled = ops.sum(states * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        return {
            "mid": mid,
            "last": states,
            "pooled": pooled,
            "padding_mask": context["padding_mask"],
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "nonverbal": list(self.nonverbal),
                "split_index": self.split_index,
                "attention_dim": self.attention_dim,
                "epsilon": self.epsilon,
                "layer_norm": self.layer_norm,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
