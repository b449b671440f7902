"""`bertl11 finetune`'s training step: seconds per step, and what one epoch of SQuAD v2 train would take.

    python benchmarks/finetune_benchmark.py                              # minilm on the CPU, 20 steps
    python benchmarks/finetune_benchmark.py --device cuda --steps 200    # on a GPU
    python benchmarks/finetune_benchmark.py --base tiny --steps 3        # smoke run

It runs `bertl11.training.loop.train` itself, with the default recipe (or --all-answers, --precision), on the real windows of the
training pool of data/squad/dev-v2.0.json, for --steps steps and no validation, and times the loop. The
projection scales those steps to SQuAD v2 train's 130,319 questions (the `rajpurkar/squad_v2` dataset card)
at the windows per question this recipe makes of the training pool: an estimate, since train's paragraphs are
not these.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import torch

from bertl11.commands import options
from bertl11.training.data import load_training_data, training_windows
from bertl11.training.loop import base_model, train
from bertl11.training.recipe import PRECISIONS, TRAINING_DEVICES, Recipe
from bertl11.runtime import require_visible
from bertl11.squad.split import train_validation

SQUAD_V2_TRAIN_QUESTIONS = 130_319


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_model_option(parser, option="--base", default="minilm", what="the encoder to train")
    options.add_data_option(parser, hub_split="train", default=str(options.LOCAL_DEV_FILE))
    options.add_device_option(parser, TRAINING_DEVICES, "where training runs")
    parser.add_argument("--steps", type=options.count("--steps"), default=20, help="training steps to time (default %(default)s)")
    parser.add_argument("--all-answers", action="store_true")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    args = parser.parse_args()
    require_visible(args.device)

    recipe = Recipe(all_answers=args.all_answers, precision=args.precision)
    train_set, _ = train_validation(load_training_data(args.data), recipe.validation_articles)
    model, tokenizer, _ = base_model(args.base, recipe.seed)
    model.to(args.device)
    windows, _ = training_windows(tokenizer, train_set, recipe)
    steps_per_epoch = math.ceil(len(windows) / recipe.batch_size)
    timed = replace(recipe, epochs=args.steps / steps_per_epoch)
    log = train(model, tokenizer, train_set, train_set.select([]), timed)

    seconds_per_step = 60 * log["minutes"] / log["steps"]
    windows_per_question = len(windows) / len(train_set)
    train_steps = math.ceil(SQUAD_V2_TRAIN_QUESTIONS * windows_per_question / recipe.batch_size)
    where = log["device"] if args.device == "cuda" else f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"
    print(f"{args.base} on {where}, precision {log['precision']}, batch {recipe.batch_size} x up to {recipe.max_seq_len} tokens")
    print(f"{log['steps']} steps in {60 * log['minutes']:.1f} s: {seconds_per_step:.3f} s/step, "
          f"{recipe.batch_size / seconds_per_step:.1f} windows/s")
    print(f"SQuAD v2 train, estimated: {SQUAD_V2_TRAIN_QUESTIONS:,} questions x {windows_per_question:.3f} windows "
          f"= {train_steps:,} steps, {train_steps * seconds_per_step / 3600:.2f} h per epoch")


if __name__ == "__main__":
    main()
