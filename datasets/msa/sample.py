"""The bundled synthetic `sample` dataset: MOSI-unaligned shapes with a planted multimodal signal.

The generator of the `msa` builder's `sample` config; it lives with the builder (which imports nothing from
`keras_mmsa`) and is also reachable as `keras_mmsa.data.sample`.

Everything is generated from a seeded numpy `Generator`, so the same `(split, seed, num_examples)` always gives
the same records, needs no file and takes well under a second per split.

What is planted (per clip, `y` is the label):

    y = round_to_0.2( clip( 0.8 * s_text + 0.75 * z_audio + 0.75 * z_vision + e, -3, 3 ) ),  e ~ N(0, 0.3²)

- **Text** (`s_text`): an English sentence from templates (lower case, no punctuation, MOSI-transcript style:
  fillers such as "um", "you know"). Exactly one clause carries sentiment through a lexicon word of strength
  -2, -1, 0 (neutral adjective), +1 or +2; a +-1 word may be intensified ("really"/"very" = x1.25), any may
  be negated ("not" = x-0.5, so "not good" is mildly negative). Some clips add a neutral distractor clause.
- **Audio** (`z_audio ~ U[-sqrt 3, sqrt 3]`, unit variance): 5 channels over `T_a` in [60, 375] valid frames.
  Channel 0 carries an offset `1.0 * z_audio` over all valid frames, channel 1 an amplitude (frame-to-frame
  spread) `1 + 0.3 * z_audio`; channels 2-4 are nuisance. All channels are 3-tap smoothed unit noise plus a
  per-speaker (per-video) baseline on the nuisance channels.
- **Vision** (`z_vision ~ U[-sqrt 3, sqrt 3]`): 20 channels over `T_v` in [80, 500] valid frames. Channel 0
  ("lip-corner puller") carries `+1.0 * z_vision`, channel 1 ("brow lowerer") `-0.6 * z_vision`, both as offsets
  over the valid frames; channels 2-19 are nuisance with per-speaker baselines.
- The three latents are independent, so in many clips the modalities disagree in sign (text positive, face and
  voice negative, ...); only a model that uses all three can recover `y`. About 5% of labels are exactly 0.
- Sequence lengths are independent of the label (no length leak).

Text, audio and vision explain roughly 45% / 25% / 25% of the label variance; a ridge regression on simple
per-clip summaries shows the gap (`python -m keras_mmsa_datasets.msa.sample` prints it; `tests/test_sample.py`
asserts it): test MAE / Pearson r about 0.94 / 0.68 (text), 1.08 / 0.51 (audio), 1.12 / 0.46 (vision), 0.26 / 0.98
(all three), 1.26 / 0 (constant). The signal lives in offsets/amplitudes over the valid frames (not in
single-frame spikes), so an LSTM over the padded sequences learns it: a masked LSTM(16) on audio alone
reaches r 0.38, on vision alone 0.41 after 15 epochs (the modality's ceiling is about 0.5).

**Planted unimodal labels** (`label_T`, `label_A`, `label_V`, like CH-SIMS's human per-modality labels): what the
label would be if that modality alone carried sentiment, i.e. the planted sum with the other two latents and the
noise set to 0: `label_T = round_to_0.2(clip(0.8 * s_text, -3, 3))`, `label_A = round_to_0.2(clip(0.75 *
z_audio, -3, 3))`, `label_V` likewise. They are the ground truth that Self-MM's and Self-MI's generated unimodal
labels are checked against (`keras_mmsa.models.SelfMM`); they come from the latents already drawn, so adding them
changed no other value of the set.

Records are dicts with exactly the builder's per-example features of the `sample` config (`Builder._info`):
`id` (str, "video_clip"), `text` (str), `audio` float32 [T_a, 5], `vision` float32 [T_v, 20], `label` float32,
`label_T`, `label_A`, `label_V` float32.

**Word-aligned** (`aligned=True`, the builder's `sample_aligned`): the same clips, texts, labels and frames,
then audio/vision become one row per whitespace word of the text, as the SDK configs' `align="words"` makes
them: the words split the clip's duration evenly, the frames too, and each word's row is the mean of the frames
that overlap it (`readers.align_to_words`). The planted signal survives: the offsets of audio channel 0 and
vision channels 0-1 lie on every frame, hence on every word's mean, and the spread of audio channel 1 still
scales the word-to-word variation (by less: a mean over ~T/W frames smooths the 3-tap noise).
"""

from __future__ import annotations

import re

import numpy as np
from keras_mmsa_datasets.msa.readers import align_to_words

SPLITS = ("train", "validation", "test")
SPLIT_SIZES = {"train": 600, "validation": 150, "test": 150}
DEFAULT_SEED = 20240
TEXT_LEN, AUDIO_LEN, VISION_LEN = 50, 375, 500
AUDIO_DIM, VISION_DIM = 5, 20
MIN_AUDIO_FRAMES, MIN_VISION_FRAMES = 60, 80
LABEL_RANGE = 3.0

