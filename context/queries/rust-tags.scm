; loopls additions: constants and statics.
(const_item name: (identifier) @name) @definition.constant
(static_item name: (identifier) @name) @definition.constant
