"""Import extraction and resolution per language, on small in-memory projects."""

from __future__ import annotations

import pytest

from loopls.context.imports import (
    ImportRef,
    PathIndex,
    extract_imports,
    import_graph,
    resolve_import,
    resolve_import_all,
)
from loopls.context.languages import Languages


@pytest.fixture(scope="module")
def languages() -> Languages:
    return Languages()


def refs(languages: Languages, lang: str, text: str) -> list[ImportRef]:
    source = text.encode()
    return extract_imports(lang, languages.parser(lang).parse(source), source)


def test_python_extraction(languages):
    found = refs(languages, "python", "import a.b as c, d\nfrom ..x.y import z as q, w\nfrom . import v\n"
                 "def f():\n    from m import *\n")
    assert [(r.module, r.names, r.level, r.line) for r in found] == [
        ("a.b", (), 0, 0), ("d", (), 0, 0), ("x.y", ("z", "w"), 2, 1), ("", ("v",), 1, 2), ("m", (), 0, 4),
    ]
    assert found[-1].wildcard


def test_python_resolution():
    paths = {"src/pkg/__init__.py", "src/pkg/core.py", "src/pkg/sub/__init__.py", "src/pkg/sub/leaf.py",
             "src/pkg/sub/util.py", "other/core.py"}
    index = PathIndex(paths)
    leaf = "src/pkg/sub/leaf.py"
    assert resolve_import(leaf, ImportRef("pkg.core"), index) == "src/pkg/core.py"
    assert resolve_import(leaf, ImportRef("", names=("util",), level=1), index) == "src/pkg/sub/util.py"
    assert resolve_import(leaf, ImportRef("core", level=2), index) == "src/pkg/core.py"
    assert resolve_import(leaf, ImportRef("pkg", names=("sub",)), index) == "src/pkg/sub/__init__.py"
    assert resolve_import(leaf, ImportRef("pkg.sub", names=("nothing",)), index) == "src/pkg/sub/__init__.py"
    assert resolve_import(leaf, ImportRef("os.path"), index) is None
    # an ambiguous suffix prefers the candidate nearest to the importer
    assert resolve_import("other/main.py", ImportRef("core"), index) == "other/core.py"


def test_javascript_and_typescript(languages):
    text = ("import x from './a';\nexport {y} from '../b';\nconst z = require('./c');\n"
            "import('./d');\nimport React from 'react';\n")
    assert [r.module for r in refs(languages, "javascript", text)] == ["./a", "../b", "./c", "./d", "react"]
    ts = refs(languages, "typescript", "import type {T} from './t';\nimport r = require('./r');\n")
    assert [r.module for r in ts] == ["./t", "./r"]
    paths = {"web/src/a.ts", "web/b/index.tsx", "web/src/c.js", "web/src/d.ts", "web/src/main.ts"}
    main = "web/src/main.ts"
    assert resolve_import(main, ImportRef("./a"), paths) == "web/src/a.ts"
    assert resolve_import(main, ImportRef("../b"), paths) == "web/b/index.tsx"
    assert resolve_import(main, ImportRef("./c"), paths) == "web/src/c.js"
    assert resolve_import(main, ImportRef("./d.js"), paths) == "web/src/d.ts"
    assert resolve_import(main, ImportRef("react"), paths) is None


def test_go(languages):
    text = 'package p\nimport "fmt"\nimport (\n  x "github.com/o/r/pkg/a"\n  "github.com/o/r/b"\n)\n'
    assert [r.module for r in refs(languages, "go", text)] == ["fmt", "github.com/o/r/pkg/a", "github.com/o/r/b"]
    paths = {"pkg/a/one.go", "pkg/a/two.go", "pkg/a/one_test.go", "b/b.go", "cmd/main.go"}
    assert resolve_import_all("cmd/main.go", ImportRef("github.com/o/r/pkg/a"), paths) == ["pkg/a/one.go", "pkg/a/two.go"]
    assert resolve_import("cmd/main.go", ImportRef("github.com/o/r/b"), paths) == "b/b.go"
    assert resolve_import("cmd/main.go", ImportRef("fmt"), paths) is None


def test_java(languages):
    text = "package a.b;\nimport com.foo.Bar;\nimport static com.foo.Baz.qux;\nimport com.foo.*;\nimport java.util.List;\n"
    found = refs(languages, "java", text)
    assert [(r.module, r.wildcard) for r in found] == [
        ("com.foo.Bar", False), ("com.foo.Baz", False), ("com.foo", True), ("java.util.List", False)]
    paths = {"src/main/java/com/foo/Bar.java", "src/main/java/com/foo/Baz.java", "src/main/java/a/b/App.java"}
    app = "src/main/java/a/b/App.java"
    assert resolve_import(app, found[0], paths) == "src/main/java/com/foo/Bar.java"
    assert resolve_import(app, found[1], paths) == "src/main/java/com/foo/Baz.java"
    assert resolve_import_all(app, found[2], paths) == ["src/main/java/com/foo/Bar.java", "src/main/java/com/foo/Baz.java"]
    assert resolve_import(app, ImportRef("com.foo.Bar.Inner"), paths) == "src/main/java/com/foo/Bar.java"
    assert resolve_import(app, found[3], paths) is None


