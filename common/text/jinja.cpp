// The renderer: walks the tree from jinja_parser.cpp with Jinja2's scoping:
//  - the context (the caller's variables and the globals) is the outermost
//    scope, the template's own `set`s the next;
//  - every for-loop iteration gets a fresh scope (a `set` inside a loop is
//    gone after the iteration; namespace() is how templates carry state
//    out), `if` blocks get none;
//  - a macro runs in a scope over the scopes where it was defined.
// Undefined follows jinja2.Undefined: it prints as "", is falsy, iterates
// as empty, and fails on attribute access, arithmetic and calls.
#include "common/text/jinja.h"

#include <cmath>
#include <ctime>
#include <map>
#include <optional>
#include <unordered_map>

#include "common/text/jinja_ast.h"
#include "common/text/jinja_builtins.h"

namespace lema::jinja {

struct Template::Parsed {
  Body body;
};

namespace {

using Scope = std::unordered_map<std::string, Value>;
using ScopeChain = std::vector<std::shared_ptr<Scope>>;

enum class Flow { kNormal, kBreak, kContinue };

bool contains_generation(const Body& body) {
  for (const auto& n : body) {
    if (n->type == Node::Type::kGeneration) return true;
    if (contains_generation(n->body) || contains_generation(n->else_body)) return true;
    for (const auto& b : n->bodies) {
      if (contains_generation(b)) return true;
    }
  }
  return false;
}

std::string undefined_message(const Value& v, const std::string& fallback_name) {
  if (!v.undefined_hint().empty()) return v.undefined_hint();
  return "'" + fallback_name + "' is undefined";
}

class Renderer {
 public:
  Renderer(const RenderOptions& options, RenderResult* result) : options_(options), result_(result) {}
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;
  // A macro holds the scopes it was defined in and is held by one of them:
  // a reference cycle. Emptying every scope still alive breaks it.
  ~Renderer() {
    for (auto& weak : created_) {
      if (auto scope = weak.lock()) scope->clear();
    }
  }

  void run(const Body& body, const nlohmann::ordered_json& context) {
    auto globals = new_scope();
    for (const char* name : {"range", "dict", "namespace"}) (*globals)[name] = builtin_global(name);
    (*globals)["raise_exception"] = Value::function("raise_exception", [](CallArgs& a) -> Value {
      raise(a.positional.empty() ? std::string("raise_exception") : a.positional[0].str());
    });
    int64_t now = options_.now_unix_s;
    (*globals)["strftime_now"] = Value::function("strftime_now", [now](CallArgs& a) {
      if (a.positional.size() != 1 || !a.positional[0].is_string())
        raise("strftime_now expects one format string");
      std::time_t t = now >= 0 ? static_cast<std::time_t>(now) : std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      const std::string& fmt = a.positional[0].as_string();
      if (fmt.empty()) return Value::string("");
      std::vector<char> buf(256 + fmt.size() * 16);
      size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
      return Value::string(std::string(buf.data(), n));
    });
    if (context.is_object()) {
      for (auto it = context.begin(); it != context.end(); ++it)
        (*globals)[it.key()] = Value::from_json(it.value());
    }
    scopes_ = {globals, new_scope()};
    out_ = &result_->text;
    exec(body);
  }

 private:
  std::shared_ptr<Scope> new_scope() {
    auto scope = std::make_shared<Scope>();
    created_.push_back(scope);
    return scope;
  }

  // ---- statements ----------------------------------------------------------