# Mixing weights of the planted signal (see the module docstring).
TEXT_WEIGHT, AUDIO_WEIGHT, VISION_WEIGHT, LABEL_NOISE = 0.8, 0.75, 0.75, 0.3
AUDIO_OFFSET, AUDIO_SPREAD = 1.0, 0.3
VISION_OFFSETS = (1.0, -0.6)
INTENSIFIER_GAIN, NEGATION_GAIN = 1.25, -0.5

LEXICON = {
    "excellent": 2,
    "amazing": 2,
    "wonderful": 2,
    "brilliant": 2,
    "fantastic": 2,
    "good": 1,
    "nice": 1,
    "fun": 1,
    "enjoyable": 1,
    "decent": 1,
    "bad": -1,
    "boring": -1,
    "dull": -1,
    "weak": -1,
    "disappointing": -1,
    "terrible": -2,
    "awful": -2,
    "horrible": -2,
    "dreadful": -2,
    "painful": -2,
}
NEUTRAL_WORDS = ("long", "short", "new", "colorful", "familiar")
INTENSIFIERS = ("really", "very")
NEGATION = "not"
_BY_STRENGTH = {s: tuple(w for w, v in LEXICON.items() if v == s) for s in (-2, -1, 1, 2)}

SUBJECTS_SINGULAR = (
    "the movie",
    "the film",
    "the acting",
    "the story",
    "the ending",
    "the soundtrack",
)
SUBJECTS_PLURAL = ("the characters", "the effects", "the jokes")
FILLERS = ("", "um", "uh", "so", "well", "you know", "i mean", "okay so")
TAILS = ("", "to be honest", "in my opinion", "if you ask me", "for the most part")
TIMES = ("week", "night", "weekend", "friday")
COMPANIONS = ("my brother", "my sister", "a friend", "my parents")
# `{s}` subject, `{be}` was/were, `{a}` adjective phrase, `{t}` time, `{c}` companion.
TEMPLATES = (
    "i thought {s} {be} {a}",
    "honestly {s} {be} {a}",
    "overall i would say {s} {be} {a}",
    "i saw it last {t} with {c} and {s} {be} {a}",
    "{s} {be} {a}",
    "i have to say that {s} {be} {a}",
    "i went in with no expectations and {s} {be} {a}",
)
# Neutral distractor clauses (no sentiment word): prepended or appended with "and"/"but".
DISTRACTORS = (
    "it runs about two hours",
    "it came out last {t}",
    "i watched it with {c}",
    "the director also made a movie last year",
    "{s} {be} {n}",
)
CONNECTIVES = ("and", "but")


def _all_template_words() -> tuple[str, ...]:
    pieces = [
        *LEXICON,
        *NEUTRAL_WORDS,
        *INTENSIFIERS,
        NEGATION,
        *SUBJECTS_SINGULAR,
        *SUBJECTS_PLURAL,
        *FILLERS,
        *TAILS,
        *TIMES,
        *COMPANIONS,
        *TEMPLATES,
        *DISTRACTORS,
        *CONNECTIVES,
        "was were",
    ]
    words = set()
    for piece in pieces:
        words.update(w for w in re.sub(r"\{\w+\}", " ", piece).split())
    return tuple(sorted(words))


SAMPLE_VOCABULARY: tuple[str, ...] = _all_template_words()
"""Every word a `sample` sentence can contain (lower case, sorted); give it to a tiny WordPiece vocabulary."""


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"Unknown sample split {split!r}; expected one of {SPLITS}.")
    return SPLITS.index(split)


def _sentence(rng: np.random.Generator) -> tuple[str, float]:
    """One transcript and its lexicon score (before the text weight)."""
    strength = int(rng.choice([-2, -1, 0, 1, 2], p=[0.2, 0.2, 0.2, 0.2, 0.2]))
    plural = rng.random() < 0.25
    subject = str(rng.choice(SUBJECTS_PLURAL if plural else SUBJECTS_SINGULAR))
    be = "were" if plural else "was"
    words = []
    score = 0.0
    if strength == 0:
        adjective = str(rng.choice(NEUTRAL_WORDS))
    else:
        adjective = str(rng.choice(_BY_STRENGTH[strength]))
        score = float(strength)
        if rng.random() < 0.15:
            words.append(NEGATION)
            score *= NEGATION_GAIN
        if abs(strength) == 1 and rng.random() < 0.4:  # "really good", not "very excellent"
            words.append(str(rng.choice(INTENSIFIERS)))
            score *= INTENSIFIER_GAIN
    phrase = " ".join([*words, adjective])

    def fill(template: str, subject: str = subject, be: str = be) -> str:
        return template.format(
            s=subject,
            be=be,
            a=phrase,
            t=rng.choice(TIMES),
            c=rng.choice(COMPANIONS),
            n=rng.choice(NEUTRAL_WORDS),
        )

    clause = fill(str(rng.choice(TEMPLATES)))
    if rng.random() < 0.3:
        other = str(rng.choice([x for x in SUBJECTS_SINGULAR if x != subject]))
        distractor = fill(str(rng.choice(DISTRACTORS)), subject=other, be="was")
        connective = str(rng.choice(CONNECTIVES))
        clause = (
            f"{distractor} {connective} {clause}"
            if rng.random() < 0.5
            else f"{clause} {connective} {distractor}"
        )
    parts = [str(rng.choice(FILLERS)), clause, str(rng.choice(TAILS))]
    return " ".join(p for p in parts if p), score


