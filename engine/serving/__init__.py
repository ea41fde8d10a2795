"""The serving part of the engine: paged K/V blocks, sequences, the scheduler, the model
runner, the engine core and its async request API, speculative decoding."""
