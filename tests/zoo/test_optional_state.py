"""RetinaNet's running loss normaliser is saved with the weights, yet checkpoints without it
(Detectron2's, which keep it outside the state dict, and detzoo's written before it was saved) still
load strictly: the normaliser keeps its initial 100, every other tensor comes from the file, and any
other missing key is still an error."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import detzoo
from detzoo.zoo import (
    CheckpointMismatchError,
    load_checkpoint,
    load_detectron2_weights,
    save_weights,
)
from detzoo.zoo.build import build_model

from .helpers import TINY_CONFIGS, randomised_state, write_detectron2_pkl

KEY = "outputs.loss_normalizer"


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    return randomised_state(build_model(TINY_CONFIGS["tiny_retinanet"]), seed)


def _assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    actual = model.state_dict()
    assert set(actual) == set(state) | {KEY}
    for key, value in state.items():
        assert torch.equal(actual[key].cpu(), value), key


def test_the_normaliser_is_in_the_state_dict_and_starts_at_100():
    model = build_model(TINY_CONFIGS["tiny_retinanet"])
    assert KEY in model.state_dict() and float(model.state_dict()[KEY]) == 100.0


def test_detectron2_checkpoint_without_the_normaliser_loads_strictly(tiny_zoo, tmp_path):
    state = _state()
    del state[KEY]  # as in every Detectron2 RetinaNet checkpoint
    pkl = write_detectron2_pkl(state, tmp_path)
    model = detzoo.zoo.get("tiny_retinanet", weights=pkl, device="cpu")
    _assert_loaded(model, state)
    assert float(model.outputs.loss_normalizer) == 100.0
    # the converter's own strict loader as well
    model = build_model(TINY_CONFIGS["tiny_retinanet"])
    model.outputs.loss_normalizer.fill_(7.0)  # the model's own value is kept, whatever it is
    load_detectron2_weights(model, pkl)
    _assert_loaded(model, state)
    assert float(model.outputs.loss_normalizer) == 7.0


def test_a_saved_normaliser_is_loaded(tiny_zoo, tmp_path):
    state = _state(seed=1)
    state[KEY] = torch.tensor(42.5)
    pkl = write_detectron2_pkl(state, tmp_path)
    model = detzoo.zoo.get("tiny_retinanet", weights=pkl, device="cpu")
    assert float(model.outputs.loss_normalizer) == 42.5
    bad = {**state, KEY: torch.ones(2)}
    with pytest.raises(CheckpointMismatchError, match=rf"shape mismatch: {KEY}"):
        detzoo.zoo.get("tiny_retinanet", weights=write_detectron2_pkl(bad, tmp_path / "bad"))


@pytest.mark.parametrize("fresh_classes", [False, True], ids=["same_classes", "new_classes"])
def test_any_other_missing_key_is_still_an_error(tiny_zoo, tmp_path, fresh_classes):
    state = _state()
    del state[KEY]
    del state["head.bbox_pred.bias"]
    pkl = write_detectron2_pkl(state, tmp_path)
    kwargs = {"num_classes": 5} if fresh_classes else {}
    with pytest.raises(CheckpointMismatchError, match=r"missing: head\.bbox_pred\.bias\. ") as info:
        detzoo.zoo.get("tiny_retinanet", weights=pkl, **kwargs)
    assert KEY not in str(info.value)
    with pytest.raises(CheckpointMismatchError, match=r"missing: head\.bbox_pred\.bias"):
        load_detectron2_weights(build_model(TINY_CONFIGS["tiny_retinanet"]), pkl)


def test_detzoo_files_from_before_the_normaliser_was_saved_load(tiny_zoo, tmp_path):
    model = build_model(TINY_CONFIGS["tiny_retinanet"])
    model.load_state_dict(_state(seed=2))
    path = save_weights(model, tmp_path / "new.safetensors")
    # the same file as detzoo wrote it before: no normaliser, same spec metadata
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        old_state = {k: f.get_tensor(k) for k in f.keys() if k != KEY}
    old = tmp_path / "old.safetensors"
    save_file(old_state, str(old), metadata=metadata)
    rebuilt = load_checkpoint(old)
    _assert_loaded(rebuilt, old_state)
    assert float(rebuilt.outputs.loss_normalizer) == 100.0
    loaded = detzoo.zoo.get("tiny_retinanet", weights=old, device="cpu")
    _assert_loaded(loaded, old_state)