def _smooth_noise(rng: np.random.Generator, frames: int, channels: int) -> np.ndarray:
    """Unit-variance noise with a 3-tap moving average (neighbouring frames correlate like real features)."""
    raw = rng.standard_normal((frames + 2, channels))
    return (raw[:-2] + raw[1:-1] + raw[2:]) / np.sqrt(3.0)


def _round_label(value):
    """A label as MOSI's annotators' means look: clipped to the label range, rounded to 0.2."""
    return np.round(np.clip(value, -LABEL_RANGE, LABEL_RANGE) * 5.0) / 5.0


def word_align(frames: np.ndarray, text: str) -> np.ndarray:
    """Frames of one clip -> one row per whitespace word of `text`: words and frames each split the clip's
    duration evenly, and a word's row is the mean of the frames overlapping it (`readers.align_to_words`)."""
    words = len(text.split())
    steps = len(frames)
    frame_intervals = np.stack([np.arange(steps), np.arange(1, steps + 1)], axis=1) / steps
    word_intervals = np.stack([np.arange(words), np.arange(1, words + 1)], axis=1) / max(words, 1)
    return align_to_words(frames, frame_intervals, word_intervals)


def generate_split(
    split: str, *, num_examples: int | None = None, seed: int = DEFAULT_SEED, aligned: bool = False
) -> list[dict]:
    """Generates one split of the synthetic `sample` set.

    Args:
        split: "train", "validation" or "test" (each has its own random stream and its own speakers).
        num_examples: number of clips (default `SPLIT_SIZES[split]`: 600 / 150 / 150).
        seed: base seed; the same arguments always give the same records.
        aligned: word-aligned audio/vision (one row per word of the text, see `word_align`); the clips, texts
            and labels are those of `aligned=False`.

    Returns:
        A list of dicts `{id, text, audio [T_a, 5] float32, vision [T_v, 20] float32, label float32,
        label_T, label_A, label_V float32}` (the planted unimodal labels, see the module docstring)
        (`aligned=True`: audio [W, 5], vision [W, 20] with W the number of words of `text`).
    """
    index = _split_index(split)
    if num_examples is None:
        num_examples = SPLIT_SIZES[split]
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}.")
    rng = np.random.default_rng([int(seed), index])
    prefix = ("trn", "val", "tst")[index]
    records = []
    video, clips_left = -1, 0
    audio_base = vision_base = None
    clip = 0
    for _ in range(num_examples):
        if clips_left == 0:  # a new speaker / video with its own feature baselines
            video += 1
            clip = 0
            clips_left = int(rng.integers(3, 13))
            audio_base = np.concatenate([[0.0, 0.0], rng.normal(0.0, 0.7, AUDIO_DIM - 2)])
            vision_base = np.concatenate([[0.0, 0.0], rng.normal(0.0, 0.7, VISION_DIM - 2)])
        clips_left -= 1
        clip += 1

        text, text_score = _sentence(rng)
        z_audio, z_vision = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size=2)

        t_a = int(rng.integers(MIN_AUDIO_FRAMES, AUDIO_LEN + 1))
        audio = _smooth_noise(rng, t_a, AUDIO_DIM) + audio_base
        audio[:, 0] += AUDIO_OFFSET * z_audio
        audio[:, 1] *= 1.0 + AUDIO_SPREAD * z_audio

        t_v = int(rng.integers(MIN_VISION_FRAMES, VISION_LEN + 1))
        vision = _smooth_noise(rng, t_v, VISION_DIM) + vision_base
        vision[:, 0] += VISION_OFFSETS[0] * z_vision
        vision[:, 1] += VISION_OFFSETS[1] * z_vision

        y = (
            TEXT_WEIGHT * text_score
            + AUDIO_WEIGHT * z_audio
            + VISION_WEIGHT * z_vision
            + rng.normal(0.0, LABEL_NOISE)
        )
        y = _round_label(y)
        if aligned:
            audio, vision = word_align(audio, text), word_align(vision, text)
        records.append(
            {
                "id": f"{prefix}{video:03d}_{clip}",
                "text": text,
                "audio": audio.astype(np.float32),
                "vision": vision.astype(np.float32),
                "label": np.float32(y + 0.0),  # + 0.0 turns -0.0 into 0.0
                "label_T": np.float32(_round_label(TEXT_WEIGHT * text_score) + 0.0),
                "label_A": np.float32(_round_label(AUDIO_WEIGHT * z_audio) + 0.0),
                "label_V": np.float32(_round_label(VISION_WEIGHT * z_vision) + 0.0),
            }
        )
    return records


