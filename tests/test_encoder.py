"""The transformer encoder example: all-MiniLM-L6-v2 from its package, its ops, and op-wise fallback at int8."""

from __future__ import annotations

import pytest
import torch

from raytune_inc import AccuracyCriterion, tune
from raytune_inc.examples.encoder import SENTENCES, EmbeddingFidelity, calibration_batches, pretrained_model, tokenize
from raytune_inc.pytorch.ops import discover_ops

pytestmark = pytest.mark.slow  # loads all-MiniLM-L6-v2 and tunes it

LAYER_LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


@pytest.fixture(scope="module")
def encoder():
    return pretrained_model()


def test_the_shipped_weights_embed_sentences_by_topic(encoder):
    with torch.no_grad():
        emb = encoder(**tokenize(SENTENCES))
    assert emb.shape == (48, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(48), atol=1e-5)
    sim = emb @ emb.T
    sim.fill_diagonal_(-2)
    topic = torch.arange(48) // 8  # SENTENCES: six topics of eight sentences
    assert (topic[sim.argmax(1)] == topic).float().mean() >= 0.75  # random weights: near 1/6
    same = topic[:, None] == topic[None, :]
    assert sim[same & (sim > -2)].mean() > sim[~same].mean() + 0.1  # 0.24 vs 0.06


def test_the_encoder_ops_are_found_in_model_order(encoder):
    space = discover_ops(encoder)
    assert [(op.name, op.type) for op in space][:4] == [
        ("bert.embeddings.word_embeddings", "Embedding"),
        ("bert.embeddings.position_embeddings", "Embedding"),
        ("bert.embeddings.token_type_embeddings", "Embedding"),
        ("bert.embeddings.LayerNorm", "LayerNorm"),
    ]
    linears = [op for op in space if op.type == "Linear"]
    assert [op.name for op in linears] == [f"bert.encoder.layer.{i}.{name}" for i in range(6) for name in LAYER_LINEARS]
    assert all(op.precisions == ("bf16", "fp16", "int8_dynamic", "int8") for op in linears)
    assert {op.precisions for op in space if op.type == "Embedding"} == {("bf16", "fp16", "int8")}  # int8 weights only
    assert {op.precisions for op in space if op.type == "LayerNorm"} == {("bf16", "fp16")}
    assert len(space.names) == 3 + 1 + 6 * (6 + 2)  # embeddings, their LayerNorm; per layer 6 Linear, 2 LayerNorm


def test_conservative_falls_back_op_wise_on_the_encoder(encoder, monkeypatch):
    monkeypatch.setenv("RAYTUNE_INC_REDUCE_RANGE", "0")  # 8-bit activations on every host: the errors below are theirs
    eval_fn = EmbeddingFidelity(encoder, SENTENCES[::3])
    # The Linear ops of the first layer and the attention of the second, and a tolerance their int8 error
    # as a whole exceeds (fidelity 0.9983): the first layer's output.dense alone costs about 0.15%.
    res = tune(
        encoder,
        eval_fn,
        calibration_batches(1),
        accuracy=AccuracyCriterion(tolerable_loss=0.001),
        precisions=("int8",),
        workers=0,
        op_name_dict={
            r"bert\.encoder\.layer\.(1\.(intermediate|output)|[2-5])\..*": ("fp32",),
            r"bert\.embeddings\..*": ("fp32",),
            r".*LayerNorm": ("fp32",),
        },
    )
    stages = [(t.stage, t.meets) for t in res.trials]
    assert stages[0] == ("int8 type-wise", False)
    op_wise = [meets for stage, meets in stages if stage == "int8 op-wise"]
    assert len(op_wise) == 10 and any(op_wise) and not all(op_wise)
    assert list(res.config) == [f"bert.encoder.layer.0.{name}" for name in LAYER_LINEARS] + [
        f"bert.encoder.layer.1.{name}" for name in LAYER_LINEARS[:4]
    ]
    assert set(res.config.values()) == {"int8", "fp32"}  # the int8 misses stay at fp32
    assert [name for name, p in res.config.items() if p == "fp32"] == ["bert.encoder.layer.0.output.dense"]
    assert res.baseline == 1.0 and res.accuracy >= 1 - 0.001
    assert res.accuracy == eval_fn(res.model)