  Flow exec(const Body& body) {
    for (const auto& n : body) {
      Flow f = exec_node(*n);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Flow exec_node(const Node& n) {
    switch (n.type) {
      case Node::Type::kText:
        *out_ += n.text;
        return Flow::kNormal;
      case Node::Type::kOutput:
        *out_ += eval(*n.expr).str();
        return Flow::kNormal;
      case Node::Type::kIf:
        for (size_t i = 0; i < n.bodies.size(); ++i) {
          if (i >= n.conds.size() || eval(*n.conds[i]).truthy()) return exec(n.bodies[i]);
        }
        return Flow::kNormal;
      case Node::Type::kFor:
        exec_for(n);
        return Flow::kNormal;
      case Node::Type::kSet:
        assign(n.target, eval(*n.expr), n.pos);
        return Flow::kNormal;
      case Node::Type::kSetBlock: {
        std::string text = capture(n.body);
        Value v = Value::string(std::move(text));
        if (n.expr) v = eval_filter_chain(*n.expr, v);
        assign(n.target, v, n.pos);
        return Flow::kNormal;
      }
      case Node::Type::kMacro:
        define_macro(n);
        return Flow::kNormal;
      case Node::Type::kFilterBlock:
        *out_ += eval_filter_chain(*n.expr, Value::string(capture(n.body))).str();
        return Flow::kNormal;
      case Node::Type::kGeneration: {
        if (out_ != &result_->text)
          throw Error{"{% generation %} inside a macro, set or filter block is not supported", n.pos};
        // The body runs as transformers' AssistantTracker runs it: as a
        // caller() block, so its `set`s stay inside it.
        size_t begin = out_->size();
        scopes_.push_back(new_scope());
        try {
          exec(n.body);
        } catch (...) {
          scopes_.pop_back();
          throw;
        }
        scopes_.pop_back();
        result_->generation_spans.push_back(Span{begin, out_->size()});
        return Flow::kNormal;
      }
      case Node::Type::kBreak:
        return Flow::kBreak;
      case Node::Type::kContinue:
        return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  std::string capture(const Body& body) {
    std::string buf;
    std::string* saved = out_;
    out_ = &buf;
    try {
      exec(body);
    } catch (...) {
      out_ = saved;
      throw;
    }
    out_ = saved;
    return buf;
  }

  void bind_target(const Target& t, const Value& v, Scope* scope, Pos pos) {
    if (!t.tuple) {
      (*scope)[t.names[0]] = v;
      return;
    }
    std::vector<Value> items;
    if (!v.iterate(&items) || v.is_undefined())
      throw Error{std::string("cannot unpack a '") + v.type_name() + "' value", pos};
    if (items.size() != t.names.size()) {
      throw Error{"cannot unpack " + std::to_string(items.size()) + " values into " +
                      std::to_string(t.names.size()) + " names",
                  pos};
    }
    for (size_t i = 0; i < items.size(); ++i) (*scope)[t.names[i]] = items[i];
  }

  void assign(const Target& t, const Value& v, Pos pos) {
    if (!t.attr.empty()) {
      Value ns = lookup(t.names[0]);
      if (!ns.is_namespace())
        throw Error{"cannot assign attribute on non-namespace object '" + t.names[0] + "'", pos};
      ns.as_dict().set(t.attr, v);
      return;
    }
    bind_target(t, v, scopes_.back().get(), pos);
  }

  void exec_for(const Node& n) {
    Value seq = eval(*n.expr);
    std::vector<Value> items;
    if (!seq.iterate(&items))
      throw Error{std::string("'") + seq.type_name() + "' object is not iterable", n.expr->pos};
    if (n.cond) {
      // The inline `if` filters before the loop counts (loop.length, loop.last).
      std::vector<Value> kept;
      for (const auto& item : items) {
        scopes_.push_back(new_scope());
        bind_target(n.target, item, scopes_.back().get(), n.pos);
        bool keep;
        try {
          keep = eval(*n.cond).truthy();
        } catch (...) {
          scopes_.pop_back();
          throw;
        }
        scopes_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      exec(n.else_body);
      return;
    }
    const int64_t len = static_cast<int64_t>(items.size());
    auto last_changed = std::make_shared<std::optional<Value>>();  // loop.changed()'s memory
    for (int64_t i = 0; i < len; ++i) {
      auto scope = new_scope();
      bind_target(n.target, items[i], scope.get(), n.pos);
      Value loop = Value::dict();
      Dict& d = loop.as_dict();
      d.set("index", Value::integer(i + 1));
      d.set("index0", Value::integer(i));
      d.set("revindex", Value::integer(len - i));
      d.set("revindex0", Value::integer(len - i - 1));
      d.set("first", Value::boolean(i == 0));
      d.set("last", Value::boolean(i == len - 1));
      d.set("length", Value::integer(len));
      d.set("depth", Value::integer(1));
      d.set("depth0", Value::integer(0));
      d.set("previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
      d.set("nextitem", i + 1 < len ? items[i + 1] : Value::undefined("there is no next item"));
      d.set("changed", Value::function("changed", [last_changed](CallArgs& a) {
              // True on the first call and whenever the arguments differ from the last call's.
              Value now = Value::list(a.positional);
              bool changed = !last_changed->has_value() || **last_changed != now;
              *last_changed = now;
              return Value::boolean(changed);
            }));
      d.set("cycle", Value::function("cycle", [i](CallArgs& a) {
              if (a.positional.empty()) raise("no items for cycling given");
              return a.positional[static_cast<size_t>(i) % a.positional.size()];
            }));
      (*scope)["loop"] = loop;
      scopes_.push_back(scope);
      Flow f;
      try {
        f = exec(n.body);
      } catch (...) {
        scopes_.pop_back();
        throw;
      }
      scopes_.pop_back();
      if (f == Flow::kBreak) break;
    }
  }

  void define_macro(const Node& n) {
    ScopeChain closure = scopes_;
    const Node* node = &n;
    Value fn = Value::function(n.name, [this, closure, node](CallArgs& a) {
      if (a.positional.size() > node->params.size()) {
        raise("macro '" + node->name + "' takes not more than " + std::to_string(node->params.size()) +
              " argument(s)");
      }
      // Python stops runaway recursion (RecursionError); so do we, before the stack does.
      if (macro_depth_ >= kMaxMacroDepth)
        raise("maximum recursion depth exceeded in macro '" + node->name + "'");
      ++macro_depth_;
      struct DepthRestore {
        int* d;
        ~DepthRestore() { --*d; }
      } restore{&macro_depth_};
      auto local = new_scope();
      ScopeChain saved = scopes_;
      scopes_ = closure;
      scopes_.push_back(local);
      std::string text;
      try {
        for (const auto& kv : a.keyword) {
          if (std::find(node->params.begin(), node->params.end(), kv.first) == node->params.end()) {
            raise("macro '" + node->name + "' takes no keyword argument '" + kv.first + "'");
          }
        }
        for (size_t i = 0; i < node->params.size(); ++i) {
          const std::string& p = node->params[i];
          Value v = Value::undefined("'" + p + "' is undefined");
          bool given = false;
          if (i < a.positional.size()) {
            v = a.positional[i];
            given = true;
          }
          for (const auto& kv : a.keyword) {
            if (kv.first == p) {
              if (given) raise("macro '" + node->name + "' got multiple values for argument '" + p + "'");
              v = kv.second;
              given = true;
            }
          }
          if (!given && node->defaults[i]) v = eval(*node->defaults[i]);
          (*local)[p] = v;
        }
        text = capture(node->body);
      } catch (...) {
        scopes_ = saved;
        throw;
      }
      scopes_ = saved;
      return Value::string(text);
    });
    (*scopes_.back())[n.name] = fn;
  }

  // ---- expressions ---------------------------------------------------------

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = (*it)->find(name);
      if (f != (*it)->end()) return f->second;
    }
    return Value::undefined("'" + name + "' is undefined");
  }

  [[noreturn]] void fail(const std::string& msg, Pos pos) const { throw Error{msg, pos}; }

  // Runs a builtin, giving its error the position of `e` when it has none.
  template <typename F>
  auto at(const Expr& e, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (Error& err) {
      if (err.pos.line == 0) err.pos = e.pos;
      throw;
    }
  }

  CallArgs eval_args(const Expr& e, size_t first) {
    CallArgs a;
    for (size_t i = first; i < e.items.size(); ++i) a.positional.push_back(eval(*e.items[i]));
    for (const auto& kv : e.kwargs) a.keyword.emplace_back(kv.first, eval(*kv.second));
    return a;
  }

  // Applies a chain of kFilter nodes whose innermost subject is null.
  Value eval_filter_chain(const Expr& e, const Value& subject) {
    Value v = e.items[0] ? eval_filter_chain(*e.items[0], subject) : subject;
    CallArgs a = eval_args(e, 1);
    if (!has_filter(e.name)) fail("no filter named '" + e.name + "'", e.pos);
    return at(e, [&] { return apply_filter(e.name, v, a); });
  }

  Value get_attr(const Value& obj, const std::string& name, const Expr& e) {
    if (obj.is_undefined()) fail(undefined_message(obj, "?"), e.pos);
    if (obj.is_namespace()) {
      Value* v = obj.as_dict().find(name);
      return v ? *v : Value::undefined("'Namespace' object has no attribute '" + name + "'");
    }
    bool found = false;
    Value m = get_method(obj, name, &found);
    if (found) return m;
    if (obj.is_dict()) {
      Value* v = obj.as_dict().find(name);
      return v ? *v : Value::undefined("'dict object' has no attribute '" + name + "'");
    }
    return Value::undefined(std::string("'") + obj.type_name() + " object' has no attribute '" + name + "'");
  }

  static int64_t normalize_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

  Value get_item(const Value& obj, const Value& key, const Expr& e) {
    if (obj.is_undefined()) fail(undefined_message(obj, "?"), e.pos);
    if (obj.is_dict() && !obj.is_namespace()) {
      if (key.is_string()) {
        Value* v = obj.as_dict().find(key.as_string());
        if (v) return *v;
        bool found = false;
        Value m = get_method(obj, key.as_string(), &found);
        if (found) return m;
      }
      return Value::undefined("'dict object' has no attribute " + key.repr());
    }
    if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
      std::vector<Value> items;
      obj.iterate(&items);
      int64_t i = normalize_index(key.as_int(), static_cast<int64_t>(items.size()));
      if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
      return Value::undefined(std::string("'") + obj.type_name() + " object' has no element " + key.repr());
    }
    if (key.is_string()) return get_attr(obj, key.as_string(), e);
    return Value::undefined(std::string("'") + obj.type_name() + " object' has no element " + key.repr());
  }

  Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step_v, const Expr& e) {
    if (obj.is_undefined()) fail(undefined_message(obj, "?"), e.pos);
    if (!obj.is_list() && !obj.is_string())
      fail(std::string("'") + obj.type_name() + "' object is not subscriptable", e.pos);
    auto as_index = [&](const Value& v) {
      if (!v.is_int() && !v.is_bool()) fail("slice indices must be integers or None", e.pos);
      return v.as_int();
    };
    std::vector<Value> items;
    obj.iterate(&items);
    int64_t n = static_cast<int64_t>(items.size());
    int64_t step = step_v.is_none() || step_v.is_undefined() ? 1 : as_index(step_v);
    if (step == 0) fail("slice step cannot be zero", e.pos);
    // CPython's PySlice_AdjustIndices.
    auto adjust = [&](const Value& v, int64_t dflt) {
      if (v.is_none() || v.is_undefined()) return dflt;
      int64_t i = as_index(v);
      if (i < 0) {
        i += n;
        if (i < 0) i = step < 0 ? -1 : 0;
      } else if (i >= n) {
        i = step < 0 ? n - 1 : n;
      }
      return i;
    };
    int64_t b = adjust(start, step < 0 ? n - 1 : 0);
    int64_t en = adjust(stop, step < 0 ? -1 : n);
    std::vector<Value> out;
    for (int64_t i = b; step > 0 ? i < en : i > en; i += step) out.push_back(items[static_cast<size_t>(i)]);
    if (obj.is_string()) {
      std::string s;
      for (const auto& v : out) s += v.as_string();
      return Value::string(s);
    }
    return Value::list(std::move(out), obj.is_tuple());
  }

  [[noreturn]] void type_error(const char* op, const Value& a, const Value& b, Pos pos) const {
    if (a.is_undefined() || b.is_undefined()) fail(undefined_message(a.is_undefined() ? a : b, "?"), pos);
    fail(std::string("unsupported operand type(s) for ") + op + ": '" + a.type_name() + "' and '" +
             b.type_name() + "'",
         pos);
  }

  // Python's ints are unbounded; ours are 64-bit and say so rather than wrap.
  Value checked(bool overflow, int64_t value, Pos pos) const {
    if (overflow) fail("integer overflow: lema's template integers are 64-bit", pos);
    return Value::integer(value);
  }

  Value arith(const std::string& op, const Value& a, const Value& b, Pos pos) {
    int64_t r = 0;
    bool nums = a.is_number() && b.is_number();
    bool ints = nums && !a.is_float() && !b.is_float();
    if (op == "+") {
      if (ints) {
        bool overflow = __builtin_add_overflow(a.as_int(), b.as_int(), &r);
        return checked(overflow, r, pos);
      }
      if (nums) return Value::real(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) return Value::string(a.as_string() + b.as_string());
      if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
        std::vector<Value> items = a.as_list().items;
        items.insert(items.end(), b.as_list().items.begin(), b.as_list().items.end());
        return Value::list(std::move(items), a.is_tuple());
      }
      type_error("+", a, b, pos);
    }
    if (op == "-") {
      if (ints) {
        bool overflow = __builtin_sub_overflow(a.as_int(), b.as_int(), &r);
        return checked(overflow, r, pos);
      }
      if (nums) return Value::real(a.as_double() - b.as_double());
      type_error("-", a, b, pos);
    }
    if (op == "*") {
      if (ints) {
        bool overflow = __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
        return checked(overflow, r, pos);
      }
      if (nums) return Value::real(a.as_double() * b.as_double());
      const Value* seq = (a.is_string() || a.is_list()) ? &a : (b.is_string() || b.is_list()) ? &b : nullptr;
      const Value* count = seq == &a ? &b : &a;
      if (seq && (count->is_int() || count->is_bool())) {
        int64_t k = std::max<int64_t>(0, count->as_int());
        int64_t unit = 1;
        if (!seq->length(&unit) || (unit > 0 && k > kMaxRepeatItems / unit)) {
          fail("repetition too large (more than 2^28 characters or items)", pos);
        }
        if (seq->is_string()) {
          std::string s;
          for (int64_t i = 0; i < k; ++i) s += seq->as_string();
          return Value::string(s);
        }
        std::vector<Value> items;
        for (int64_t i = 0; i < k; ++i)
          items.insert(items.end(), seq->as_list().items.begin(), seq->as_list().items.end());
        return Value::list(std::move(items), seq->is_tuple());
      }
      type_error("*", a, b, pos);
    }
    if (op == "/" || op == "//" || op == "%") {
      if (op == "%" && a.is_string()) {
        try {
          return Value::string(py_percent_format(a.as_string(), b));
        } catch (Error& err) {
          if (err.pos.line == 0) err.pos = pos;
          throw;
        }
      }
      if (!nums) type_error(op.c_str(), a, b, pos);
      if (b.as_double() == 0)
        fail(op == "/" ? "division by zero" : "integer division or modulo by zero", pos);
      if (op == "/") return Value::real(a.as_double() / b.as_double());
      if (ints) {
        int64_t x = a.as_int(), y = b.as_int();
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
          --q;
          r += y;
        }
        return op == "//" ? Value::integer(q) : Value::integer(r);
      }
      double x = a.as_double(), y = b.as_double();
      double r = std::fmod(x, y);
      if (r != 0 && ((r < 0) != (y < 0))) r += y;
      if (op == "%") return Value::real(r);
      return Value::real(std::floor(x / y));
    }
    if (op == "**") {
      if (!nums) type_error("** or pow()", a, b, pos);
      if (ints && b.as_int() >= 0) {
        int64_t p = 1;
        for (int64_t i = 0; i < b.as_int(); ++i) {
          if (__builtin_mul_overflow(p, a.as_int(), &p)) return checked(true, 0, pos);
          if (p == 0 || p == 1) break;  // 0 ** n, 1 ** n
        }
        if (a.as_int() == -1) p = (b.as_int() % 2) ? -1 : 1;
        return Value::integer(p);
      }
      return Value::real(std::pow(a.as_double(), b.as_double()));
    }
    fail("unknown operator " + op, pos);
  }

