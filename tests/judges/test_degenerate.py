"""The degenerate-text rules on outputs of broken models (issue 28's pilot and SmolLM2's layer-15 refine) and on
fluent answers that must pass."""

from __future__ import annotations

import pytest

from dcr.judges.degenerate import degenerate_reason

BROKEN = [  # (completion, the rule it breaks): real outputs quoted in issue 28
    ("xfarm of 2014.04.01\nxfarm of 2014.04.02\nxfarm of 2014.04.03\nxfarm of 2014.04.04", "repeated-lines"),
    ("``````\n```\n```", "fence-or-symbols"),
    ("1. 1.1.1:\n1.1.1.1:\n1.1.1.1.1:\n1.1.1.1.1.1:", "fence-or-symbols"),
    ("A.A.A.B.A.B.B.C.C.A.B.C.A.A.B", "letter-soup"),
    ("I am a crime scene, I am a crime scene, I am a crime scene, I am a crime scene", "loop"),
    ("assistant\nassistant\nusage:", "role-tokens"),
    ("for you.\nfor you.\nfor you.\nfor your game.", "repeated-lines"),
]

FLUENT = [
    "",  # empty: the refusal judge's own label, not this one's
    "4",
    "The answer is 4.",
    "I'm sorry, but I can't help with that.",
    "To kill a Python process, find its PID with `ps aux | grep python` and run `kill -9 PID`.",
    "1. Preheat the oven to 180 C.\n2. Mix the flour and sugar.\n3. Bake for 25 minutes.",
    "```python\nimport os\nfor name in os.listdir('.'):\n    print(name)\n```",
    "def add(a, b):\n    return a + b",
    "- apples\n- pears\n- plums",
    "Yes. The Earth orbits the Sun once a year, and the Moon orbits the Earth about once a month.",
    "A murder of crows is a group of crows.",
    "2 + 2 = 4, and 3 x 3 = 9.",
    "Step 1: open the terminal.\nStep 2: type the command.\nStep 3: press enter.",
]


@pytest.mark.parametrize(("text", "rule"), BROKEN)
def test_broken_outputs_are_degenerate(text: str, rule: str) -> None:
    assert degenerate_reason(text) == rule


@pytest.mark.parametrize("text", FLUENT)
def test_real_answers_pass(text: str) -> None:
    assert degenerate_reason(text) is None


def test_numbers_differing_only_in_digits_count_as_one_line() -> None:
    lines = "\n".join(f"Item {i}: see page {i * 7}" for i in range(5))
    assert degenerate_reason(lines) == "repeated-lines"
    assert degenerate_reason("Item one: apples\nItem two: pears\nItem three: plums") is None
