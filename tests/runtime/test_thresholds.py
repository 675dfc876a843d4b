import pytest

from mesc.runtime.thresholds import parse_threshold_list, per_exit


def test_one_value_or_one_per_exit():
    assert parse_threshold_list("0.8") == [0.8]
    assert parse_threshold_list(" 0.8, 0.85,0 ") == [0.8, 0.85, 0.0]
    assert parse_threshold_list(0.5) == [0.5]  # request parameters may arrive as numbers
    assert per_exit([0.7], ["a", "b", "c"]) == [0.7] * 3
    assert per_exit([0.1, 0.2, 0.3], ["a", "b", "c"]) == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("text, msg", [("high", "expected a number in [0, 1]"), ("", "must be in [0, 1]"),
                                       ("1.5", "must be in [0, 1]"), ("nan", "must be in [0, 1]"),
                                       ("0.2,-1", "must be in [0, 1]")])
def test_bad_lists_say_why(text, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        parse_threshold_list(text)


def test_count_must_match_the_exits():
    with pytest.raises(ValueError, match=r"2 values for 3 exits \(a, b, c\); give one, or one per exit"):
        per_exit([0.1, 0.2], ["a", "b", "c"])
