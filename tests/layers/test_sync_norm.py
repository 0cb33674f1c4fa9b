"""NaiveSyncBatchNorm: two gloo ranks holding parts of a batch (uneven, or one of them empty)
compute what one plain BatchNorm2d computes on the whole batch; the Lightning plugin converts
BatchNorm layers (not FrozenBatchNorm2d) and reverts them."""

import socket
from datetime import timedelta

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.plugins import TorchSyncBatchNorm
from torch import nn

from detzoo.layers import DetzooSyncBatchNorm, FrozenBatchNorm2d, NaiveSyncBatchNorm

WORLD_SIZE = 2
CHANNELS = 3
#: per case, the images each rank holds
CASES = {"uneven": (3, 1), "one_rank_empty": (2, 0), "first_rank_empty": (0, 3)}
MOMENTA = {"uneven": 0.1, "one_rank_empty": None, "first_rank_empty": 0.3}


def _data(case: str):
    """The whole batch ``[N, C, 5, 4]`` (channels with different means and scales), the
    per-element loss weights, and the affine parameters."""
    g = torch.Generator().manual_seed(len(case))
    n = sum(CASES[case])
    x = torch.randn(n, CHANNELS, 5, 4, generator=g) * torch.tensor([1.0, 3.0, 0.5]).view(
        1, 3, 1, 1
    ) + torch.tensor([0.0, 10.0, -2.0]).view(1, 3, 1, 1)
    loss_weights = torch.randn(n, CHANNELS, 5, 4, generator=g)
    weight = torch.rand(CHANNELS, generator=g) + 0.5
    bias = torch.randn(CHANNELS, generator=g)
    return x, loss_weights, weight, bias


def _run(bn: nn.Module, x: torch.Tensor, loss_weights: torch.Tensor, steps: int = 2) -> dict:
    """``steps`` forward/backward passes in train mode (running statistics move twice)."""
    x = x.clone().requires_grad_(True)
    bn.train()
    for _ in range(steps):
        out = bn(x)
        (out * loss_weights).sum().backward()
    return {
        "out": out.detach(),
        "x_grad": x.grad,
        "weight_grad": bn.weight.grad,
        "bias_grad": bn.bias.grad,
        "running_mean": bn.running_mean.clone(),
        "running_var": bn.running_var.clone(),
        "num_batches_tracked": bn.num_batches_tracked.clone(),
    }


def _reference(case: str) -> dict:
    x, loss_weights, weight, bias = _data(case)
    bn = nn.BatchNorm2d(CHANNELS, momentum=MOMENTA[case])
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    return _run(bn, x, loss_weights)


def _worker(rank: int, port: int, out_path: str) -> None:
    """Rank ``rank``'s half of every case; saves its results to ``out_path.<rank>``."""
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=timedelta(seconds=60),
    )
    try:
        results = {}
        for case, sizes in CASES.items():
            x, loss_weights, weight, bias = _data(case)
            start = sum(sizes[:rank])
            part = slice(start, start + sizes[rank])
            bn = NaiveSyncBatchNorm(CHANNELS, momentum=MOMENTA[case])
            with torch.no_grad():
                bn.weight.copy_(weight)
                bn.bias.copy_(bias)
            results[case] = _run(bn, x[part], loss_weights[part])
        # bfloat16 input (autocast): statistics in float32, output in bfloat16
        x, _, _, _ = _data("uneven")
        part = slice(0, 3) if rank == 0 else slice(3, 4)
        bn = NaiveSyncBatchNorm(CHANNELS).train()
        results["bf16_out"] = bn(x[part].bfloat16()).detach()
        results["bf16_running_mean"] = bn.running_mean
        torch.save(results, f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(out_path: str) -> None:
    """Rank 1 in a spawned process, rank 0 here: one fresh interpreter (~10 s of imports on
    2 cores) instead of two. (fork would be instant but hangs once this process has used
    OpenMP threads.)"""
    port = _free_port()
    child = mp.get_context("spawn").Process(target=_worker, args=(1, port, out_path))
    child.start()
    try:
        _worker(0, port, out_path)
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0, f"rank 1 failed (exit code {child.exitcode})"


@pytest.mark.slow  # ~15 s: a fresh interpreter for rank 1 imports torch and Lightning
def test_two_ranks_equal_one_batchnorm_on_the_whole_batch(tmp_path):
    out_path = str(tmp_path / "rank")
    _run_two_ranks(out_path)
    ranks = [torch.load(f"{out_path}.{r}") for r in range(WORLD_SIZE)]
    close = {"rtol": 1e-5, "atol": 1e-5}
    for case in CASES:
        expected = _reference(case)
        got = [ranks[r][case] for r in range(WORLD_SIZE)]
        torch.testing.assert_close(torch.cat([g["out"] for g in got]), expected["out"], **close)
        torch.testing.assert_close(
            torch.cat([g["x_grad"] for g in got]), expected["x_grad"], **close
        )
        # each rank holds its own loss's share of the parameter gradients (DDP sums them)
        for name in ("weight_grad", "bias_grad"):
            torch.testing.assert_close(sum(g[name] for g in got), expected[name], **close)
        for g in got:  # every rank, empty or not, holds the global running statistics
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                torch.testing.assert_close(g[name], expected[name], **close)

    x = _data("uneven")[0].bfloat16()
    plain = nn.BatchNorm2d(CHANNELS).train()
    expected_out = plain(x.float())
    out = torch.cat([ranks[r]["bf16_out"] for r in range(WORLD_SIZE)])
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected_out, rtol=1e-2, atol=2e-2)
    for r in range(WORLD_SIZE):
        torch.testing.assert_close(ranks[r]["bf16_running_mean"], plain.running_mean, **close)


