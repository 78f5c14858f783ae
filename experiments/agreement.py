"""Spearman correlation between eap / eap-ig node scores and exact node patching
on the default model.

    python experiments/agreement.py [--tasks ioi induction gender] [--pairs 64]
"""

from __future__ import annotations

import argparse

from scipy.stats import spearmanr

from foresight.attribution import attribute
from foresight.encoding import encode_pairs
from foresight.models import load_model
from foresight.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["ioi", "induction", "gender"])
    parser.add_argument("--pairs", type=int, default=64)
    args = parser.parse_args()
    model, tokenizer = load_model("default")
    print("| task | eap vs patching | eap-ig (m=5) vs patching |\n| --- | ---: | ---: |")
    for name in args.tasks:
        batch = encode_pairs(tokenizer, get_task(name).attribution_pairs(args.pairs))
        exact = attribute(model, batch, method="patching").values
        eap = spearmanr(attribute(model, batch, method="eap").values, exact).statistic
        ig = spearmanr(attribute(model, batch, method="eap-ig").values, exact).statistic
        print(f"| {name} | {eap:.3f} | {ig:.3f} |")


if __name__ == "__main__":
    main()
