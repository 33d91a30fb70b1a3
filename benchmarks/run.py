"""The one entry point for every measured figure: run a study, or render the pages from the stored results.

    .venv/bin/python benchmarks/run.py list                       # the studies, what each measures
    .venv/bin/python benchmarks/run.py demo                       # run (or reuse) a study -> docs/results/demo.json
    .venv/bin/python benchmarks/run.py synthetic --seeds 0,1,2    # other seeds than the study's own
    .venv/bin/python benchmarks/run.py inpainters --quick         # a reduced run (marked so where it is shown)
    .venv/bin/python benchmarks/run.py render                     # README.md and docs/results.md from docs/results/
    .venv/bin/python benchmarks/run.py render --check             # exit 1 naming each figure that differs

A study runs its experiments through the library's resumable ``experiment`` in ``runs/studies/<study>/``
(``--out``): rerunning it reuses every finished run. Its figures go to ``docs/results/<study>.json`` with the
command, commit, machine, date and seeds; ``render`` writes the figure blocks of the pages from them and marks a
figure stale when a source file it depends on changed since it was measured.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _render import check_pages, render_pages  # noqa: E402
from _studies import RUNS, STUDIES, Context, load_all, write_record  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    load_all()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", choices=["list", "render", *STUDIES.names()], metavar="STUDY",
                    help=f"list, render, or a study: {', '.join(STUDIES.names())}")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: the study's own)")
    ap.add_argument("--quick", action="store_true", help="a reduced run (fewer seeds, epochs or conditions)")
    ap.add_argument("--out", type=Path, default=RUNS, help="where run folders go (default runs/studies)")
    ap.add_argument("--check", action="store_true", help="render: change nothing, exit 1 if a page differs")
    ap.add_argument("--dry-run", action="store_true", help="a study: say what it would run and stop")
    args = ap.parse_args(argv)
    if args.study == "list":
        for name in STUDIES.names():
            study = STUDIES.get(name)
            needs = f" (needs {study.needs})" if study.needs else ""
            print(f"{name:16s} {study.title}{needs}: {study.about}")
        return 0
    if args.study == "render":
        if args.check:
            problems = check_pages()
            for line in problems:
                print(line, file=sys.stderr)
            return 1 if problems else 0
        for page in render_pages():
            print(f"rendered {page}")
        return 0
    study = STUDIES.get(args.study)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else (study.quick_seeds if args.quick else study.seeds)
    ctx = Context(seeds=seeds, quick=args.quick, out=args.out / study.name)
    command = ".venv/bin/python benchmarks/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    why = study.available(args.quick)
    if args.dry_run:
        print(f"{study.name}: {study.about}; seeds {seeds}; runs in {ctx.out}; command: {command}"
              + (f"; cannot run here: {why}" if why else ""))
        return 0
    if why:
        print(f"benchmarks/run.py {args.study}: cannot run here: {why}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    measured = study.measure(ctx)
    path = write_record(study, ctx, measured, command, time.perf_counter() - start)
    for name, table in measured.tables.items():
        from _render import markdown_table

        print(f"\n{study.name}/{name}: {table.caption}\n{markdown_table(table.header, table.rows)}")
        for note in table.notes:
            print(f"* {note}")
    for name, value in measured.values.items():
        print(f"{study.name}/{name}: {value}")
    print(f"\nwrote {path}; `.venv/bin/python benchmarks/run.py render` puts it on the pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
