"""Chat templates rendered in jinja's sandbox within bounds of time and size.

A chat template is code that comes with the model folder. Jinja's sandbox keeps it from reaching Python, but
not from running for hours or building gigabytes; so here it gets MAX_SECONDS of time and MAX_CHARS of output,
no value it builds may grow past MAX_CHARS, and no number it passes may exceed MAX_NUMBER; past any bound it is
refused with a message naming the template. The time bound is a trace function on the template's own frames (a
check per template line, loops included). The environment is the one transformers sets up for chat templates
(trim_blocks, lstrip_blocks, loop controls, its tojson, raise_exception, strftime_now, `{% generation %}`), so
a template renders to the same text here as with transformers' apply_chat_template.
"""
import functools
import json
import re
import sys
import time
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from .errors import SwitchboardError

MAX_SECONDS = 2.0
MAX_CHARS = 1 << 22       # of the rendered prompt, and of any string or list the template builds
MAX_NUMBER = 100_000      # integer arguments (widths, counts) larger than this are refused (jinja's range cap)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d+)?(?:\.(\d+))?")   # "%-10.3f": width, precision
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")                             # "{0:>10}": the spec


class _Overrun(Exception):
    """A template went past a bound; the message says which."""


def _size(value) -> int:
    """Characters (strings) or items and their characters (lists, dicts) a value holds."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return len(value) + sum(map(_size, value))
    if isinstance(value, dict):
        return len(value) + sum(_size(k) + _size(v) for k, v in value.items())
    return 0


def _check(value):
    if _size(value) > MAX_CHARS:
        raise _Overrun(f"builds a value of over {MAX_CHARS} characters")
    return value


def _check_args(args):
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_NUMBER:
            raise _Overrun(f"passes the number {a}, over {MAX_NUMBER}")
        _check(a)


def _expect(size: int):
    """Refuse an operation before it runs when its result would hold `size` characters."""
    if size > MAX_CHARS:
        raise _Overrun(f"would build a value of {size} characters, over {MAX_CHARS}")


def _check_format(fmt, percent: bool):
    """Refuse a %-format (percent) or str.format string whose widths or precisions exceed MAX_NUMBER."""
    if not isinstance(fmt, str):
        return
    if percent:
        numbers = [n for m in _PERCENT_SPEC.finditer(fmt) for n in m.groups() if n]
    else:
        numbers = [n for m in _BRACE_SPEC.finditer(fmt) for n in re.findall(r"\d+", m[1])]
    if any(int(n) > MAX_NUMBER for n in numbers):
        raise _Overrun(f"formats with a width or precision too large: {fmt[:40]!r}")


def _replace_size(s, old, new, count=-1) -> int:
    hits = (len(s) + 1 if old == "" else s.count(old)) if isinstance(count, int) and count < 0 else count
    return len(s) + hits * max(len(new) - len(old), 0)


# filters and str methods whose result can be many times their inputs: -> the result's size, computed first
_GROWING = {
    "replace": lambda s, old, new, count=-1, *_: _replace_size(str(s), str(old), str(new), count),
    "indent": lambda s, width=4, *_, **__: len(str(s)) + (width if isinstance(width, int) else len(str(width)))
    * (str(s).count("\n") + 1),
    "join": lambda seq, sep="", *_, **__: _size(list(seq)) + len(str(sep)) * len(seq) if hasattr(seq, "__len__")
    else 0,
}


class _BoundedNamespace(Namespace):
    """`namespace()` whose attributes, set in loops, cannot grow past the bounds."""

    def __setitem__(self, name, value):
        super().__setitem__(name, _check(value))


class _Generation(Extension):
    """transformers' `{% generation %}...{% endgeneration %}` (it marks the assistant's tokens for training
    masks); rendering it is rendering its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context, operator, left, right):
        if operator == "*" and isinstance(left, int) != isinstance(right, int):  # a sequence repeated
            n, seq = (left, right) if isinstance(left, int) else (right, left)
            _expect(_size(seq) * max(n, 0) if isinstance(n, int) else 0)
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            _expect(right * abs(left).bit_length() // 8)  # the result's bytes
        if operator == "%":
            _check_format(left, percent=True)
        if operator == "+":
            _expect(_size(left) + _size(right))
        return _check(super().call_binop(context, operator, left, right))

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja's own signature
        _check_args((*args, *kwargs.values()))
        method = getattr(__obj, "__wrapped__", __obj)  # jinja wraps str.format to format in the sandbox
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str):
            if method.__name__ in _GROWING:
                _expect(_GROWING[method.__name__](owner, *args, **kwargs))
            if method.__name__ in ("format", "format_map"):
                _check_format(owner, percent=False)
        return _check(super().call(__context, __obj, *args, **kwargs))


def _bounded_filter(name, f):
    @functools.wraps(f)  # keeps jinja's pass_context / pass_eval_context marks
    def bounded(*args, **kwargs):
        _check_args((*args, *kwargs.values()))
        values = [a for a in args if not isinstance(a, (jinja2.runtime.Context, jinja2.nodes.EvalContext,
                                                         jinja2.Environment))]
        if name in _GROWING and values:
            _expect(_GROWING[name](*values, **kwargs))
        if name == "format" and values:
            _check_format(values[0], percent=True)
        return _check(f(*args, **kwargs))
    return bounded


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    if isinstance(indent, int) and indent > 16:
        raise _Overrun(f"indents JSON by {indent}, over 16")
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    if not isinstance(fmt, str) or len(fmt) > 100:
        raise _Overrun("passes strftime_now a format longer than 100 characters")
    return datetime.now().strftime(fmt)


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


@functools.lru_cache(maxsize=8)
def _compile(source: str) -> jinja2.Template:
    env = _Environment(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols])
    env.filters = {name: _bounded_filter(name, f) for name, f in env.filters.items()}
    env.filters["tojson"] = _bounded_filter("tojson", _tojson)
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now, namespace=_BoundedNamespace)
    return env.from_string(source)


def render(source: str, where: str, **variables) -> str:
    """Render the template `source` with `variables`. SwitchboardError (naming `where`, e.g. "the chat template
    of <model folder>") when it does not compile, raises an error itself, or goes past a bound."""
    try:
        template = _compile(source)
    except jinja2.TemplateError as e:
        raise SwitchboardError(f"{where} does not compile: {e}") from None
    deadline = time.monotonic() + MAX_SECONDS

    def line(frame, event, arg):
        if time.monotonic() > deadline:
            raise _Overrun(f"ran for more than {MAX_SECONDS:g} s")
        return line

    def calls(frame, event, arg):  # trace the template's own code only: every line of it, loops included
        return line if frame.f_code.co_filename == "<template>" else None

    parts, size, before = [], 0, sys.gettrace()
    sys.settrace(calls)
    try:
        for part in template.generate(**variables):
            size += len(part)
            if size > MAX_CHARS:
                raise _Overrun(f"renders more than {MAX_CHARS} characters")
            parts.append(part)
    except _Overrun as e:
        raise SwitchboardError(f"{where} was stopped: it {e}") from None
    except RecursionError:
        raise SwitchboardError(f"{where} was stopped: it nests too deep") from None
    except MemoryError:
        raise SwitchboardError(f"{where} was stopped: it ran out of memory") from None
    except Exception as e:  # noqa: BLE001 - raise_exception, undefined values, sandbox refusals, type errors
        raise SwitchboardError(f"{where} refused this conversation: {type(e).__name__}: {e}") from None
    finally:
        sys.settrace(before)
    return "".join(parts)
