import pytest

from eowatch.settings import SettingsError, load_settings


def test_defaults_are_embedded_and_local():
    s = load_settings()
    assert (s.bus, s.api_host, s.feeds) == ("embedded", "127.0.0.1",
                                            ("simulated", "simulated-sentinel1"))
    assert s.resolved_store_url.startswith("sqlite:///")
    assert s.model_path.is_file()


def test_environment_and_config_file(monkeypatch, tmp_path):
    config = tmp_path / "eowatch.toml"
    config.write_text('bus = "kafka"\nshards = 64\napi_port = 9000\n')
    monkeypatch.setenv("EOWATCH_CONFIG", str(config))
    monkeypatch.setenv("EOWATCH_API_PORT", "9100")  # the environment wins over the file
    monkeypatch.setenv("EOWATCH_FEEDS", "simulated, sentinel2")
    s = load_settings()
    assert (s.bus, s.shards, s.api_port, s.feeds) == ("kafka", 64, 9100,
                                                      ("simulated", "sentinel2"))


def test_errors_name_the_variable_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("EOWATCH_BUS", "rabbit")
    with pytest.raises(SettingsError, match="EOWATCH_BUS"):
        load_settings()
    monkeypatch.delenv("EOWATCH_BUS")
    with pytest.raises(SettingsError, match="raise shards"):
        load_settings(shards=4, partitions=16)
    monkeypatch.setenv("EOWATCH_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(SettingsError, match="EOWATCH_CONFIG"):
        load_settings()


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.bus = "kafka"
