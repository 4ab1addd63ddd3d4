"""``ganbrush invert``: photo -> aligned face -> latent code -> reconstruction pasted back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inversion.project import ProjectionSettings

OUTPUT_FILES = ("aligned.png", "reconstruction.png", "inversion.npz", "pasted.png")


def add_mixed_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--mixed-precision`` / ``--no-mixed-precision`` (``ProjectionSettings.mixed_precision``)."""
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                        help="run the generator in the inversion loop under autocast (bf16 on the CPU, fp16 on "
                             "CUDA); default off (see the README's GPU users)")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ganbrush_core.devices import add_device_argument
    from inversion.project import METHODS

    p = subparsers.add_parser(
        "invert", help="project a face from a photo into the generator's latent space",
        description="Find the faces in PHOTO (largest first), align one to the generator's resolution, invert it "
                    f"and write {', '.join(OUTPUT_FILES)} into --out.")
    p.add_argument("photo", help="photo file (JPEG, PNG, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--generator", default="default", help="checkpoint path, or 'default' for the shipped one")
    p.add_argument("--method", default=None, choices=METHODS,
                   help="default: encoder+pti where the encoder fits the generator (the shipped pair), else w+")
    p.add_argument("--steps", type=int, default=None,
                   help="W / W+ optimisation steps (the pivot of pti), 1..10000 (default 300)")
    p.add_argument("--pti-steps", type=int, default=None,
                   help="generator tuning steps for --method pti and encoder+pti, 0..10000 (default 200)")
    p.add_argument("--encoder", default="default",
                   help="encoder file for --method encoder / encoder+pti ('default': the shipped one, which fits "
                        "only the shipped generator)")
    p.add_argument("--face", type=int, default=0, help="which face, 0 = the largest (see the list printed)")
    p.add_argument("--detector", default="hog", choices=["hog", "cnn"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs in --out")
    add_mixed_precision_argument(p)
    add_device_argument(p)
    p.set_defaults(func=run_invert)


def run_invert(args: argparse.Namespace) -> int:
    from ganbrush_core.io import check_output

    # Every check that needs no photo and no generator comes first: a refusal takes no time.
    out = Path(args.out)
    targets = [check_output(out / name, args.force, what="--out") for name in OUTPUT_FILES]
    from inversion.project import projection_settings

    overrides = {"seed": args.seed}
    if args.mixed_precision is not None:
        overrides["mixed_precision"] = args.mixed_precision
    if args.pti_steps is not None:
        overrides["pti_steps"] = args.pti_steps
    settings = projection_settings(args.steps, **overrides)
    if args.face < 0:
        raise ValueError(f"--face must be 0 or more (0 = the largest face), got {args.face}")
    return _invert(args, out, targets, settings)


def _invert(args: argparse.Namespace, out: Path, targets: list[Path], settings: ProjectionSettings) -> int:
    import numpy as np
    from PIL import Image
    from tqdm.auto import tqdm

    from ganbrush_core.images import save_pil, to_uint8, uint8_to_float
    from ganbrush_core.io import write_all
    from inversion.align import NoFaceError, align_face, detect_faces, paste_back, pick_face
    from inversion.photos import load_photo
    from inversion.project import ENCODER_METHODS, default_method, invert, resolve_encoder
    from stylegan_ops.checkpoints import load_generator

    photo = load_photo(args.photo)
    G = load_generator(args.generator, device=args.device)
    if args.method is None:
        args.method = default_method(G, args.encoder)
    elif args.method in ENCODER_METHODS:
        resolve_encoder(args.encoder, G)  # an encoder for another generator: refused before any work
    try:
        faces = detect_faces(photo, detector=args.detector)
    except NoFaceError as e:
        raise NoFaceError(f"{args.photo}: {e}") from None
    for i, face in enumerate(faces):
        left, top, right, bottom = face.box
        print(f"face {i}: box ({left:.0f}, {top:.0f}, {right:.0f}, {bottom:.0f})")
    aligned = align_face(photo, pick_face(faces, args.face, "--face"), G.img_resolution)
    target = uint8_to_float(aligned.image)
    with tqdm(desc=f"invert ({args.method})", unit="step") as bar:
        def progress(step: int, total: int, losses: dict[str, float]) -> None:
            bar.total = total
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
            bar.update(1)

        result = invert(G, target, method=args.method, progress=progress, settings=settings, encoder=args.encoder)
    recon = to_uint8(result.reconstruction)[0]
    pasted = paste_back(photo, aligned, recon)
    # All four files or none; the folder is created only once they are all written.
    with write_all(targets, args.force) as tmp:
        images = (aligned.image, recon, None, np.asarray(pasted))
        for name, path, image in zip(OUTPUT_FILES, tmp, images):
            if name.endswith(".npz"):
                result.save(path, force=True)
            else:
                save_pil(Image.fromarray(image), path, force=True)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.final_losses.items())
    print(f"inverted face {args.face} with {args.method} in {result.steps} steps ({result.seconds:.1f} s): {losses}; "
          f"wrote {', '.join(OUTPUT_FILES)} to {out}")
    return 0


def register_train(train_sub: argparse._SubParsersAction) -> None:
    """Add ``encoder`` to the ``ganbrush train`` subcommands (``train_sub`` is that group's
    subparsers object, as created by stylegan_ops.cli)."""
    from ganbrush_core.devices import add_device_argument
    from inversion.encoder_train import PRESETS

    p = train_sub.add_parser(
        "encoder", help="train the e4e-style encoder (face -> W+ in one pass) for a generator",
        description="Train an encoder against a fixed generator on packed train-split faces (pixel L2 + LPIPS on "
                    "real faces, latent loss on generated ones, e4e's offset regulariser, progressive offsets and "
                    "latent discriminator). Writes RUN/encoder.safetensors (bound to the generator), "
                    "checkpoint.pt, log.jsonl, samples_<step>.png and losses.png.")
    p.add_argument("--data", required=True,
                   help="train-split folder from `ganbrush data faces --res R --out DIR` (R = the generator's)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--generator", default="default", help="checkpoint path, or 'default' for the shipped one")
    p.add_argument("--steps", type=int, required=True, help="train until this many steps (counted from the start)")
    p.add_argument("--preset", default="default", choices=list(PRESETS), help="tiny: tests and smoke runs")
    p.add_argument("--batch", type=int, default=None, help="real faces per step (default 8)")
    p.add_argument("--interval", type=int, default=None, help="steps between checkpoints and samples (default 200)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", default=None, help="run folder to continue from (usually the same as --out); "
                                                  "its saved settings win")
    p.add_argument("--force", action="store_true", help="start over in an --out that holds a run")
    add_device_argument(p)
    p.set_defaults(func=_train_encoder)


def _train_encoder(args: argparse.Namespace) -> int:
    import dataclasses

    from ganbrush_core.checks import check_int
    from inversion.encoder_train import ENCODER_FILE, PRESETS, EncoderTrainConfig, train_encoder

    check_int("--steps", args.steps, 1, 10_000_000)
    overrides = {k: v for k, v in (("batch", args.batch), ("steps_per_interval", args.interval),
                                   ("seed", args.seed)) if v is not None}
    for flag, value in (("--batch", args.batch), ("--interval", args.interval)):
        if value is not None:
            check_int(flag, value, 1, 100_000)
    cfg = dataclasses.replace(EncoderTrainConfig(generator=args.generator, **PRESETS[args.preset]), **overrides)
    trainer = train_encoder(cfg, args.data, args.out, args.steps, device=args.device, resume_from=args.resume,
                            force=args.force)
    last = next((r for r in reversed(trainer.history) if "heldout_lpips" in r), None)
    score = f", held-out LPIPS {last['heldout_lpips']:.3f}" if last else ""
    print(f"wrote {Path(args.out) / ENCODER_FILE} ({trainer.step} steps{score})")
    return 0
