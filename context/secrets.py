"""The secret detector: where the secret-looking strings of a text are.

One detector serves both directions: what goes into a prompt is redacted with it
(`privacy.redact`), and what a model writes is checked with it before an editor sees it.
It knows four shapes of secret:

- private-key blocks (PEM, PGP, also `\\n`-escaped inside JSON strings, also a body whose
  BEGIN or END line lies outside the text);
- tokens with a recognisable format (cloud keys, GitHub/GitLab/Slack/Stripe/OpenAI/... tokens,
  JWTs, bearer credentials), each rule with the literal it needs so that texts without it
  cost one substring search;
- credentials inside URLs (`scheme://user:password@host`);
- values assigned to secret-named keys (`password`, `*_token`, `aws_secret_access_key`,
  `AccountKey`, ...) in code, shell, YAML, JSON, INI/TOML, `.env` and connection strings, of any
  length. Quoted values always count; unquoted ones count in configuration files, shell
  `export`/`NAME=value` lines, query strings and connection strings, and in code only when
  they look random (an unquoted identifier in code is a variable, not a secret).

Placeholders (`<...>`, `${VAR}`, `{{ x }}`, `***`, `changeme`-style templates) and
tokenizer markup (`<s>`, `<|endoftext|>`) are not secrets, which also makes redaction
idempotent: a redacted text has no findings.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Finding:
    start: int  # code-point offsets of the secret itself (the value, not its key)
    end: int
    rule: str


# File types whose `key = value` lines are configuration, where an unquoted value is a value.
CONFIG_SUFFIXES = frozenset({
    ".env", ".envrc", ".ini", ".cfg", ".conf", ".properties", ".yaml", ".yml", ".toml", ".sh", ".bash",
    ".zsh", ".fish", ".ps1", ".bat", ".cmd", ".tfvars", ".hcl", ".tf", ".mk", ".service",
})
CONFIG_NAMES = frozenset({"dockerfile", "makefile", "containerfile", "procfile", ".env", ".envrc", ".netrc"})


def is_config_path(path: str | None) -> bool:
    if not path:
        return False
    p = PurePosixPath(path.replace("\\", "/"))
    name = p.name.lower()
    return p.suffix.lower() in CONFIG_SUFFIXES or name in CONFIG_NAMES or name.startswith((".env.", "dockerfile."))


# -- private keys --------------------------------------------------------------------------

_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
# A line of a key body: base64 (or a PEM header such as Proc-Type), maybe quoted or escaped.
_BODY_LINE = re.compile(r"""[ \t"'`]*(?:[A-Za-z0-9+/=]{8,}|[A-Za-z-]+: [^\r\n]*)?(?:\\n)?[ \t"'`,+]*(?:\\n)?""")
# A whole line of 60+ base64 characters: a key body line (PEM lines are 64) seen without its
# BEGIN/END lines.
_BASE64_LINE = re.compile(r"(?m)^[ \t\"'`]*([A-Za-z0-9+/]{60,}={0,2})[ \t\"'`,]*(?:\\n)?[ \t\"'`,]*$")
_MAX_KEY_CHARS = 16384


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _body_run_after(text: str, pos: int) -> int:
    """End of the run of key-body lines starting at the line after `pos`."""
    end = _line_end(text, pos)
    while end < len(text) and end - pos < _MAX_KEY_CHARS:
        nxt = _line_end(text, end + 1)
        line = text[end + 1:nxt].rstrip("\r")
        if not line.strip() or _BODY_LINE.fullmatch(line) is None:
            break
        end = nxt
    return end


def _body_run_before(text: str, pos: int) -> int:
    """Start of the run of key-body lines ending just before the line holding `pos`."""
    start = text.rfind("\n", 0, pos) + 1
    while start > 0 and pos - start < _MAX_KEY_CHARS:
        prev = text.rfind("\n", 0, start - 1) + 1
        line = text[prev:start - 1].rstrip("\r")
        if not line.strip() or _BODY_LINE.fullmatch(line) is None:
            break
        start = prev
    return start


def _private_keys(text: str) -> list[Finding]:
    if "PRIVATE KEY" not in text and not _maybe_base64_line(text):
        return []
    found = []
    pos = 0
    ends_used: set[int] = set()
    for begin in _PEM_BEGIN.finditer(text):
        if begin.start() < pos:
            continue
        end = _PEM_END.search(text, begin.end(), begin.end() + _MAX_KEY_CHARS)
        stop = end.end() if end else _body_run_after(text, begin.end())
        if end:
            ends_used.add(end.start())
        found.append(Finding(begin.start(), stop, "private-key"))
        pos = stop
    for end in _PEM_END.finditer(text):  # an END whose BEGIN lies before the text
        if end.start() not in ends_used and not any(f.start <= end.start() < f.end for f in found):
            found.append(Finding(_body_run_before(text, end.start()), end.end(), "private-key"))
    for line in _BASE64_LINE.finditer(text):
        # a lone key line is random bytes in base64 (about 5 bits per character); a long run
        # of letters (a model stuck repeating a word) is not one
        if looks_random(line.group(1)) and entropy(line.group(1)) >= 4.0:
            found.append(Finding(line.start(1), line.end(1), "private-key-body"))
    return found


def _maybe_base64_line(text: str) -> bool:
    return len(text) >= 60 and _BASE64_LINE.search(text) is not None


# -- tokens with a known format ------------------------------------------------------------

_E = r"(?![A-Za-z0-9_])"  # not followed by a word character
# (rule, literals, characters before the literal where a match starts, pattern, must look
# random). Candidates are found by substring search for the literals (fast, in C) and the
# pattern is tried only there; that a match is not preceded by a word character is checked
# afterwards.
_TOKEN_RULES: tuple[tuple[str, tuple[str, ...], int, str, bool], ...] = (
    ("aws-access-key-id", ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"), 0, r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}" + _E, False),
    ("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), 0, r"gh[pousr]_[A-Za-z0-9]{36,255}" + _E, False),
    ("github-fine-grained-token", ("github_pat_",), 0, r"github_pat_[A-Za-z0-9_]{22,255}", False),
    ("gitlab-token", ("gl", "GR1348941"), 0,
     r"(?:gl(?:pat|dt|rt|ptt|ft|imt|oas|cbt|soat|ffct|agent)-[A-Za-z0-9_-]{20,}|GR1348941[A-Za-z0-9_-]{20,})", False),
    ("slack-token", ("xox", "xapp-"), 0, r"(?:xox[abposrce]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,})", False),
    ("slack-webhook", ("hooks.slack.com/",), 0, r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_+-]{20,}", False),
    ("stripe-key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"), 0,
     r"(?:[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,})" + _E, False),
    ("openai-key", ("sk-",), 0, r"sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_-]{20,}", True),
    ("google-api-key", ("AIza",), 0, r"AIza[0-9A-Za-z_-]{35}" + _E, False),
    ("google-oauth", ("GOCSPX-", "ya29."), 0, r"(?:GOCSPX-[A-Za-z0-9_-]{20,}|ya29\.[0-9A-Za-z_-]{20,})", False),
    ("azure-client-secret", ("Q~",), 4, r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}" + _E, False),
    ("azure-sas-signature", ("sig=",), 0, r"(?<=[?&;])sig=([A-Za-z0-9%+/=]{20,})", False),
    ("jwt", ("eyJ",), 0, r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", False),
    ("npm-token", ("npm_",), 0, r"npm_[A-Za-z0-9]{36}" + _E, False),
    ("pypi-token", ("pypi-AgE",), 0, r"pypi-AgE[A-Za-z0-9_-]{50,}", False),
    ("huggingface-token", ("hf_",), 0, r"hf_[A-Za-z0-9]{30,}" + _E, True),
    ("sendgrid-key", ("SG.",), 0, r"SG\.[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{40,}", False),
    ("shopify-token", ("shpat_", "shpca_", "shppa_", "shpss_"), 0, r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}" + _E, False),
    ("digitalocean-token", ("_v1_",), 3, r"do[opr]_v1_[a-f0-9]{64}" + _E, False),
    ("square-token", ("sq0atp-", "sq0csp-"), 0, r"sq0(?:atp|csp)-[0-9A-Za-z_-]{22,}", False),
    ("mailchimp-key", ("-us",), 32, r"[0-9a-f]{32}-us\d{1,2}" + _E, False),
    ("telegram-bot-token", (":AA",), 8, r"\d{8}:AA[0-9A-Za-z_-]{33}" + _E, False),
    ("discord-webhook", ("discord",), 0, r"discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{20,}", False),
    ("databricks-token", ("dapi",), 0, r"dapi[a-f0-9]{32}(?:-\d)?" + _E, False),
    ("bearer-credential", ("Bearer", "bearer", "BEARER", "Basic", "basic", "BASIC"), 0,
     r"(?:[Bb]earer|BEARER|[Bb]asic|BASIC)[ \t]+([A-Za-z0-9._~+/-]{16,}=*)", True),
)
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_DIGITS = frozenset("0123456789")
_KEY_PREFIX = re.compile(r"^(?:sk-(?:proj-|svcacct-|admin-|ant-\w+?-)?|hf_)")
_COMPILED_TOKEN_RULES = tuple((name, markers, back, re.compile(pattern), random)
                              for name, markers, back, pattern, random in _TOKEN_RULES)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values()) if value else 0.0


def looks_random(value: str) -> bool:
    """A machine-made string: long enough, mixed character classes, high entropy."""
    digits = any(c.isdigit() for c in value)
    classes = sum((any(c.islower() for c in value), any(c.isupper() for c in value), digits))
    return len(value) >= 12 and classes >= 2 and (digits or len(value) >= 20) and entropy(value) >= 3.0


def _tokens(text: str) -> list[Finding]:
    found = []
    for name, markers, back, pattern, random in _COMPILED_TOKEN_RULES:
        for marker in markers:
            pos = text.find(marker)
            while pos >= 0:
                m = pattern.match(text, pos - back) if pos >= back else None
                pos = text.find(marker, pos + 1)
                if m is None:
                    continue
                group = 1 if m.re.groups else 0
                start, value = m.start(group), m.group(group)
                if name == "telegram-bot-token":  # bot ids have 8 to 10 digits
                    while start > 0 and m.start() - start < 2 and text[start - 1] in _DIGITS:
                        start -= 1
                if group == 0 and start > 0 and text[start - 1] in _WORD:
                    continue  # inside a longer word
                if random and not looks_random(_KEY_PREFIX.sub("", value)):
                    continue
                found.append(Finding(start, m.end(group), name))
    return found


# -- credentials in URLs -------------------------------------------------------------------

_URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"`]*:([^@\s/'\"`]+)@", re.I)


