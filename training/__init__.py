"""How loopls's embedded default model is made: corpus, tokenizer, samples, training, export.

Not part of the installed package: run from a checkout with `python -m training`
(docs/default-model.md). It imports the engine's model modules and the context packer, so
the model is trained on exactly the layers and the prompt layout that loopls runs.
"""
