"""HTTP routes of the embeddings process: OpenAI's ``POST /v1/embeddings`` and ``GET /v1/models``."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.embeddings.schemas import EmbeddingRequest, EmbeddingResponse, ModelList
from services.embeddings.service import EmbeddingsService


def get_service(request: Request) -> EmbeddingsService:
    return request.app.state.embeddings


Service = Annotated[EmbeddingsService, Depends(get_service)]

router = APIRouter(prefix="/v1", tags=["embeddings"])


@router.post("/embeddings", response_model=EmbeddingResponse)
async def embeddings(body: EmbeddingRequest, service: Service) -> dict:
    texts = [body.input] if isinstance(body.input, str) else body.input
    vectors = await service.embed(texts, body.model)
    words = sum(len(text.split()) for text in texts)  # an estimate: the protocol wants a count
    return {
        "data": [{"index": i, "embedding": vector} for i, vector in enumerate(vectors)],
        "model": service.model,
        "usage": {"prompt_tokens": words, "total_tokens": words},
    }


@router.get("/models", response_model=ModelList)
async def models(service: Service) -> dict:
    return {"data": [{"id": service.model, "dimension": service.dimension, "precision": service.precision}]}
