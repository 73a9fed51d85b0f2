from planexe_ax.cli import main

raise SystemExit(main())