  bool contains(const Value& container, const Value& item, Pos pos) {
    if (container.is_string()) {
      if (!item.is_string())
        fail(std::string("'in <string>' requires string as left operand, not ") + item.type_name(), pos);
      return container.as_string().find(item.as_string()) != std::string::npos;
    }
    if (container.is_dict() && !container.is_namespace()) {
      return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    }
    std::vector<Value> items;
    if (!container.iterate(&items))
      fail(std::string("argument of type '") + container.type_name() + "' is not iterable", pos);
    return std::find(items.begin(), items.end(), item) != items.end();
  }

  bool compare(const std::string& op, const Value& a, const Value& b, Pos pos) {
    if (op == "==") return a == b;
    if (op == "!=") return a != b;
    if (op == "in") return contains(b, a, pos);
    if (op == "not in") return !contains(b, a, pos);
    try {
      if (op == "<") return less_than(a, b);
      if (op == ">") return less_than(b, a);
      if (op == "<=") return !less_than(b, a);
      return !less_than(a, b);  // >=
    } catch (Error& err) {
      if (err.pos.line == 0) err.pos = pos;
      throw;
    }
  }

  Value eval(const Expr& e) {
    switch (e.type) {
      case Expr::Type::kLiteral:
        return e.literal;
      case Expr::Type::kName:
        return lookup(e.name);
      case Expr::Type::kList:
      case Expr::Type::kTuple: {
        std::vector<Value> items;
        for (const auto& i : e.items) items.push_back(eval(*i));
        return Value::list(std::move(items), e.type == Expr::Type::kTuple);
      }
      case Expr::Type::kDict: {
        Value d = Value::dict();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
          Value k = eval(*e.items[i]);
          if (!k.is_string()) fail("dict keys must be strings in lema's renderer", e.items[i]->pos);
          d.as_dict().set(k.as_string(), eval(*e.items[i + 1]));
        }
        return d;
      }
      case Expr::Type::kAttr:
        return get_attr(eval(*e.items[0]), e.name, e);
      case Expr::Type::kItem:
        return get_item(eval(*e.items[0]), eval(*e.items[1]), e);
      case Expr::Type::kSlice: {
        Value obj = eval(*e.items[0]);
        auto part = [&](size_t i) { return e.items[i] ? eval(*e.items[i]) : Value::none(); };
        return slice(obj, part(1), part(2), part(3), e);
      }
      case Expr::Type::kCall: {
        Value callee = eval(*e.items[0]);
        CallArgs a = eval_args(e, 1);
        if (callee.is_undefined()) fail(undefined_message(callee, "?"), e.pos);
        if (!callee.is_function())
          fail(std::string("'") + callee.type_name() + "' object is not callable", e.pos);
        return at(e, [&] { return callee.as_function()(a); });
      }
      case Expr::Type::kFilter: {
        Value subject = eval(*e.items[0]);
        if (!has_filter(e.name)) fail("no filter named '" + e.name + "'", e.pos);
        CallArgs a = eval_args(e, 1);
        return at(e, [&] { return apply_filter(e.name, subject, a); });
      }
      case Expr::Type::kTest: {
        if (!has_test(e.name)) fail("no test named '" + e.name + "'", e.pos);
        Value subject = eval(*e.items[0]);
        CallArgs a = eval_args(e, 1);
        bool r = at(e, [&] { return apply_test(e.name, subject, a); });
        return Value::boolean(r != e.negated);
      }
      case Expr::Type::kUnary: {
        Value v = eval(*e.items[0]);
        if (e.name == "not") return Value::boolean(!v.truthy());
        if (v.is_undefined()) fail(undefined_message(v, "?"), e.pos);
        if (!v.is_number())
          fail(std::string("bad operand type for unary ") + e.name + ": '" + v.type_name() + "'", e.pos);
        if (e.name == "+") return v.is_float() ? v : Value::integer(v.as_int());
        return v.is_float() ? Value::real(-v.as_double()) : Value::integer(-v.as_int());
      }
      case Expr::Type::kBinary: {
        if (e.name == "and") {
          Value a = eval(*e.items[0]);
          return a.truthy() ? eval(*e.items[1]) : a;
        }
        if (e.name == "or") {
          Value a = eval(*e.items[0]);
          return a.truthy() ? a : eval(*e.items[1]);
        }
        Value a = eval(*e.items[0]);
        Value b = eval(*e.items[1]);
        if (e.name == "~") return Value::string(a.str() + b.str());
        return arith(e.name, a, b, e.pos);
      }
      case Expr::Type::kCompare: {
        Value left = eval(*e.items[0]);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.items[i + 1]);
          if (!compare(e.ops[i], left, right, e.pos)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Type::kCondExpr:
        if (eval(*e.items[1]).truthy()) return eval(*e.items[0]);
        return e.items[2]
                   ? eval(*e.items[2])
                   : Value::undefined("the inline if-expression on line " + std::to_string(e.pos.line) +
                                      " evaluated to false and no else section was defined.");
    }
    fail("unknown expression", e.pos);
  }