def test_rust(languages):
    text = "mod foo;\nmod inline { }\nuse crate::a::b::C;\nuse super::d::{e, f::g};\nuse std::io;\nuse self::h::*;\n"
    found = refs(languages, "rust", text)
    assert [r.module for r in found] == ["self::foo", "crate::a::b::C", "super::d::e", "super::d::f::g", "std::io", "self::h"]
    assert found[-1].wildcard
    paths = {"src/lib.rs", "src/foo.rs", "src/a/mod.rs", "src/a/b.rs", "src/net/mod.rs", "src/net/tcp.rs",
             "src/net/d.rs"}
    assert resolve_import("src/lib.rs", found[0], paths) == "src/foo.rs"
    assert resolve_import("src/net/tcp.rs", found[1], paths) == "src/a/b.rs"
    assert resolve_import("src/net/tcp.rs", ImportRef("super::d::e"), paths) == "src/net/d.rs"
    assert resolve_import("src/net/tcp.rs", ImportRef("std::io"), paths) is None


def test_c_includes(languages):
    found = refs(languages, "c", '#include "x.h"\n#include <stdio.h>\n#include <proj/y.h>\n')
    assert [(r.module, r.system) for r in found] == [("x.h", False), ("stdio.h", True), ("proj/y.h", True)]
    paths = {"src/x.h", "src/main.c", "include/proj/y.h", "lib/z.hpp"}
    assert resolve_import("src/main.c", found[0], paths) == "src/x.h"
    assert resolve_import("src/main.c", found[1], paths) is None
    assert resolve_import("src/main.c", found[2], paths) == "include/proj/y.h"
    assert resolve_import("src/a.cpp", ImportRef("../lib/z.hpp"), paths) == "lib/z.hpp"


def test_import_graph_across_languages():
    files = {
        "app/main.py": "from app import util\nimport app.models\n",
        "app/__init__.py": "",
        "app/util.py": "from .models import Thing\n",
        "app/models.py": "import json\n",
        "web/index.ts": "import {a} from './lib';\n",
        "web/lib.ts": "export const a = 1;\n",
        "README.md": "# not code\n",
    }
    graph = import_graph(files)
    assert graph["app/main.py"] == {"app/util.py", "app/models.py"}
    assert graph["app/util.py"] == {"app/models.py"}
    assert graph["app/models.py"] == set()
    assert graph["web/index.ts"] == {"web/lib.ts"}
    assert graph["README.md"] == set()


def test_unknown_language_and_broken_source(languages):
    assert resolve_import("notes.txt", ImportRef("x"), {"x.txt"}) is None
    # a syntax error elsewhere in the file does not hide the good imports
    assert [r.module for r in refs(languages, "python", "import a\ndef (:\nimport b\n")][:1] == ["a"]


def test_type_only_imports_are_marked_and_can_be_left_out(languages):
    py = refs(languages, "python", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\nimport os\n")
    assert [(r.module, r.type_only) for r in py] == [("typing", False), ("b", True), ("os", False)]
    ts = refs(languages, "typescript", "import type {T} from './t';\nimport {u} from './u';\n")
    assert [(r.module, r.type_only) for r in ts] == [("./t", True), ("./u", False)]
    files = {"p/__init__.py": "", "p/a.py": "from p import b\n",
             "p/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p import a\n"}
    assert import_graph(files)["p/b.py"] == {"p/a.py"}
    assert import_graph(files, include_type_only=False)["p/b.py"] == set()


def test_axios_style_commonjs_resolves_like_es_modules():
    """CommonJS as axios writes it: a root index re-exporting with `module.exports = require`,
    a factory's instance as the default export, `require("./dir")` meaning `dir/index.js`,
    destructured requires, and the same modules imported the ES way."""
    files = {
        "index.js": "module.exports = require('./lib/axios');\n",
        "lib/axios.js": ("'use strict';\nvar utils = require('./utils');\nvar bind = require('./helpers/bind');\n"
                         "var Axios = require('./core/Axios');\nvar defaults = require('./defaults');\n"
                         "function createInstance(defaultConfig) {\n  var context = new Axios(defaultConfig);\n"
                         "  return bind(Axios.prototype.request, context);\n}\n"
                         "var axios = createInstance(defaults);\nmodule.exports = axios;\n"
                         "module.exports.default = axios;\n"),
        "lib/utils.js": "module.exports = { forEach: function forEach() {} };\n",
        "lib/helpers/bind.js": "module.exports = function bind(fn, thisArg) {\n  return fn;\n};\n",
        "lib/core/Axios.js": "const { forEach } = require('../utils');\nconst build = require('../helpers/bind.js');\n"
                             "function Axios(config) {}\nmodule.exports = Axios;\n",
        "lib/defaults/index.js": "var utils = require('../utils');\nmodule.exports = {};\n",
        "esm/client.mjs": "import axios from '../lib/axios.js';\nimport defaults from '../lib/defaults';\n",
    }
    graph = import_graph(files)
    assert graph["index.js"] == {"lib/axios.js"}
    assert graph["lib/axios.js"] == {"lib/utils.js", "lib/helpers/bind.js", "lib/core/Axios.js",
                                     "lib/defaults/index.js"}
    assert graph["lib/core/Axios.js"] == {"lib/utils.js", "lib/helpers/bind.js"}
    assert graph["lib/defaults/index.js"] == {"lib/utils.js"}
    assert graph["esm/client.mjs"] == {"lib/axios.js", "lib/defaults/index.js"}
