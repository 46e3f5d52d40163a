"""The OpenAI embeddings protocol, as far as this server speaks it."""

from typing import Literal

from pydantic import BaseModel, ConfigDict


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # user, dimensions, ...: accepted, not used

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float"] = "float"


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "pai"
    dimension: int
    precision: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]