# ----------------------------------------------------------------------------------------------------------
# Oracle check of the planted signal: ridge regression on hand-made per-clip summaries.


def text_score(text: str) -> float:
    """The lexicon score of a `sample` sentence, parsed back from its words (negation and intensifiers)."""
    words = text.split()
    for i, word in enumerate(words):
        if word in LEXICON:
            score = float(LEXICON[word])
            before = words[max(0, i - 2) : i]
            if NEGATION in before:
                score *= NEGATION_GAIN
            if any(w in INTENSIFIERS for w in before):
                score *= INTENSIFIER_GAIN
            return score
    return 0.0


def hand_features(records: list[dict], modality: str) -> np.ndarray:
    """Per-clip summaries of one modality: text lexicon score; per-channel mean and std of audio / vision."""
    if modality == "text":
        return np.array([[text_score(r["text"])] for r in records], dtype=np.float64)
    if modality in ("audio", "vision"):
        return np.stack(
            [np.concatenate([r[modality].mean(0), r[modality].std(0)]) for r in records]
        ).astype(np.float64)
    raise ValueError(f"Unknown modality {modality!r}; expected 'text', 'audio' or 'vision'.")


def _ridge_fit_predict(x_train, y_train, x_test, l2=1.0):
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    a = (x_train - mean) / std
    b = (x_test - mean) / std
    w = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ (y_train - y_train.mean()))
    return b @ w + y_train.mean()


def oracle_scores(
    *, seed: int = DEFAULT_SEED, train: list[dict] | None = None, test: list[dict] | None = None
) -> dict[str, dict[str, float]]:
    """Test-split MAE and Pearson r of ridge regressions on `hand_features`, per modality subset.

    Returns `{"constant" | "text" | "audio" | "vision" | "all": {"mae": ..., "corr": ...}}`, trained on the
    train split and scored on the test split (generated with `seed` unless given).
    """
    train = generate_split("train", seed=seed) if train is None else train
    test = generate_split("test", seed=seed) if test is None else test
    y_train = np.array([r["label"] for r in train], dtype=np.float64)
    y_test = np.array([r["label"] for r in test], dtype=np.float64)
    feats = {
        m: (hand_features(train, m), hand_features(test, m)) for m in ("text", "audio", "vision")
    }
    feats["all"] = tuple(
        np.concatenate([feats[m][i] for m in ("text", "audio", "vision")], 1) for i in (0, 1)
    )
    scores = {"constant": {"mae": float(np.abs(y_test - np.median(y_train)).mean()), "corr": 0.0}}
    for name, (x_train, x_test) in feats.items():
        pred = _ridge_fit_predict(x_train, y_train, x_test)
        scores[name] = {
            "mae": float(np.abs(pred - y_test).mean()),
            "corr": float(np.corrcoef(pred, y_test)[0, 1]),
        }
    return scores


def main() -> None:
    """Prints split statistics and the oracle table (`python -m keras_mmsa_datasets.msa.sample`)."""
    import time

    start = time.perf_counter()
    splits = {s: generate_split(s) for s in SPLITS}
    took = time.perf_counter() - start
    for split, records in splits.items():
        labels = np.array([r["label"] for r in records])
        words = max(len(r["text"].split()) for r in records)
        z_text = np.array([text_score(r["text"]) for r in records])
        av = (
            hand_features(records, "audio")[:, 0] / AUDIO_OFFSET
            + hand_features(records, "vision")[:, 0] / VISION_OFFSETS[0]
        )
        disagree = np.mean(np.sign(z_text) * np.sign(av) < 0)
        print(
            f"{split:10s} n={len(records):4d} label mean={labels.mean():+.3f} std={labels.std():.3f} "
            f"zeros={np.mean(labels == 0):.3f} max words={words} text-vs-(audio,vision) sign "
            f"disagreement={disagree:.2f}"
        )
    print(f"generated {sum(map(len, splits.values()))} clips in {took:.2f} s")
    print("ridge oracle on hand features (train -> test):")
    for name, s in oracle_scores(train=splits["train"], test=splits["test"]).items():
        print(f"  {name:9s} MAE={s['mae']:.3f}  Corr={s['corr']:.3f}")


if __name__ == "__main__":
    main()
