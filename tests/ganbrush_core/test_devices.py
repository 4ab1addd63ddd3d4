"""Device names: auto / cpu / cuda[:N] resolved once, one-line errors for a GPU that is not there."""

import argparse

import pytest
import torch
from torch import nn

from ganbrush_core.devices import (
    DEVICE_ENV,
    DeviceError,
    add_device_argument,
    module_device,
    on_device,
    resolve_device,
)

HAS_CUDA = torch.cuda.is_available()


def test_auto_is_cuda_when_available_else_cpu():
    expected = torch.device("cuda", torch.cuda.current_device()) if HAS_CUDA else torch.device("cpu")
    assert resolve_device("auto") == expected
    assert resolve_device(None) == expected
    assert resolve_device() == expected


@pytest.mark.parametrize("name", ["cpu", " CPU ", "cpu:0", torch.device("cpu")])
def test_cpu_names(name):
    assert resolve_device(name) == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", "mps", "meta", 0])
def test_other_names_are_refused_on_one_line(name):
    with pytest.raises(DeviceError) as e:
        resolve_device(name)
    assert "auto, cpu, cuda or cuda:N" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_a_gpu_says_so_and_what_to_use(name):
    with pytest.raises(DeviceError) as e:
        resolve_device(name)
    message = str(e.value)
    assert "no CUDA GPU" in message or "CPU-only" in message
    assert "use cpu" in message and "\n" not in message
    assert isinstance(e.value, ValueError)  # the CLI prints ValueErrors as one line


def test_a_gpu_index_past_the_last_one_is_refused():
    with pytest.raises(DeviceError, match="cuda"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_names_one_gpu_with_its_index():
    assert resolve_device("cuda") == resolve_device("cuda:0") == torch.device("cuda", 0)


def test_device_argument_defaults_to_the_environment_then_auto(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    assert parser.parse_args([]).device == "auto"
    assert parser.parse_args(["--device", "cuda:1"]).device == "cuda:1"  # resolved when the command runs
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    assert parser.parse_args([]).device == "cpu"


def test_on_device_keeps_a_module_that_is_there_already():
    net = nn.Linear(2, 2)
    assert module_device(net) == torch.device("cpu")
    assert module_device(nn.ReLU()) == torch.device("cpu")  # no parameters: the CPU
    assert on_device(net, None) is net
    assert on_device(net, "cpu") is net
    assert on_device(net, "auto") is net or HAS_CUDA


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_on_device_moves_a_copy_and_leaves_the_callers_module_alone():
    net = nn.Linear(2, 2)
    moved = on_device(net, "cuda")
    assert moved is not net and module_device(moved).type == "cuda" and module_device(net).type == "cpu"
    assert on_device(moved, "cuda:0") is moved
