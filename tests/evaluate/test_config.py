"""EvaluateConfig validation and benchmark-group expansion."""

from __future__ import annotations

import pytest

from dcr.config import build_config
from dcr.data import SAFETY_SETS
from dcr.errors import ConfigError
from dcr.evaluate import EvaluateConfig, expand_benchmarks
from dcr.evaluate.general import GENERAL


def test_layers_defaults_cli_and_set(tmp_path) -> None:
    yml = tmp_path / "c.yaml"
    yml.write_text("evaluate:\n  model: m\n  limit: 5\n  max_new_tokens: 32\n")
    cfg = build_config(EvaluateConfig, yml, {"limit": 7, "benchmarks": ["xstest", "coconot"]},
                       ["refusal_prob=true", "tags={method: dcr, seed: 1}"], section="evaluate")
    assert (cfg.model, cfg.limit, cfg.max_new_tokens, cfg.refusal_prob) == ("m", 7, 32, True)
    assert cfg.benchmarks == ["xstest", "coconot"] and cfg.tags == {"method": "dcr", "seed": "1"}


@pytest.mark.parametrize("kw,needle", [
    ({"model": ""}, "--model"),
    ({"limit": 0}, "limit"),
    ({"xstest_heldout_frac": 1.0}, "xstest_heldout_frac"),
    ({"mmlu_shots": 6}, "mmlu_shots"),
    ({"annotator": "gpt"}, "annotator"),
    ({"tags": {"metric": "x"}}, "clash"),
    ({"template": "nope"}, "template"),
])
def test_bad_values_name_the_field(kw: dict, needle: str) -> None:
    args = {"model": "m", **kw}
    with pytest.raises(ConfigError, match=needle):
        EvaluateConfig(**args)


def test_heldout_zero_and_annotator_choices() -> None:
    assert EvaluateConfig(model="m", xstest_heldout_frac=0).xstest_heldout_frac == 0
    assert EvaluateConfig(model="m").annotator is None  # no silent 135M judge
    assert EvaluateConfig(model="m", annotator="local:smollm2-135m").annotator == "local:smollm2-135m"  # if asked


def test_check_benchmarks_never_loads_hub_only_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    import dcr.data.registry

    monkeypatch.setattr(dcr.data.registry, "hub_dataset", lambda *a, **k: pytest.fail("hub touched by a check"))
    EvaluateConfig(model="m", benchmarks=["phtest"]).check_benchmarks()


def test_expand_groups_dedupes_and_keeps_order() -> None:
    assert expand_benchmarks(["safety-all"]) == list(SAFETY_SETS)
    assert expand_benchmarks(["xstest,general", "mmlu"]) == ["xstest", *GENERAL]
    assert expand_benchmarks(["over-refusal"])[0] == "xstest-safe"
    everything = expand_benchmarks(["all"])
    assert {"phtest", "safety", "heldout-nll", "alpaca-eval", *SAFETY_SETS, *GENERAL} <= set(everything)
    assert "hf:a/b" in expand_benchmarks(["hf:a/b"])


def test_unknown_benchmark_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="xstsst.*Fix: use one of.*over-refusal"):
        expand_benchmarks(["xstsst"])
