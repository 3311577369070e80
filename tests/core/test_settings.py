"""One settings mechanism, one precedence: flags > environment > TOML file > defaults, for the
hub's own settings and for every plugin's (``[plugin.NAME]``, ``FHIRHUB_NAME_*``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirhub.core.settings import PluginSettings, Settings, load_settings, plugin_settings


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("FHIRHUB_PORT", "FHIRHUB_BASE_URL", "FHIRHUB_CONFIG", "FHIRHUB_WARDS_REFRESH_S"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "fhirhub.toml"
    path.write_text(
        "[fhirhub]\n"
        "port = 9000\n"
        'base_url = "https://toml.example/fhir"\n'
        'default_tenant = "org-toml"\n\n'
        "[plugin.wards]\n"
        "refresh_s = 30\n"
        'names = ["A1", "B2"]\n'
    )
    return path


def test_the_hub_takes_flags_over_environment_over_toml_over_defaults(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(config).port == 9000  # TOML over the default 8080
    monkeypatch.setenv("FHIRHUB_PORT", "9100")
    assert load_settings(config).port == 9100  # environment over TOML
    assert load_settings(config, port=9200).port == 9200  # a flag over the environment
    assert load_settings(config, port=None).port == 9100  # a flag not given changes nothing
    settings = load_settings(config)
    assert settings.base_url == "https://toml.example/fhir"
    assert settings.default_tenant == "org-toml"
    assert settings.rate_limit == Settings.model_fields["rate_limit"].default


def test_the_config_file_comes_from_fhirhub_config(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path / "..")  # no fhirhub.toml in the working directory
    monkeypatch.setenv("FHIRHUB_CONFIG", str(config))
    assert load_settings().port == 9000


class WardSettings(PluginSettings):
    refresh_s: int = 60
    names: list[str] = []
    colour: str = "blue"


def test_plugin_settings_have_the_same_precedence(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_settings = load_settings(config)
    wards = plugin_settings(hub_settings, "wards", WardSettings)
    assert (wards.refresh_s, wards.names, wards.colour) == (30, ["A1", "B2"], "blue")
    assert isinstance(wards, WardSettings)
    monkeypatch.setenv("FHIRHUB_WARDS_REFRESH_S", "5")
    assert plugin_settings(hub_settings, "wards", WardSettings).refresh_s == 5
    assert plugin_settings(hub_settings, "wards", WardSettings, refresh_s=1).refresh_s == 1


def test_a_plugin_name_with_a_dash_reads_underscored_variables(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIRHUB_BED_BOARD_COLOUR", "green")
    assert plugin_settings(load_settings(config), "bed-board", WardSettings).colour == "green"


def test_a_bad_value_is_refused_with_its_name(config: Path) -> None:
    config.write_text("[plugin.wards]\nrefresh_s = 'often'\n")
    with pytest.raises(ValueError, match="refresh_s"):
        plugin_settings(load_settings(config), "wards", WardSettings)


def test_each_process_keeps_db_pool_size_idle_postgresql_connections(
    postgres_url: str, tmp_path: Path
) -> None:
    """Every API process and worker shares the server's ``max_connections``; the pool keeps
    only ``db_pool_size`` of them open while idle."""
    from fhirhub.core.hub import build_hub

    hub = build_hub(Settings(db=postgres_url, data_dir=tmp_path, listeners=False, db_pool_size=3))
    try:
        assert hub.store.engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        hub.store.engine.dispose()
