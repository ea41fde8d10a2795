; loopls additions: module-level bindings, type aliases and enums (thin in the wheel's tags.scm).
(program (lexical_declaration (variable_declarator name: (identifier) @name) @definition.constant))
(export_statement (lexical_declaration (variable_declarator name: (identifier) @name) @definition.constant))
(type_alias_declaration name: (type_identifier) @name) @definition.type
(enum_declaration name: (identifier) @name) @definition.type
(class_declaration name: (type_identifier) @name) @definition.class
