"""The `sql:` sanitizing rule: exactly one SQL expression over the table's own columns, parsed and re-rendered.

What must always hold: no character of a policy file reaches PROD as SQL text. A `sql:` rule is
tokenized and parsed here into a small tree (literals, the table's own columns, functions from a
fixed list, operators, casts to known types, CASE); the SQL sent to PROD is rendered from that tree
with quoted identifiers and literals. Anything outside that language (a `;`, a comment, a subquery,
a dollar-quoted string, an unknown function) is refused with one line before anything is copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

FUNCTIONS = frozenset(
    {
        "abs", "btrim", "ceil", "ceiling", "char_length", "coalesce", "concat", "concat_ws", "date_part",
        "date_trunc", "floor", "greatest", "initcap", "jsonb_build_array", "jsonb_build_object", "least", "left",
        "length", "lower", "lpad", "ltrim", "make_date", "md5", "mod", "nullif", "octet_length", "regexp_replace",
        "repeat", "replace", "reverse", "right", "round", "rpad", "rtrim", "split_part", "substr", "to_char",
        "to_jsonb", "translate", "trim", "trunc", "upper",
    }
)  # fmt: skip
TYPES = frozenset(
    {
        "bigint", "bool", "boolean", "bytea", "date", "double precision", "inet", "int", "integer", "interval",
        "json", "jsonb", "numeric", "real", "smallint", "text", "time", "timestamp", "timestamptz", "uuid", "varchar",
    }
)  # fmt: skip
KEYWORDS = frozenset({"and", "case", "else", "end", "false", "is", "not", "null", "or", "then", "true", "when"})
COMPARISONS = ("<=", ">=", "<>", "!=", "=", "<", ">")
MAX_LENGTH = 2000

_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z_]))
    | (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")+")
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>::|\|\||<=|>=|<>|!=|[-+*/%=<>(),])
    """,
    re.VERBOSE,
)


class RuleSyntaxError(ValueError):
    """The text is not one expression of the rule language; the message says what was found where."""


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, quoted, word, op, end
    text: str
    at: int


@dataclass(frozen=True)
class Node:
    """One node of a parsed expression. `kind` says which fields matter:

    literal (value: the literal's text, number or string), null, bool (value), column (value: the name),
    call (value: the function, args), unary (value: '-' or 'not', args: 1), binary (value: the operator,
    args: 2), is_null (value: 'is' or 'is not', args: 1), cast (value: the type, args: 1),
    case (args: when, then, when, then, ..., [else]; value 'else' when the last one is the ELSE).
    """

    kind: str
    value: str = ""
    args: tuple[Node, ...] = ()

    def columns(self) -> set[str]:
        found = {self.value} if self.kind == "column" else set()
        for arg in self.args:
            found |= arg.columns()
        return found


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise RuleSyntaxError(f"longer than {MAX_LENGTH} characters")
    tokens, at = [], 0
    while at < len(text):
        if text.startswith(("--", "/*"), at):
            raise RuleSyntaxError(f"a comment ('{text[at : at + 2]}') at character {at + 1} is not allowed")
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise RuleSyntaxError(f"'{text[at]}' at character {at + 1} is not allowed")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), at))
        at = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def peek(self) -> Token:
        return self.tokens[self.i]

    def word(self, *words: str) -> bool:
        return self.peek.kind == "word" and self.peek.text.lower() in words

    def op(self, *ops: str) -> bool:
        return self.peek.kind == "op" and self.peek.text in ops

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect_op(self, op: str) -> None:
        if not self.op(op):
            raise self.unexpected(f"'{op}'")
        self.take()

    def expect_word(self, word: str) -> None:
        if not self.word(word):
            raise self.unexpected(word.upper())
        self.take()

    def unexpected(self, wanted: str = "") -> RuleSyntaxError:
        token = self.peek
        found = "the end" if token.kind == "end" else f"'{token.text}' at character {token.at + 1}"
        return RuleSyntaxError(f"{found} is not allowed here" + (f" (expected {wanted})" if wanted else ""))

    # expression := or; precedence from loose to tight, as PostgreSQL's
    def parse(self) -> Node:
        node = self.or_()
        if self.peek.kind != "end":
            raise self.unexpected("the end of the expression")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.word("or"):
            self.take()
            node = Node("binary", "OR", (node, self.and_()))
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.word("and"):
            self.take()
            node = Node("binary", "AND", (node, self.not_()))
        return node

    def not_(self) -> Node:
        if self.word("not"):
            self.take()
            return Node("unary", "NOT", (self.not_(),))
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        if self.op(*COMPARISONS):
            operator = self.take().text
            return Node("binary", "<>" if operator == "!=" else operator, (node, self.additive()))
        if self.word("is"):
            self.take()
            negated = self.word("not")
            if negated:
                self.take()
            self.expect_word("null")
            return Node("is_null", "IS NOT NULL" if negated else "IS NULL", (node,))
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.op("+", "-", "||"):
            operator = self.take().text
            node = Node("binary", operator, (node, self.multiplicative()))
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.op("*", "/", "%"):
            operator = self.take().text
            node = Node("binary", operator, (node, self.unary()))
        return node

    def unary(self) -> Node:
        if self.op("-"):
            self.take()
            return Node("unary", "-", (self.unary(),))
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while self.op("::"):
            self.take()
            node = Node("cast", self.type_name(), (node,))
        return node

    def type_name(self) -> str:
        if self.peek.kind != "word":
            raise self.unexpected("a type")
        name = self.take().text.lower()
        if name == "double" and self.word("precision"):
            self.take()
            name = "double precision"
        if name not in TYPES:
            raise RuleSyntaxError(f"the type '{name}' is not in the allowed list")
        return name

    def primary(self) -> Node:
        token = self.peek
        if token.kind == "number":
            self.take()
            return Node("literal", token.text)
        if token.kind == "string":
            self.take()
            return Node("literal", "'" + token.text[1:-1].replace("''", "'"))  # a leading ' marks a string
        if self.op("("):
            self.take()
            node = self.or_()
            self.expect_op(")")
            return node
        if token.kind == "quoted":
            self.take()
            return Node("column", token.text[1:-1].replace('""', '"'))
        if token.kind != "word":
            raise self.unexpected("a value, a column or a function")
        word = token.text.lower()
        if word == "null":
            self.take()
            return Node("null")
        if word in ("true", "false"):
            self.take()
            return Node("bool", word.upper())
        if word == "case":
            return self.case()
        if word in KEYWORDS:
            raise self.unexpected("a value, a column or a function")
        self.take()
        if not self.op("("):
            return Node("column", word)
        if word not in FUNCTIONS:
            raise RuleSyntaxError(f"the function '{word}' is not in the allowed list")
        self.take()
        args: list[Node] = []
        if not self.op(")"):
            args.append(self.or_())
            while self.op(","):
                self.take()
                args.append(self.or_())
        self.expect_op(")")
        return Node("call", word, tuple(args))

    def case(self) -> Node:
        self.expect_word("case")
        parts: list[Node] = []
        while self.word("when"):
            self.take()
            parts.append(self.or_())
            self.expect_word("then")
            parts.append(self.or_())
        if not parts:
            raise self.unexpected("WHEN")
        has_else = self.word("else")
        if has_else:
            self.take()
            parts.append(self.or_())
        self.expect_word("end")
        return Node("case", "else" if has_else else "", tuple(parts))


