"""The edit API on small random generators: names, aliases, edit strings, moves, PTI, refusals."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from inversion.result import Inversion, InversionFileError
from manipulate import (
    Edit,
    LatentMismatchError,
    UnknownDirectionError,
    available_directions,
    edit,
    parse_edit,
    resolve_direction,
)
from manipulate.directions import DirectionsFileError, ganspace, save_directions, sefa
from manipulate.edits import move, project_out
from stylegan_ops.checkpoints import generator_hash
from stylegan_ops.networks import Generator, sample_w

# The package exports the function `edit`, which shadows the submodule's attribute name.
edit_module = importlib.import_module("manipulate.edit")


def named(G: Generator) -> dict:
    """SeFa / GANSpace directions renamed like the attribute directions, for alias tests."""
    s = sefa(G, num=4, scale_samples=300)
    g = ganspace(G, num=1, samples=500)
    names = {"sefa0": "smiling", "sefa1": "Male", "sefa2": "eyeglasses", "ganspace0": "age", "sefa3": "smiling@L3"}
    return {names[d.name]: dataclasses.replace(d, name=names[d.name]) for d in s + g}


@pytest.fixture(scope="module")
def G(make_generator) -> Generator:
    return make_generator()


@pytest.fixture(scope="module")
def dirs(G) -> dict:
    return named(G)


@pytest.fixture(scope="module")
def ws(G) -> torch.Tensor:
    return sample_w(G, 2, seed=5)[:, None].repeat(1, G.num_ws, 1)


@pytest.mark.parametrize("text, expected", [
    ("smile=2", Edit("smile", 2.0)),
    ("age=-1.5", Edit("age", -1.5)),
    (" smile = 2 @ 0-5 ", Edit("smile", 2.0, (0, 6))),
    ("hat=1e-1@3", Edit("hat", 0.1, (3, 4))),
])
def test_parse_edit(text, expected):
    assert parse_edit(text) == expected


@pytest.mark.parametrize("text", ["smile", "=2", "smile=", "smile=big", "smile=nan", "smile=2@", "smile=2@5-1"])
def test_parse_edit_refuses_malformed_text(text):
    with pytest.raises(ValueError, match="NAME=STRENGTH|range"):
        parse_edit(text)


def test_names_resolve_case_insensitively_and_through_aliases(dirs):
    assert resolve_direction("smiling", dirs).name == "smiling"
    assert resolve_direction("SMILE", dirs).name == "smiling"
    assert resolve_direction("male", dirs).name == "Male"
    assert resolve_direction("glasses", dirs).name == "eyeglasses"
    assert resolve_direction("old", dirs).name == "age"
    assert resolve_direction("Smile@l3", dirs).name == "smiling@L3"
    with pytest.raises(UnknownDirectionError) as err:
        resolve_direction("beard", dirs)
    message = str(err.value)
    assert "Male, age, eyeglasses, smiling, smiling@L3" in message and "ganbrush directions" in message
    assert isinstance(err.value, ValueError) and "\n" not in message


def test_one_edit_is_a_move_along_the_direction(G, dirs, ws):
    result = edit(ws, G, "smile", strength=2, directions=dirs)
    expected = move(ws, dirs["smiling"], 2.0)
    assert torch.allclose(result.ws, expected)
    assert result.generator is G
    assert torch.allclose(result.image, G.synthesis(expected))
    assert result.image.shape == (2, 3, 16, 16)
    assert not torch.allclose(result.image, G.synthesis(ws), atol=1e-3)


def test_edits_add_up_in_order_with_their_own_layers(G, dirs, ws):
    result = edit(ws, G, ["smile=1.5", Edit("glasses", -1.0, (2, 5)), "age=0.5@0-1", "smile@L3=1@3"], directions=dirs,
                  render=False)
    expected = move(move(move(ws, dirs["smiling"], 1.5), dirs["eyeglasses"], -1.0, (2, 5)), dirs["age"], 0.5, (0, 2))
    expected = move(expected, dirs["smiling@L3"], 1.0, (3, 4))
    assert torch.allclose(result.ws, expected, atol=1e-6)
    assert result.image is None
    # ws outside an edit's range stay as they were
    only = edit(ws, G, "glasses=1@2-3", directions=dirs, render=False).ws
    assert torch.equal(only[:, :2], ws[:, :2]) and torch.equal(only[:, 4:], ws[:, 4:])
    assert not torch.equal(only[:, 2:4], ws[:, 2:4])


def test_layers_override_every_edits_range(G, dirs, ws):
    result = edit(ws, G, ["smile=1", "glasses=1@0-7"], layers=(3, 5), directions=dirs, render=False).ws
    assert torch.equal(result[:, :3], ws[:, :3]) and torch.equal(result[:, 5:], ws[:, 5:])
    expected = move(move(ws, dirs["smiling"], 1.0, (3, 5)), dirs["eyeglasses"], 1.0, (3, 5))
    assert torch.allclose(result, expected, atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        edit(ws, G, "smile", strength=1, layers=(0, G.num_ws + 1), directions=dirs)


def test_conditions_keep_the_conditioned_attribute_fixed(G, dirs, ws):
    result = edit(ws, G, "smile=3", conditions=["male", "glasses"], directions=dirs, render=False).ws
    step = (result - ws)[0, 0]
    assert abs(float(step @ dirs["Male"].vector)) < 1e-4
    assert abs(float(step @ dirs["eyeglasses"].vector)) < 1e-4
    vector = project_out(dirs["smiling"].vector, [dirs["Male"].vector, dirs["eyeglasses"].vector])
    assert torch.allclose(step, 3 * dirs["smiling"].scale * vector, atol=1e-5)
    # an edit's own direction among the conditions is not projected out of itself
    same = edit(ws, G, "smile=3", conditions=["smile"], directions=dirs, render=False).ws
    assert torch.allclose(same, move(ws, dirs["smiling"], 3.0))


def test_strength_goes_with_bare_names_only(G, dirs, ws):
    with pytest.raises(ValueError, match="no strength"):
        edit(ws, G, "smile", directions=dirs)
    with pytest.raises(ValueError, match="own strength"):
        edit(ws, G, "smile=1", strength=2, directions=dirs)
    with pytest.raises(ValueError, match="no edit"):
        edit(ws, G, [], directions=dirs)
    with pytest.raises(UnknownDirectionError, match="available: Male, age"):
        edit(ws, G, "beard", strength=1, directions=dirs)


def make_inversion(G: Generator, ws: torch.Tensor, delta: dict | None) -> Inversion:
    gen = torch.Generator().manual_seed(1)
    noises = [torch.randn(ws.shape[0], 1, *m.shape[-2:], generator=gen) for m in G.noise_maps()]
    return Inversion(ws=ws.clone(), noises=noises, reconstruction=G.synthesis(ws, noises=noises), target=None,
                     method="pti" if delta else "w+", steps=1, generator_hash=generator_hash(G), generator_delta=delta)


def test_an_inversion_is_edited_with_its_tuned_generator_and_noise(dirs, ws, make_generator):
    G = make_generator()
    with torch.no_grad():  # a fresh generator's noise strengths are 0: give the noise maps an effect
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    name, param = next((n, p) for n, p in G.synthesis_network.named_parameters() if p.ndim == 4)
    delta = {f"synthesis_network.{name}": 0.3 * torch.randn_like(param)}
    assert delta.keys() <= dict(G.named_parameters()).keys()
    inv = make_inversion(G, ws, delta)
    result = edit(inv, G, "smile", strength=1.5, directions=dirs)
    expected_ws = move(ws, dirs["smiling"], 1.5)
    tuned = inv.generator(G)
    with torch.no_grad():
        expected = tuned.synthesis(expected_ws, noises=inv.noises)
        untuned = G.synthesis(expected_ws, noises=inv.noises)
        const_noise = tuned.synthesis(expected_ws)
    assert result.generator is not G
    assert torch.allclose(result.image, expected, atol=1e-6)
    assert not torch.allclose(result.image, untuned, atol=1e-3)
    assert not torch.allclose(result.image, const_noise, atol=1e-3)
    assert torch.equal(inv.ws, ws)  # the inversion itself is not modified


def test_latents_of_another_generator_are_refused(G, dirs, ws, make_generator):
    other = make_generator(seed=1)
    with pytest.raises(InversionFileError, match="invert the photo again"):
        edit(make_inversion(other, ws, None), G, "smile", strength=1, directions=dirs)
    with pytest.raises(LatentMismatchError, match=rf"takes \[N, {G.num_ws}, 16\]"):
        edit(torch.zeros(1, G.num_ws, 32), G, "smile", strength=1, directions=dirs)
    with pytest.raises(LatentMismatchError):
        edit(torch.zeros(G.num_ws, G.w_dim), G, "smile", strength=1, directions=dirs)


def test_available_directions_reads_shipped_and_given_files(G, dirs, tmp_path, monkeypatch, make_generator):
    other = make_generator(seed=1)
    shipped = tmp_path / "weights"
    save_directions(shipped / "a-mine.npz", [dirs["smiling"], dirs["age"]], G)
    save_directions(shipped / "b-other.npz", [dataclasses.replace(dirs["Male"], name="other_only")], other)
    monkeypatch.setattr(edit_module, "WEIGHTS_DIR", shipped)
    assert [p.name for p in edit_module.shipped_directions_files()] == ["a-mine.npz", "b-other.npz"]
    found = available_directions(G)
    assert sorted(found) == ["age", "smiling"]  # the other generator's shipped file is skipped
    assert torch.equal(found["smiling"].vector, dirs["smiling"].vector)
    # a given file adds names and wins on clashes
    replaced = dataclasses.replace(dirs["eyeglasses"], name="smiling")
    extra = save_directions(tmp_path / "extra.npz", [replaced, dirs["Male"]], G)
    found = available_directions(G, [extra])
    assert sorted(found) == ["Male", "age", "smiling"]
    assert torch.equal(found["smiling"].vector, dirs["eyeglasses"].vector)
    # with no `directions` mapping, edit() uses them
    assert torch.allclose(edit(torch.zeros(1, G.num_ws, G.w_dim), G, "old=1", render=False).ws[0, 0],
                          dirs["age"].scale * dirs["age"].vector)
    # a given file made for another generator is refused
    theirs = save_directions(tmp_path / "theirs.npz", [dirs["Male"]], other)
    with pytest.raises(DirectionsFileError, match="not of the given one"):
        available_directions(G, [theirs])


def test_shipped_directions_move_the_classifier_scores_of_the_default_generator():
    from manipulate.attributes import DEFAULT_CLASSIFIER, attribute_scores, load_classifier
    from stylegan_ops.checkpoints import load_generator

    G = load_generator("default")
    shipped = available_directions(G)
    if "smiling" not in shipped or not DEFAULT_CLASSIFIER.is_file():
        pytest.skip("no shipped InterFaceGAN directions or attribute classifier for the default generator")
    clf = load_classifier()
    ws = sample_w(G, 8, seed=123)[:, None].repeat(1, G.num_ws, 1)
    for name, alias in [("smiling", "smile"), ("age", "old"), ("male", "male")]:
        up = attribute_scores(clf, edit(ws, G, alias, strength=2).image)[name]
        down = attribute_scores(clf, edit(ws, G, alias, strength=-2).image)[name]
        assert bool((up > down).all()), name
    # heavy_makeup and male are strongly correlated directions: conditioning on male keeps the male
    # score much nearer where it was than the plain edit does, and still adds makeup
    before = attribute_scores(clf, G.synthesis(ws))
    plain = attribute_scores(clf, edit(ws, G, "makeup=3").image)
    held = attribute_scores(clf, edit(ws, G, "makeup=3", conditions=["male"]).image)
    drift = {k: float((v["male"] - before["male"]).abs().mean()) for k, v in {"plain": plain, "held": held}.items()}
    assert drift["held"] < 0.5 * drift["plain"]
    assert float((held["heavy_makeup"] - before["heavy_makeup"]).mean()) > 0
