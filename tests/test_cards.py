"""Cards as data: the batch ranges we declare agree with what each compute grid admits."""

import pytest

from bertl11.cards import CARDS, COL_MAJOR, ROW_MAJOR, get_card
from bertl11.errors import UserError
from bertl11.plan import PlanError, make_plan


def test_seed_batch_ranges_and_orientations():
    # The seed's README: unharvested Grayskull batch 2-12, Wormhole n300 batch 2-7; n150 runs batch 8.
    assert CARDS["e150"].batch_range == (2, 12) and CARDS["e150"].orientation == COL_MAJOR
    assert CARDS["n300"].batch_range == (2, 7) and CARDS["n300"].orientation == ROW_MAJOR
    assert 8 in CARDS["n150"].batches()
    assert not CARDS["e150"].ttnn_supported  # dropped after tt-metal v0.55


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

    assert card_for_arch("wormhole_b0", (8, 7)) is CARDS["n300"]
    odd = card_for_arch("wormhole_b0", (7, 7))
    assert odd.grid == (7, 7) and odd.arch == "wormhole_b0" and "7x7" in odd.title
    plan = make_plan(odd, 7, "BFLOAT8_B-L1")  # 7 columns hold 4 groups of 4 heads: not the sharded split's 2
    assert plan.grid[0] <= 7 and plan.grid[1] <= 7
    with pytest.raises(PlanError, match="compute grid is 7x7"):
        make_plan(odd, 8)
    with pytest.raises(UserError, match="no cores"):
        card_for_arch("blackhole", (0, 10))
