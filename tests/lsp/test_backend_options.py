"""The backend options (model.backend, url, apiKeyEnv, …) and what load_backend gets from them."""

from __future__ import annotations

import pytest

from loopls.engine.backends import BackendConfig, BackendError
from loopls.lsp.options import Options, backend_config, options_to_json, parse_options


def test_defaults_are_the_native_backend() -> None:
    config = backend_config(Options())
    # the server's engine runs in a process of its own (on a CPU), with int8 weights
    assert config == BackendConfig(kind="native", model="loopls-coder-small", device="auto", context_tokens=2048,
                                   engine_process=True, cpu_weights="int8")
    model = options_to_json(Options())["model"]
    assert model == {"name": "loopls-coder-small", "device": "auto", "backend": "native", "url": "", "apiKeyEnv": "",
                     "tokenizer": "", "contextLimit": 0, "timeout": 30.0, "tensorParallelSize": 1,
                     "cpuWeights": "int8"}


def test_openai_options_flow_into_the_backend_config(monkeypatch) -> None:
    monkeypatch.setenv("TEAM_KEY", "s3cret")
    options, warning = parse_options({
        "model": {"backend": "openai", "url": "http://127.0.0.1:8000/v1", "name": "IQuestLab/IQuest-Coder-V1-40B-Loop-Instruct",
                  "apiKeyEnv": "TEAM_KEY", "tokenizer": "/models/iquest", "contextLimit": 32768, "timeout": 5},
        "completion": {"contextTokens": 4096},
    })
    assert warning is None
    config = backend_config(options, model_override=None)
    assert (config.kind, config.url, config.api_key, config.tokenizer) == ("openai", "http://127.0.0.1:8000/v1", "s3cret", "/models/iquest")
    assert (config.model, config.context_limit, config.timeout_s, config.context_tokens) == (
        "IQuestLab/IQuest-Coder-V1-40B-Loop-Instruct", 32768, 5.0, 4096)


def test_a_missing_api_key_variable_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    options, _ = parse_options({"model": {"backend": "openai", "url": "http://127.0.0.1:8000/v1", "apiKeyEnv": "NOT_SET_KEY"}})
    with pytest.raises(BackendError, match="model.apiKeyEnv names NOT_SET_KEY, which is not set"):
        backend_config(options)


def test_vllm_tensor_parallel_size() -> None:
    options, warning = parse_options({"model": {"backend": "vllm", "name": "/models/x", "tensorParallelSize": 4}})
    assert warning is None
    assert backend_config(options).tensor_parallel_size == 4
    assert backend_config(options, model_override="/other").model == "/other"


def test_cpu_weights_flow_into_the_backend_config() -> None:
    options, warning = parse_options({"model": {"device": "cpu", "cpuWeights": "int8"}})
    assert warning is None
    assert backend_config(options).cpu_weights == "int8"
    assert backend_config(Options()).cpu_weights == "int8"  # the server's default on a CPU
    with pytest.raises(BackendError, match="unknown CPU weights 'int4'"):
        BackendConfig(cpu_weights="int4")


@pytest.mark.parametrize("model, words", [
    ({"backend": "remote"}, "model.backend must be one of native, openai, vllm"),
    ({"backend": "openai"}, "model.url must be an http(s) URL"),
    ({"backend": "openai", "url": "ftp://x"}, "model.url must be an http(s) URL"),
    ({"tensorParallelSize": 0}, "model.tensorParallelSize >= 1"),
    ({"timeout": 0}, "model.timeout > 0"),
    ({"cpuWeights": "int4"}, "model.cpuWeights must be one of fp32, int8"),
])
def test_invalid_backend_options_fall_back_with_a_warning(model, words) -> None:
    options, warning = parse_options({"model": model})
    assert options == Options()
    assert words in warning
