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
