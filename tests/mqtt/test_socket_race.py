"""A socket callback that runs after its socket closed is one line, not a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from graylogic_supervisor.mqtt.socket_race import quiet_closed_socket_races


async def test_a_writer_added_for_a_closed_socket_is_one_line_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="graylogic_supervisor.mqtt.socket_race")
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    quiet_closed_socket_races(loop)
    try:
        sock = socket.socket()
        fd = sock.fileno()
        sock.close()  # what a killed broker does to the link's socket
        loop.call_soon(loop.add_writer, fd, lambda: None)
        await asyncio.sleep(0.01)
        loop.call_soon(int, "not a number")  # any other error still goes to asyncio's handler
        await asyncio.sleep(0.01)
    finally:
        loop.set_exception_handler(previous)
    race = [r for r in caplog.records if "after its MQTT socket closed" in r.getMessage()]
    assert len(race) == 1 and race[0].levelno == logging.INFO and race[0].exc_info is None
    others = [r for r in caplog.records if r.name == "asyncio"]
    assert len(others) == 1 and "ValueError" in repr(others[0].exc_info)
