// Jinja2 parser: tokens (jinja_lexer.h) -> Body (jinja_ast.h).
//
// The parser follows Jinja2's grammar and operator precedence:
//   cond-expr < or < and < not < compare (in, not in, ==, ...) < + - < ~
//   < * / // % < ** < unary - + < postfix (. [] ()) then filters | and tests `is`.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>

#include "common/text/jinja_ast.h"
#include "common/text/jinja_lexer.h"

namespace lema::jinja {
namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Body parse_all() {
    std::string end;
    Body body = parse_body({}, &end);
    return body;
  }

 private:
  const Token& cur() const { return toks_[i_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(i_ + k, toks_.size() - 1)]; }
  [[noreturn]] void fail(const std::string& msg, Pos pos) const { throw Error{msg, pos}; }
  [[noreturn]] void fail_here(const std::string& msg) const { fail(msg, cur().pos); }

  bool is_op(const char* op) const { return cur().type == Token::Type::kOp && cur().value == op; }
  bool is_name(const char* name) const { return cur().type == Token::Type::kName && cur().value == name; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    ++i_;
    return true;
  }
  bool accept_name(const char* name) {
    if (!is_name(name)) return false;
    ++i_;
    return true;
  }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case Token::Type::kText:
        return "text";
      case Token::Type::kVarBegin:
        return "'{{'";
      case Token::Type::kVarEnd:
        return "'}}'";
      case Token::Type::kBlockBegin:
        return "'{%'";
      case Token::Type::kBlockEnd:
        return "'%}'";
      case Token::Type::kEof:
        return "end of template";
      case Token::Type::kString:
        return "string";
      default:
        return "'" + t.value + "'";
    }
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail_here(std::string("expected '") + op + "', got " + describe(cur()));
  }
  std::string expect_name() {
    if (cur().type != Token::Type::kName) fail_here("expected a name, got " + describe(cur()));
    return toks_[i_++].value;
  }
  void expect_block_end() {
    if (cur().type != Token::Type::kBlockEnd) fail_here("expected '%}', got " + describe(cur()));
    ++i_;
  }

  // Parses nodes until a block tag whose name is in `ends` (consumed up to
  // and including the tag name; *end gets the name). Empty `ends`: to EOF.
  // Nesting deeper than this is refused rather than risking the stack
  // (Python's parser stops near the same depth).
  static constexpr int kMaxDepth = 200;
  struct DepthGuard {
    DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxDepth) p_->fail_here("the template nests too deeply (more than 200 levels)");
    }
    ~DepthGuard() { --p_->depth_; }
    Parser* p_;
  };

  Body parse_body(const std::set<std::string>& ends, std::string* end) {
    DepthGuard guard(this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == Token::Type::kEof) {
        if (!ends.empty()) {
          std::string list;
          for (const auto& e : ends) list += (list.empty() ? "'" : " or '") + e + "'";
          fail("unexpected end of template: expected " + list, t.pos);
        }
        return body;
      }
      if (t.type == Token::Type::kText) {
        auto n = std::make_unique<Node>();
        n->type = Node::Type::kText;
        n->pos = t.pos;
        n->text = t.value;
        body.push_back(std::move(n));
        ++i_;
      } else if (t.type == Token::Type::kVarBegin) {
        auto n = std::make_unique<Node>();
        n->type = Node::Type::kOutput;
        n->pos = t.pos;
        ++i_;
        n->expr = parse_tuple_expr();
        if (cur().type != Token::Type::kVarEnd) fail_here("expected '}}', got " + describe(cur()));
        ++i_;
        body.push_back(std::move(n));
      } else if (t.type == Token::Type::kBlockBegin) {
        ++i_;
        if (cur().type != Token::Type::kName) fail_here("expected a statement name, got " + describe(cur()));
        std::string name = cur().value;
        if (ends.count(name)) {
          ++i_;
          *end = name;
          return body;
        }
        body.push_back(parse_statement());
      } else {
        fail_here("unexpected " + describe(t));
      }
    }
  }

  NodePtr parse_statement() {
    const Token& t = cur();
    std::string name = t.value;
    Pos pos = t.pos;
    ++i_;
    auto n = std::make_unique<Node>();
    n->pos = pos;
    std::string end;
    if (name == "if") {
      n->type = Node::Type::kIf;
      n->conds.push_back(parse_tuple_expr());
      expect_block_end();
      while (true) {
        n->bodies.push_back(parse_body({"elif", "else", "endif"}, &end));
        if (end == "elif") {
          n->conds.push_back(parse_tuple_expr());
          expect_block_end();
        } else if (end == "else") {
          expect_block_end();
          n->bodies.push_back(parse_body({"endif"}, &end));
          break;
        } else {
          break;
        }
      }
      expect_block_end();
    } else if (name == "for") {
      n->type = Node::Type::kFor;
      n->target = parse_target(false);
      if (!accept_name("in")) fail_here("expected 'in', got " + describe(cur()));
      n->expr = parse_tuple_expr(/*no_condexpr=*/true);
      if (accept_name("if")) n->cond = parse_expr();
      if (is_name("recursive")) fail_here("recursive for loops are not supported");
      expect_block_end();
      ++loop_depth_;
      n->body = parse_body({"else", "endfor"}, &end);
      --loop_depth_;
      if (end == "else") {
        expect_block_end();
        n->else_body = parse_body({"endfor"}, &end);
      }
      expect_block_end();
    } else if (name == "set") {
      n->target = parse_target(true);
      if (accept_op("=")) {
        n->type = Node::Type::kSet;
        n->expr = parse_tuple_expr();
        expect_block_end();
      } else {
        n->type = Node::Type::kSetBlock;
        if (!n->target.attr.empty() || n->target.tuple) fail("a block set needs a single name", pos);
        if (is_op("|")) n->expr = parse_filters(nullptr);
        expect_block_end();
        n->body = parse_body({"endset"}, &end);
        expect_block_end();
      }
    } else if (name == "macro") {
      n->type = Node::Type::kMacro;
      n->name = expect_name();
      expect_op("(");
      while (!accept_op(")")) {
        if (!n->params.empty()) expect_op(",");
        if (accept_op(")")) break;  // trailing comma
        n->params.push_back(expect_name());
        n->defaults.push_back(accept_op("=") ? parse_expr() : nullptr);
      }
      expect_block_end();
      int saved = loop_depth_;
      loop_depth_ = 0;
      n->body = parse_body({"endmacro"}, &end);
      loop_depth_ = saved;
      if (cur().type == Token::Type::kName) ++i_;  // {% endmacro name %}
      expect_block_end();
    } else if (name == "filter") {
      n->type = Node::Type::kFilterBlock;
      n->expr = parse_filters(nullptr, /*first_without_pipe=*/true);
      expect_block_end();
      n->body = parse_body({"endfilter"}, &end);
      expect_block_end();
    } else if (name == "generation") {
      n->type = Node::Type::kGeneration;
      expect_block_end();
      // A caller block in Jinja2: loop controls do not reach an enclosing loop.
      int saved = loop_depth_;
      loop_depth_ = 0;
      n->body = parse_body({"endgeneration"}, &end);
      loop_depth_ = saved;
      expect_block_end();
    } else if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail("'" + name + "' outside a for loop", pos);
      n->type = name == "break" ? Node::Type::kBreak : Node::Type::kContinue;
      expect_block_end();
    } else if (name == "include" || name == "import" || name == "from" || name == "extends" ||
               name == "block" || name == "call" || name == "do" || name == "with" || name == "autoescape" ||
               name == "trans") {
      fail("'{% " + name + " %}' is not supported in chat templates", pos);
    } else {
      fail("unknown statement '" + name + "'", pos);
    }
    return n;
  }

  // name | a, b | (a, b) | ns.attr (only when `allow_attr`, for set)
  Target parse_target(bool allow_attr) {
    Target t;
    bool paren = accept_op("(");
    t.names.push_back(expect_name());
    if (allow_attr && !paren && accept_op(".")) {
      t.attr = expect_name();
      return t;
    }
    while (accept_op(",")) {
      t.tuple = true;
      if (cur().type != Token::Type::kName) break;
      t.names.push_back(expect_name());
    }
    if (paren) {
      expect_op(")");
      t.tuple = true;
    }
    return t;
  }

  ExprPtr make(Expr::Type type, Pos pos) {
    auto e = std::make_unique<Expr>();
    e->type = type;
    e->pos = pos;
    return e;
  }

  // An expression, or a bare tuple "a, b" (in {{ }}, set, for ... in, if).
  ExprPtr parse_tuple_expr(bool no_condexpr = false) {
    Pos pos = cur().pos;
    ExprPtr first = no_condexpr ? parse_or() : parse_expr();
    if (!is_op(",")) return first;
    auto t = make(Expr::Type::kTuple, pos);
    t->items.push_back(std::move(first));
    while (accept_op(",")) {
      if (cur().type == Token::Type::kBlockEnd || cur().type == Token::Type::kVarEnd || is_name("if")) break;
      t->items.push_back(no_condexpr ? parse_or() : parse_expr());
    }
    return t;
  }

  ExprPtr parse_expr() {
    DepthGuard guard(this);
    ExprPtr e = parse_or();
    while (is_name("if")) {
      Pos pos = cur().pos;
      ++i_;
      auto c = make(Expr::Type::kCondExpr, pos);
      c->items.push_back(std::move(e));
      c->items.push_back(parse_or());
      c->items.push_back(accept_name("else") ? parse_expr() : nullptr);
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const char* op, ExprPtr a, ExprPtr b, Pos pos) {
    auto e = make(Expr::Type::kBinary, pos);
    e->name = op;
    e->items.push_back(std::move(a));
    e->items.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      Pos pos = cur().pos;
      ++i_;
      e = binary("or", std::move(e), parse_and(), pos);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      Pos pos = cur().pos;
      ++i_;
      e = binary("and", std::move(e), parse_not(), pos);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Pos pos = cur().pos;
      ++i_;
      auto e = make(Expr::Type::kUnary, pos);
      e->name = "not";
      e->items.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    Pos pos = cur().pos;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == Token::Type::kOp &&
          (is_op("==") || is_op("!=") || is_op("<") || is_op("<=") || is_op(">") || is_op(">="))) {
        op = cur().value;
        ++i_;
      } else if (is_name("in")) {
        op = "in";
        ++i_;
      } else if (is_name("not") && peek().type == Token::Type::kName && peek().value == "in") {
        op = "not in";
        i_ += 2;
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Type::kCompare, pos);
        cmp->items.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->items.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().value;
      Pos pos = cur().pos;
      ++i_;
      e = binary(op == "+" ? "+" : "-", std::move(e), parse_concat(), pos);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      Pos pos = cur().pos;
      ++i_;
      e = binary("~", std::move(e), parse_math2(), pos);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().value;
      Pos pos = cur().pos;
      ++i_;
      ExprPtr rhs = parse_pow();
      auto b = make(Expr::Type::kBinary, pos);
      b->name = op;
      b->items.push_back(std::move(e));
      b->items.push_back(std::move(rhs));
      e = std::move(b);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      Pos pos = cur().pos;
      ++i_;
      e = binary("**", std::move(e), parse_unary(true), pos);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      Pos pos = cur().pos;
      std::string op = cur().value;
      ++i_;
      e = make(Expr::Type::kUnary, pos);
      e->name = op;
      e->items.push_back(parse_unary(false));
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filter_tests(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    Pos pos = t.pos;
    switch (t.type) {
      case Token::Type::kName: {
        ++i_;
        const std::string& v = t.value;
        if (v == "true" || v == "True") return literal(Value::boolean(true), pos);
        if (v == "false" || v == "False") return literal(Value::boolean(false), pos);
        if (v == "none" || v == "None") return literal(Value::none(), pos);
        auto e = make(Expr::Type::kName, pos);
        e->name = v;
        return e;
      }
      case Token::Type::kString: {
        // Adjacent string literals concatenate, as in Python.
        std::string s;
        while (cur().type == Token::Type::kString) s += toks_[i_++].value;
        return literal(Value::string(std::move(s)), pos);
      }
      case Token::Type::kInt: {
        ++i_;
        try {
          return literal(Value::integer(std::stoll(t.value)), pos);
        } catch (const std::out_of_range&) {
          fail("integer literal " + t.value + " does not fit in 64 bits", pos);
        }
      }
      case Token::Type::kFloat:
        ++i_;
        // strtod, not stod: 1e999 is inf, as Python's float() makes it.
        return literal(Value::real(std::strtod(t.value.c_str(), nullptr)), pos);
      case Token::Type::kOp:
        if (t.value == "(") {
          ++i_;
          if (accept_op(")")) return make(Expr::Type::kTuple, pos);
          ExprPtr first = parse_expr();
          if (accept_op(")")) return first;
          auto tup = make(Expr::Type::kTuple, pos);
          tup->items.push_back(std::move(first));
          while (accept_op(",")) {
            if (is_op(")")) break;
            tup->items.push_back(parse_expr());
          }
          expect_op(")");
          return tup;
        }
        if (t.value == "[") {
          ++i_;
          auto l = make(Expr::Type::kList, pos);
          while (!accept_op("]")) {
            if (!l->items.empty()) expect_op(",");
            if (accept_op("]")) break;
            l->items.push_back(parse_expr());
          }
          return l;
        }
        if (t.value == "{") {
          ++i_;
          auto d = make(Expr::Type::kDict, pos);
          while (!accept_op("}")) {
            if (!d->items.empty()) expect_op(",");
            if (accept_op("}")) break;
            d->items.push_back(parse_expr());
            expect_op(":");
            d->items.push_back(parse_expr());
          }
          return d;
        }
        break;
      default:
        break;
    }
    fail_here("unexpected " + describe(t));
  }

  ExprPtr literal(Value v, Pos pos) {
    auto e = make(Expr::Type::kLiteral, pos);
    e->literal = std::move(v);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      Pos pos = cur().pos;
      if (accept_op(".")) {
        if (cur().type == Token::Type::kName) {
          auto a = make(Expr::Type::kAttr, pos);
          a->name = toks_[i_++].value;
          a->items.push_back(std::move(e));
          e = std::move(a);
        } else if (cur().type == Token::Type::kInt) {
          auto it = make(Expr::Type::kItem, pos);
          it->items.push_back(std::move(e));
          const std::string& digits = toks_[i_++].value;
          if (digits.size() > 18) fail("index ." + digits + " does not fit in 64 bits", pos);
          it->items.push_back(literal(Value::integer(std::stoll(digits)), pos));
          e = std::move(it);
        } else {
          fail_here("expected an attribute name after '.', got " + describe(cur()));
        }
      } else if (accept_op("[")) {
        e = parse_subscript(std::move(e), pos);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, Pos pos) {
    ExprPtr parts[3];
    bool slice = false;
    int k = 0;
    while (true) {
      if (is_op(":")) {
        slice = true;
        ++i_;
        if (++k > 2) fail_here("too many ':' in a slice");
        continue;
      }
      if (is_op("]")) break;
      if (parts[k]) fail_here("expected ':' or ']', got " + describe(cur()));
      parts[k] = parse_expr();
      if (!slice && is_op(",")) fail_here("tuple subscripts are not supported");
    }
    expect_op("]");
    auto e = make(slice ? Expr::Type::kSlice : Expr::Type::kItem, pos);
    e->items.push_back(std::move(obj));
    if (!slice) {
      if (!parts[0]) fail("empty subscript", pos);
      e->items.push_back(std::move(parts[0]));
    } else {
      for (auto& p : parts) e->items.push_back(std::move(p));
    }
    return e;
  }

  // '(' args ')' -> fills e->items (after what is there) and e->kwargs.
  void parse_args(Expr* e) {
    expect_op("(");
    bool first = true;
    while (!accept_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (accept_op(")")) break;
      if (is_op("*") || is_op("**")) fail_here("*args and **kwargs are not supported");
      if (cur().type == Token::Type::kName && peek().type == Token::Type::kOp && peek().value == "=") {
        std::string key = cur().value;
        i_ += 2;
        e->kwargs.emplace_back(key, parse_expr());
      } else {
        if (!e->kwargs.empty()) fail_here("positional argument after a keyword argument");
        e->items.push_back(parse_expr());
      }
    }
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = make(Expr::Type::kCall, cur().pos);
    c->items.push_back(std::move(callee));
    parse_args(c.get());
    return c;
  }

  // `| f | g(x)` chains; with first_without_pipe the first name has no '|'
  // ({% filter upper %}).
  ExprPtr parse_filters(ExprPtr subject, bool first_without_pipe = false) {
    bool first = true;
    while ((first && first_without_pipe) || is_op("|")) {
      if (!(first && first_without_pipe)) ++i_;
      first = false;
      Pos pos = cur().pos;
      auto f = make(Expr::Type::kFilter, pos);
      f->name = expect_name();
      while (is_op(".") && peek().type == Token::Type::kName) {
        i_ += 1;
        f->name += "." + expect_name();
      }
      f->items.push_back(std::move(subject));
      if (is_op("(")) parse_args(f.get());
      subject = std::move(f);
    }
    return subject;
  }

  ExprPtr parse_filter_tests(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filters(std::move(e));
      } else if (is_name("is")) {
        Pos pos = cur().pos;
        ++i_;
        auto t = make(Expr::Type::kTest, pos);
        t->negated = accept_name("not");
        t->name = expect_name();
        while (is_op(".") && peek().type == Token::Type::kName) {
          i_ += 1;
          t->name += "." + expect_name();
        }
        t->items.push_back(std::move(e));
        if (is_op("(")) {
          parse_args(t.get());
        } else if ((cur().type == Token::Type::kName || cur().type == Token::Type::kString ||
                    cur().type == Token::Type::kInt || cur().type == Token::Type::kFloat || is_op("[") ||
                    is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          // One argument without parentheses: `x is divisibleby 3`.
          t->items.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  size_t i_ = 0;
  int loop_depth_ = 0;
  int depth_ = 0;
};

}  // namespace

Body parse_template(const std::string& source) {
  Parser parser(lex_template(source));
  return parser.parse_all();
}

}  // namespace lema::jinja
