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


def test_a_nucleus_cut_must_win_by_more_than_its_draws_noise():
    def draws(centre: float, spread: float) -> dict:
        return {k: [centre - spread, centre + spread] * 3 for k in ("auc_8", "auc_16", "auc_wide_8", "auc_wide_16")}

    cut = {**row("top-p 0.9", 0.688), "top_p": 0.9, **draws(0.688, 0.03)}  # standard error about 0.006
    uncut = {**row("no cut", 0.690), "top_p": 1.0, **draws(0.690, 0.03)}
    assert served_setting([cut, uncut])["name"] == "no cut"
    clearly = {**cut, "auc": 0.670, **draws(0.670, 0.03)}
    assert served_setting([clearly, uncut])["name"] == "top-p 0.9"
    assert served_setting([{**cut, "oa_min": 0.85}, {**uncut, "auc": 0.75}])["name"] == "no cut"  # targets first
