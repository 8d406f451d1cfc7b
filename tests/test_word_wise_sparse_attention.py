"""WSA (MIRD eq. 2-6): shapes over unaligned frames, padding frames get zero weight, eq. 5-6 by hand."""

import numpy as np

from keras_mmsa.layers import WordWiseSparseAttention


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(2, 5, 8)).astype("float32")
    audio = rng.normal(size=(2, 9, 3)).astype("float32")
    vision = rng.normal(size=(2, 7, 4)).astype("float32")
    a_mask = np.ones((2, 9), bool)
    a_mask[1, 4:] = False
    v_mask = np.ones((2, 7), bool)
    v_mask[0, 2:] = False
    return w, [audio, vision], [a_mask, v_mask]


def test_shapes_masking_and_padding_invariance():
    w, others, masks = _inputs()
    wsa = WordWiseSparseAttention(attention_dim=4)
    out = np.asarray(wsa(w, others, masks))
    assert out.shape == (2, 5, 8) and np.isfinite(out).all()
    a, v = (np.asarray(x) for x in wsa.attention(w, others, masks))
    assert a.shape == (2, 5, 9) and v.shape == (2, 5, 7)
    assert np.all(a[1, :, 4:] == 0) and np.all(v[0, :, 2:] == 0)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v.sum(-1), 1.0, atol=1e-5)
    # Changing padded frames changes nothing.
    noisy = [others[0].copy(), others[1].copy()]
    noisy[0][1, 4:] = 1e3
    noisy[1][0, 2:] = -1e3
    np.testing.assert_allclose(np.asarray(wsa(w, noisy, masks)), out, atol=1e-5)


def test_matches_equations_by_hand():
    w, others, masks = _inputs(1)
    wsa = WordWiseSparseAttention(attention_dim=4, epsilon=0.5)
    out = np.asarray(wsa(w, others, masks))
    weights = [np.asarray(x) for x in wsa.attention(w, others, masks)]
    h = 0.0
    for i, (x, a) in enumerate(zip(others, weights)):
        xt = a @ x
        gk, gb = (np.asarray(v) for v in wsa.gates[i].weights)
        dk, db = (np.asarray(v) for v in wsa.displacements[i].weights)
        gate = 1 / (1 + np.exp(-(np.concatenate([w, xt], -1) @ gk + gb)))
        h = h + gate * (xt @ dk + db)
    lam = np.minimum(np.linalg.norm(w, axis=-1) / np.linalg.norm(h, axis=-1) * 0.5, 1.0)
    np.testing.assert_allclose(out, w + lam[..., None] * h, rtol=1e-4, atol=1e-5)


def test_serialization_round_trip_and_errors():
    w, others, masks = _inputs()
    wsa = WordWiseSparseAttention(attention_dim=4, layer_norm=True)
    wsa(w, others, masks)
    restored = WordWiseSparseAttention.from_config(wsa.get_config())
    restored(w, others, masks)
    restored.set_weights(wsa.get_weights())
    np.testing.assert_allclose(
        np.asarray(restored(w, others, masks)), np.asarray(wsa(w, others, masks)), atol=1e-6
    )
    try:
        wsa(w, others, masks[:1])
    except ValueError as e:
        assert "masks" in str(e)
    else:
        raise AssertionError("expected a ValueError naming `masks`")


def test_wsa_bert_encoder_padding_frames_do_not_matter():
    from keras_mmsa import backbones
    from keras_mmsa.layers import WSATextEncoder

    backbone, _ = backbones.tiny_text_backbone(
        seed=0, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16
    )
    rng = np.random.default_rng(3)
    x = {
        "token_ids": rng.integers(1, 20, size=(2, 6)).astype("int32"),
        "padding_mask": np.array([[1] * 6, [1] * 3 + [0] * 3], bool),
        "audio": rng.normal(size=(2, 9, 3)).astype("float32"),
        "audio_lengths": np.array([9, 4], "int32"),
        "vision": rng.normal(size=(2, 7, 4)).astype("float32"),
        "vision_lengths": np.array([2, 7], "int32"),
    }
    encoder = WSATextEncoder(backbone, attention_dim=4)
    assert encoder.split.split_index == 1  # the middle layer by default
    out = np.asarray(encoder(x))
    assert out.shape == (2, 8) and np.isfinite(out).all()
    noisy = dict(x, audio=x["audio"].copy(), vision=x["vision"].copy())
    noisy["audio"][1, 4:] = 1e3
    noisy["vision"][0, 2:] = -1e3
    np.testing.assert_allclose(np.asarray(encoder(noisy)), out, atol=1e-5)
    # The injection acts: the plain backbone's masked mean differs.
    plain = np.asarray(encoder.split(x)["sequence_output"])
    m = x["padding_mask"][..., None]
    assert not np.allclose((plain * m).sum(1) / m.sum(1), out, atol=1e-4)
    restored = WSATextEncoder.from_config(encoder.get_config())
    restored(x)
    restored.set_weights(encoder.get_weights())
    np.testing.assert_allclose(np.asarray(restored(x)), out, atol=1e-5)
    del x["vision_lengths"]
    try:
        encoder(x)
    except KeyError as e:
        assert "vision_lengths" in str(e)
    else:
        raise AssertionError("expected a KeyError naming vision_lengths")
