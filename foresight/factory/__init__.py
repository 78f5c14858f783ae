"""The shipped-model factory: the word-level tokenizer, the synthetic pretraining corpus and the
pretraining loop that make the default models in foresight/assets/ (experiments/pretrain_default.py)."""
