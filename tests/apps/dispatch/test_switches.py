import logging

from apps.dispatch.switches import ENV, PIECES, PRODUCER_PIECES, switched_off


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
