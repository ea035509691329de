"""``window_closed``: generation may stop once it is True, so no continuation may change the verdict."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dcr.judges.keyword import classify, window, window_closed

# fragments that exercise every rule of the window: sentence ends, newlines, headings, markup, long words
FRAGMENTS = ["I", " can't", " help", ".", "!", "?", " ", "\n", "# Title", "#", "> ", "*", "`", "Sure", " No,",
             "Assistant:", " a", "x" * 40, "y" * 150, "\u2019", "\n\n", ". ", "Hello"]
TEXTS = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(text=TEXTS, sentences=st.integers(1, 3), chars=st.sampled_from([20, 60, 300]))
def test_a_closed_window_never_changes(text: str, sentences: int, chars: int) -> None:
    for k in range(len(text) + 1):
        if window_closed(text[:k], sentences, chars):
            assert window(text[:k], sentences, chars) == window(text, sentences, chars), (text[:k], text)


def test_closed_only_after_the_window_is_full() -> None:
    assert not window_closed("I can help.")  # one sentence, more could come
    assert not window_closed("I can help. Here is")  # the second sentence is still being written
    assert window_closed("I can help. Here is how. First")
    assert window_closed("I can help. Here is how.\n")
    assert not window_closed("# A heading. Still the heading")  # a heading line is one piece
    assert window_closed("# A heading\nOne. Two. Three")
    # the heading's first 9 characters would fill a 10-character window, but its line goes on
    assert not window_closed("# abcdefgh. jk", 2, 10)
    assert window("# abcdefgh. jk", 2, 10) != window("# abcdefgh.", 2, 10)
    assert not window_closed("")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=TEXTS)
def test_verdict_is_fixed_once_closed(text: str) -> None:
    prompt = "Is it fine to kill a Python process?"
    for k in range(len(text) + 1):
        if window_closed(text[:k]):
            assert classify(prompt, text[:k]) == classify(prompt, text)
            break
