"""The pipeline's ``device`` and ``mixed_precision`` options are checked before any work."""

import pytest
import torch

from ganbrush_core.devices import DeviceError
from ganbrush_pipeline import PipelineOptions, check_options, run_pipeline


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_before_the_photo_is_looked_at():
    with pytest.raises(DeviceError, match="use cpu"):
        run_pipeline(None, PipelineOptions(device="cuda"))  # no photo: the options fail first


def test_device_and_mixed_precision_are_checked_options():
    check_options(PipelineOptions(device="cpu", mixed_precision=True))
    with pytest.raises(DeviceError, match="unknown device"):
        check_options(PipelineOptions(device="gpu"))
    with pytest.raises(ValueError, match="mixed_precision"):
        check_options(PipelineOptions(mixed_precision="yes"))
