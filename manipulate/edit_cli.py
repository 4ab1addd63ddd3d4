"""``ganbrush edit``: move an inverted face along a named direction and render it."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from ganbrush_core.devices import add_device_argument

    p = subparsers.add_parser(
        "edit", help="edit an inverted face along a named direction (smile, age, ...)",
        description="Apply a named direction to the latents of INVERSION (from `ganbrush invert`) and write the "
                    "edited face as an image. PTI inversions render with their tuned generator. With --mask, only the "
                    "masked region changes (Image2StyleGAN++ optimisation; --composite keeps the rest exact).")
    p.add_argument("inversion", metavar="INVERSION", help="inversion file (.npz) written by `ganbrush invert`")
    p.add_argument("--direction", required=True, help="direction name, e.g. smile, age, eyeglasses (see the error "
                                                       "message of an unknown name for the list)")
    p.add_argument("--strength", type=float, required=True, help="how far to move, in the direction's units "
                                                                 "(about one standard deviation of w each)")
    p.add_argument("--layers", default=None, help="ws index range FIRST-LAST (inclusive); default the direction's own")
    p.add_argument("--condition", nargs="+", default=[], metavar="NAME",
                   help="directions to hold fixed (projected out of the edit), e.g. --condition male age")
    p.add_argument("--directions", nargs="+", default=[], metavar="FILE",
                   help="extra directions files (.npz from `ganbrush directions`); they win on name clashes")
    p.add_argument("--mask", default=None, help="image of the region that may change (white = change), any size")
    p.add_argument("--local-steps", type=int, default=100, help="optimisation steps of the masked edit (--mask)")
    p.add_argument("--composite", action="store_true",
                   help="with --mask: paste the result into the unedited face so pixels outside the mask are exact")
    p.add_argument("--generator", default="default", help="checkpoint path, or 'default' for the shipped one")
    p.add_argument("--out", required=True, help="output image (.png; with --photo any photo format)")
    p.add_argument("--photo", default=None,
                   help="the photo the inversion was made from: write that photo with the edit at its own resolution "
                        "(the generator supplies only the change) instead of the generator's aligned face")
    p.add_argument("--face", type=int, default=0, help="with --photo: which face was inverted, 0 = the largest")
    p.add_argument("--detector", default="hog", choices=["hog", "cnn"], help="with --photo: dlib face detector")
    p.add_argument("--render", default="native", choices=["native", "residual", "generator"],
                   help="with --photo: native (flow + residual onto the photo's pixels), residual (no flow) or "
                        "generator (its render scaled up and pasted, for comparison)")
    p.add_argument("--save-latent", default=None, metavar="OUT.npz",
                   help="also write the edited latents as an inversion file (editable again)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_device_argument(p)
    p.set_defaults(func=run_edit)


def run_edit(args: argparse.Namespace) -> int:
    import dataclasses

    from PIL import Image
    from tqdm.auto import tqdm

    from ganbrush_core.images import IMAGE_SUFFIX_HINT, image_grid, image_suffixes, save_pil
    from ganbrush_core.io import check_output, write_all
    from inversion.photos import load_photo
    from inversion.result import Inversion
    from manipulate.directions import parse_layers
    from manipulate.edit import available_directions, check_strength, edit
    from manipulate.local_edit import check_local_edit_settings, composite, load_mask, local_edit
    from stylegan_ops.checkpoints import load_generator

    # Every check that needs no file read comes first: outputs, numbers, flag combinations.
    targets = [check_output(args.out, args.force, image_suffixes(), "--out", IMAGE_SUFFIX_HINT)]
    if args.save_latent:
        targets.append(check_output(args.save_latent, args.force, {".npz"}, "--save-latent"))
    check_strength(args.strength)
    check_local_edit_settings(args.local_steps)
    if args.composite and not args.mask:
        raise ValueError("--composite needs --mask (the region whose edit is pasted)")
    if args.face < 0:
        raise ValueError(f"--face must be 0 or more (0 = the largest face), got {args.face}")
    photo = load_photo(args.photo) if args.photo else None  # a bad photo fails before the slow steps
    layers = parse_layers(args.layers) if args.layers else None
    G = load_generator(args.generator, device=args.device)
    inv = Inversion.load(args.inversion, G)
    directions = available_directions(G, args.directions)
    result = edit(inv, G, args.direction, strength=args.strength, layers=layers, conditions=args.condition,
                  directions=directions)
    ws, image = result.ws, result.image
    if args.mask:
        mask = load_mask(args.mask, G.img_resolution)
        with tqdm(desc="local edit", unit="step", total=args.local_steps) as bar:
            local = local_edit(result.generator, inv.ws, ws, mask, steps=args.local_steps, noises=inv.noises,
                               progress=lambda step, total, losses: bar.update(1))
        ws, image = local.ws, local.image
        if args.composite:
            image = composite(inv.render(G), image, mask)
    if photo is not None:
        from manipulate.transfer import transfer_edit

        aligned = face_of(photo, inv, G.img_resolution, args.face, args.detector)
        picture = Image.fromarray(transfer_edit(photo, aligned, inv.render(G), image, args.render))
    else:
        picture = image_grid(image, ncols=len(image), pad=0)  # one face: the image itself; several: side by side
    edited = None
    if args.save_latent:
        edited = dataclasses.replace(inv, ws=ws.cpu(), reconstruction=image.cpu(), history=[], final_losses={})
    with write_all(targets, args.force) as tmp:  # both files or neither; no folder before they are written
        options = {"quality": 95} if Path(args.out).suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
        save_pil(picture, tmp[0], force=True, **options)
        if edited is not None:
            edited.save(tmp[1], force=True)
    written = [str(t) for t in targets]
    print(f"edited {args.inversion} along {args.direction} by {args.strength:+g}"
          f"{' inside the mask' if args.mask else ''}; wrote {', '.join(written)}")
    return 0


#: Mean absolute difference (uint8 units) above which an aligned face is not the inversion's target.
TARGET_MISMATCH = 8.0


def face_of(photo, inv, res: int, index: int, detector: str):
    """Face ``index`` of ``photo`` aligned at ``res``, checked against the inversion's target (when
    the file keeps one) so that an edit is never carried onto another face."""
    import numpy as np

    from inversion.align import align_face, detect_faces, pick_face

    aligned = align_face(photo, pick_face(detect_faces(photo, detector=detector), index, "--face"), res)
    if inv.target is not None:
        from ganbrush_core.images import to_uint8

        target = to_uint8(inv.target)[0].astype(np.float32)
        diff = float(np.abs(target - aligned.image.astype(np.float32)).mean())
        if target.shape == aligned.image.shape and diff > TARGET_MISMATCH:
            raise ValueError(f"face {index} of this photo is not the face that was inverted (mean difference "
                             f"{diff:.1f}/255); pass the photo and --face the inversion was made from")
    return aligned
