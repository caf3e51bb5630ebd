"""The search spaces: every registered loss declares one covering its constructor, defaults are the
constructors' (and RunConfig's), ranges contain the defaults, bad spaces are refused with a clear message."""
from __future__ import annotations

import inspect

import pytest

from ltlab import RunConfig
from ltlab.losses import LOSSES, create_loss, loss_hparams
from ltlab.space import (RECIPE_SPACE, SAMPLER, SAMPLER_SPACES, Param, form_space, loss_space, out_of_range,
                         search_space, space_table)

COUNTS = [50, 20, 8, 3]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_space_covers_the_signature_and_defaults_are_the_constructors(name):
    space = {p.name: p for p in loss_space(name)}
    assert sorted(space) == sorted(loss_hparams(name)), f"{name}: SEARCH_SPACE must list every keyword"
    sig = inspect.signature(LOSSES[name].__init__).parameters
    default_loss = create_loss(name, COUNTS)
    for pname, p in space.items():
        if sig[pname].default is not None:
            assert p.default == sig[pname].default, f"{name}.{pname}"
        elif p.default is not None:  # None in the signature = a method default the constructor fills in
            assert getattr(default_loss, pname) == p.default, f"{name}.{pname}"
        assert p.contains(p.default), f"{name}.{pname}: range {p.describe()} misses the default {p.default!r}"
        assert p.source, f"{name}.{pname}: say where the range comes from"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_corner_of_a_loss_space_builds_the_loss(name):
    for p in loss_space(name):
        if p.kind == "choice":
            values = p.choices
        elif p.kind in ("float", "int"):
            values = [p.low, p.high if p.high is not None else 5]
        else:
            continue
        for v in values:
            create_loss(name, COUNTS, **dict(p.when), **{p.name: v})


def test_recipe_and_sampler_defaults_are_runconfig_defaults():
    defaults = RunConfig.defaults()
    for p in RECIPE_SPACE:
        assert p.default == defaults[p.name] and p.contains(p.default), p.name
    assert SAMPLER.default == defaults["sampler"]
    from ltlab.data import SAMPLERS
    assert set(SAMPLER.choices) == set(SAMPLERS)
    for plist in SAMPLER_SPACES.values():
        for p in plist:
            assert p.contains(p.default)


def test_default_search_space_of_gcl_and_names():
    space = search_space("gcl")
    assert list(dict(space)) == ["s", "m", "noise_mul", "gamma"]
    # ghm_c's momentum collides with SGD momentum: prefixed
    assert "loss_params.momentum" in dict(search_space("ghm_c"))
    params = space.apply({"loss": "gcl"}, {"noise_mul": 0.8, "lr": 0.1})
    assert params["loss_params"] == {"noise_mul": 0.8} and params["lr"] == 0.1
    RunConfig(**params)
    assert "sampler_params.num_samples_cls" in dict(form_space("ce", "class_aware"))


def test_bad_spaces_are_refused_with_a_message():
    with pytest.raises(ValueError, match="outside its range"):
        search_space("gcl", {"noise_mul": [0.0, 9.0]})
    with pytest.raises(ValueError, match="unknown field 'nosie_mul'"):
        search_space("gcl", ["nosie_mul"])
    with pytest.raises(ValueError, match="not a knob"):
        search_space("seesaw", ["eps"])
    with pytest.raises(ValueError, match="no hyper-parameters to search"):
        search_space("balanced_softmax")
    with pytest.raises(ValueError, match="log scale"):
        Param("x", "float", 1.0, low=0.0, high=1.0, scale="log")


def test_out_of_range_values_give_notes_not_errors():
    notes = out_of_range({"loss": "gcl", "loss_params": {"noise_mul": 3.0}}, "gcl")
    assert len(notes) == 1 and "noise_mul=3.0" in notes[0]
    assert out_of_range({"loss": "gcl"}, "gcl") == []
    assert len(space_table()) == sum(len(loss_space(n)) for n in LOSSES)
