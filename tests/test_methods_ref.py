"""docs/methods.md and ``python -m ltlab list`` cover every registered name (issue 29)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ltlab import methods_ref
from ltlab.data.samplers import SAMPLERS
from ltlab.losses import LOSSES, loss_hparams
from ltlab.posthoc.estimators import POSTHOC
from ltlab.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
REGISTRIES = {"losses": LOSSES, "samplers": SAMPLERS, "stages": STAGES, "posthoc": POSTHOC}


def test_docs_page_is_the_generators_output():
    page = (ROOT / "docs" / "methods.md").read_text()
    assert page == methods_ref.methods_markdown(), "docs/methods.md is stale: run python tools/gen_methods_doc.py"


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_every_registered_name_is_listed_with_every_option_explained(kind):
    entries = methods_ref.table(kind)
    assert list(entries) == list(REGISTRIES[kind])
    page = methods_ref.methods_markdown()
    listing = methods_ref.list_text(kind)
    for name, entry in entries.items():
        assert f"### `{name}`" in page and name in listing
        assert entry["summary"], f"{kind} {name} has no summary"
        missing = [p for p, _, meaning in entry["params"] if not meaning]
        assert not missing, f"{kind} {name}: no meaning for {missing} (write it in the docstring's Args: section)"


def test_loss_entries_follow_the_signatures():
    for name, entry in methods_ref.losses().items():
        assert [p for p, _, _ in entry["params"]] == loss_hparams(name)
    gcl = methods_ref.list_text("loss", "gcl")
    assert "noise_mul = 0.5" in gcl and "-p loss gcl" in gcl


def test_drw_has_one_documented_place():
    text = methods_ref.list_text("loss", "ldam")
    assert "top-level field `drw_start`" in text
    assert "drw_start" not in methods_ref.list_text("loss", "gcl")


def test_presets_are_listed():
    names = methods_ref.table("presets")
    assert len(names) == len(list((ROOT / "notebooks" / "presets").glob("*.yaml"))) > 0


def test_unknown_kind_and_name_say_what_is_valid():
    with pytest.raises(ValueError, match="valid: losses, samplers"):
        methods_ref.table("lossess")
    with pytest.raises(ValueError, match="unknown loss 'gcll'; valid: ce, focal"):
        methods_ref.list_text("loss", "gcll")


def test_list_command_prints_the_reference(capsys):
    from ltlab.launch.cli import main

    assert main(["list"]) == 0 and "losses    ce, focal" in capsys.readouterr().out
    assert main(["list", "loss", "gcl"]) == 0 and "noise_mul = 0.5" in capsys.readouterr().out
    assert main(["list", "loss", "gcll"]) == 2
    assert "ltlab: error: unknown loss 'gcll'; valid: ce" in capsys.readouterr().err


def test_every_option_of_every_subcommand_is_described(capsys):
    import argparse

    from ltlab.launch.cli import main, parser

    ap = parser()
    subs = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"train", "run", "sweep", "search", "list"}
    for name, sp in subs.choices.items():
        bare = [a.dest for a in sp._actions if not a.help and a.dest != "help"]
        assert not bare, f"python -m ltlab {name}: no description for {bare}"
        assert "examples:" in (sp.epilog or "") and "docs/" in sp.epilog, name
    p_help = next(a.help for a in subs.choices["train"]._actions if a.dest == "param")
    assert "YAML" in p_help
    assert main([]) == 0 and "{train,run,sweep,search,list}" in capsys.readouterr().out  # bare: the help


def test_drw_is_given_once_and_within_the_run():
    """Issue 29: a shortened run never silently drops DRW, and DRW has one place."""
    from ltlab.config import RunConfig

    with pytest.raises(ValueError, match=r"RunConfig.drw_start=20: drw_start=20 is at or past epochs=10: DRW would "
                                         r"never switch on and the run would be plain 'ldam'"):
        RunConfig(loss="ldam", drw_start=20, epochs=10)
    with pytest.raises(ValueError, match=r"at or past epochs=10"):
        RunConfig(loss="ldam", loss_params={"drw_start": 10}, epochs=10)
    with pytest.raises(ValueError, match="DRW is given twice"):
        RunConfig(loss="ldam", drw_start=5, loss_params={"drw_start": 5}, epochs=10)
    assert RunConfig(loss="ldam", drw_start=9, epochs=10).loss_kwargs()["drw_start"] == 9
