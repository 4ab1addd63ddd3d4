"""Official knazeri/edge-connect generator files load and reproduce the official networks.

The oracle (``official_edgeconnect.py``) rebuilds the official module layout with the legacy
spectral-norm hook; ganbrush uses the parametrization API, so matching outputs and effective
weights shows the key mapping and the use of the stored ``u``/``v``.
"""

from pathlib import Path

import official_edgeconnect as official  # beside this file (pytest puts its folder on sys.path)
import pytest
import torch

from inpainting import CheckpointError, load_edgeconnect, load_generator
from inpainting.networks import GeneratorKind, edge_inputs, inpaint_inputs

TOL = 1e-4
WIDTH, BLOCKS = 8, 2  # tiny: the layout, not the size, is under test


def _random_inputs(h: int, w: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, h, w, generator=g)
    gray = image.mean(1, keepdim=True)
    edges = (torch.rand(2, 1, h, w, generator=g) > 0.8).float()
    mask = torch.zeros(2, 1, h, w)
    mask[:, :, h // 4 : h // 2 + 5, w // 3 : w // 3 + 17] = 1
    return image, gray, edges, mask


@pytest.fixture(scope="module")
def official_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("official")
    edge = official.randomize(official.official_edge_generator(WIDTH, BLOCKS), seed=1)
    inp = official.randomize(official.official_inpaint_generator(WIDTH, BLOCKS), seed=2)
    files = {
        "plain": (official.save_official(edge, d / "EdgeModel_gen.pth"),
                  official.save_official(inp, d / "InpaintingModel_gen.pth")),
        "data_parallel": (official.save_official(edge, d / "edge_dp.pth", data_parallel=True),
                          official.save_official(inp, d / "inpaint_dp.pth", data_parallel=True)),
    }
    return edge, inp, files


@pytest.mark.parametrize("variant", ["plain", "data_parallel"])
@pytest.mark.parametrize("size", [(64, 64), (68, 60)])
def test_outputs_match_the_official_networks(official_pair, variant, size):
    edge_ref, inp_ref, files = official_pair
    model = load_edgeconnect(*files[variant])
    image, gray, edges, mask = _random_inputs(*size, seed=size[1])
    x_edge, x_inp = edge_inputs(gray, edges, mask), inpaint_inputs(image, edges, mask)
    assert x_edge.shape[1] == 3 and x_inp.shape[1] == 4
    with torch.no_grad():
        for ours, ref, x in ((model.edge_generator, edge_ref, x_edge), (model.inpaint_generator, inp_ref, x_inp)):
            a, b = ours(x), ref(x)
            assert a.shape == b.shape == (2, ours.cfg.kind.out_channels, *size)
            assert (a - b).abs().max().item() < TOL


def test_official_input_construction_matches_the_official_models():
    # EdgeModel / InpaintingModel.forward: hole painted white (1), edges zeroed in the hole.
    image, gray, edges, mask = _random_inputs(16, 16, seed=0)
    x = edge_inputs(gray, edges, mask)
    torch.testing.assert_close(x[:, 0:1], torch.where(mask > 0, torch.ones_like(gray), gray))
    torch.testing.assert_close(x[:, 1:2], torch.where(mask > 0, torch.zeros_like(edges), edges))
    torch.testing.assert_close(x[:, 2:3], mask)
    y = inpaint_inputs(image, edges, mask)
    torch.testing.assert_close(y[:, :3], torch.where(mask > 0, torch.ones_like(image), image))
    torch.testing.assert_close(y[:, 3:], edges)


def test_effective_spectral_norm_weights_use_the_stored_u_and_v(official_pair):
    # Instance norm after every normalised conv hides a wrong sigma in the outputs, so compare the
    # effective weights W / sigma directly, and check the oracle's u is not yet converged (so a
    # recomputed sigma would differ): the test can fail.
    edge_ref, _, files = official_pair
    ours = load_generator(files["plain"][0])
    with torch.no_grad():
        edge_ref(torch.rand(1, 3, 16, 16))  # the legacy hook sets module.weight in eval mode
    ref_modules = dict(edge_ref.named_modules())
    checked, unconverged = 0, 0
    for name, m in ours.named_modules():
        if not hasattr(m, "parametrizations"):
            continue
        ref = ref_modules[name]
        torch.testing.assert_close(m.weight, ref.weight, atol=1e-6, rtol=1e-5)
        w = ref.weight_orig.detach()
        w_mat = (w.transpose(0, 1) if isinstance(ref, torch.nn.ConvTranspose2d) else w).flatten(1)
        stored_sigma = torch.dot(ref.weight_u, w_mat @ ref.weight_v)
        true_sigma = torch.linalg.matrix_norm(w_mat, ord=2)
        unconverged += bool((true_sigma - stored_sigma).abs() / true_sigma > 1e-3)
        checked += 1
    assert checked == 5 + 2 * BLOCKS
    assert unconverged > 0


def test_architecture_is_inferred_from_the_official_state_dict(official_pair):
    _, _, files = official_pair
    edge, inp = (load_generator(p) for p in files["plain"])
    assert (edge.cfg.kind, edge.cfg.channels, edge.cfg.residual_blocks, edge.cfg.spectral_norm) == (
        GeneratorKind.EDGE, WIDTH, BLOCKS, True)
    assert (inp.cfg.kind, inp.cfg.channels, inp.cfg.residual_blocks, inp.cfg.spectral_norm) == (
        GeneratorKind.INPAINT, WIDTH, BLOCKS, False)


def test_swapped_or_foreign_files_are_refused(official_pair, tmp_path):
    _, _, files = official_pair
    edge_file, inpaint_file = files["plain"]
    with pytest.raises(CheckpointError, match="edge model first"):
        load_edgeconnect(inpaint_file, edge_file)
    foreign = tmp_path / "other.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="other.pth.*'generator'"):
        load_generator(foreign)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pth"):
        load_generator(text)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(edge_file.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="cut.pth"):
        load_generator(truncated)


def test_legacy_file_without_v_is_refused(tmp_path):
    net = official.randomize(official.official_edge_generator(WIDTH, 1), seed=3)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("weight_v")}
    path = tmp_path / "old.pth"
    torch.save({"generator": state}, path)
    with pytest.raises(CheckpointError, match="weight_v"):
        load_generator(path)


def test_code_in_a_checkpoint_is_not_run(tmp_path):
    path = tmp_path / "evil.pth"
    target = tmp_path / "pwned"
    torch.save({"generator": {}, "payload": _Payload(target)}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_generator(path)
    assert not target.exists()


class _Payload:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.mark.slow
def test_paper_size_generators_match(tmp_path):
    edge_ref = official.randomize(official.official_edge_generator(), seed=4)
    inp_ref = official.randomize(official.official_inpaint_generator(), seed=5)
    model = load_edgeconnect(official.save_official(edge_ref, tmp_path / "e.pth"),
                             official.save_official(inp_ref, tmp_path / "i.pth"))
    assert model.edge_generator.cfg.channels == 64 and model.edge_generator.cfg.residual_blocks == 8
    image, gray, edges, mask = _random_inputs(64, 64, seed=6)
    with torch.no_grad():
        assert (model.edge_generator(edge_inputs(gray, edges, mask))
                - edge_ref(edge_inputs(gray, edges, mask))).abs().max() < TOL
        assert (model.inpaint_generator(inpaint_inputs(image, edges, mask))
                - inp_ref(inpaint_inputs(image, edges, mask))).abs().max() < TOL
