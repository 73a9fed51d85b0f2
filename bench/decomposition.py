"""Precision and recall per action of the rule decomposer against the tasks labelled by hand.

    python bench/decomposition.py [--samples DIR]

Prints two tables: the labelled titles alone (what tests/unit/test_decomposition_labels.py holds the rules
to), and the whole tasks as the PlanExe samples have them (description, roles, schedule), when the
samples are found (PLANEXE_SAMPLES_DIR, ../shared/planexe-samples, or --samples).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.decomposition import labelled, proposed, scores, table, title_only, whole_tasks
from tests.helpers.planexe_runs import SAMPLES_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=Path, default=SAMPLES_DIR)
    args = parser.parse_args()
    items = labelled()
    print(f"{len(items)} labelled tasks; titles alone:")
    print(table(scores(items, lambda item: proposed(*title_only(item)))))
    if args.samples.is_dir():
        print(f"\nwhole tasks of the samples in {args.samples}:")
        print(table(scores(items, whole_tasks(args.samples))))


if __name__ == "__main__":
    main()