def _url_credentials(text: str) -> list[Finding]:
    if "://" not in text or "@" not in text:
        return []
    return [Finding(m.start(1), m.end(1), "url-credentials") for m in _URL_CREDENTIALS.finditer(text)
            if not is_placeholder(m.group(1))]


# -- values of secret-named keys -------------------------------------------------------------

_KEY_HINTS = ("pass", "pwd", "secret", "token", "credential", "key", "auth", "bearer", "sig")
_IDENT_CHARS = _WORD | {".", "-"}
_IDENT_RUN_RIGHT = re.compile(r"[A-Za-z0-9_.\-]*")
_COMPONENT = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# Keys whose values people choose (any value counts) and keys whose values machines make
# (the value must look like one: 16 or more characters, or 8 with letters and digits).
PASSWORD_COMPONENTS = frozenset({"password", "passwd", "passphrase", "pwd", "pass", "secret", "secrets", "credential",
                                 "credentials"})
TOKEN_COMPONENTS = frozenset({"token", "apikey", "bearer", "auth", "pat"})
TOKEN_COMPOUNDS = ("apikey", "accesskey", "privatekey", "secretkey", "accountkey", "sharedaccesskey", "signingkey",
                   "encryptionkey", "masterkey", "authkey", "sessionkey", "licensekey")
