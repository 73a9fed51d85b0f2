"""``python -m planexe_ax``: the planexe-ax command."""

from planexe_ax.cli import main

raise SystemExit(main())
