#!/usr/bin/env python3
"""Reference chat-template renderer for lema's parity tests.

Renders Jinja2 templates the way transformers' apply_chat_template does
(transformers/utils/chat_template_utils.py, _compile_jinja_template):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with
the loopcontrols extension and a {% generation %} tag that records the
spans its body produced; `tojson` replaced by json.dumps(x,
ensure_ascii=False, indent, separators, sort_keys); globals
raise_exception(msg) and strftime_now(fmt).

Needs only Debian's python3-jinja2 (no transformers). Protocol: one JSON
request per stdin line,
  {"template": "...", "context": {...}, "now": 1700000000 (optional),
   "continue_final_message": true (optional, as transformers' option)}
one JSON reply per stdout line, in order,
  {"text": "...", "generation": [[begin, end], ...]}  (UTF-8 byte offsets)
  {"error": "TypeName: message"}
"""
import json
import sys
import time
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTracker(Extension):
    """{% generation %}...{% endgeneration %}: renders the body through a
    caller block, as transformers' AssistantTracker does, and records the
    character span it produced in the output so far."""

    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        self.blocks = None
        self.spans = None

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation", []), [], [], body).set_lineno(lineno)

    def _generation(self, caller):
        rv = caller()
        if self.blocks is not None:
            start = len("".join(self.blocks))
            self.spans.append((start, start + len(rv)))
        return rv


def make_env(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        t = datetime.fromtimestamp(now) if now is not None else datetime.now()
        return t.strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTracker, "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def char_to_byte_offsets(text, spans):
    out = []
    for b, e in spans:
        out.append([len(text[:b].encode("utf-8")), len(text[:e].encode("utf-8"))])
    return out


def render(request):
    env = make_env(request.get("now"))
    tracker = next(e for e in env.extensions.values() if isinstance(e, GenerationTracker))
    template = env.from_string(request["template"])
    tracker.blocks = []
    tracker.spans = []
    for block in template.generate(**request.get("context", {})):
        tracker.blocks.append(block)
    text = "".join(tracker.blocks)
    if request.get("continue_final_message"):
        # transformers' apply_chat_template(continue_final_message=True).
        final = request["context"]["messages"][-1]["content"]
        if isinstance(final, (list, tuple)):
            final = final[-1]["text"]
        try:
            text = text[: text.rindex(final) + len(final)]
        except ValueError:
            final = final.strip()
            text = text[: text.rindex(final) + len(final)]
    return {"text": text, "generation": char_to_byte_offsets(text, tracker.spans)}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = render(json.loads(line))
        except Exception as e:  # every template error is a reply, not a crash
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply, ensure_ascii=False) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
