"""Response quality: pairwise annotators, position-bias control, caching, reference answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

from dcr.evaluate import EvaluateConfig
from dcr.evaluate.quality import (
    HttpAnnotator,
    LocalAnnotator,
    next_token_logits,
    not_measured,
    pairwise_prompt,
    parse_choice,
    run_quality,
)
from dcr.models import load_model


class LongerWins:
    """Fake annotator: the longer answer is better (so position never matters)."""

    name = "fake:longer"

    def __init__(self) -> None:
        self.calls = 0

    def p_first(self, questions: list[str]) -> list[float]:
        self.calls += len(questions)
        out = []
        for q in questions:
            a = q.split("# Response A\n")[1].split("\n\n# Response B\n")[0]
            b = q.split("# Response B\n")[1].split("\n\nWhich response")[0]
            out.append(1.0 if len(a) > len(b) else 0.0)
        return out


class AlwaysFirst:
    name = "fake:first"

    def p_first(self, questions: list[str]) -> list[float]:
        return [0.8] * len(questions)


@pytest.mark.parametrize("text,want", [("A", 1.0), ("B.", 0.0), ("**B**", 0.0), ("Response A", 1.0),
                                       ("Answer: B", 0.0), ("Both", 0.5), ("", 0.5)])
def test_parse_choice(text: str, want: float) -> None:
    assert parse_choice(text) == want


def test_pairwise_prompt_truncates_and_marks_empty() -> None:
    q = pairwise_prompt("Say hi", "x" * 50, "   ", max_chars=10)
    assert "# Response A\n" + "x" * 10 + "\n\n" in q and "# Response B\n(empty)" in q


def test_next_token_logits_left_padding_matches_single(tiny) -> None:
    model, tok = tiny
    texts = ["short", "a much longer text here"]
    batched = next_token_logits(model, tok, texts, batch_size=2)
    for i, t in enumerate(texts):
        ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            single = model(input_ids=ids).logits[0, -1]
        assert torch.allclose(batched[i], single.float(), atol=1e-4)


def test_local_annotator_gives_probabilities(tiny) -> None:
    model, tok = tiny
    ann = LocalAnnotator(model, tok, "local:tiny")
    p = ann.p_first([pairwise_prompt("Say hi", "hi", "no"), pairwise_prompt("Say hi", "no", "hi")])
    assert len(p) == 2 and all(0.0 < x < 1.0 for x in p)


def _cfg(tiny_dir: Path, data_dir: Path, **kw) -> EvaluateConfig:
    base = dict(model=str(tiny_dir), data_dir=str(data_dir), limit=3, quality_max_new_tokens=4, batch_size=4,
                reference="gpt4", annotator="http:http://127.0.0.1:9/v1")
    return EvaluateConfig(**{**base, **kw})


def test_win_rate_both_orders_and_cache(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    model, tok = load_model(str(tiny_dir), dtype="fp32", device="cpu")
    cfg = _cfg(tiny_dir, data_dir)
    ann = LongerWins()
    metrics, detail = run_quality(model, tok, cfg, tmp_path, data_dir, ann, {"model": "t"})
    (m,) = metrics
    # 4 new tokens never beat GPT-4's reference answers; each pair was shown in both orders
    assert (m.metric, m.value, m.n, m.judge) == ("win_rate", 0.0, 3, "fake:longer") and ann.calls == 6
    assert detail["position_bias"] == pytest.approx(0.5)
    again, _ = run_quality(model, tok, cfg, tmp_path, data_dir, ann, {"model": "t"})
    assert again == metrics and ann.calls == 6  # cached: no new annotation
    biased, detail = run_quality(model, tok, cfg, tmp_path / "b", data_dir, AlwaysFirst(), {"model": "t"})
    assert biased[0].value == 0.5 and detail["preference_mean"] == pytest.approx(0.5)  # bias cancels: all ties
    assert detail["position_bias"] == pytest.approx(0.8)


def test_reference_model_answers_are_generated(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    model, tok = load_model(str(tiny_dir), dtype="fp32", device="cpu")
    cfg = _cfg(tiny_dir, data_dir, reference=str(tiny_dir))
    metrics, detail = run_quality(model, tok, cfg, tmp_path, data_dir, AlwaysFirst(), {"model": "t"})
    assert metrics[0].value == 0.5 and detail["reference"] == str(tiny_dir)
    rows = (tmp_path / "generations" / "alpaca-eval.reference.jsonl").read_text().splitlines()
    assert len(rows) == 3


def test_http_annotator_reuses_the_judge_client() -> None:
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"choices": [{"message": {"content": "B"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ann = HttpAnnotator(f"http://127.0.0.1:{server.server_port}/v1#judge-model")
        assert ann.p_first([pairwise_prompt("q", "a", "b")]) == [0.0]
    finally:
        server.shutdown()
    assert seen[0]["model"] == "judge-model" and "# Response A\na" in seen[0]["messages"][0]["content"]


def test_default_is_the_stl_reference_and_no_annotator_means_not_measured() -> None:
    cfg = EvaluateConfig(model="m")
    assert (cfg.reference, cfg.annotator) == ("stl", None)
    reason = not_measured(cfg)
    assert reason is not None and reason.startswith("not measured: no LLM annotator") and "Fix: set annotator" in reason
    unresolved = not_measured(EvaluateConfig(model="m", annotator="http:http://h/v1#gpt-4o-mini"))
    assert unresolved is not None and "reference 'stl'" in unresolved and "--reference" in unresolved
    assert not_measured(EvaluateConfig(model="m", annotator="local:smollm2-135m", reference="runs/stl")) is None


def test_alpaca_eval_without_annotator_is_reported_not_measured(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from dcr.evaluate import evaluate, quality
    from dcr.io import read_json, read_jsonl

    monkeypatch.setattr(quality, "get_annotator", lambda *a, **k: pytest.fail("an annotator was loaded"))
    cfg = EvaluateConfig(model=str(tiny_dir), data_dir=str(data_dir), benchmarks=["alpaca-eval", "oktest"], limit=2,
                         max_new_tokens=2, batch_size=4, dtype="fp32")
    out = evaluate(cfg, tmp_path / "ev")
    summary = read_json(out / "metrics.json")
    assert summary["missing"]["alpaca-eval"].startswith("not measured: no LLM annotator")
    assert set(summary["benchmarks"]) == {"oktest"} and read_json(out / "manifest.json")["status"] == "done"
    assert not any(r["benchmark"] == "alpaca-eval" for r in read_jsonl(out / "results.jsonl"))
    assert not (out / "generations" / "alpaca-eval.jsonl").exists()  # nothing generated for an unmeasured column
