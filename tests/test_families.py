"""The family registry (families.py): every consumer reads one table, so its entries must be complete and
their preset names unique."""
import importlib

import sample_ddp
from common.t2i_pipeline import PromptPreset
from families import CLIS, FAMILIES, PRESETS, TEXT_TO_IMAGE, family, preset


def test_preset_names_are_unique_across_families():
    assert len(PRESETS) == sum(len(f.presets) for f in FAMILIES.values())
    assert all(preset(name) == (f, p) for f in FAMILIES.values() for name, p in f.presets.items())


def test_every_family_entry_is_complete():
    assert len(set(CLIS)) == len(CLIS)
    for f in FAMILIES.values():
        assert family(f.name) is f and f.clis and f.presets
        for cli in f.clis:
            assert callable(importlib.import_module(cli).build_parser), cli
        if f.text_to_image:  # what sample_ddp, t2i_latency and the GPU suite call
            assert callable(f.speed) and f.configs and "tiny" in f.configs and f.gpu_windows and min(f.gpu_windows) >= 1, f.name
            assert all(isinstance(p, PromptPreset) and p.config in f.configs for p in f.presets.values()), f.name
    assert set(TEXT_TO_IMAGE) == {name for name, f in FAMILIES.items() if f.load is not None}


def test_unknown_names_list_the_valid_ones():
    for lookup, name in ((family, "nope"), (preset, "nope")):
        try:
            lookup(name)
        except ValueError as e:
            assert all(valid in str(e) for valid in (FAMILIES if lookup is family else PRESETS))
        else:
            raise AssertionError(f"{lookup.__name__}({name!r}) did not raise")


def test_sample_ddp_offers_every_registered_preset():
    parser = sample_ddp.build_parser()
    for name in PRESETS:
        assert sample_ddp.preset_of(name) is preset(name)[1]
        assert name in parser.format_help()
