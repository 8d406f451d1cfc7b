"""`SplitTextBackbone`: a KerasHub BERT or XLNet backbone run in two halves around an injection point."""

import keras
import keras_hub
from keras import ops

from keras_mmsa.data.spec import TEXT_KEYS


@keras.saving.register_keras_serializable(package="keras_mmsa")
class SplitTextBackbone(keras.layers.Layer):
    """A KerasHub `BertBackbone` or `XLNetBackbone` run in two halves, so that something (MAG) can rewrite the
    token states between transformer layer `split_index - 1` and layer `split_index`.

    Nothing is re-implemented: the halves call the backbone's own sublayers with its own weights, in the order of
    its functional graph.
    - `bottom(x)` -> `(states [B, L, H], context)`: the embeddings, then transformer layers `[0, split_index)`.
      BERT: `token_embedding`, `position_embedding`, `segment_embedding`, `embeddings_add`,
      `embeddings_layer_norm`, `embeddings_dropout`. XLNet: `content_query_embedding`'s word embedding,
      relative positional encoding and dropout, the attention masks, `seg_mat_layer`.
    - `top(states, context)` -> states: transformer layers `[split_index, num_layers)` (XLNet: then its final
      dropout), the backbone's `sequence_output`.
    - `pool(states, context)` -> `[B, H]`: BERT: the backbone's pooler (`pooled_dense`, tanh) over `[CLS]` at
      position 0, i.e. its `pooled_output`; XLNet (which has no pooler): the state of the last real token
      (`<cls>` in XLNet's layout `pieces <sep> <cls>`, at `sum(padding_mask) - 1`: right padding is fine).
    `split_index` 0 injects right after the embeddings (MAG-BERT), `num_layers` after the last layer.

    XLNet's attention masks are computed here, not by the backbone's `XLNetAttentionMaskLayer`: in KerasHub 0.32
    that layer reshapes the `[B, L]` padding mask to `[L, B]` where it means to transpose it, so in a padded
    batch of more than one sentence each sentence is masked with another's padding (its outputs depend on its
    neighbours). Here key j is visible to query i when j is a real token (content stream: or when i == j), per
    sentence, which is XLNet's definition; for one sentence, or a batch without padding, the two agree. The
    layer's `mask_emb` weight (used only for XLNet's pre-training query stream) is set non-trainable, since it
    would never get a gradient. For the same reason (a reshape where a transpose is meant) the relative
    positional encoding of `ContentAndQueryEmbedding.call` is wrong for a batch of more than one sentence; the
    bottom half builds it from that layer's own `relative_positional_encoding` and weights instead
    (`xlnet_embeddings`).

    Args:
        backbone: a `keras_hub.models.BertBackbone` or `keras_hub.models.XLNetBackbone` (e.g. from
            `keras_mmsa.backbones.load_text_backbone`).
        split_index: the number of transformer layers in the bottom half, 0 ... `num_layers`.
        **kwargs: base layer arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    split = SplitTextBackbone(backbone, split_index=1)
    states, context = split.bottom(x)
    pooled = split.pool(split.top(states, context), context)  # == backbone(x)["pooled_output"]
    ```

    Reference:
        Rahman et al. "Integrating Multimodal Information in Large Pretrained Transformers". ACL 2020, §3
        (MAG between the embeddings and the first BERT layer; MAG-XLNet injects after layer 1 in the reference
        code, `XLNET_INJECTION_INDEX = 1`).
    """

    def __init__(self, backbone, split_index=0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(backbone, keras_hub.models.BertBackbone):
            self.kind = "bert"
        elif isinstance(backbone, keras_hub.models.XLNetBackbone):
            self.kind = "xlnet"
        else:
            raise TypeError(
                f"SplitTextBackbone takes a keras_hub BertBackbone or XLNetBackbone; got "
                f"{type(backbone).__name__}"
            )
        num_layers = len(backbone.transformer_layers)
        if not 0 <= int(split_index) <= num_layers:
            raise ValueError(
                f"split_index must be in [0, {num_layers}] for this {num_layers}-layer backbone; "
                f"got {split_index}"
            )
        self.backbone = backbone
        self.split_index = int(split_index)
        self.num_layers = num_layers
        self.hidden_dim = backbone.hidden_dim
        if self.kind == "xlnet":
            backbone.attn_mask_layer.trainable = False
        self.built = True

    # ------------------------------------------------------------------ the two halves
    def bottom(self, x, training=None):
        """`(states, context)`: the embeddings and transformer layers `[0, split_index)`."""
        missing = [k for k in ("token_ids", "padding_mask") if k not in x]
        if missing:
            raise KeyError(
                f"SplitTextBackbone needs the text keys {list(TEXT_KEYS)} of the inputs dict; missing "
                f"{missing} (got {sorted(x)})"
            )
        token_ids = ops.cast(x["token_ids"], "int32")
        padding_mask = ops.cast(x["padding_mask"], "bool")
        segment_ids = x.get("segment_ids")
        segment_ids = (
            ops.zeros_like(token_ids) if segment_ids is None else ops.cast(segment_ids, "int32")
        )
        bb = self.backbone
        if self.kind == "bert":
            tokens = bb.token_embedding(token_ids)
            positions = bb.position_embedding(tokens)
            segments = bb.segment_embedding(segment_ids)
            states = bb.embeddings_add((tokens, positions, segments))
            states = bb.embeddings_layer_norm(states)
            states = bb.embeddings_dropout(states, training=training)
            context = {"padding_mask": padding_mask}
        else:
            states, pos_emb = xlnet_embeddings(bb.content_query_embedding, token_ids, training)
            content_mask, query_mask = xlnet_attention_masks(padding_mask, states.dtype)
            context = {
                "padding_mask": padding_mask,
                "pos_emb": pos_emb,
                "content_mask": content_mask,
                "query_mask": query_mask,
                "seg_mat": bb.seg_mat_layer(segment_ids),
            }
        return self._run_layers(states, context, 0, self.split_index, training), context

    def top(self, states, context, training=None):
        """Transformer layers `[split_index, num_layers)` (XLNet: then the backbone's final dropout)."""
        states = self._run_layers(states, context, self.split_index, self.num_layers, training)
        if self.kind == "xlnet":
            states = self.backbone.get_layer("dropout")(states, training=training)
        return states

    def pool(self, states, context, training=None):
        """BERT: the pooler over position 0 (`pooled_output`); XLNet: the last real token's state."""
        if self.kind == "bert":
            return self.backbone.pooled_dense(states[:, 0, :])
        return last_real_token(states, context["padding_mask"])

    def call(self, x, training=None):
        """`{"sequence_output", "pooled_output"}` of the unsplit run (nothing injected)."""
        states, context = self.bottom(x, training=training)
        states = self.top(states, context, training=training)
        return {"sequence_output": states, "pooled_output": self.pool(states, context)}

    def _run_layers(self, states, context, start, stop, training):
        for layer in self.backbone.transformer_layers[start:stop]:
            if self.kind == "bert":
                states = layer(states, padding_mask=context["padding_mask"], training=training)
            else:
                states, _ = layer(
                    output_content=states,
                    attn_mask_content=context["content_mask"],
                    attn_mask_query=context["query_mask"],
                    pos_emb=context["pos_emb"],
                    seg_mat=context["seg_mat"],
                    training=training,
                )
        return states

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {"backbone": keras.layers.serialize(self.backbone), "split_index": self.split_index}
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def xlnet_embeddings(embedding, token_ids, training=None):
    """`(word_emb [B, L, H], pos_emb [B, 2L, H])` from KerasHub's XLNet `ContentAndQueryEmbedding` layer (its
    word embedding, relative positional encoding and dropout), with the encoding the same for every sentence.

    Its own `call` builds the encoding as `[2L, B, H]` and reshapes it to `[B, 2L, H]`, which interleaves the
    positions of a batch of more than one sentence (sentence 0 of a batch of 3 reads relative positions
    0, 0, 0, 1, 1, 1, ...); here the `[2L, H]` encoding is computed once and broadcast over the batch.
    """
    if not embedding.built:
        embedding.build(token_ids.shape)
    words = embedding.dropout_layer(embedding.word_embed(token_ids), training=training)
    batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    positions = embedding.relative_positional_encoding(length, length, bsz=1)  # [2L, 1, H]
    positions = ops.broadcast_to(
        ops.transpose(positions, (1, 0, 2)), (batch, 2 * length, embedding.hidden_dim)
    )
    return words, embedding.dropout_layer(positions, training=training)


def xlnet_attention_masks(padding_mask, dtype="float32"):
    """XLNet's content- and query-stream masks `[B, L, L]` (1: query i may attend to key j) for a bool padding
    mask `[B, L]`, without memory or permutation: query stream, j is a real token; content stream, j is a real
    token or j == i (the form `TwoStreamRelativeAttention` takes)."""
    real = ops.cast(padding_mask, dtype)
    length = ops.shape(real)[1]
    query = ops.ones_like(real)[:, :, None] * real[:, None, :]
    content = ops.maximum(query, ops.eye(length, dtype=dtype)[None])
    return content, query


def last_real_token(states, padding_mask):
    """`states[b, sum(padding_mask[b]) - 1]` `[B, H]` (a row without real tokens reads position 0)."""
    count = ops.sum(ops.cast(padding_mask, "int32"), axis=1)
    pick = ops.one_hot(ops.maximum(count - 1, 0), ops.shape(states)[1], dtype=states.dtype)
    return ops.einsum("bl,blh->bh", pick, states)
