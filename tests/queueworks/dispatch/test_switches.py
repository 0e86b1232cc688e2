import logging

from queueworks.dispatch.switches import ENV, PIECES, PRODUCER_PIECES, switched_off


def test_pieces_are_switched_off_by_name():
    assert switched_off({}) == frozenset()
    assert switched_off({ENV: " lean_path, coalesced_acks "}) == {"lean_path", "coalesced_acks"}
    assert switched_off({ENV: ",".join(PIECES)}) == set(PIECES)
    # The producer pieces, read in the publishing process.
    assert switched_off({ENV: "message_slimming,batched_frames"}) == set(PRODUCER_PIECES)


def test_an_unknown_name_is_logged_and_ignored(caplog):
    with caplog.at_level(logging.WARNING):
        assert switched_off({ENV: "lean_path,turbo"}) == {"lean_path"}
    assert "turbo" in caplog.text and "lean_path" in caplog.text


def test_an_unknown_name_is_logged_once_however_often_it_is_read(caplog):
    """The lean strategy reads the switch for every task at each consumer start."""
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert switched_off({ENV: "coalesced_acks,warp"}) == {"coalesced_acks"}
    assert caplog.text.count("warp") == 1
