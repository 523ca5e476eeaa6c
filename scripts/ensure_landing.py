"""Make sure a landing dataset exists and say which one the pipeline will read.

Order: LANDING_DIR (env or .env), then data/landing/ (the course zip unpacked there,
its `datalake/landing` folder accepted as is), else the project's generated dataset in
data/generated_landing/ (generated here on first use, seed 7, scale 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lakehouse_utils.config import PROJECT_ROOT, Settings


def main() -> int:
    landing = Path(Settings.load().landing_dir)
    generated = PROJECT_ROOT / "data" / "generated_landing"
    if (landing / "customers_orgs.csv").exists():
        print(f"landing data: {landing}")
        return 0
    if landing.resolve() != generated.resolve():
        print(f"LANDING_DIR={landing} has no customers_orgs.csv; point it at a landing folder "
              "(the course zip's datalake/landing) or unset it to use generated data", file=sys.stderr)
        return 1
    from lakehouse_utils.generator.landing import generate

    print(f"no course data found; generating the synthetic dataset into {generated} ...")
    generate(generated, seed=7, scale=1.0)
    print(f"landing data: {generated}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