QUERY_COMPONENTS = frozenset({"sig", "signature", "key", "code"})  # secret only in a query string
# A key naming something about a secret, not the secret itself (token_type, password_length).
NOT_SECRET_COMPONENTS = frozenset({
    "type", "types", "kind", "name", "names", "id", "ids", "url", "urls", "uri", "endpoint", "path", "file",
    "filename", "dir", "env", "var", "field", "fields", "length", "len", "size", "count", "counts", "limit",
    "max", "min", "regex", "pattern", "policy", "prompt", "label", "hint", "help", "message", "msg", "error",
    "errors", "header", "headers", "expiry", "expires", "expire", "expiration", "ttl", "timeout", "index",
    "idx", "usage", "budget", "cost", "tokens", "tokenizer", "mode", "style", "format", "method", "methods",
    "scheme", "source", "location", "param", "params", "required", "enabled", "changed", "reset", "rule",
    "rules", "class", "cls", "prefix", "suffix", "position", "pos", "start", "end", "text", "kinds", "list",
    "map", "manager", "provider", "store", "storage", "service", "validator", "strength", "reader", "parser",
    "lexer", "stream", "generator", "special", "bos", "eos", "pad", "unk", "sep", "mask", "vocab", "next",
    "prev", "hash", "hashes", "digest", "fingerprint", "salt", "state", "status", "range", "hdr", "check",
    "checker", "info", "attr", "attrs", "arg", "args", "option", "options", "flag", "flags", "handler", "callback",
    "func", "fn", "test", "tests", "example", "doc", "docs", "description", "title", "width", "height", "color",
    "regexp", "re", "fmt", "template", "placeholder", "input", "output", "button", "dialog", "form", "widget",
})
_KEYWORDS = frozenset({"none", "null", "nil", "true", "false", "undefined", "yes", "no", "on", "off", "~", "required",
                       "optional", "str", "string", "bytes", "int"})
