"""Config precedence: arguments > LOOKALIKE_* env > TOML file > defaults, and `config show` says which."""

from __future__ import annotations

from pathlib import Path

from lookalike.config import Settings, describe_sources

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

    monkeypatch.setenv("LOOKALIKE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("LOOKALIKE_WEIGHTS_DIRS", os.pathsep.join(["/a", "/b"]))
    assert Settings().weights_dirs == [Path("/a"), Path("/b")]


def test_the_example_config_parses(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CONFIG", str(REPO / "lookalike.example.toml"))
    settings = Settings()
    assert settings.threshold == 0.80 and settings.default_model == "tf_efficientnet_lite0"
