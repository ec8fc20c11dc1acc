"""``inverter-agent check-config``: every error at once, each with its file, key and
allowed range, the closest known key for a typo; exit 0 when clean. File keys (TLS,
[ieee2030_5]) name their file and key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from inverter_agent import config as config_mod
from inverter_agent.security.config import security_from_config


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "INVERTER_AGENT_CONFIG_DIR": str(tmp_path / "no-etc")}
    return subprocess.run([sys.executable, "-m", "inverter_agent.cli", "check-config", *args],
                          capture_output=True, text=True, timeout=60, env=env)


BAD = """
[inverter]
unti = 3
baud = 9601
modbus_tcp = "127.0.0.1:502"

[agent]
poll_period = 99.0

[securty]
tls_cert = "x"

[[inverters]]
ld_inst = "A"
retires = 2
"""


def test_every_error_at_once_with_file_key_range_and_closest_key(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(BAD)
    done = _run(tmp_path, "--config", str(path))
    assert done.returncode == 1
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith(str(path))]
    assert len(lines) == 5, done.stderr
    text = "\n".join(lines)
    assert "[inverter] unknown key 'unti'" in text and "did you mean 'unit'?" in text
    assert "[inverter] baud: 9601 is not allowed; allowed: one of 1200" in text
    assert "[agent] poll_period: 99.0 is out of range; allowed: 'auto' or 0.05 <= value " \
           "<= 60.0" in text
    assert "unknown section [securty]" in text and "did you mean 'security'?" in text
    assert "[[inverters]] #1 unknown key 'retires'" in text and "did you mean 'retries'?" in text
    assert "5 error(s)" in done.stderr


def test_a_clean_config_and_board_pass(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[inverter]\nmodbus_tcp = "127.0.0.1:502"\n')
    done = _run(tmp_path, "--config", str(path), "--board", "raspberry-pi-rs485-hat")
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_the_board_file_is_checked_too(tmp_path):
    board = tmp_path / "myboard.toml"
    board.write_text('[inverter]\nbuad = 9600\n')
    done = _run(tmp_path, "--board", str(board))
    assert done.returncode == 1 and f"{board}: [inverter] unknown key 'buad'" in done.stderr


def test_missing_files_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(f'[security]\ntls_cert = "{tmp_path}/dev.pem"\ntls_key = "{tmp_path}/k"\n'
                    f'tls_ca = ["{tmp_path}/ca.pem"]\n'
                    f'[ieee2030_5]\nserver = "https://utility.example"\n'
                    f'cert = "{tmp_path}/u.pem"\nkey = "{tmp_path}/u.key"\n'
                    f'ca = "{tmp_path}/uca.pem"\n')
    done = _run(tmp_path, "--config", str(path))
    assert done.returncode == 1
    for key, f in (("[security] tls_cert", "dev.pem"), ("[security] tls_ca", "ca.pem"),
                   ("[ieee2030_5] cert", "u.pem"), ("[ieee2030_5] ca", "uca.pem")):
        assert f"{path}: {key}: {tmp_path}/{f}: no such file" in done.stderr, done.stderr
    # the gateway's own start says the same, not a bare path
    cfg = config_mod.load(str(path), {"agent.state_dir": str(tmp_path / "state")})
    with pytest.raises(config_mod.ConfigError) as err:
        security_from_config(cfg)
    assert f"{path}: [security] tls_key: {tmp_path}/k: no such file" in str(err.value)
    from inverter_agent.adapters.ieee2030_5.client import ClientSettings
    with pytest.raises(config_mod.ConfigError) as err:
        ClientSettings.from_config(cfg)
    assert f"{path}: [ieee2030_5] key: {tmp_path}/u.key: no such file" in str(err.value)


def test_an_unusable_ieee2030_5_file_names_its_key(tmp_path):
    for name in ("u.pem", "u.key", "uca.pem"):
        (tmp_path / name).write_text("not PEM\n")
    path = tmp_path / "agent.toml"
    path.write_text(f'[ieee2030_5]\nserver = "https://utility.example"\n'
                    f'cert = "{tmp_path}/u.pem"\nkey = "{tmp_path}/u.key"\n'
                    f'ca = "{tmp_path}/uca.pem"\n')
    from inverter_agent.adapters.ieee2030_5.client import ClientSettings
    with pytest.raises(config_mod.ConfigError) as err:
        ClientSettings.from_config(config_mod.load(str(path)))
    assert str(err.value).startswith(f"{path}: [ieee2030_5] ca ({tmp_path}/uca.pem): ")


def test_run_reports_every_error_too(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(BAD)
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.load(str(path))
    assert len(err.value.errors) == 5 and str(err.value).startswith("5 errors:")
