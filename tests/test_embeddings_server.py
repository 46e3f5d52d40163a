"""The embeddings process of the stack: OpenAI's protocol, the model's own vectors, and
requests from concurrent callers merged into shared forward passes."""

import asyncio
import re

import httpx
import numpy as np

from shared.embeddings import EmbeddingSettings, create_embedder


def counter(metrics: str, name: str) -> float:
    match = re.search(rf"^{name}_total (\S+)$", metrics, re.MULTILINE)
    assert match, name
    return float(match.group(1))


async def test_vectors_match_the_in_process_model_and_errors_use_the_envelope(stack):
    texts = ["The herons nest near the old mill.", "Invoice 2041 for the harbour crane repair."]
    async with httpx.AsyncClient(base_url=stack.embeddings, timeout=30) as client:
        response = await client.post("/v1/embeddings", json={"input": texts, "model": "all-MiniLM-L6-v2"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
        served = np.array([d["embedding"] for d in body["data"]])
        local = np.array(await create_embedder(EmbeddingSettings(embedding_backend="local")).embed(texts))
        assert served.shape == (2, 384)
        assert (np.sum(served * local, axis=1) > 0.999).all()  # same model, same numbers

        wrong = await client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-large"})
        assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "model_not_found"
        empty = await client.post("/v1/embeddings", json={"input": []})
        assert empty.status_code == 422 and empty.json()["error"]["code"] == "validation_error"
        models = (await client.get("/v1/models")).json()["data"]
        assert models[0]["id"] == "all-MiniLM-L6-v2" and models[0]["dimension"] == 384


async def test_concurrent_callers_share_forward_passes(stack):
    async with httpx.AsyncClient(base_url=stack.embeddings, timeout=60) as client:
        before = (await client.get("/metrics")).text
        calls = [
            client.post("/v1/embeddings", json={"input": [f"caller {i} asks about topic {i * 7}"]})
            for i in range(24)
        ]
        responses = await asyncio.gather(*calls)
        assert all(r.status_code == 200 for r in responses)
        after = (await client.get("/metrics")).text
    requests = counter(after, "pai_embedding_requests") - counter(before, "pai_embedding_requests")
    passes = counter(after, "pai_embedding_passes") - counter(before, "pai_embedding_passes")
    assert requests == 24
    assert passes < requests  # merged: fewer passes than callers
