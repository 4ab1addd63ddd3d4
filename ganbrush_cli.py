"""The ``ganbrush`` command. Each package contributes its subcommands through ``register``."""

from __future__ import annotations

import argparse
import os
import sys

import ganbrush_pipeline
from inpainting import cli as inpainting_cli
from inversion import cli as inversion_cli
from manipulate import cli as manipulate_cli
from manipulate import edit_cli
from stylegan_ops import cli as stylegan_cli
from stylegan_ops import data_cli

# Errors whose message is meant for the user: printed as one line, no traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganbrush", description="Semantic photo manipulation with GANs.")
    sub = parser.add_subparsers(dest="command", required=True)
    train_sub = stylegan_cli.register(sub)
    data_cli.register(sub)
    inversion_cli.register(sub)
    manipulate_cli.register(sub)
    edit_cli.register(sub)
    inpainting_cli.register(sub)
    ganbrush_pipeline.register(sub)
    inpainting_cli.register_train(train_sub)
    manipulate_cli.register_train(train_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        if os.environ.get("GANBRUSH_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"ganbrush: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
