from pathlib import Path

import pytest

from rag.config import Settings, bundled_model_path
from rag.errors import ConfigError


def test_environment_then_overrides(tmp_path):
    env = {"RAG_INDEX": str(tmp_path / "env"), "RAG_TOP_K": "7", "RAG_MODEL": "/m/a.gguf"}
    settings = Settings.load({"index_dir": tmp_path / "flag", "model": None}, environ=env)
    assert settings.index_dir == tmp_path / "flag"  # a flag beats the environment
    assert settings.top_k == 7
    assert settings.model_path == "/m/a.gguf"


def test_bad_values_name_the_setting_and_the_fix():
    with pytest.raises(ConfigError, match="top_k has an invalid value 0; use a number above 0"):
        Settings(top_k=0)
    with pytest.raises(ConfigError, match="RAG_TOP_K='many'"):
        Settings.load(environ={"RAG_TOP_K": "many"})


def test_bundled_model_is_found_without_importing_its_package():
    path = Path(bundled_model_path())
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
