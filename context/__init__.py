"""loopls.context: project understanding and prompt building. Never imports torch."""
