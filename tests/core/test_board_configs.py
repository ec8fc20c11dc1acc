"""Every file in board-configs/ loads through the one config schema."""

import pathlib

import pytest

from inverter_agent import config

FILES = sorted((pathlib.Path(__file__).resolve().parents[2] / "board-configs").glob("*.toml"))


def test_there_are_board_files():
    assert FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_board_file_loads(path):
    cfg = config.load(str(path))
    assert cfg["inverter.modbus_tcp"] or cfg["inverter.modbus_rtu"]


def test_board_is_the_lowest_layer_and_a_flag_link_replaces_its_link(tmp_path):
    cfg = config.load(None, {"inverter.modbus_tcp": "127.0.0.1:1502"}, board="usb-rs485")
    assert cfg["inverter.modbus_tcp"] == "127.0.0.1:1502" and cfg["inverter.modbus_rtu"] is None
    assert cfg["inverter.inter_frame_delay"] == 0.02  # the rest of the board stays
    conf = tmp_path / "agent.toml"
    conf.write_text('[inverter]\nbaud = 19200\n')
    cfg = config.load(str(conf), board="raspberry-pi-rs485-hat")
    assert cfg["inverter.baud"] == 19200 and cfg["inverter.rs485"] == "kernel"
    assert cfg.sources["inverter.baud"] == str(conf)


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(config.ConfigError, match="known: .*usb-rs485"):
        config.load(None, board="raspberry-pi-9")


def test_a_bad_board_file_names_itself_the_key_and_the_range(tmp_path):
    bad = tmp_path / "myboard.toml"
    bad.write_text('[inverter]\nrs485 = "rts"\n')
    with pytest.raises(config.ConfigError) as info:
        config.load(None, board=str(bad))
    assert str(bad) in str(info.value) and "rs485" in str(info.value)
    assert "'none', 'kernel'" in str(info.value)
