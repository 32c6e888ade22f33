"""The learning-rate schedule: cosine to zero, its end brought forward when a time budget will
stop training early (a slow CPU), so the run still ends annealed."""

from __future__ import annotations

import itertools

import pytest
import torch

from training.optim import BudgetedCosine
from training.train import fit_schedule_to_budget


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=5e-4)


def _rates(scheduler: BudgetedCosine, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    return rates


def test_without_a_budget_cut_it_is_torchs_cosine_to_the_bit():
    ours = BudgetedCosine(_optimizer(), T_max=40)
    torchs = torch.optim.lr_scheduler.CosineAnnealingLR(_optimizer(), T_max=40)
    assert _rates(ours, 40) == _rates(torchs, 40)
    assert ours.get_last_lr()[0] == 0.0


def test_a_budget_that_cannot_fit_the_rest_brings_the_end_forward_without_a_jump():
    scheduler = BudgetedCosine(_optimizer(), T_max=100)
    before = _rates(scheduler, 20)
    # 20 steps took 10 s; 15 s are left: 30 more steps fit, so the schedule ends at step 50.
    fit_schedule_to_budget(scheduler, 0, 10.0, 15.0)
    assert scheduler.T_max == 50 and scheduler.steps_left() == 30
    after = _rates(scheduler, 40)
    assert after[0] < before[-1] and before[-1] - after[0] < 0.05 * before[-1]  # no jump
    assert all(b < a for a, b in itertools.pairwise(after[:30]))  # still falling
    assert after[29] == 0.0 and set(after[29:]) == {0.0}  # zero at step 50, and after it
    assert scheduler.steps_left() == 0


def test_a_budget_with_room_changes_nothing():
    scheduler = BudgetedCosine(_optimizer(), T_max=100)
    plain = BudgetedCosine(_optimizer(), T_max=100)
    _rates(scheduler, 20), _rates(plain, 20)
    fit_schedule_to_budget(scheduler, 0, 10.0, 60.0)  # 120 more steps fit
    assert scheduler.T_max == 100 and scheduler.steps_left() is None
    assert _rates(scheduler, 80) == _rates(plain, 80)


@pytest.mark.parametrize("last_step", [10, 100, 150])
def test_an_end_not_between_now_and_the_plan_is_ignored(last_step):
    scheduler = BudgetedCosine(_optimizer(), T_max=100)
    _rates(scheduler, 10)
    scheduler.end_by(last_step)
    assert scheduler.T_max == 100 and scheduler.steps_left() is None


def test_a_brought_forward_end_survives_a_resume():
    scheduler = BudgetedCosine(_optimizer(), T_max=100)
    _rates(scheduler, 20)
    scheduler.end_by(60)
    optimizer = _optimizer()  # a resumed run loads the optimiser's state and the schedule's
    optimizer.load_state_dict(scheduler.optimizer.state_dict())
    resumed = BudgetedCosine(optimizer, T_max=100)
    resumed.load_state_dict(scheduler.state_dict())
    assert (resumed.T_max, resumed.steps_left()) == (60, 40)
    assert _rates(resumed, 45) == _rates(scheduler, 45)
