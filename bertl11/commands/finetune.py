"""`bertl11 finetune`: fine-tune an HF BERT encoder for SQuAD v2 question answering (`bertl11.training`).

    bertl11 finetune --base minilm --data data/squad/dev-v2.0.json --out out/minilm-squad2
"""

from __future__ import annotations

from ..training.recipe import PRECISIONS, TRAINING_DEVICES, Recipe
from . import options


def add_arguments(parser) -> None:
    defaults = Recipe()
    options.add_model_option(parser, option="--base", required=True, what="the encoder to start from")
    options.add_data_option(parser, hub_split="train", default=None)
    options.add_out_option(parser, "a new directory for the fine-tuned model (held-out articles are never trained on)")
    parser.add_argument("--epochs", type=float, default=defaults.epochs, help=f"passes over the training windows (default {defaults.epochs})")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"peak learning rate (default {defaults.lr})")
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help=f"share of steps warming up (default {defaults.warmup})")
    options.add_batch_option(parser, defaults.batch_size, "windows per training step", aliases=("--batch-size",))
    parser.add_argument("--max-seq-len", type=int, default=defaults.max_seq_len, help=f"tokens per window (default {defaults.max_seq_len})")
    parser.add_argument("--doc-stride", type=int, default=defaults.doc_stride, help=f"context tokens shared by neighbouring windows (default {defaults.doc_stride})")
    options.add_seed_option(parser, defaults.seed, "the shuffle and any new weights")
    parser.add_argument("--validation-articles", type=int, default=defaults.validation_articles,
                        help=f"articles at the end of the training pool kept for validation and the threshold (default {defaults.validation_articles})")
    parser.add_argument("--train-word-embeddings", action="store_true", help="also train the word embedding table (frozen by default)")
    parser.add_argument("--all-answers", action="store_true",
                        help="train on every distinct gold span of a question (SQuAD dev lists up to 5), not only the first")
    parser.add_argument("--deletion-negatives", action="store_true",
                        help="also train each answerable question on its paragraph without the answer's sentences, as unanswerable")
    options.add_device_option(parser, TRAINING_DEVICES, "where training runs; cuda for SQuAD v2 train-sized data")
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                        help="auto: bfloat16 autocast where bfloat16 GEMMs are at least as fast as float32's on this CPU "
                             "(the rule `bertl11 doctor` reports for inference) or the GPU supports bf16, else float32")
    parser.add_argument("--max-minutes", type=options.positive("--max-minutes", "minutes"), default=None,
                        help="stop training after this long (the best validated epoch so far is kept)")
    options.add_limit_option(parser, "training questions only (smoke runs)")


def run(args) -> int:
    import torch

    from ..runtime import require_visible
    from ..squad.split import train_validation
    from ..training.data import load_training_data
    from ..training.loop import base_model, device_name, model_device, train
    from ..training.output import finetune_card, fresh_output, save
    from ..training.recipe import autocast_dtype

    recipe = Recipe(epochs=args.epochs, lr=args.lr, warmup=args.warmup, batch_size=args.batch,
                    max_seq_len=args.max_seq_len, doc_stride=args.doc_stride, seed=args.seed,
                    validation_articles=args.validation_articles, freeze_word_embeddings=not args.train_word_embeddings,
                    all_answers=args.all_answers, deletion_negatives=args.deletion_negatives,
                    precision=args.precision)
    require_visible(args.device)
    out = fresh_output(args.out)
    train_set, validation_set = train_validation(load_training_data(args.data), recipe.validation_articles)
    if args.limit is not None:
        train_set = train_set.select(range(min(args.limit, len(train_set))))
    model, tokenizer, base_fingerprint = base_model(args.base, recipe.seed)
    model.to(args.device)
    where = device_name(model_device(model)) if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"finetune {args.base}: {len(train_set)} training questions, {len(validation_set)} validation questions "
          f"({recipe.validation_articles} articles); precision "
          f"{autocast_dtype(recipe.precision, args.device) or torch.float32}, {where}")
    log = train(model, tokenizer, train_set, validation_set, recipe, args.max_minutes)
    model.to("cpu")
    save(model, tokenizer, out, finetune_card(args.base, base_fingerprint, args.data, recipe, train_set, validation_set, log))
    print(f"wrote {out} after {log['steps']} steps in {log['minutes']:.1f} min"
          + (f"; best epoch {log['best_epoch']}, na_prob threshold {log['na_prob_threshold']:.4g}" if "best_epoch" in log else ""))
    return 0
