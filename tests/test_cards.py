"""Cards as data: the batch ranges we declare agree with what each compute grid admits."""

import pytest

from bertl11.cards import CARDS, COL_MAJOR, ROW_MAJOR, get_card
from bertl11.errors import UserError
from bertl11.plan import PlanError, make_plan


def test_seed_batch_ranges_and_orientations():
    # The seed's README: unharvested Grayskull batch 2-12; Wormhole batch 2-7, and 8 in its table (n150, n300).
    assert CARDS["e150"].batch_range == (2, 12) and CARDS["e150"].orientation == COL_MAJOR
    assert CARDS["n300"].batch_range == (2, 8) and CARDS["n300"].orientation == ROW_MAJOR
    assert 8 in CARDS["n150"].batches()
    assert not CARDS["e150"].ttnn_supported  # dropped after tt-metal v0.55


def test_what_the_seed_did_not_run_is_marked_untested():
    """On Wormhole the seed ran BFLOAT8_B-SHARDED only ("Only BFLOAT8_B-SHARDED supported for WH B0"), batch 2-8;
    it never ran on Blackhole."""
    for name in ("n150", "n300"):
        card = CARDS[name]
        assert card.untested("BFLOAT8_B-SHARDED", 8) is None
        assert card.untested("BFLOAT8_B-L1", 8).startswith("untested on a card: the seed ran Wormhole")
    assert CARDS["p150"].untested("BFLOAT8_B-SHARDED", 8) == "untested on a card: the seed never ran on a Blackhole"
    assert CARDS["p150"].untested("BFLOAT8_B-SHARDED", 12)
    assert CARDS["e150"].untested("MIXED_PRECISION_BATCH8", 8) is None
    assert "untested on a card" in CARDS["n150"].tested_text() and "BFLOAT8_B-L1" in CARDS["n150"].tested_text()


@pytest.mark.parametrize("name", sorted(CARDS))
def test_declared_range_is_what_the_grid_admits(name):
    card = CARDS[name]
    for batch in card.batches():
        plan = make_plan(card, batch)
        assert plan.grid[0] <= card.grid[0] and plan.grid[1] <= card.grid[1]
    with pytest.raises(PlanError, match="compute grid"):
        make_plan(card, card.batch_range[1] + 1)


def test_unknown_card_is_a_user_error():
    with pytest.raises(UserError, match="choose one of"):
        get_card("e300")


def test_a_grid_no_entry_has_gets_its_own_entry():
    """A chip reporting another grid (harvested, other dispatch) is planned on that grid, not on the first
    entry of its architecture."""
    from bertl11.cards import card_for_arch

    assert card_for_arch("wormhole_b0", (8, 8), "N300") is CARDS["n300"]
    assert card_for_arch("wormhole_b0", (8, 8), "T3K") is CARDS["n300"]
    assert card_for_arch("wormhole_b0", (8, 8), "N150") is card_for_arch("wormhole_b0", (8, 8)) is CARDS["n150"]
    worker_dispatch = card_for_arch("wormhole_b0", (8, 7), "N300")  # an n300 opened with worker dispatch
    assert worker_dispatch.grid == (8, 7) and worker_dispatch.title == "Wormhole n300 (8x7 grid)"
    plan = make_plan(worker_dispatch, 7)
    assert plan.grid == (8, 7)
    odd = card_for_arch("wormhole_b0", (7, 7))
    assert odd.grid == (7, 7) and odd.arch == "wormhole_b0" and "7x7" in odd.title
    # 7 columns hold 4 groups of 4 heads: FF1's 12x32-tile block and its partials no longer fit a core's L1.
    with pytest.raises(PlanError, match=r"ff1_gelu: needs \d+ KiB of L1 per core, Wormhole n150 \(7x7 grid\)"):
        make_plan(odd, 7, "BFLOAT8_B-L1")
    with pytest.raises(PlanError, match="compute grid is 7x7"):
        make_plan(odd, 8)
    with pytest.raises(UserError, match="no cores"):
        card_for_arch("blackhole", (0, 10))


def test_n300_is_described_as_ttnn_opens_it():
    """ttnn 0.81 opens N300 (and T3000) clusters with ethernet dispatch, which leaves each chip its full 8x8 worker
    grid (wormhole_b0_80_arch_eth_dispatch.yaml); an N150 keeps worker dispatch and its 8x8 grid."""
    n300 = CARDS["n300"]
    assert n300.grid == (8, 8) and n300.dispatch == "ethernet" and CARDS["n150"].dispatch == "worker"
    plan = make_plan(n300, 8, "BFLOAT8_B-SHARDED")
    assert plan.grid == (8, 8)
