// The Jinja2 lexer (internal to common/text/jinja*.cpp): template text ->
// tokens, with the whitespace rules applied to the text between tags.
// The lexer follows Jinja2's rules with transformers' settings
// (trim_blocks=True, lstrip_blocks=True):
//  - `{%-`, `{{-`, `{#-` strip all whitespace before the tag; `-%}`, `-}}`,
//    `-#}` all whitespace after it;
//  - trim_blocks: one "\n" right after `%}` or `#}` is dropped (not after
//    `}}`), unless the tag ends with `+%}`;
//  - lstrip_blocks: spaces and tabs between the start of a line and `{%` or
//    `{#` are dropped (not before `{{`), unless the tag opens with `{%+`.
//    "Start of a line" is after a "\n" in the text, or at the start of the
//    text when the previous tag ended with a newline (or at the template's
//    start), as Jinja2's lexer tracks it.
#pragma once

#include <string>
#include <vector>

#include "common/text/jinja_ast.h"

namespace lema::jinja {

struct Token {
  enum class Type {
    kText,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEof
  };
  Type type;
  std::string value;
  Pos pos;
};

// Text tokens hold the output text (whitespace control already applied);
// each tag becomes a begin token, its expression tokens and an end token.
// The last token is kEof. Throws Error with the position of a bad tag.
std::vector<Token> lex_template(const std::string& source);

}  // namespace lema::jinja
