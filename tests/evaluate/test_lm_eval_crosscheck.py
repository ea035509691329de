"""Optional cross-check against lm-evaluation-harness (skipped when ``lm_eval`` is not importable).

Checks (1) that our contexts and option continuations are what lm-eval's task templates render for the same
rows (ARC-Easy, OpenBookQA, PIQA, MMLU), and (2) that our option log-likelihoods equal lm-eval's
``HFLM.loglikelihood`` on a tiny HF model. To run it: ``pip install lm-eval`` (or put it on PYTHONPATH).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness not installed; pip install lm-eval to "
                                                "cross-check the multiple-choice scorer against it")

from dcr.evaluate.general import load_general, score_items  # noqa: E402

TASKS = Path(lm_eval.__file__).parent / "tasks"


def _render(template: str, doc: dict) -> str:
    from lm_eval.utils import apply_template

    if "{{" not in template:  # a bare field name, e.g. ``question_stem``
        return str(doc[template])
    return apply_template(template, doc)


def _task(rel: str) -> dict:
    return yaml.safe_load((TASKS / rel).read_text())


def test_contexts_match_lm_eval_templates(data_dir: Path) -> None:
    arc = _task("arc/arc_easy.yaml")
    row = json.loads((data_dir / "arc" / "arc_easy_test.jsonl").read_text().splitlines()[0])
    doc = {"question": row["query"].removeprefix("Question: "), "choices": {"text": row["choices"]}}
    item = load_general("arc-easy", data_dir)[0]
    assert item.context == _render(arc["doc_to_text"], doc)
    assert [o.removeprefix(" ") for o in item.options] == row["choices"]

    obqa = _task("openbookqa/openbookqa.yaml")
    row = json.loads((data_dir / "openbookqa" / "openbookqa_test.jsonl").read_text().splitlines()[0])
    want = _render(obqa["doc_to_text"], {"question_stem": row["query"]})
    assert load_general("openbookqa", data_dir)[0].context == want

    piqa = _task("piqa/piqa.yaml")
    row = json.loads((data_dir / "piqa" / "valid.jsonl").read_text().splitlines()[0])
    assert load_general("piqa", data_dir)[0].context == _render(piqa["doc_to_text"], row)

    tmpl = yaml.safe_load((TASKS / "mmlu" / "default" / "_default_template_yaml").read_text())
    sub = yaml.safe_load((TASKS / "mmlu" / "default" / "mmlu_abstract_algebra.yaml").read_text())
    item = load_general("mmlu", data_dir)[0]
    doc = {"question": "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.",
           "choices": ["0", "4", "2", "6"]}
    assert item.context == sub["description"] + _render(tmpl["doc_to_text"], doc)
    assert [o.strip() for o in item.options] == tmpl["doc_to_choice"]


def test_loglikelihoods_match_hflm(tiny, data_dir: Path) -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tok = tiny
    items = [load_general(name, data_dir)[0] for name in ("arc-easy", "piqa", "openbookqa")]
    ours = [s for row in score_items(model, tok, items, batch_size=3) for s in row]
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=4)
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(it.context, o), idx=i)
            for it in items for i, o in enumerate(it.options)]
    theirs = [ll for ll, _ in lm.loglikelihood(reqs)]
    assert ours == pytest.approx(theirs, abs=1e-3)
