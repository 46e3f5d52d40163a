"""A BERT sentence encoder in plain torch: what sentence-transformers computes for a BERT model
(tokenize, six or twelve encoder layers, mean or CLS pooling, unit length), without importing it.

Why not sentence-transformers itself: importing it (and transformers under it) costs about
200 MiB of resident memory per process (sympy, scipy, scikit-learn, torch.distributed and
torch._dynamo come with it) before the model's own 45-90 MiB, which was a third of the whole
``make run`` stack. The model is the same file, read with ``safetensors``; the tokenizer is the
model's own ``tokenizer.json``, run by Hugging Face's ``tokenizers``; the encoder is the standard
BERT layer (``torch.nn.functional``'s attention, layer norm and GELU), and a test holds its
vectors to sentence-transformers' (cosine >= 0.99999 in fp32).

What it runs: a sentence-transformers directory whose ``config.json`` says ``bert`` (absolute
positions), pooling by mean or CLS token, and the ``query``/``document`` prompts the model's
``config_sentence_transformers.json`` names. Anything else is refused with :class:`UnsupportedModel`;
serve it from an OpenAI-compatible endpoint instead.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from tokenizers import Tokenizer

_ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")


class UnsupportedModel(ValueError):
    """The directory holds no model this encoder can run (the message says what is missing)."""


@dataclass(frozen=True)
class _Config:
    layers: int
    heads: int
    eps: float
    gelu: Literal["none", "tanh"]
    max_length: int
    pooling: Literal["mean", "cls"]
    query_prompt: str
    document_prompt: str


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UnsupportedModel(f"{path.name} cannot be read: {exc}") from exc


def _pooling(directory: Path) -> Literal["mean", "cls"]:
    modules = _read_json(directory / "modules.json")
    pooling_dirs = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")]
    config = _read_json(directory / (pooling_dirs[0] if pooling_dirs else "1_Pooling") / "config.json")
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config.get("pooling_mode_mean_tokens", True) and not any(
        config.get(mode) for mode in ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
    ):
        return "mean"
    raise UnsupportedModel(f"pooling {config} is not mean or CLS pooling")


def _read_config(directory: Path) -> _Config:
    model = _read_json(directory / "config.json")
    if model.get("model_type") != "bert":
        raise UnsupportedModel(f"model_type {model.get('model_type')!r} is not 'bert'")
    if model.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel("only absolute position embeddings are supported")
    activation = model.get("hidden_act", "gelu")
    if activation not in _ACTIVATIONS:
        raise UnsupportedModel(f"activation {activation!r} is not a GELU")
    sentence = _read_json(directory / "sentence_bert_config.json")
    positions = int(model.get("max_position_embeddings", 512))
    prompts: dict[str, str] = _read_json(directory / "config_sentence_transformers.json").get("prompts") or {}
    document_prompt = next((prompts[name] for name in _DOCUMENT_PROMPTS if name in prompts), "")
    return _Config(
        layers=int(model["num_hidden_layers"]),
        heads=int(model["num_attention_heads"]),
        eps=float(model.get("layer_norm_eps", 1e-12)),
        gelu=_ACTIVATIONS[activation],  # type: ignore[arg-type]
        # Never past the position table: a longer setting would index beyond it.
        max_length=min(int(sentence.get("max_seq_length") or positions), positions),
        pooling=_pooling(directory),
        query_prompt=prompts.get("query", ""),
        document_prompt=document_prompt,
    )


class BertSentenceEncoder:
    """The model's weights and tokenizer, and :meth:`encode`. Two encodes at once would only
    share the CPU's cores, so callers run one at a time (see shared/embeddings)."""

    def __init__(self, directory: Path, dtype: torch.dtype = torch.float32) -> None:
        self.config = _read_config(directory)
        try:
            tensors = load_file(str(directory / "model.safetensors"))
        except (OSError, SafetensorError) as exc:
            raise UnsupportedModel(f"model.safetensors is needed: {exc}") from exc
        try:
            self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises plain Exception for a missing or bad file
            raise UnsupportedModel(f"tokenizer.json is needed: {exc}") from exc
        # Checkpoints saved from BertModel name weights "embeddings...", from BertFor* "bert.embeddings...".
        self.weights = {name.removeprefix("bert."): tensor.to(dtype) for name, tensor in tensors.items()}
        missing = [name for name in self._names() if name not in self.weights]
        if missing:
            raise UnsupportedModel(f"model.safetensors lacks {', '.join(missing[:3])}")
        self.dtype = dtype
        self.dimension = int(self.weights["embeddings.word_embeddings.weight"].shape[1])
        self.tokenizer.enable_truncation(self.config.max_length)
        self.tokenizer.no_padding()  # we pad each pass to its own longest text

    def _names(self) -> list[str]:
        """Every weight the forward pass reads: a checkpoint missing one is refused at load,
        not at the first text."""
        names = [f"embeddings.{table}_embeddings.weight" for table in ("word", "position", "token_type")]
        norms = ["embeddings.LayerNorm"]
        linears = []
        for i in range(self.config.layers):
            layer = f"encoder.layer.{i}."
            linears += [layer + f"attention.self.{part}" for part in ("query", "key", "value")]
            linears += [
                layer + name for name in ("attention.output.dense", "intermediate.dense", "output.dense")
            ]
            norms += [layer + "attention.output.LayerNorm", layer + "output.LayerNorm"]
        return names + [f"{module}.{p}" for module in norms + linears for p in ("weight", "bias")]

    @torch.inference_mode()
    def encode(self, texts: list[str], *, query: bool = False, pass_size: int = 16) -> torch.Tensor:
        """Unit vectors (float32, one row per text, in order). Texts are sorted by length and
        encoded ``pass_size`` at a time, so each pass pads to similar lengths."""
        prompt = self.config.query_prompt if query else self.config.document_prompt
        encodings = self.tokenizer.encode_batch([prompt + text for text in texts])
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        vectors = torch.empty(len(texts), self.dimension)
        for start in range(0, len(order), pass_size):
            chosen = order[start : start + pass_size]
            vectors[chosen] = self._forward([encodings[i].ids for i in chosen])
        return vectors

    def _forward(self, token_ids: list[list[int]]) -> torch.Tensor:
        longest = max(len(ids) for ids in token_ids)
        ids = torch.tensor([row + [0] * (longest - len(row)) for row in token_ids])
        mask = torch.tensor([[1] * len(row) + [0] * (longest - len(row)) for row in token_ids])
        hidden = self._embed(ids)
        # Padding may not be attended to: an additive mask of the dtype's most negative number,
        # or none when no text is padded (attention runs its faster unmasked kernel).
        blocked = None
        if not bool(mask.all()):
            blocked = torch.zeros(mask.shape, dtype=self.dtype).masked_fill(
                mask == 0, torch.finfo(self.dtype).min
            )
            blocked = blocked[:, None, None, :]
        for layer in range(self.config.layers):
            hidden = self._layer(hidden, blocked, f"encoder.layer.{layer}.")
        hidden = hidden.float()
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=1)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.weights
        positions = w["embeddings.position_embeddings.weight"][: ids.shape[1]]
        summed = (
            w["embeddings.word_embeddings.weight"][ids]
            + positions
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        return self._norm(summed, "embeddings.LayerNorm")

    def _layer(self, hidden: torch.Tensor, blocked: torch.Tensor | None, prefix: str) -> torch.Tensor:
        batch, length, width = hidden.shape
        heads = self.config.heads

        def split(name: str) -> torch.Tensor:  # (batch, heads, length, width / heads)
            projected = self._linear(hidden, prefix + f"attention.self.{name}")
            return projected.view(batch, length, heads, width // heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split("query"), split("key"), split("value"), attn_mask=blocked
        )
        attended = attended.transpose(1, 2).reshape(batch, length, width)
        attention = prefix + "attention.output."
        hidden = self._norm(self._linear(attended, attention + "dense") + hidden, attention + "LayerNorm")
        inner = F.gelu(self._linear(hidden, prefix + "intermediate.dense"), approximate=self.config.gelu)
        return self._norm(self._linear(inner, prefix + "output.dense") + hidden, prefix + "output.LayerNorm")

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.weights[name + ".weight"], self.weights[name + ".bias"])

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        weight, bias = self.weights[name + ".weight"], self.weights[name + ".bias"]
        return F.layer_norm(x, x.shape[-1:], weight, bias, self.config.eps)
