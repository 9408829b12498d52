// The parsed form of a Jinja2 template (internal to common/text/jinja*.cpp):
// expressions and statements as plain trees, each node with its source
// position, built by parse_template (jinja_parser.cpp) and walked by the
// renderer (jinja_render.cpp).
//
// Inside the renderer errors travel as a thrown jinja::Error (the parser's
// and renderer's deep recursion would otherwise check a Status at every
// level); jinja::Template catches it at the API and returns a Status.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/text/jinja_value.h"

namespace lema::jinja {

struct Pos {
  int line = 1;  // 1-based
  int col = 1;   // 1-based, in bytes
};

// A template error at a source position ("line" 0: no position known).
struct Error {
  std::string message;
  Pos pos{0, 0};
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Type {
    kLiteral,   // literal
    kName,      // name
    kList,      // items
    kTuple,     // items
    kDict,      // items: key0, value0, key1, value1, ...
    kAttr,      // items[0].name
    kItem,      // items[0][items[1]]
    kSlice,     // items[0][items[1]:items[2]:items[3]] (each may be null)
    kCall,      // items[0](items[1..], kwargs)
    kFilter,    // items[0] | name(items[1..], kwargs); items[0] null in {% filter %}
    kTest,      // items[0] is [not] name(items[1..], kwargs)
    kUnary,     // name ("-", "+", "not") items[0]
    kBinary,    // items[0] name items[1]: + - * / // % ** ~ and or
    kCompare,   // items[0] ops[0] items[1] ops[1] items[2] ...
    kCondExpr,  // items[0] if items[1] else items[2] (else may be null)
  };
  Type type;
  Pos pos;
  Value literal;
  std::string name;
  bool negated = false;  // kTest: "is not"
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare: "==", "!=", "<", "<=", ">", ">=", "in", "not in"
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

// An assignment target: a name, a tuple of names, or ns.attr.
struct Target {
  std::vector<std::string> names;  // one name, or a tuple to unpack
  std::string attr;                // non-empty: names[0].attr = ...
  bool tuple = false;
};

struct Node {
  enum class Type {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // if conds[0] bodies[0] elif conds[1] bodies[1] ... [else bodies.back()]
    kFor,          // for target in expr [if cond] body [else else_body]
    kSet,          // set target = expr
    kSetBlock,     // set target %} body {% endset (expr: optional filter chain)
    kMacro,        // macro name(params = defaults) body
    kFilterBlock,  // filter expr (a kFilter chain over null) body
    kGeneration,   // generation body (spans recorded)
    kBreak,
    kContinue,
  };
  Type type;
  Pos pos;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;  // kFor: the inline `if`
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;
  Target target;
  Body body;
  Body else_body;
  std::string name;                 // kMacro
  std::vector<std::string> params;  // kMacro
  std::vector<ExprPtr> defaults;    // kMacro, null where none
};

// Parses `source` (newlines already normalised to \n, final newline
// dropped, as Jinja2 does) with trim_blocks and lstrip_blocks on.
// Throws Error.
Body parse_template(const std::string& source);

}  // namespace lema::jinja
