"""How the evaluation picks the served sampling setting from its validation sweep."""

from __future__ import annotations

from generation.vae.prior_evaluate import served_setting


def row(name: str, auc: float, repeat: float = 0.3, overlap: float = 0.95) -> dict:
    return {"name": name, "auc": auc, "repeat_share": repeat, "oa_min": overlap}


def test_the_served_setting_is_the_lowest_auc_among_those_meeting_the_targets():
    sweep = [
        row("repeats too little", 0.60, repeat=0.1),
        row("overlap too low", 0.65, overlap=0.88),
        row("meets both", 0.71),
        row("meets both, lower", 0.70),
    ]
    assert served_setting(sweep)["name"] == "meets both, lower"


def test_a_condition_no_setting_meets_is_dropped():
    low_overlap = [row("a", 0.72, overlap=0.85), row("b", 0.70, overlap=0.86), row("c", 0.60, repeat=0.5)]
    assert served_setting(low_overlap)["name"] == "b"  # the repeat band still holds
    out_of_band = [row("a", 0.72, repeat=0.5), row("b", 0.70, repeat=0.1, overlap=0.8)]
    assert served_setting(out_of_band)["name"] == "a"  # then the overlap
