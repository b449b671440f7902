"""`bertl11 soup`: average fine-tunes of one base into one model, validated for its own null-score threshold.

    bertl11 soup --models out/stage1 out/stage2-seed11 out/stage2-seed12 --data data/squad/dev-v2.0.json --out out/soup
"""

from __future__ import annotations

from . import options


def add_arguments(parser) -> None:
    parser.add_argument("--models", nargs="+", required=True, metavar="DIR",
                        help="bertl11 finetune output directories from the same base, validated on the same articles")
    options.add_data_option(parser, hub_split="train", default=None)
    options.add_out_option(parser, "a new directory for the averaged model")


def run(args) -> int:
    from ..training.soup import make_soup

    out, ingredients, scores = make_soup(args.models, args.data, args.out)
    for path, card in ingredients:
        best_f1 = card.validation_best_f1()
        print(f"  {path}: validation best F1 " + ("unknown" if best_f1 is None else f"{best_f1:.2f}"))
    print(f"wrote {out}: the average of {len(ingredients)} models, validation best F1 {scores['best_f1']:.2f} "
          f"at na_prob threshold {scores['best_f1_thresh']:.4g}")
    return 0
