"""A TCP client may choose its source address (so a loopback capture tells the two ends apart)."""

from __future__ import annotations

import pytest

from netlab.errors import AddressError
from netlab.transport import connect, listen


def test_connect_from_a_chosen_source_address() -> None:
    with listen("tcp4://127.0.0.1:0") as listener:
        with connect(listener.address, 5.0, source_host="127.0.0.2") as connection:
            with listener.accept(5.0) as accepted:
                assert "127.0.0.2:" in accepted.peer_address
                assert "127.0.0.2:" in connection.local_address


def test_a_source_address_that_is_not_local_is_one_clear_error() -> None:
    with listen("tcp4://127.0.0.1:0") as listener:
        with pytest.raises(AddressError, match=r"cannot connect from 192\.0\.2\.1 .*e\.g\. 127\.0\.0\.2"):
            connect(listener.address, 5.0, source_host="192.0.2.1")
