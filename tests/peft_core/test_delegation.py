"""peft_core.delegation: a wrapper reads what it lacks from the module it wraps, and fails plainly otherwise."""

from __future__ import annotations

import pytest
import torch.nn as nn

import peft_core
from peft_core.delegation import Delegating
from peft_core.prompt_learning import PromptLearningModel
from peft_core.tuner_model import TunerModel
from tests.peft_core import models


class Wrapper(Delegating):
    def __init__(self, inner: nn.Module, *, early_read: bool = False):
        super().__init__()
        if early_read:
            _ = self.in_features  # read before `model` exists: must fail, not loop forever
        self.model = inner


def test_a_missing_attribute_comes_from_the_wrapped_module():
    wrapper = Wrapper(nn.Linear(3, 2))
    assert wrapper.in_features == 3 and wrapper.weight is wrapper.model.weight
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = wrapper.no_such_thing
    with pytest.raises(AttributeError, match="model"):
        Wrapper(nn.Linear(3, 2), early_read=True)


def test_both_engine_wrappers_delegate_to_their_model():
    assert issubclass(TunerModel, Delegating) and issubclass(PromptLearningModel, Delegating)
    model = peft_core.get_peft_model(models.MLP(), peft_core.LoraConfig(target_modules=["lin0"]))
    assert model.base_model.lin0 is model.base_model.model.lin0
