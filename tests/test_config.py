"""Config precedence: arguments > LOOKALIKE_* env > TOML file > defaults, and `config show` says which."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.config import ConfigWarning, Settings, config_file_in_force, describe_sources
from lookalike.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_toml_then_env_then_defaults(tmp_path, monkeypatch):
    config = tmp_path / "lookalike.toml"
    config.write_text('threshold = 0.9\nport = 9000\n[model_thresholds]\nmobilenetv2_100 = 0.85\n')
    monkeypatch.setenv("LOOKALIKE_CONFIG", str(config))
    monkeypatch.setenv("LOOKALIKE_PORT", "9100")
    settings = Settings()
    assert settings.threshold == 0.9 and settings.port == 9100
    assert settings.threshold_for("mobilenetv2_100") == 0.85 and settings.threshold_for("resnet18") == 0.9
    sources = {name: source for name, _, source in describe_sources(settings)}
    assert sources["threshold"] == f"file {config}"
    assert sources["port"] == "env LOOKALIKE_PORT"
    assert sources["default_model"] == "default"


def test_weights_dirs_from_env_use_the_path_separator(monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("LOOKALIKE_CONFIG", "none")
    monkeypatch.setenv("LOOKALIKE_WEIGHTS_DIRS", os.pathsep.join(["/a", "/b"]))
    assert Settings().weights_dirs == [Path("/a"), Path("/b")]


def test_the_example_config_parses(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CONFIG", str(REPO / "lookalike.example.toml"))
    settings = Settings()
    assert settings.threshold == 0.80 and settings.default_model == "tf_efficientnet_lite0"


# --- mistakes: each names the setting or file and the fix (the messages are the interface) ---------------


def test_a_bad_env_value_names_the_variable_and_the_setting(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CONFIG", "none")
    monkeypatch.setenv("LOOKALIKE_THRESHOLD", "abc")
    with pytest.raises(ConfigError) as caught:
        Settings()
    message = caught.value.message
    assert "LOOKALIKE_THRESHOLD" in message and "'abc'" in message and "valid number" in message
    assert "threshold:" in message and "default 0.8" in message
    assert len(message.splitlines()) <= 6


def test_a_bad_file_value_names_the_file(tmp_path, monkeypatch):
    config = tmp_path / "lookalike.toml"
    config.write_text("port = 70000\n")
    monkeypatch.setenv("LOOKALIKE_CONFIG", str(config))
    with pytest.raises(ConfigError, match=f"port = 70000 \\(from config file {config}\\)"):
        Settings()


def test_a_missing_config_file_named_explicitly_is_an_error(tmp_path, monkeypatch):
    missing = tmp_path / "missing.toml"
    monkeypatch.setenv("LOOKALIKE_CONFIG", str(missing))
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert f"config file {missing} (from LOOKALIKE_CONFIG) does not exist" in caught.value.message
    assert "LOOKALIKE_CONFIG=none" in caught.value.message


def test_config_none_reads_no_file(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CONFIG", "none")
    assert config_file_in_force() is None and Settings().threshold == 0.80


def test_broken_toml_names_the_file_line_and_column(tmp_path, monkeypatch):
    config = tmp_path / "lookalike.toml"
    config.write_text("threshold = 0.9\nport = 80x\n")
    monkeypatch.setenv("LOOKALIKE_CONFIG", str(config))
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert f"config file {config} is not valid TOML" in caught.value.message
    assert "line 2, column" in caught.value.message


def test_a_misspelt_key_warns_with_the_closest_name(tmp_path, monkeypatch):
    config = tmp_path / "lookalike.toml"
    config.write_text("treshold = 0.9\n")
    monkeypatch.setenv("LOOKALIKE_CONFIG", str(config))
    with pytest.warns(ConfigWarning, match="unknown setting 'treshold' is ignored; did you mean 'threshold'"):
        settings = Settings()
    assert settings.threshold == 0.80


def test_default_model_is_checked_against_the_model_table(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CONFIG", "none")
    monkeypatch.setenv("LOOKALIKE_DEFAULT_MODEL", "resnet999")
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert "unknown model 'resnet999'" in caught.value.message and "LOOKALIKE_DEFAULT_MODEL" in caught.value.message
    monkeypatch.setenv("LOOKALIKE_DEFAULT_MODEL", "efficientnet_lite0")  # an alias: stored as the canonical name
    assert Settings().default_model == "tf_efficientnet_lite0"


def test_weights_dirs_follow_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CONFIG", "none")
    monkeypatch.setenv("LOOKALIKE_CACHE_DIR", str(tmp_path / "cache"))
    assert Settings().weights_dirs == [tmp_path / "cache" / "weights"]
    assert Settings(weights_dirs=[tmp_path / "w"]).weights_dirs == [tmp_path / "w"]


def test_reading_settings_stays_light():
    """Checking default_model reads the model table, never torch or timm (the server and CLI start fast)."""
    import subprocess
    import sys

    code = ("import sys; from lookalike.config import Settings; Settings(); "
            "print('torch' in sys.modules, 'timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "LOOKALIKE_CONFIG": "none"})
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_a_list_setting_that_is_not_json_says_the_format(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CONFIG", "none")
    monkeypatch.setenv("LOOKALIKE_ALLOWED_INPUT_SIZES", "224,240")
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert caught.value.message.startswith(
        "setting allowed_input_sizes: LOOKALIKE_ALLOWED_INPUT_SIZES='224,240' cannot be parsed")
    assert "LOOKALIKE_ALLOWED_INPUT_SIZES='[224, 240, 260, 416, 512]'" in caught.value.message
