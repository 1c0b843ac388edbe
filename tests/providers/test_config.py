"""Provider settings from the environment and flags, and a package that imports without the
`provider` extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chatroom_async.cli import main as cli_main
from chatroom_async.providers.config import OpenAISettings, ProviderConfigError


def test_flags_win_over_the_environment_and_the_key_stays_hidden() -> None:
    env = {"CHATROOM_ASYNC_OPENAI_MODEL": "glm-4-flash", "OPENAI_BASE_URL": "http://a/v1",
           "CHATROOM_ASYNC_OPENAI_BASE_URL": "http://b/v1", "OPENAI_API_KEY": "sk-secret-1"}
    s = OpenAISettings.from_env(env, base_url="http://c/v1", max_tokens=None)
    assert (s.model, s.base_url, s.api_key, s.max_tokens) == ("glm-4-flash", "http://c/v1",
                                                              "sk-secret-1", None)
    assert OpenAISettings.from_env(env).base_url == "http://b/v1"  # ours before the SDK's
    assert "sk-secret-1" not in repr(s)


@pytest.mark.parametrize(("env", "overrides", "message"), [
    ({}, {}, "no model"),
    ({"CHATROOM_ASYNC_OPENAI_MODEL": "m"}, {"base_url": "ftp://x"}, "base_url"),
    ({"CHATROOM_ASYNC_OPENAI_MODEL": "m"}, {"timeout_s": 0}, "timeout_s"),
    ({"CHATROOM_ASYNC_OPENAI_MODEL": "m"}, {"temprature": 0.5}, "unknown provider setting"),
])
def test_bad_settings_say_what_is_wrong(env: dict[str, str], overrides: dict[str, object],
                                        message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message):
        OpenAISettings.from_env(env, **overrides)


def test_a_missing_key_says_where_to_put_one() -> None:
    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY"):
        OpenAISettings(model="m").require_key()


def test_the_worker_command_refuses_a_provider_without_a_key(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openai")
    for name in ("OPENAI_API_KEY", "CHATROOM_ASYNC_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as caught:
        cli_main(["worker", "--backend", "openai", "--model", "glm-4-flash"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and len(err.strip().splitlines()) == 1 and "API key" in err


def test_the_package_imports_without_the_provider_extra() -> None:
    code = """
import sys
for name in ("openai", "starlette", "uvicorn"):
    sys.modules[name] = None  # as if not installed
import chatroom_async, chatroom_async.providers
from chatroom_async.cli import build_parser
build_parser().parse_args(["sim-server"])
from chatroom_async.providers import OpenAISettings
try:
    from chatroom_async.providers import OpenAIBackend
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'pip install "chatroom_async[provider]"' in done.stdout
