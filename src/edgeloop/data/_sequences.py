"""Generated sequence datasets: token sequences (for the transformer) and machine vibration
vectors for anomaly detection."""

from __future__ import annotations

import numpy as np

from edgeloop.errors import DataError

__all__ = ["ANOMALY_KINDS", "anomaly_arrays", "tokens_arrays"]

PAD = 0
VOCAB = 1000
_MOTIF_LO, _FILLER_LO = 10, 50  # ids 1..9 reserved, 10..49 motif tokens, 50.. filler


def tokens_arrays(
    seed: int = 0, n: int = 6000, max_len: int = 48, motifs: int = 4
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[str, ...], int]:
    """Padded token sequences whose class is which motif occurs and where.

    Every sequence (length 24..``max_len``) of filler tokens holds one motif of three tokens in
    order; the class is the motif and whether it starts early (positions 0-7) or late (16 or
    after). Half the sequences also hold a stray token of another motif, so single tokens are
    not enough: a bag of words tells the motif at best, position tells early from late.
    Returns ``({"input_ids", "attention_mask"}, y, classes, vocab_size)``.
    """
    if max_len < 20:
        raise DataError(
            f"tokens: max_len must be >= 20 to place early and late motifs, got {max_len}"
        )
    rng = np.random.default_rng([seed, 0x70CE])
    motif_tokens = rng.choice(np.arange(_MOTIF_LO, _FILLER_LO), size=(motifs, 3), replace=False)
    n_classes = motifs * 2
    y = np.arange(n, dtype=np.int64) % n_classes
    rng.shuffle(y)
    ids = np.zeros((n, max_len), dtype=np.int64)
    mask = np.zeros((n, max_len), dtype=np.int64)
    lengths = rng.integers(min(24, max_len), max_len + 1, n)
    for i in range(n):
        length = int(lengths[i])
        seq = rng.integers(_FILLER_LO, VOCAB, length)
        motif, late = divmod(int(y[i]), 2)
        start = int(rng.integers(16, length - 2)) if late else int(rng.integers(0, 8))
        seq[start : start + 3] = motif_tokens[motif]
        if rng.random() < 0.5:
            other = (motif + int(rng.integers(1, motifs))) % motifs
            free = [p for p in range(length) if not start <= p < start + 3]
            seq[int(rng.choice(free))] = motif_tokens[other][int(rng.integers(0, 3))]
        ids[i, :length] = seq
        mask[i, :length] = 1
    classes = tuple(f"m{m}-{pos}" for m in range(motifs) for pos in ("early", "late"))
    return {"input_ids": ids, "attention_mask": mask}, y, classes, VOCAB


ANOMALY_KINDS = ("spike", "off_manifold", "gain", "bearing")


def anomaly_arrays(
    seed: int = 0, n: int = 6000, sensors: int = 4, bands: int = 8, latent: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vibration feature vectors (``sensors`` x ``bands`` log band energies) of one machine.

    Normal vectors lie near a ``latent``-dimensional manifold (a fixed random non-linear map
    of the operating point: speed, load, temperature) plus sensor noise. Anomalies are of four
    kinds: a spike in a few features, an off-manifold displacement, a gain fault scaling one
    sensor, and a bearing fault moving one sensor's energy into the high bands.
    Returns ``(x, is_anomaly, kind)`` where ``kind`` is -1 for normal, else an index into
    :data:`ANOMALY_KINDS`; anomalies are 25% of the vectors.
    """
    rng = np.random.default_rng([seed, 0xA11])
    machine = np.random.default_rng(0xB0B)  # the machine is the same for every seed
    d = sensors * bands
    w1 = machine.standard_normal((latent, 16)).astype(np.float32)
    w2 = machine.standard_normal((16, d)).astype(np.float32) / 4.0
    bias = machine.uniform(-0.5, 0.5, d).astype(np.float32)
    z = rng.uniform(-1.0, 1.0, (n, latent)).astype(np.float32)
    x = np.tanh(z @ w1) @ w2 + bias
    x += rng.standard_normal(x.shape, dtype=np.float32) * 0.06
    kind = np.full(n, -1, dtype=np.int64)
    is_anom = rng.random(n) < 0.25
    kind[is_anom] = rng.integers(0, len(ANOMALY_KINDS), int(is_anom.sum()))
    for i in np.flatnonzero(is_anom):
        k = ANOMALY_KINDS[kind[i]]
        s = int(rng.integers(0, sensors))
        band = slice(s * bands, (s + 1) * bands)
        if k == "spike":
            feats = rng.choice(d, size=int(rng.integers(1, 4)), replace=False)
            x[i, feats] += rng.choice([-1.0, 1.0], len(feats)) * rng.uniform(0.25, 0.8, len(feats))
        elif k == "off_manifold":
            direction = rng.standard_normal(d).astype(np.float32)
            x[i] += direction / np.linalg.norm(direction) * rng.uniform(0.3, 0.9)
        elif k == "gain":
            x[i, band] = x[i, band] * rng.uniform(1.15, 1.6) + rng.uniform(0.05, 0.25)
        else:  # bearing: energy shifts into the upper half of one sensor's bands
            hi = slice(s * bands + bands // 2, (s + 1) * bands)
            x[i, hi] += rng.uniform(0.15, 0.5, bands - bands // 2)
    return x.astype(np.float32), is_anom.astype(np.int64), kind
