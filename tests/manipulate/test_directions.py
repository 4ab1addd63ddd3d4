"""SeFa and GANSpace directions on a small random generator, and their file format."""

from __future__ import annotations

import pytest
import torch

from manipulate.directions import (
    Direction,
    DirectionsFileError,
    ganspace,
    load_directions,
    parse_layers,
    sample_w,
    save_directions,
    sefa,
    style_affine_weights,
)
from stylegan_ops.networks import Generator

GEN = dict(z_dim=32, w_dim=32, channel_base=512, channel_max=32)  # make_generator(32, **GEN): a 32 px generator


@pytest.fixture(scope="module")
def G(make_generator) -> Generator:
    return make_generator(32, **GEN)


def test_sefa_vectors_are_the_top_eigenvectors_of_the_affine_weights(G):
    dirs = sefa(G, num=5, layers=(0, 3), scale_samples=500)
    a = style_affine_weights(G, (0, 3))
    a = a / a.norm(dim=1, keepdim=True)
    gram = a.T @ a
    vals = []
    for d in dirs:
        assert d.layers == (0, 3) and d.source == "sefa"
        assert torch.isclose(d.vector.norm(), torch.tensor(1.0), atol=1e-5)
        rayleigh = float(d.vector @ gram @ d.vector)
        # an eigenvector: A^T A v is parallel to v
        assert torch.allclose(gram @ d.vector, rayleigh * d.vector, atol=1e-3 * rayleigh)
        vals.append(rayleigh)
    assert vals == sorted(vals, reverse=True)
    top = torch.linalg.eigvalsh(gram)[-1]
    assert vals[0] == pytest.approx(float(top), rel=1e-4)
    # SeFa's defining property: the top direction changes the chosen layers' styles the most.
    rand = torch.nn.functional.normalize(torch.randn(20, G.w_dim), dim=1)
    assert (a @ dirs[0].vector).norm() > (a @ rand.T).norm(dim=0).max()


def test_sefa_depends_on_the_layer_range(G):
    coarse = sefa(G, num=1, layers=(0, 2), scale_samples=200)[0].vector
    fine = sefa(G, num=1, layers=(4, 7), scale_samples=200)[0].vector
    assert abs(float(coarse @ fine)) < 0.99


def test_ganspace_matches_pca_of_sampled_w(G):
    dirs = ganspace(G, num=3, samples=4000, seed=3)
    w = sample_w(G, 4000, seed=3).double()
    cov = torch.cov(w.T)
    evals, evecs = torch.linalg.eigh(cov)
    for i, d in enumerate(dirs):
        assert abs(float(d.vector.double() @ evecs[:, -1 - i])) == pytest.approx(1.0, abs=1e-3)
        assert d.scale == pytest.approx(float(evals[-1 - i].sqrt()), rel=1e-3)
    assert dirs[0].info["explained_variance"] > dirs[1].info["explained_variance"]


def test_directions_round_trip_and_are_refused_for_another_generator(G, tmp_path, make_generator):
    dirs = sefa(G, num=2, scale_samples=200) + ganspace(G, num=1, samples=500)
    path = save_directions(tmp_path / "d.npz", dirs, G)
    back = load_directions(path, G)
    assert list(back) == ["sefa0", "sefa1", "ganspace0"]
    for d in dirs:
        assert torch.equal(back[d.name].vector, d.vector)
        assert back[d.name].layers == d.layers and back[d.name].scale == pytest.approx(d.scale)
    with pytest.raises(FileExistsError, match="--force"):
        save_directions(path, dirs, G)
    with pytest.raises(DirectionsFileError, match="ganbrush directions"):
        load_directions(path, make_generator(32, **GEN, seed=1))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DirectionsFileError, match="not a readable"):
        load_directions(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="unique"):
        save_directions(tmp_path / "e.npz", [dirs[0], dirs[0]], G)


def test_damaged_or_padded_directions_files_are_one_line_and_read_in_bounded_memory(G, tmp_path):
    import json
    import tracemalloc
    import zipfile

    import numpy as np

    path = save_directions(tmp_path / "d.npz", sefa(G, num=2, scale_samples=200), G)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:  # ~64 MB of zeros, ~60 KB here
        zf.writestr("junk.npy", b"\x93NUMPY" + bytes(64 << 20))
    tracemalloc.start()
    try:
        assert list(load_directions(path, G)) == ["sefa0", "sefa1"]  # the unknown member is never read
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "junk"}
    meta = json.loads(str(arrays["meta"]))
    variants = {
        "list": [meta], "no_hash": {k: v for k, v in meta.items() if k != "generator_hash"},
        "no_list": {k: v for k, v in meta.items() if k != "directions"},
        "no_vector": {**meta, "directions": [*meta["directions"], {**meta["directions"][0], "name": "ghost"}]},
        "bad_layers": {**meta, "directions": [{**meta["directions"][0], "layers": "0-5"}]},
    }
    for name, variant in variants.items():
        np.savez(tmp_path / f"{name}.npz", **{**arrays, "meta": np.array(json.dumps(variant))})
    np.savez(tmp_path / "wide.npz", **{**arrays, "vector/sefa0": np.zeros(G.w_dim + 1, np.float32)})
    expected = {"cut": "not a readable ganbrush directions file", "list": "metadata is a list",
                "no_hash": "lacks 'generator_hash'", "no_list": "lacks the list of directions",
                "no_vector": "'ghost' has no vector", "bad_layers": "has no layer range", "wide": "32-dimensional"}
    for name, match in expected.items():
        with pytest.raises(DirectionsFileError, match=match) as e:
            load_directions(tmp_path / f"{name}.npz", G)
        assert "\n" not in str(e.value) and str(e.value).endswith("recompute it with `ganbrush directions`")


def test_layer_ranges_are_parsed_inclusive_and_checked(G):
    assert parse_layers("0-5") == (0, 6)
    assert parse_layers("3") == (3, 4)
    for bad in ("5-2", "a-b", "1-2-3", ""):
        with pytest.raises(ValueError, match="FIRST-LAST"):
            parse_layers(bad)
    with pytest.raises(ValueError, match="outside"):
        sefa(G, layers=(0, G.num_ws + 1))
    with pytest.raises(ValueError, match="toRGB"):
        style_affine_weights(G, (G.num_ws - 1, G.num_ws))
    assert isinstance(sefa(G, num=1, scale_samples=100)[0], Direction)
