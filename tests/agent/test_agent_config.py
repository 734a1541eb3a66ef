"""Configuration from the environment: defaults, the 2016 variable, and a stop naming any bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import __main__ as agent_main
from agent.config import ConfigError, load_config

SERVER_URL = "http://127.0.0.1:5001"


def test_defaults():
    config = load_config({"ECS_ID_MAPPER_SERVER_URL": SERVER_URL + "/"})
    assert config.server_url == SERVER_URL
    assert config.token == ""
    assert config.ecs_agent_url == "http://127.0.0.1:51678"
    assert config.imds_url == "http://169.254.169.254"
    assert (config.poll_interval, config.resync_interval) == (5.0, 600.0)
    assert config.spool_dir is None
    assert config.log_level == "INFO"


def test_every_variable(tmp_path):
    config = load_config({
        "ECS_ID_MAPPER_SERVER_URL": "https://mapper.example",
        "ECS_ID_MAPPER_TOKEN": "t0ken",
        "ECS_ID_MAPPER_ECS_AGENT_URL": "http://127.0.0.1:51000",
        "ECS_ID_MAPPER_IMDS_URL": "http://127.0.0.1:51001",
        "ECS_ID_MAPPER_POLL_INTERVAL": "0.5",
        "ECS_ID_MAPPER_RESYNC_INTERVAL": "60",
        "ECS_ID_MAPPER_SPOOL_DIR": str(tmp_path / "spool"),
        "ECS_ID_MAPPER_LOG_LEVEL": "debug",
    })  # fmt: skip
    assert config.server_url == "https://mapper.example"
    assert config.token == "t0ken"
    assert config.ecs_agent_url == "http://127.0.0.1:51000"
    assert config.imds_url == "http://127.0.0.1:51001"
    assert (config.poll_interval, config.resync_interval) == (0.5, 60.0)
    assert config.spool_dir == tmp_path / "spool" and config.spool_dir.is_dir()
    assert config.log_level == "DEBUG"


def test_the_2016_endpoint_variable_is_accepted_and_the_new_one_wins():
    assert load_config({"endpoint": SERVER_URL}).server_url == SERVER_URL
    both = {"endpoint": "http://127.0.0.1:1", "ECS_ID_MAPPER_SERVER_URL": SERVER_URL}
    assert load_config(both).server_url == SERVER_URL
    with pytest.raises(ConfigError, match=r"^endpoint: "):
        load_config({"endpoint": "mapper:5001"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ECS_ID_MAPPER_SERVER_URL", ""),
        ("ECS_ID_MAPPER_SERVER_URL", "127.0.0.1:5001"),
        ("ECS_ID_MAPPER_SERVER_URL", "ftp://mapper.example"),
        ("ECS_ID_MAPPER_ECS_AGENT_URL", "localhost"),
        ("ECS_ID_MAPPER_IMDS_URL", "http://"),
        ("ECS_ID_MAPPER_POLL_INTERVAL", "five"),
        ("ECS_ID_MAPPER_POLL_INTERVAL", "0"),
        ("ECS_ID_MAPPER_POLL_INTERVAL", "-5"),
        ("ECS_ID_MAPPER_POLL_INTERVAL", "nan"),
        ("ECS_ID_MAPPER_RESYNC_INTERVAL", "inf"),
        ("ECS_ID_MAPPER_LOG_LEVEL", "chatty"),
        ("ECS_ID_MAPPER_LOG_FORMAT", "xml"),
        ("ECS_ID_MAPPER_TOKEN", "two\nlines"),
        ("ECS_ID_MAPPER_TOKEN", "with space"),
    ],
)
def test_a_bad_value_names_its_variable(name, value):
    environ = {"ECS_ID_MAPPER_SERVER_URL": SERVER_URL, name: value}
    with pytest.raises(ConfigError, match=rf"^{name}: "):
        load_config(environ)


def test_a_spool_dir_that_cannot_be_made_names_its_variable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_SPOOL_DIR: "):
        load_config({"ECS_ID_MAPPER_SERVER_URL": SERVER_URL, "ECS_ID_MAPPER_SPOOL_DIR": str(blocker / "spool")})


def test_main_stops_with_status_2_and_the_variable_name(monkeypatch, capsys):
    monkeypatch.setenv("ECS_ID_MAPPER_SERVER_URL", SERVER_URL)
    monkeypatch.setenv("ECS_ID_MAPPER_POLL_INTERVAL", "soon")
    assert agent_main.main() == 2
    assert "ECS_ID_MAPPER_POLL_INTERVAL" in capsys.readouterr().err


def test_main_without_a_server_url_says_which_variable_is_missing(capsys):
    assert agent_main.main() == 2
    assert "ECS_ID_MAPPER_SERVER_URL: required" in capsys.readouterr().err


def test_the_console_script_is_main():
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert 'ecs-id-mapper-agent = "agent.__main__:main"' in pyproject
