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


def _cfg(tmp_path, text):
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return config.load(str(p))


def test_units_give_one_inverter_each_on_one_shared_link(tmp_path):
    cfg = _cfg(tmp_path, '[inverter]\nmodbus_rtu = "/dev/ttyS1"\nunits = [1, 2, 5]\n')
    links = cfg.inverter_links()
    assert [(x.ld_inst, x.unit) for x in links] == [("INV1", 1), ("INV2", 2), ("INV3", 5)]
    assert len({x.link for x in links}) == 1


def test_inverter_entries_inherit_from_inverter_and_may_use_their_own_link(tmp_path):
    cfg = _cfg(tmp_path, '[inverter]\nmodbus_rtu = "/dev/ttyS1"\nbaud = 19200\n'
                         '[[inverters]]\nunit = 3\n'
                         '[[inverters]]\nld_inst = "ROOF"\nmodbus_tcp = "10.0.0.9:502"\n')
    a, b = cfg.inverter_links()
    assert (a.ld_inst, a.unit, a.link, a.settings["baud"]) == \
        ("INV1", 3, ("rtu", "/dev/ttyS1"), 19200)
    assert (b.ld_inst, b.link, b.settings["modbus_rtu"]) == \
        ("ROOF", ("tcp", "10.0.0.9:502"), None)


def test_a_single_inverter_keeps_the_configured_logical_device(tmp_path):
    cfg = _cfg(tmp_path, '[inverter]\nmodbus_tcp = "127.0.0.1:502"\n[mms]\nld_inst = "PV"\n')
    assert [x.ld_inst for x in cfg.inverter_links()] == ["PV"]


@pytest.mark.parametrize("text, words", [
    ('[inverter]\nmodbus_rtu = "/dev/ttyS1"\nunits = [1, 1]\n',
     ["units", "distinct", "1..247"]),
    ('[inverter]\nmodbus_rtu = "/dev/ttyS1"\nunits = [0, 2]\n', ["units", "1..247"]),
    ('[inverter]\nmodbus_rtu = "/dev/ttyS1"\n[[inverters]]\nunit = 2\nbuad = 9600\n',
     ["[[inverters]] #1", "'buad'", "known"]),
    ('[inverter]\nmodbus_rtu = "/dev/ttyS1"\n[[inverters]]\nunit = 1\n'
     '[[inverters]]\nunit = 2\nbaud = 19200\n', ["shares /dev/ttyS1", "baud"]),
    ('[inverter]\nmodbus_rtu = "/dev/ttyS1"\n[[inverters]]\nunit = 1\n[[inverters]]\nunit = 1\n',
     ["unit 1", "twice"]),
    ('[inverter]\nmodbus_rtu = "/dev/ttyS1"\nunits = [1, 2]\n[plant]\nld_inst = "INV2"\n',
     ["'INV2'", "plant view"]),
    ('[inverter]\nmodbus_rtu = "/dev/ttyS1"\n[[inverters]]\nunit = 300\n',
     ["[[inverters]] #1 unit", "1 <= value <= 247"]),
    ('[plant]\nw_max = -1.0\n', ["[plant] w_max", "0.0 <= value"]),
    ('[[inverters]]\nunit = 1\n[[inverters]]\nunit = 2\n', ["needs a link"]),
])
def test_bad_multi_inverter_config_names_file_key_and_what_is_allowed(tmp_path, text, words):
    with pytest.raises(config.ConfigError) as exc:
        _cfg(tmp_path, text)
    msg = str(exc.value)
    assert str(tmp_path / "agent.toml") in msg
    for w in words:
        assert w in msg, (w, msg)


def test_the_inverter_has_a_protocol_neutral_name(tmp_path):
    """The core names an inverter by [inverter] name; MMS's ld_inst is only the default."""
    cfg = config.load(None, {"inverter.modbus_tcp": "127.0.0.1:1", "inverter.name": "PV1",
                             "mms.ld_inst": "GW7", "agent.state_dir": str(tmp_path)})
    assert [link.name for link in cfg.inverter_links()] == ["PV1"]
    legacy = config.load(None, {"inverter.modbus_tcp": "127.0.0.1:1", "mms.ld_inst": "GW7"})
    assert legacy.inverter_links()[0].name == "GW7"
    with pytest.raises(config.ConfigError, match="name"):
        config.load(None, {"inverter.modbus_tcp": "127.0.0.1:1", "inverter.name": "bad name"})
