"""A Llama-style decoder (transformers' `LlamaForCausalLM`) at a chosen size, with random weights, and its metrics.

`llama_config(params)` is the configuration of a decoder of about `params` parameters
(`SIZES`: 0.2b, 0.5b, 1b, their embedding and untied output head over a 32000-token
vocabulary included, and the tiny ones for checking a pipeline), `build_decoder(config,
seed)` the model, seeded, in eval mode, in float32 or the dtype asked for. Nothing is
downloaded: the weights are random, which is what a benchmark of memory and time needs
(a real checkpoint goes through `AutoModelForCausalLM.from_pretrained` instead).

The evaluation functions compare a model's next-token predictions on fixed token sequences
with the FP32 (reference) model's, computed once when they are made; they hold only those
and the input ids, never the reference model, since they are pickled to every evaluator:

- `NextTokenAgreement`: the fraction of positions whose top-1 next token is the reference's
  (1.0 for the reference; higher is better). It holds the reference tokens (int64).
- `NextTokenKL`: minus the mean KL(reference || model) per token, in nats (0.0 for the
  reference; higher is better, so use an absolute `AccuracyCriterion`, the relative one has
  no room around a zero baseline). It holds the reference log-probabilities, float32:
  sequences x tokens x vocabulary x 4 bytes (32 MB for 2 x 128 tokens over 32000).

`token_batches` makes seeded random token ids (or cuts a tokenized text) into sequences.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

VOCAB = 32000

# name -> (hidden, intermediate, layers, attention heads, key/value heads, vocabulary)
SIZES: dict[str, tuple[int, int, int, int, int, int]] = {
    "1b": (2048, 5632, 18, 32, 4, VOCAB),  # 0.92B
    "0.5b": (1536, 4096, 16, 24, 4, VOCAB),  # 0.49B
    "0.2b": (1024, 2816, 12, 16, 4, VOCAB),  # 0.20B
    "mini": (128, 352, 2, 4, 2, 8000),  # 2.4M
    "tiny": (64, 176, 1, 4, 2, 4000),  # 0.55M
}

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def llama_config(params: str = "1b", *, hidden: int | None = None, layers: int | None = None, max_positions: int = 2048):
    """The `LlamaConfig` of the decoder `params` (one of `SIZES`), with `hidden` / `layers` overriding its width and
    depth (the intermediate size and the heads follow the width, head size 64 as in the sizes above, or 16 for a
    width under 256). The output head is untied from the embedding, as in Llama; no KV cache."""
    from transformers import LlamaConfig

    if params not in SIZES:
        raise ValueError(f"params must be one of {', '.join(SIZES)}; got {params!r}")
    width, intermediate, depth, heads, kv_heads, vocab = SIZES[params]
    if hidden is not None and hidden != width:
        head_dim = 64 if hidden >= 256 else 16
        if hidden % head_dim:
            raise ValueError(f"hidden must be a multiple of {head_dim}, got {hidden}")
        width, heads = hidden, hidden // head_dim
        kv_heads = max(1, min(kv_heads, heads))
        while heads % kv_heads:
            kv_heads -= 1
        intermediate = 64 * round(hidden * 11 / 4 / 64) or 64  # Llama's 2/3 of 4x, rounded to 64
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=intermediate,
        num_hidden_layers=layers if layers is not None else depth,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        use_cache=False,
    )


def parameter_count(config) -> int:
    """The decoder's parameters, counted from `config` without building it."""
    h, i, v, n = config.hidden_size, config.intermediate_size, config.vocab_size, config.num_hidden_layers
    kv = h // config.num_attention_heads * config.num_key_value_heads
    layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # q, o; k, v; gate, up, down; two RMSNorms
    return n * layer + h + v * h * (1 if config.tie_word_embeddings else 2)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_decoder(config, seed: int = 0, dtype: torch.dtype | str = torch.float32) -> nn.Module:
    """`LlamaForCausalLM(config)` with weights drawn from `seed`, in eval mode, made directly in `dtype` (float32 or
    bfloat16, or their names fp32 / bf16): no float32 copy of a bf16 model is ever held."""
    from transformers import LlamaForCausalLM
    from transformers.utils import logging

    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        torch.manual_seed(seed)
        with _default_dtype(dtype), torch.device("cpu"):
            model = LlamaForCausalLM(config)
    finally:
        logging.set_verbosity(verbosity)
    return model.eval()


def token_batches(
    vocab_size: int | None = None,
    n: int = 2,
    seq_len: int = 128,
    seed: int = 0,
    tokens: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """`n` sequences of `seq_len` token ids, as one (n, seq_len) int64 tensor: drawn uniformly from
    [0, vocab_size) by a generator seeded with `seed`, or, given `tokens` (a tokenized text), its first
    n x seq_len tokens cut into sequences."""
    if tokens is not None:
        flat = torch.as_tensor(tokens, dtype=torch.long).flatten()
        if flat.numel() < n * seq_len:
            raise ValueError(f"the text has {flat.numel()} tokens; {n} sequences of {seq_len} need {n * seq_len}")
        return flat[: n * seq_len].reshape(n, seq_len).clone()
    if vocab_size is None:
        raise ValueError("token_batches needs vocab_size or tokens")
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (n, seq_len), generator=generator, dtype=torch.long)


def _logits(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The model's next-token logits for `input_ids`, float32, on the CPU."""
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(input_ids=input_ids.to(device), use_cache=False)
    logits = out.logits if hasattr(out, "logits") else out[0]
    return logits.float().cpu()


class NextTokenAgreement:
    """eval_fn: the fraction of positions of `input_ids` where the model's top-1 next token is the reference model's.

    `reference` (an FP32 model) runs once, here; only `input_ids` and its top-1 tokens are kept.
    """

    def __init__(self, reference: nn.Module, input_ids: torch.Tensor):
        self.input_ids = input_ids.long().cpu()
        self.expected = _logits(reference, self.input_ids).argmax(-1)

    def __call__(self, model: nn.Module) -> float:
        return float((_logits(model, self.input_ids).argmax(-1) == self.expected).float().mean())


class NextTokenKL:
    """eval_fn: minus the mean KL(reference || model) of the next-token distributions over the positions of
    `input_ids`, in nats (higher is better; 0.0 for the reference).

    `reference` (an FP32 model) runs once, here; only `input_ids` and its log-probabilities are kept.
    """

    def __init__(self, reference: nn.Module, input_ids: torch.Tensor):
        self.input_ids = input_ids.long().cpu()
        self.log_probs = torch.log_softmax(_logits(reference, self.input_ids), dim=-1)

    def __call__(self, model: nn.Module) -> float:
        log_q = torch.log_softmax(_logits(model, self.input_ids), dim=-1)
        kl = (self.log_probs.exp() * (self.log_probs - log_q)).sum(-1)
        return -float(kl.mean())


def calibration_batches(input_ids: torch.Tensor, batch_size: int = 1) -> list[dict[str, torch.Tensor]]:
    """`input_ids` (sequences x tokens) as calibration batches of `batch_size` sequences, keyword inputs."""
    return [{"input_ids": input_ids[i : i + batch_size]} for i in range(0, len(input_ids), batch_size)]


def linear_summary(model: nn.Module, config: dict[str, str] | None) -> dict[str, int]:
    """How many of `model`'s Linear ops `config` (op name -> precision; None: none tuned) puts at each precision."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if type(module) is nn.Linear:
            precision = (config or {}).get(name, "fp32")
            counts[precision] = counts.get(precision, 0) + 1
    return counts
