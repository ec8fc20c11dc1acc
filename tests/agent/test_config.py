"""One config schema, fail fast: file, key and allowed range in every message."""

import subprocess
import sys

import pytest

from inverter_agent import config


def _write(tmp_path, text):
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return str(p)


def test_defaults_load_and_flags_override_the_file(tmp_path):
    path = _write(tmp_path, '[inverter]\nmodbus_tcp = "127.0.0.1:1502"\nunit = 3\n'
                            '[agent]\npoll_period = 0.5\n')
    cfg = config.load(path, {"inverter.unit": 7})
    assert cfg["inverter.unit"] == 7 and cfg.sources["inverter.unit"] == "command line"
    assert cfg["agent.poll_period"] == 0.5 and cfg.sources["agent.poll_period"] == path
    assert cfg.transaction_timeout == pytest.approx(0.2)  # 40 % of the poll period


@pytest.mark.parametrize("text,words", [
    ("[inverter]\nunti = 3\n", ["unknown key 'unti'", "probably a typo", "[inverter]"]),
    ("[invertor]\n", ["unknown section [invertor]"]),
    ("[inverter]\nunit = 300\n", ["[inverter] unit", "300", "1 <= value <= 247"]),
    ("[inverter]\nbaud = 9601\n", ["[inverter] baud", "9600"]),
    ("[inverter]\nmodbus_tcp = \"host\"\n", ["modbus_tcp", "HOST:PORT"]),
    ("[agent]\npoll_period = \"fast\"\n", ["poll_period", "expected"]),
    ("[mms]\nied_name = \"1 bad\"\n", ["ied_name", "identifier"]),
    ("[functions]\nprofile = \"rule22\"\n", ["profile", "rule21"]),
    ("[inverter\n", ["not valid TOML"]),
])
def test_bad_config_names_file_key_and_allowed_range(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    msg = str(info.value)
    assert path in msg
    for w in words:
        assert w in msg, msg


def test_a_bad_flag_fails_like_a_bad_file_key():
    with pytest.raises(config.ConfigError, match="command line --mms-port.*1 <= value <= 65535"):
        config.load(None, {"mms.port": 70000})


def test_a_dead_link_must_show_within_three_poll_periods():
    with pytest.raises(config.ConfigError, match="three poll periods"):
        config.load(None, {"inverter.timeout": 5.0, "agent.poll_period": 1.0})


def test_the_command_stops_with_exit_2_and_the_message(tmp_path):
    path = _write(tmp_path, "[inverter]\nparity = \"X\"\n")
    r = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "run", "--config", path,
                        "--modbus-tcp", "127.0.0.1:1"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    assert f"{path}: [inverter] parity" in r.stderr and "'N'" in r.stderr
