; loopls additions: macros and enumerators (the wheel's tags.scm has no references at all).
(preproc_def name: (identifier) @name) @definition.macro
(preproc_function_def name: (identifier) @name) @definition.macro
(enumerator name: (identifier) @name) @definition.constant
