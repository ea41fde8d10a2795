"""The model part of the engine: configuration, layers and models, checkpoint loading,
tokenizers, sampling, plain generation and the tensor-parallel transform."""
