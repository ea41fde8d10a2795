"""loopls.lsp: the pygls language server, its options, conversions and the CLI."""
