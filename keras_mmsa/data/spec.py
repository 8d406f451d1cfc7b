"""The one inputs dict every keras_mmsa model consumes, and the per-example features the TFDS builder emits.

Model inputs (what `keras_mmsa.data.load` yields as `(inputs, label)`, batched, static shapes for XLA):

| key              | dtype   | shape          | meaning                                                          |
|------------------|---------|----------------|------------------------------------------------------------------|
| `token_ids`      | int32   | [B, L_t]       | WordPiece ids of the chosen backbone: [CLS] words [SEP] 0-pad     |
| `padding_mask`   | bool    | [B, L_t]       | True on real tokens (KerasHub convention)                         |
| `segment_ids`    | int32   | [B, L_t]       | all zeros (one sentence)                                          |
| `audio`          | float32 | [B, T_a, D_a]  | acoustic frames, zero-padded at the end                           |
| `audio_lengths`  | int32   | [B]            | number of valid frames, in [1, T_a]                               |
| `vision`         | float32 | [B, T_v, D_v]  | visual frames, zero-padded at the end                             |
| `vision_lengths` | int32   | [B]            | number of valid frames, in [1, T_v]                               |

A modality that is not selected (or that the dataset does not have) is absent from the dict: text keys,
audio keys and vision keys come and go as groups.

**Aligned datasets** (`dataset_info(name).aligned`: `sample_aligned`, `mosi_sdk_aligned`, `mosi_aligned`,
`mosei_aligned`) give word-aligned models ONE FRAME PER TEXT TOKEN POSITION: `audio` [B, L_t, D_a] and
`vision` [B, L_t, D_v], frame t belongs to token t, special-token positions ([CLS]/[SEP], `<sep>`/`<cls>`) and
padding are zeros, and `audio_lengths` / `vision_lengths` = number of real tokens (= `padding_mask.sum(1)`).

| key (aligned)    | dtype   | shape          | meaning                                                          |
|------------------|---------|----------------|------------------------------------------------------------------|
| `audio`          | float32 | [B, L_t, D_a]  | frame t = token t's acoustic row; 0 at special tokens and padding |
| `audio_lengths`  | int32   | [B]            | number of real tokens (`padding_mask.sum(1)`)                     |
| `vision`         | float32 | [B, L_t, D_v]  | frame t = token t's visual row; 0 at special tokens and padding   |
| `vision_lengths` | int32   | [B]            | number of real tokens (`padding_mask.sum(1)`)                     |

`label` is float32 [B]: sentiment in [-3, 3] (MOSI/MOSEI) or [-1, 1] (SIMS).

Training-time keys, asked for by the methods that use them (never part of an exported model's inputs):

| key              | dtype   | shape | meaning                                                                  |
|------------------|---------|-------|--------------------------------------------------------------------------|
| `index`          | int32   | [B]   | the example's position in its split, stable across epochs and runs     |
|                  |         |       | (`load(..., with_index=True)`; Self-MM/Self-MI's per-example label memories) |
| `label_T`, `label_A`, `label_V` | float32 | [B] | per-modality labels (`load(..., unimodal_labels=True)`; SIMS, `sample`) |

Also training-time only, for base models over a frozen text backbone (`FrozenTextBackbone`: TFN, LMF):
`text_features` float32 [B, L_t, H], the backbone's token states computed once per example
(`keras_mmsa.data.attach_text_features`, `train.cache_text_features`); the model reads it instead of running
the backbone. Exported models take the token keys only.

Per-example features of the TFDS builder (`keras_mmsa_datasets.msa`), before padding/tokenization:

| feature        | dtype   | shape        | present in                                   |
|----------------|---------|--------------|----------------------------------------------|
| `id`           | string  | []           | all configs ("video$_$clip" / "video_clip")  |
| `text`         | string  | []           | all configs (raw transcript)                 |
| `bert_ids`     | int32   | [L]          | pickle configs whose files carry `text_bert` |
| `audio`        | float32 | [T_a, D_a]   | configs with an acoustic source              |
| `vision`       | float32 | [T_v, D_v]   | configs with a visual source                 |
| `label`        | float32 | []           | all configs                                  |
| `label_T`, `label_A`, `label_V` | float32 | [] | SIMS (human), `sample` (planted)         |

Sequences are already trimmed to their true lengths by the builder; the pipeline pads them. `audio`/`vision`
rows by the config's `alignment`: "none", frames at their own rate; "words", one row per whitespace word of
`text` (the pipeline repeats each over the word's tokens); "tokens", one row per stored `bert_ids` token
(MMSA's aligned pickles; the pipeline keeps the stored ids).
"""

TEXT_KEYS = ("token_ids", "padding_mask", "segment_ids")
TEXT_FEATURES = (
    "text_features"  # cached frozen-backbone token states (training-time input, see above)
)
AUDIO_KEYS = ("audio", "audio_lengths")
VISION_KEYS = ("vision", "vision_lengths")
MODALITY_KEYS = {"text": TEXT_KEYS, "audio": AUDIO_KEYS, "vision": VISION_KEYS}
MODALITIES = ("text", "audio", "vision")
INDEX_KEY = "index"
UNIMODAL_LABEL_KEYS = ("label_T", "label_A", "label_V")
# modality -> its unimodal label key
UNIMODAL_LABEL_OF = dict(zip(MODALITIES, UNIMODAL_LABEL_KEYS))