_PLACEHOLDER = re.compile(
    r"""(?ix)^(?:
        <[^<>]*>                      # <your-key>, <redacted>, <s>, <|endoftext|>
      | \[[A-Z_]+\]                   # [CLS]
      | \$\{[^}]*\} | \$\([^)]*\) | \$[A-Za-z_][A-Za-z0-9_]* | %[A-Za-z_][A-Za-z0-9_]*%
      | .*\{.*\}.* | .*%(?:\([A-Za-z0-9_]*\))?[-+ #0-9.]*[sdrfx].*
      | [*x.•]+ | …
      | (?:your|my|insert|enter|put|add|replace)[-_ ].* | .*(?:placeholder|redacted|xxxx).*
      | changeme | change[-_]me | secret | password | token | none | null
    )$""")
# After a key: its closing quote or bracket, then the separator (a type annotation may sit
# between a code key and its `=`; configuration formats have none).
_SEPARATORS = r""":=|=>|(?<![=!<>])=(?![=>~])|:(?![:=/\\])"""
_AFTER_KEY_CODE = re.compile(
    r"""(?P<close>["'`]?\]?["'`]?)[ \t]*(?P<sep>:[ \t]*[A-Za-z_&*][^=\n"'`:;]{0,40}?[ \t]*=(?!=)|"""
    + _SEPARATORS + r")[ \t]*")
_AFTER_KEY_CONFIG = re.compile(r"""(?P<close>["'`]?\]?["'`]?)[ \t]*(?P<sep>""" + _SEPARATORS + r")[ \t]*")
_VALUE = re.compile(
    r"""(?:[rRbBuUfF]{1,2}(?=["'`]))?
        (?:"(?P<dq>(?:[^"\\\r\n]|\\.)*)"|'(?P<sq>(?:[^'\\\r\n]|\\.)*)'|`(?P<bq>[^`\r\n]*)`
         |(?P<bare>[^\s"'`,;)\]}&]+))""",
    re.X)
_SHELL_PREFIX = re.compile(r"[ \t]*(?P<word>(?:export|set|setenv|ENV|ARG|declare(?: -x)?)[ \t]+)?")
_IDENTIFIER_CHAIN = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:(?:\.|::|->)[A-Za-z_$][A-Za-z0-9_$]*)*")
_NUMBER = re.compile(r"[+-]?(?:\d[\d_]*\.?\d*(?:e[+-]?\d+)?|0x[0-9a-f]+)", re.I)
_XML_SECRET = re.compile(
    r"(?i)<(?P<tag>[\w:.-]*(?:password|passwd|secret|token|apikey|api_key|accesskey)[\w:.-]*)>(?P<v>[^<\s]+)</(?P=tag)>")


def components(key: str) -> list[str]:
    """`aws_secret_access_key`, `dbPassword`, `X-Api-Key` -> lower-case words."""
    return [c.lower() for c in _COMPONENT.findall(key)]


def key_strength(key: str, in_query: bool = False) -> str | None:
    """"password" for a key whose value a person chose, "token" for one a machine made, None
    for a key that does not name a secret (or names something about one: `token_type`)."""
    parts = components(key)
    if not parts or any(p in NOT_SECRET_COMPONENTS for p in parts):
        return None
    if any(p in PASSWORD_COMPONENTS for p in parts):
        return "password"
    joined = "".join(parts)
    if any(p in TOKEN_COMPONENTS for p in parts) or any(c in joined for c in TOKEN_COMPOUNDS):
        return "token"
    return "token" if in_query and any(p in QUERY_COMPONENTS for p in parts) else None


