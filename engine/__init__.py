"""loopls.engine: the embedded inference engine.

It works on token ids and requests, never on documents: it imports neither pygls nor
tree-sitter nor GitPython.
"""
