"""``specutils-cinn train``: train a cINN from a TOML configuration."""

from __future__ import annotations

import argparse

from ._common import add_parser

__all__ = ["register"]

def _cmd_train(args: argparse.Namespace) -> int:
    from ..training import train_from_config

    out = train_from_config(args.config, output=args.output, checkpoint=args.checkpoint)
    print(f"wrote model to {out}")
    return 0




def register(sub) -> None:
    """Add ``train`` to the subcommands of ``specutils-cinn``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the top-level parser.
    """
    p = add_parser(sub, "train", "train a model from a TOML configuration")
    p.add_argument("config", help="training configuration (TOML; see configs/ in the source)")
    p.add_argument("-o", "--output", default=None,
                   help="model directory to write (default: [model] output of the configuration)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="training checkpoint (.safetensors), written at the evaluation steps "
                   "([training] checkpoint_every); if it exists, the run continues from it "
                   "(default: none)")
    p.set_defaults(func=_cmd_train)
