"""The throughput bench's breakdown (bench/throughput.py ``Probe``), checked on hand-built request streams."""
import pytest

from bench.throughput import Probe


def test_the_reusable_share_counts_whole_blocks_an_earlier_request_already_had():
    probe = Probe()
    # (start, end, body, completions); tokens are characters, blocks of 4; listed out of start order on purpose
    probe.requests = [(2.0, 9.0, {"prompt": "abcdefghijkl"}, []),       # 11 may hit: blocks abcd, abcdefgh (8)
                      (1.0, 9.0, {"prompt": "abcdefghij"}, ["klmnop"]),  # first: nothing seen (0 of 10)
                      (3.0, 9.0, {"prompt": "abcdefghijklmnopq"}, []),   # 16 may hit: all four, two from the completion
                      (4.0, 9.0, {"prompt": "xbcdefgh"}, []),            # first block differs: 0
                      (5.0, 9.0, {"prompt": "abcdefghijklmnopq"}, None)]  # failed: no answer, not counted
    assert probe.reusable(list, 4) == pytest.approx((0 + 8 + 16 + 0) / (10 + 12 + 17 + 8))


def test_the_last_prompt_token_is_never_counted_as_reusable():
    probe = Probe()
    probe.requests = [(1.0, 2.0, {"prompt": "abcdefgh"}, []),         # the same 8 tokens twice: 4 of the second
                      (2.0, 3.0, {"prompt": "abcdefgh"}, [])]
    assert probe.reusable(list, 4) == pytest.approx(4 / 16)
