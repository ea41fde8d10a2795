"""The completion path: service (debounce, cache, prompt, generation), post-processing with
the syntax tree, LSP items and acceptance counters."""
