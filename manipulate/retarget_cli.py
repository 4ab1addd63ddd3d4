"""``ganbrush retarget PHOTO --size WxH | --sizes WxH,WxH --out FILE [--method ingan|gpnn]``: redraw a
photo at other sizes and aspect ratios with InGAN trained on it, or GPNN (:mod:`manipulate.retarget`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ganbrush_core.devices import add_device_argument
from ganbrush_core.images import IMAGE_SUFFIX_HINT, image_suffixes, write_image
from ganbrush_core.io import check_output

if TYPE_CHECKING:
    import torch


def register(subparsers: argparse._SubParsersAction) -> None:
    from manipulate.retarget import DEFAULT_STEPS, DEFAULT_WORKING_SIZE, MAX_FACTOR, MAX_WORKING_SIZE, Method

    p = subparsers.add_parser(
        "retarget", help="change a photo's size and aspect ratio with InGAN trained on that photo (or GPNN)",
        description="Train InGAN on PHOTO (a few minutes on a CPU; the model is cached under "
                    "$GANBRUSH_HOME/retarget, so further sizes of the same photo are instant) and redraw it at "
                    "--size, at the photo's own resolution; or, with --method gpnn, rebuild it from its own "
                    "patches (no training, about a minute per size at the default working size). Sizes are "
                    f"WIDTHxHEIGHT in output pixels; each side may change up to {MAX_FACTOR:g}x either way. "
                    "--sizes writes the results side by side.")
    p.add_argument("photo")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--size", help="output size WxH, e.g. 1800x800")
    group.add_argument("--sizes", help="several sizes WxH,WxH,... written side by side (one training)")
    p.add_argument("--out", required=True, help="output image (.png, .jpg, ...)")
    p.add_argument("--method", default=Method.INGAN.value, choices=[m.value for m in Method],
                   help="ingan: a GAN trained on the photo (cached; further sizes instant); gpnn: patch nearest "
                        "neighbours, no training, each size searched anew (default ingan)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    p.add_argument("--working-size", type=int, default=DEFAULT_WORKING_SIZE,
                   help=f"longest side of the training resolution (default {DEFAULT_WORKING_SIZE}, at most "
                        f"{MAX_WORKING_SIZE})")
    p.add_argument("--no-cache", action="store_true", help="train afresh and keep no model")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    add_device_argument(p)
    p.set_defaults(func=run_retarget)


def run_retarget(args: argparse.Namespace) -> int:
    from ganbrush_core.checks import check_int
    from ganbrush_core.images import read_image
    from manipulate.retarget import (
        MAX_STEPS,
        MAX_WORKING_SIZE,
        Method,
        check_size,
        fit,
        parse_size,
        parse_sizes,
        render,
        strip,
    )

    # Everything the user gave is checked before the photo is read and long before training.
    out = check_output(args.out, args.force, image_suffixes(), "--out", IMAGE_SUFFIX_HINT)
    check_int("--steps", args.steps, 1, MAX_STEPS)
    check_int("--working-size", args.working_size, 32, MAX_WORKING_SIZE)
    sizes = [parse_size(args.size)] if args.size else parse_sizes(args.sizes)
    photo = read_image(args.photo)
    H, W = photo.shape[-2:]
    sizes = [check_size((W, H), s) for s in sizes]
    model = None
    if args.method == Method.GPNN.value:
        images = [_gpnn_with_progress(photo, s, args.working_size) for s in sizes]
    else:
        if any(s != (W, H) for s in sizes):
            model = fit(photo, steps=args.steps, working_size=args.working_size, device=args.device,
                        cache=not args.no_cache, progress=True)
        images = [render(model, photo, s) if model is not None else photo.clone() for s in sizes]
    write_image(images[0] if len(images) == 1 else strip(images), out, force=args.force)
    if model is not None:
        how = "cached model" if model.info.get("cached") else f"trained in {model.info['train_seconds']:.0f} s"
        rec = model.info.get("sample_rec_l1")
        print(f"InGAN: {how} ({model.info['steps']} steps at {model.info['working_shape'][1]}x"
              f"{model.info['working_shape'][0]} px" + (f", identity reconstruction L1 {rec:.4f})" if rec is not None
                                                        else ")"))
    via = ", gpnn" if args.method == Method.GPNN.value else ""
    print(f"wrote {out} ({', '.join(f'{w}x{h}' for w, h in sizes)} from {W}x{H}{via})")
    return 0


def _gpnn_with_progress(photo: torch.Tensor, size: tuple[int, int], working_size: int) -> torch.Tensor:
    """:func:`~manipulate.retarget.render_gpnn` of one size, with a tqdm bar of its search rounds."""
    from tqdm.auto import tqdm

    from manipulate.retarget import render_gpnn

    with tqdm(desc=f"GPNN {size[0]}x{size[1]}", unit="round") as bar:
        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        image = render_gpnn(photo, size, working_size, on_step=advance)
        bar.update(bar.total - bar.n)  # on_step comes before each round: count the last one
    return image
