"""``dcr probe ntk | ntk-track | separability | mds | confound``: the CLI verbs over the :mod:`dcr.probe` stages."""

from __future__ import annotations

import inspect
from typing import Any, Optional

import typer

from dcr.probe.config import ConfoundConfig, MdsConfig, NtkConfig, NtkTrackConfig, SeparabilityConfig
from dcr.probe.confound import confound
from dcr.probe.stage import mds, ntk, ntk_track, separability
from dcr.verbs import stage_command

probe_app = typer.Typer(help="Analysis: eNTK similarity (A.6), layer separability and MDS maps (A.9), the refine "
                                      "confound diagnostic.",
                        no_args_is_help=True)
OUT = "Output directory (figures, metrics.json, results.jsonl)."
NTK_NAMES = {"n_per_group": ("--n-per-group", "--n"), "ntk_layers": ("--ntk-layers", "--layers")}
MORE = inspect.Parameter("more", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[list[str]],  # noqa: UP045
                         default=typer.Argument(None, help="More checkpoint dirs (so --checkpoints D1 D2 D3 works)."))


def _more_checkpoints(overrides: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    dirs = [*(overrides.get("checkpoints") or []), *(extra.get("more") or [])]
    overrides["checkpoints"] = dirs or None
    return overrides


def register(app: typer.Typer) -> None:
    probe_app.command("ntk")(stage_command(NtkConfig, ntk, section="probe", names=NTK_NAMES, out_help=OUT))
    probe_app.command("ntk-track")(stage_command(
        NtkTrackConfig, ntk_track, section="probe", exclude=("model", "model_after"), out_help=OUT,
        names={**NTK_NAMES, "base_model": ("--base-model", "--model")}, cli_types={"checkpoints": list[str]},
        extra=[MORE], adapt=_more_checkpoints))
    probe_app.command("separability")(stage_command(SeparabilityConfig, separability, section="probe", out_help=OUT))
    probe_app.command("mds")(stage_command(MdsConfig, mds, section="probe", out_help=OUT,
                                           names={"mds_method": ("--mds-method", "--method")}))
    probe_app.command("confound")(stage_command(ConfoundConfig, confound, section="probe", out_help=OUT,
                                                         exclude=("template",)))
    app.add_typer(probe_app, name="probe")
