"""ganbrush_core.distributed: batch splitting, the sharded sampler (one process = the plain shuffled
loader; the ranks' rows = the global batches; positions independent of the world size), and a
2-rank gloo run of a toy trainer through TrainingRun that matches one process and resumes as one."""

from __future__ import annotations

import json

import pytest
import torch
from ddp_worker import run_ranks, run_toy

from ganbrush_core.distributed import (
    DistributedError,
    ShardedBatchSampler,
    World,
    current,
    mean_stats,
    randn_rows,
    setup,
    sharded_loader,
)
from ganbrush_core.training import ResumableBatches


def test_batch_split_and_rows():
    assert World(rank=1, size=4).split_batch(32) == 8
    with pytest.raises(DistributedError, match="global batch 30 does not split evenly over 4 ranks.*28 or 32"):
        World(rank=0, size=4).split_batch(30)
    x = torch.arange(12).reshape(6, 2)
    assert World(rank=2, size=3).rows(x).tolist() == [[4, 5], [10, 11]]  # strided: rows 2 and 5
    assert World().rows(x) is x
    assert World(rank=1, size=2, local_rank=1).device("cuda:0") == torch.device("cuda", 1)
    assert World(rank=1, size=2).device("cpu") == torch.device("cpu")


def test_single_process_is_untouched(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert setup("cpu") == World() == current()
    torch.manual_seed(3)
    a = torch.randn(5, 2)
    torch.manual_seed(3)
    assert torch.equal(randn_rows(5, 2), a)
    assert mean_stats({"loss": 0.5}) == {"loss": 0.5}


def test_setup_refuses_a_half_set_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(DistributedError, match="torchrun"):
        setup("cpu")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(DistributedError, match="RANK='x' is not an integer"):
        setup("cpu")


def test_one_process_loader_is_the_plain_shuffled_loader():
    data = torch.utils.data.TensorDataset(torch.arange(10))
    plain = torch.utils.data.DataLoader(data, batch_size=3, shuffle=True, drop_last=True,
                                        generator=torch.Generator().manual_seed(5))
    sharded = sharded_loader(data, 3, torch.Generator().manual_seed(5))
    for _ in range(3):  # epochs: the generator moves on identically
        assert [b[0].tolist() for b in plain] == [b[0].tolist() for b in sharded]


def test_ranks_take_disjoint_rows_of_the_global_batches():
    data = list(range(13))
    one = list(ShardedBatchSampler(data, 6, torch.Generator().manual_seed(0), World()))
    ranks = [list(ShardedBatchSampler(data, 6, torch.Generator().manual_seed(0), World(r, 3))) for r in range(3)]
    assert len(one) == 2 and all(len(r) == 2 for r in ranks)
    for i, batch in enumerate(one):
        assert [r[i][j] for j in range(2) for r in ranks] == batch  # rank r: rows r, r + 3
    with pytest.raises(DistributedError, match="does not split"):
        ShardedBatchSampler(data, 6, torch.Generator(), World(0, 4))


def test_data_position_does_not_depend_on_the_world_size():
    data = list(range(10))

    def batches(world: World) -> ResumableBatches:
        return ResumableBatches(sharded_loader(data, 4, torch.Generator().manual_seed(7), world))

    two = batches(World(1, 2))
    for _ in range(3):  # into the second epoch
        next(two)
    one = batches(World())
    one.load_state_dict(two.state_dict())  # resumed as one process: the next global batch
    straight = batches(World())
    for _ in range(3):
        next(straight)
    for _ in range(4):
        assert next(one).tolist() == next(straight).tolist()


def test_two_ranks_train_as_one_process_and_resume_as_one(tmp_path):
    """2 gloo ranks, 4 steps of global batch 4, then 4 more steps in one process: the same
    parameters and losses as 8 steps in one process; rank 1 writes nothing."""
    straight = run_toy(tmp_path / "straight", 8)  # first: the forked ranks inherit its imports
    run = tmp_path / "run"
    rank0, rank1 = run_ranks("toy", run, 4)
    for k, v in rank0.items():
        assert torch.equal(v, rank1[k]), k  # the ranks hold one model
    assert not (tmp_path / "run-rank1").exists()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and log[-1]["images_seen"] == 16
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 4

    resumed = run_toy(run, 8, resume=True)  # 2 ranks, then 1: as 1 process all along
    for k, v in straight.net.state_dict().items():
        torch.testing.assert_close(resumed.net.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    losses = lambda h: [r["loss"] for r in h]  # noqa: E731
    assert losses(resumed.history) == pytest.approx(losses(straight.history), rel=1e-5)
