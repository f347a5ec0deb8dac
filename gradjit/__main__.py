"""``python -m gradjit`` and the ``gradjit-demo`` console script: the main job (see ``gradjit.demo``).

Kept to an entry point so that importing ``gradjit`` never loads the demo or scikit-learn.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the tour: the talk's examples, a Wengert list, an MLP on the digits, a gradient check."""
    from .demo import main as demo_main

    return demo_main(argv)


if __name__ == "__main__":
    sys.exit(main())