  static constexpr int64_t kMaxRepeatItems = int64_t{1} << 28;  // 'x' * n, [..] * n
  static constexpr int kMaxMacroDepth = 180;  // CPython stops Jinja2 macros between 150 and 200
  int macro_depth_ = 0;
  const RenderOptions& options_;
  RenderResult* result_;
  ScopeChain scopes_;
  std::vector<std::weak_ptr<Scope>> created_;  // every scope made, for ~Renderer
  std::string* out_ = nullptr;
};

// Jinja2 normalises \r\n and \r to \n and drops one trailing newline
// (keep_trailing_newline=False) before lexing.
std::string normalize_source(const std::string& source) {
  std::string s;
  s.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      s += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      s += source[i];
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

Status to_status(const Error& e, const std::string& name) {
  std::string where = name;
  if (e.pos.line > 0) where += ":" + std::to_string(e.pos.line) + ":" + std::to_string(e.pos.col);
  return Status::invalid_argument(where + ": " + e.message);
}

}  // namespace

std::string py_strip_whitespace(const std::string& s) { return py_strip(s, Value::none(), true, true); }

Result<Template> Template::parse(const std::string& source, const std::string& name) {
  auto parsed = std::make_shared<Parsed>();
  try {
    parsed->body = parse_template(normalize_source(source));
  } catch (const Error& e) {
    return to_status(e, name);
  } catch (const std::exception& e) {  // a bug or memory exhaustion: still a Status at the API
    return Status::internal(name + ": " + e.what());
  }
  Template t;
  t.has_generation_ = contains_generation(parsed->body);
  t.parsed_ = std::move(parsed);
  t.name_ = name;
  return t;
}

Result<RenderResult> Template::render(const nlohmann::ordered_json& context,
                                      const RenderOptions& options) const {
  if (!parsed_) return Status::internal("render() on a Template that was not parsed");
  if (!context.is_object() && !context.is_null())
    return Status::invalid_argument(name_ + ": the render context must be a JSON object");
  RenderResult result;
  Renderer r(options, &result);
  try {
    r.run(parsed_->body, context);
  } catch (const Error& e) {
    return to_status(e, name_);
  } catch (const std::exception& e) {  // a bug or memory exhaustion: still a Status at the API
    return Status::internal(name_ + ": " + e.what());
  }
  return result;
}

}  // namespace lema::jinja
