"""Judges: classify completions as refusals (keyword, HTTP LLM judge) or safe responses (guard model).

See ``docs/judges.md``. ``get_judge(spec)`` builds one from ``keyword``, ``prefix``, ``guard:MODEL`` or
``http:BASE_URL[#MODEL_NAME]``. ``calibration_of(name)`` is a judge's shipped agreement with human labels.
"""

from __future__ import annotations

from dcr.judges.base import MEASURES, Judge, get_judge

__all__ = ["MEASURES", "Judge", "calibration_of", "get_judge", "judge_file"]


def __getattr__(name: str) -> object:
    if name == "judge_file":  # lazy: keeps `import dcr.judges` free of the CLI module
        from dcr.judges.commands import judge_file

        return judge_file
    if name == "calibration_of":
        from dcr.judges.record import calibration_of

        return calibration_of
    raise AttributeError(name)
