"""Settings of the assistant service and its worker (all ``PAI_``-prefixed)."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr

from shared.config import CommonSettings, service_database_url
from shared.registry import BY_NAME

LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct"


class AssistantSettings(CommonSettings):
    assistant_database_url: str | None = Field(None, validation_alias="PAI_ASSISTANT_DATABASE_URL")

    # Retrieval: how many passages each source service returns, how many reach the model, how
    # long a source may take before the answer goes on without it.
    search_k: int = 12
    max_sources: int = 8
    source_timeout_seconds: float = 10.0
    # A passage counts as relevant when its cosine similarity to the question reaches this, or
    # when it contains at least half the question's content words (see retrieval.is_relevant).
    min_similarity: float = 0.3
    # Earlier turns of a conversation given to the model (and used to rewrite a follow-up).
    history_turns: int = 3

    # The language model: `local` (the llama.cpp server `make run` starts), `openai` (any
    # OpenAI-compatible /chat/completions) or `none` (extractive answers, no generation).
    llm_backend: Literal["local", "openai", "none"] = "local"
    llm_base_url: str | None = None  # local: the llm service's URL + /v1
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None  # local: the bundled model's name
    # The model's real context window in tokens: the prompt (sources, history, question) is
    # packed to fit it with room for the answer, never cut off by the server.
    llm_context_tokens: int = 4096
    llm_max_answer_tokens: int = 400
    llm_temperature: float = 0.2
    llm_connect_timeout_seconds: float = 5.0
    llm_read_timeout_seconds: float = 60.0  # longest silence between two streamed tokens
    llm_max_attempts: int = 3  # before the first token: connection errors, 429 and 5xx
    llm_retry_base_seconds: float = 0.5
    llm_retry_max_seconds: float = 10.0

    # Answers being written at once per user; beyond it 429 with Retry-After.
    max_concurrent_answers: int = 2
    # A slot whose holder died is given back after this long.
    answer_slot_seconds: int = 900
    # Server-sent events: a comment at least this often while retrieval or the model is slow.
    heartbeat_seconds: float = 10.0

    @property
    def service_database_url(self) -> str:
        return service_database_url(self.database_url, "pai_assistant", self.assistant_database_url)

    @property
    def documents_url(self) -> str:
        return BY_NAME["documents"].url()

    @property
    def mail_url(self) -> str:
        return BY_NAME["mail"].url()

    @property
    def chat_base_url(self) -> str:
        if self.llm_base_url:
            return self.llm_base_url.rstrip("/")
        if self.llm_backend == "openai":
            raise ValueError("PAI_LLM_BASE_URL is required with PAI_LLM_BACKEND=openai")
        return BY_NAME["llm"].url() + "/v1"

    @property
    def chat_model(self) -> str:
        if self.llm_model:
            return self.llm_model
        if self.llm_backend == "openai":
            raise ValueError("PAI_LLM_MODEL is required with PAI_LLM_BACKEND=openai")
        return LOCAL_MODEL_NAME


@lru_cache
def get_settings() -> AssistantSettings:
    return AssistantSettings()