def is_placeholder(value: str) -> bool:
    return _PLACEHOLDER.match(value.strip()) is not None


def _secret_value(value: str, quoted: bool, config_like: bool, strength: str) -> bool:
    if not value or not any(c.isalnum() for c in value) or is_placeholder(value) or value.lower() in _KEYWORDS:
        return False
    if strength == "token" and not (any(c.isalpha() for c in value) and (
            len(value) >= 16 or (len(value) >= 8 and any(c.isdigit() for c in value)))):
        return False  # machine-made credentials are long, or mix letters and digits
    if quoted:
        return not any(c.isspace() for c in value)
    if value[:1] in "|>&*!":
        return False  # YAML block scalars, anchors, aliases and tags
    if config_like:
        return True
    if "(" in value or "[" in value or _IDENTIFIER_CHAIN.fullmatch(value) or _NUMBER.fullmatch(value):
        return False  # code: a variable, call or number
    return looks_random(value)


def _identifier_start(text: str, pos: int) -> int:
    start = pos
    while start > 0 and pos - start < 200 and text[start - 1] in _IDENT_CHARS:
        start -= 1
    return start


def _hints(text: str) -> list[int]:
    """Where a word that may name a secret occurs (case-insensitive), by substring search:
    much faster than a case-insensitive regular expression."""
    lower = text.lower()
    if len(lower) != len(text):  # a few characters lower-case to two: keep positions right
        lower = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    hits = []
    for word in _KEY_HINTS:
        pos = lower.find(word)
        while pos >= 0:
            hits.append(pos)
            pos = lower.find(word, pos + len(word))
    return sorted(hits)


def _config_like(text: str, start: int, end: int, before: str, after: re.Match) -> bool:
    """Whether an unquoted value here is a value (not code): a query or connection string,
    a `name=value` inside a string literal, a shell `export NAME=value` or `NAME=value` line."""
    tight = after.group("close") == "" and after.group(0) == "="  # name=value, nothing between
    if before in "?&;" or (before in "\"'" and tight):
        return True
    if after.group("sep") != "=" or after.group("close"):
        return False
    line_start = text.rfind("\n", 0, start) + 1
    prefix = _SHELL_PREFIX.match(text, line_start, start)
    if prefix is None or prefix.end() != start:
        return False
    return prefix.group("word") is not None or (tight and text[start:end].isupper())


def _assignments(text: str, config: bool) -> list[Finding]:
    found = []
    seen: set[int] = set()
    after_key = _AFTER_KEY_CONFIG if config else _AFTER_KEY_CODE
    for hint in _hints(text):
        start = _identifier_start(text, hint)
        if start in seen:
            continue
        seen.add(start)
        end = _IDENT_RUN_RIGHT.match(text, hint).end()
        before = text[start - 1] if start > 0 else "\n"
        strength = key_strength(text[start:end], in_query=before in "?&;")
        if strength is None:
            continue
        after = after_key.match(text, end)
        value = _VALUE.match(text, after.end()) if after is not None else None
        if value is None:
            continue
        name = next(g for g in ("dq", "sq", "bq", "bare") if value.group(g) is not None)
        quoted = name != "bare"
        config_like = config or (not quoted and _config_like(text, start, end, before, after))
        if _secret_value(value.group(name), quoted, config_like, strength):
            found.append(Finding(value.start(name), value.end(name), "secret-assignment"))
    for m in _XML_SECRET.finditer(text) if "</" in text else ():
        if _secret_value(m.group("v"), True, True, key_strength(m.group("tag")) or "token"):
            found.append(Finding(m.start("v"), m.end("v"), "secret-assignment"))
    return found


# -- all together --------------------------------------------------------------------------

def find_secrets(text: str, path: str | None = None) -> list[Finding]:
    """The secrets in `text`, sorted, overlapping findings merged. `path` (the file the text
    comes from, if known) lets configuration formats count their unquoted values."""
    if not text:
        return []
    found = _private_keys(text) + _tokens(text) + _url_credentials(text) + _assignments(text, is_config_path(path))
    return merge(found)


def merge(found: list[Finding]) -> list[Finding]:
    merged: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -f.end)):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            if f.end > last.end:
                merged[-1] = Finding(last.start, f.end, last.rule)
            continue
        if f.end > f.start:
            merged.append(f)
    return merged
