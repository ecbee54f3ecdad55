"""Architectures nobody here wrote, from transformers' model classes, built from tiny configs with random
weights (nothing is downloaded), with a fidelity-to-FP32 metric that needs no data.

`ARCHITECTURES[name]()` gives a `Case`: the model in eval mode, calibration batches, the inputs the
metric runs on, and the ops expected per module type. `OutputFidelity` is the eval function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Case:
    model: nn.Module
    calib: list[dict[str, torch.Tensor]]
    inputs: dict[str, torch.Tensor]
    ops: dict[str, int]  # expected ops per module type name


def main_output(out) -> torch.Tensor:
    """The first tensor of a model's output (logits, last_hidden_state, or the tensor itself)."""
    if isinstance(out, torch.Tensor):
        return out
    return out[0]


class OutputFidelity:
    """eval_fn: mean cosine similarity of each sample's output to the FP32 model's (1.0 for the FP32 model)."""

    def __init__(self, reference: nn.Module, inputs: dict[str, torch.Tensor]):
        self.inputs = inputs
        with torch.no_grad():
            self.expected = main_output(reference(**inputs)).float().flatten(1)

    def __call__(self, model: nn.Module) -> float:
        device = next(model.parameters()).device
        with torch.no_grad():
            out = main_output(model(**{k: v.to(device) for k, v in self.inputs.items()})).float().cpu().flatten(1)
        return float(nn.functional.cosine_similarity(out, self.expected, dim=-1).mean())


def _tokens(seed: int, batches: int = 2, vocab: int = 100, length: int = 12) -> tuple[list, dict]:
    g = torch.Generator().manual_seed(seed)
    calib = [{"input_ids": torch.randint(0, vocab, (4, length), generator=g)} for _ in range(batches)]
    return calib, {"input_ids": torch.randint(0, vocab, (8, length), generator=g)}


def _images(seed: int, batches: int = 2, size: int = 32, key: str = "pixel_values", channels: int = 3) -> tuple[list, dict]:
    g = torch.Generator().manual_seed(seed)
    calib = [{key: torch.randn(4, channels, size, size, generator=g)} for _ in range(batches)]
    return calib, {key: torch.randn(8, channels, size, size, generator=g)}


def _quiet(build: Callable[[], nn.Module]) -> nn.Module:
    import transformers

    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return build().eval()


def bert() -> Case:
    import transformers as T

    config = T.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    model = _quiet(lambda: T.BertModel(config, add_pooling_layer=False))
    return Case(model, *_tokens(1), {"Embedding": 3, "LayerNorm": 5, "Linear": 12})


def gpt2() -> Case:
    import transformers as T

    config = T.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0)
    model = _quiet(lambda: T.GPT2LMHeadModel(config))
    assert model.lm_head.weight is model.transformer.wte.weight  # tied, as in the released GPT-2
    return Case(model, *_tokens(2), {"Embedding": 2, "LayerNorm": 5, "Conv1D": 8, "Linear": 1})


def llama() -> Case:
    import transformers as T

    config = T.LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = _quiet(lambda: T.LlamaForCausalLM(config))
    return Case(model, *_tokens(3), {"Embedding": 1, "LlamaRMSNorm": 5, "Linear": 15})


def t5_encoder() -> Case:
    import transformers as T

    config = T.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)
    model = _quiet(lambda: T.T5EncoderModel(config))
    # `shared` and `encoder.embed_tokens` are two Embedding modules that share one weight: two ops; the third
    # Embedding is the first layer's relative attention bias.
    return Case(model, *_tokens(4), {"Embedding": 3, "T5LayerNorm": 5, "Linear": 12})


def vit() -> Case:
    import transformers as T

    config = T.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = _quiet(lambda: T.ViTForImageClassification(config))
    # ViTEmbeddings holds the patch Conv2d, so it is not an op itself (no op is inside another).
    return Case(model, *_images(5), {"Conv2d": 1, "LayerNorm": 5, "Linear": 13})


def resnet() -> Case:
    import transformers as T

    config = T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", num_labels=10)
    model = _quiet(lambda: T.ResNetForImageClassification(config))
    _perturb_batchnorm(model)
    return Case(model, *_images(6), {"Conv2d": 6, "Linear": 1})  # 6 BatchNorm2d: left out, FP32


def mobilenet_v2() -> Case:
    import transformers as T

    config = T.MobileNetV2Config(image_size=32, depth_multiplier=0.25, num_labels=10)
    model = _quiet(lambda: T.MobileNetV2ForImageClassification(config))
    _perturb_batchnorm(model)
    return Case(model, *_images(7), {"Conv2d": 52, "Linear": 1})  # 17 of the convs are depthwise


def convnext() -> Case:
    import transformers as T

    config = T.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, num_labels=10)
    model = _quiet(lambda: T.ConvNextForImageClassification(config))
    # The patch embedding and a downsampling Conv2d; per block a depthwise 7x7 Conv2d, a LayerNorm and two
    # Linear on channels-last 4-D inputs.
    return Case(model, *_images(8), {"Conv2d": 4, "ConvNextLayerNorm": 4, "LayerNorm": 1, "Linear": 5})


def whisper_encoder() -> Case:
    import transformers as T

    config = T.WhisperConfig(
        vocab_size=100,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=16,
        max_source_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    model = _quiet(lambda: T.WhisperModel(config).get_encoder())
    g = torch.Generator().manual_seed(9)
    calib = [{"input_features": torch.randn(4, 16, 64, generator=g)} for _ in range(2)]
    return Case(
        model, calib, {"input_features": torch.randn(8, 16, 64, generator=g)}, {"Conv1d": 2, "Embedding": 1, "Linear": 12, "LayerNorm": 5}
    )


def _perturb_batchnorm(model: nn.Module) -> None:
    """Running statistics as a trained network has them (fresh ones are an identity), so that folding matters."""
    g = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
            module.num_batches_tracked.fill_(100)


ARCHITECTURES: dict[str, Callable[[], Case]] = {
    "bert": bert,
    "gpt2": gpt2,
    "llama": llama,
    "t5_encoder": t5_encoder,
    "vit": vit,
    "resnet": resnet,
    "mobilenet_v2": mobilenet_v2,
    "convnext": convnext,
    "whisper_encoder": whisper_encoder,
}