def parse_expression(text: str) -> Node:
    """The one expression `text` holds, or RuleSyntaxError saying what else it holds."""
    if not text.strip():
        raise RuleSyntaxError("it is empty")
    return _Parser(text).parse()


def render(node: Node) -> sql.Composable:
    """SQL for the expression, columns as `t."name"`: every identifier and literal quoted by psycopg."""
    args = [render(a) for a in node.args]
    if node.kind == "literal":
        if node.value.startswith("'"):
            return sql.SQL("{}::text").format(sql.Literal(node.value[1:]))
        assert _NUMBER.fullmatch(node.value)
        return sql.SQL(node.value)
    if node.kind == "null":
        return sql.SQL("NULL")
    if node.kind == "bool":
        return sql.SQL("TRUE" if node.value == "TRUE" else "FALSE")
    if node.kind == "column":
        return sql.SQL("t.{}").format(sql.Identifier(node.value))
    if node.kind == "call":
        assert node.value in FUNCTIONS
        return sql.SQL("{}({})").format(sql.SQL(node.value), sql.SQL(", ").join(args))
    if node.kind == "unary":
        assert node.value in ("-", "NOT")
        return sql.SQL("(" + node.value + " {})").format(args[0])
    if node.kind == "binary":
        assert node.value in {"OR", "AND", "+", "-", "||", "*", "/", "%", *COMPARISONS}
        return sql.SQL("({} " + node.value + " {})").format(args[0], args[1])
    if node.kind == "is_null":
        assert node.value in ("IS NULL", "IS NOT NULL")
        return sql.SQL("({} " + node.value + ")").format(args[0])
    if node.kind == "cast":
        assert node.value in TYPES
        return sql.SQL("({})::" + node.value).format(args[0])
    if node.kind == "case":
        parts: list[sql.Composable] = [sql.SQL("CASE")]
        pairs = args[:-1] if node.value == "else" else args
        for when, then in zip(pairs[::2], pairs[1::2], strict=True):
            parts += [sql.SQL("WHEN"), when, sql.SQL("THEN"), then]
        if node.value == "else":
            parts += [sql.SQL("ELSE"), args[-1]]
        parts.append(sql.SQL("END"))
        return sql.SQL("({})").format(sql.SQL(" ").join(parts))
    raise ValueError(node.kind)
