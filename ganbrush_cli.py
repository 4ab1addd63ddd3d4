"""The ``ganbrush`` command. Each package contributes its subcommands through ``register``."""

from __future__ import annotations

import argparse
import os
import sys

import ganbrush_pipeline
import ganbrush_semantic
from ganbrush_compare import cli as compare_cli
from ganbrush_core import distributed
from ganbrush_core.devices import resolve_device
from inpainting import cli as inpainting_cli
from inversion import cli as inversion_cli
from manipulate import cli as manipulate_cli
from manipulate import edit_cli, labels_cli
from stylegan_ops import cli as stylegan_cli
from stylegan_ops import data_cli

# Errors whose message is meant for the user: printed as one line, no traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganbrush", description="Semantic photo manipulation with GANs.")
    sub = parser.add_subparsers(dest="command", required=True)
    train_sub = stylegan_cli.register(sub)
    data_sub = data_cli.register(sub)
    inversion_cli.register(sub)
    manipulate_cli.register(sub)
    edit_cli.register(sub)
    inpainting_cli.register(sub)
    ganbrush_pipeline.register(sub)
    compare_cli.register(sub)
    inpainting_cli.register_train(train_sub)
    manipulate_cli.register_train(train_sub)
    inversion_cli.register_train(train_sub)
    labels_cli.register_data(data_sub)
    labels_cli.register_train(train_sub)
    ganbrush_semantic.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "device", None) is not None:
            # Before any work: `--device cuda` without a GPU is one line, not a traceback after loading.
            args.device = resolve_device(args.device)
        return args.func(args)
    except USER_ERRORS as e:
        if os.environ.get("GANBRUSH_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"ganbrush: error: {message}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()  # a trainer under torchrun started a process group (a no-op otherwise)


if __name__ == "__main__":
    sys.exit(main())
