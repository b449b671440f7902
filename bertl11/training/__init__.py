"""Fine-tuning an HF BERT encoder for SQuAD v2 extractive QA, and what is made from fine-tunes.

    recipe.py   the settings of a run (`Recipe`) and the precision it trains in
    data.py     training windows and their labels, from `bertl11.squad`'s own windowing; batches; the data
    loop.py     the base model and optimiser, the training loop, validation through `squad.pipeline`
    output.py   a new output directory: the standard HF files and the model card (`bertl11.modelcard`)
    soup.py     the weight average of fine-tunes from one base, validated for its own threshold
    delta.py    the shipped minilm-squad2: a fine-tune stored as a delta from its PyPI base (`bertl11.shipped`)

Held-out articles (`squad.split.HELD_OUT_ARTICLES`) are never trained on. The last `validation_articles` articles
of the training pool pick the best epoch and the null-score threshold (the official best_f1_thresh on na_prob),
which the output's model card records and `answer`, `squad`, `demo` and the widget use by default. The output
is a standard HF directory (config.json, model.safetensors, tokenizer files) that
`BertForQuestionAnswering.from_pretrained` and `--model DIR` both load.
"""