def test_without_a_process_group_it_is_batchnorm():
    x, loss_weights, weight, bias = _data("uneven")
    bn = NaiveSyncBatchNorm(CHANNELS)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    got, expected = _run(bn, x, loss_weights), _reference("uneven")
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value)
    bn.eval()
    plain = nn.BatchNorm2d(CHANNELS)
    plain.load_state_dict(bn.state_dict())
    torch.testing.assert_close(bn(x), plain.eval()(x))


def _model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 1),
        nn.BatchNorm2d(4),
        FrozenBatchNorm2d(4),
        nn.Sequential(nn.BatchNorm1d(4, momentum=None), nn.BatchNorm3d(4, affine=False)),
    )


def test_plugin_converts_batchnorm_but_not_frozen_and_reverts():
    model = _model()
    model.eval()
    params = {name: p for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plugin = DetzooSyncBatchNorm()
    converted = plugin.apply(model)
    assert converted is model
    assert type(model[1]) is NaiveSyncBatchNorm and type(model[3][0]) is NaiveSyncBatchNorm
    assert type(model[3][1]) is NaiveSyncBatchNorm and not model[3][1].affine
    assert model[3][0].momentum is None
    assert type(model[2]) is FrozenBatchNorm2d
    assert not model[1].training  # the mode is kept
    # the very same parameter objects (optimisers built before or after still hold them)
    assert {name: p for name, p in model.named_parameters()} == params
    assert set(model.state_dict()) == set(state)
    reverted = plugin.revert(model)
    assert [type(m) for m in reverted.modules()] == [type(m) for m in _model().modules()]
    assert {name: p for name, p in reverted.named_parameters()} == params
    for key, value in reverted.state_dict().items():
        torch.testing.assert_close(value, state[key])
    # a BatchNorm at the root is replaced (and returned)
    assert type(plugin.apply(nn.BatchNorm2d(2))) is NaiveSyncBatchNorm


def test_revert_leaves_layers_built_as_naive_sync():
    model = nn.Sequential(NaiveSyncBatchNorm(2), nn.BatchNorm2d(2))
    DetzooSyncBatchNorm().apply(model)
    DetzooSyncBatchNorm().revert(model)
    assert type(model[0]) is NaiveSyncBatchNorm and type(model[1]) is nn.BatchNorm2d


@pytest.mark.parametrize("sync_batchnorm", [False, True])
def test_trainer_takes_the_plugin(sync_batchnorm):
    plugin = DetzooSyncBatchNorm()
    assert isinstance(plugin, TorchSyncBatchNorm)  # why sync_batchnorm=True is accepted too
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        sync_batchnorm=sync_batchnorm,
        plugins=[plugin],
        logger=False,
        enable_checkpointing=False,
    )
    assert trainer.strategy._layer_sync is plugin
