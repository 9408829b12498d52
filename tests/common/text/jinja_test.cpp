// Unit tests of the Jinja2 renderer (common/text/jinja.h). Expected strings
// are what Python's jinja2 3.1 gives under transformers' settings (checked
// against it by chat_template_parity_test, which runs Python itself).
#include "common/text/jinja.h"

#include <gtest/gtest.h>

namespace lema::jinja {
namespace {

using ojson = nlohmann::ordered_json;

std::string render(const std::string& src, const ojson& ctx = ojson::object()) {
  auto t = Template::parse(src, "t.jinja");
  if (!t.ok()) return "PARSE ERROR " + t.status().message();
  RenderOptions o;
  o.now_unix_s = 0;
  auto r = t->render(ctx, o);
  if (!r.ok()) return "ERROR " + r.status().message();
  return r->text;
}

// The error message of a template that must fail ("" when it renders).
std::string error_of(const std::string& src, const ojson& ctx = ojson::object()) {
  auto t = Template::parse(src, "t.jinja");
  if (!t.ok()) return t.status().message();
  auto r = t->render(ctx);
  return r.ok() ? "" : r.status().message();
}

TEST(Jinja, TextAndComments) {
  EXPECT_EQ(render("plain"), "plain");
  EXPECT_EQ(render("a{# note #}b"), "ab");
  EXPECT_EQ(render("x\n"), "x");  // one trailing newline dropped (keep_trailing_newline=False)
  EXPECT_EQ(render("x\n\n"), "x\n");
  EXPECT_EQ(render("a\r\nb\rc"), "a\nb\nc");
  EXPECT_EQ(render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
}

TEST(Jinja, TrimBlocksAndLstripBlocks) {
  // The newline after a block tag goes; the indentation before it too.
  EXPECT_EQ(render("a\n  {% if true %}\n  b\n  {% endif %}\n c"), "a\n  b\n c");
  // Not before {{ }}, and not when text precedes the tag on its line.
  EXPECT_EQ(render("  {{ 'x' }}\n"), "  x");
  EXPECT_EQ(render("a  {% if true %}x{% endif %}  b"), "a  x  b");
  // + keeps them.
  EXPECT_EQ(render("a\n  {%+ if true %}b{% endif +%}\nc"), "a\n  b\nc");
  // Comments behave like blocks.
  EXPECT_EQ(render("x\n  {# c #}\ny"), "x\ny");
}

TEST(Jinja, WhitespaceControl) {
  EXPECT_EQ(render("a  \n {{- 'b' -}} \n c"), "abc");
  EXPECT_EQ(render("a\n    {%- if true -%}\n  b  \n  {%- endif %}\nc"), "abc");
  EXPECT_EQ(render("{%- for x in [1, 2] -%}\n  {{ x }}\n{%- endfor -%}\n"), "12");
  EXPECT_EQ(render("y {#- tight -#} z"), "yz");
}

TEST(Jinja, LiteralsPrintLikePython) {
  EXPECT_EQ(render("{{ 1 }} {{ -3 }} {{ 1.5 }} {{ 2.0 }} {{ 1e3 }} {{ 1_000 }}"), "1 -3 1.5 2.0 1000.0 1000");
  EXPECT_EQ(render("{{ 0.1 + 0.2 }} {{ 1/3 }} {{ 1e-7 }} {{ 1e22 }} {{ 0.0001 }} {{ -0.0 }}"),
            "0.30000000000000004 0.3333333333333333 1e-07 1e+22 0.0001 -0.0");
  EXPECT_EQ(render("{{ true }} {{ False }} {{ none }} [{{ missing }}]"), "True False None []");
  EXPECT_EQ(render("{{ [1, 'a', none, true, 1.5, {'k': \"it's\"}] }}"), "[1, 'a', None, True, 1.5, {'k': \"it's\"}]");
  EXPECT_EQ(render("{{ ('a',) }} {{ (1, 2) }} {{ () }}"), "('a',) (1, 2) ()");
  EXPECT_EQ(render("{{ ['nl\\n', 'ctl\\x01', '\\u00a0', 'é'] }}"), "['nl\\n', 'ctl\\x01', '\\xa0', 'é']");
  EXPECT_EQ(render("{{ 'a\\tb' }}|{{ 'x\\u00e9\\x41\\101' }}|{{ 'keep\\d' }}|{{ 'con' 'cat' }}"), "a\tb|xéAA|keep\\d|concat");
}

TEST(Jinja, Arithmetic) {
  EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }}"),
            "3 -4 2 3.0 0.5 1024 0.5");
  EXPECT_EQ(render("{{ 1 + 2 * 3 - 4 / 2 }} {{ -2 ** 2 }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 1 + true }}"),
            "5.0 4 abab [1, 2] 2");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none ~ missing }}"), "a1None");
  EXPECT_NE(error_of("{{ 1 + 'a' }}").find("unsupported operand type(s) for +: 'int' and 'str'"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 / 0 }}").find("division by zero"), std::string::npos);
  // Python's ints are unbounded: past 64 bits lema says so instead of wrapping.
  EXPECT_EQ(error_of("{{ 2 ** 64 }}"), "t.jinja:1:6: integer overflow: lema's template integers are 64-bit");
  EXPECT_EQ(error_of("{{ 9223372036854775807 + 1 }}"), "t.jinja:1:24: integer overflow: lema's template integers are 64-bit");
}

TEST(Jinja, ComparisonsAndLogic) {
  EXPECT_EQ(render("{{ 1 == 1.0 }} {{ true == 1 }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}"),
            "True True True True False");
  EXPECT_EQ(render("{{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }}"),
            "True True True True");
  EXPECT_EQ(render("{{ 1 and 2 }} {{ 0 and 2 }} {{ 0 or 'x' }} {{ not 0 }} {{ not 1 in [1] }}"), "2 0 x True False");
  EXPECT_EQ(render("{{ 'y' if 1 else 'n' }} [{{ 'only' if false }}] {{ 'a' if 0 else 'b' if 1 else 'c' }}"), "y [] b");
}

TEST(Jinja, AttributesItemsSlices) {
  ojson ctx = {{"d", {{"a", 1}, {"nested", {{"x", "y"}}}}}, {"l", {"a", 2, "c"}}};
  EXPECT_EQ(render("{{ d.a }} {{ d['a'] }} [{{ d.missing }}] {{ d.nested.x }} {{ l[0] }} {{ l[-1] }} [{{ l[9] }}] {{ l.1 }}", ctx),
            "1 1 [] y a c [] 2");
  EXPECT_EQ(render("{{ l[1:] }} {{ l[::-1] }} {{ 'héllo'[1:3] }} {{ 'abc'[::-1] }} {{ l[5:] }}", ctx),
            "[2, 'c'] ['c', 2, 'a'] él cba []");
  EXPECT_EQ(render("{{ d.items() | list }} {{ d.keys() | list }} {{ d.get('zz', 'dv') }} {{ d.get('zz') }}", ctx),
            "[('a', 1), ('nested', {'x': 'y'})] ['a', 'nested'] dv None");
  // JSON key order is kept (Python dicts keep insertion order).
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | tojson }}"), "{\"b\": 1, \"a\": 2}");
}

TEST(Jinja, UndefinedSemantics) {
  EXPECT_EQ(render("[{{ x }}] {{ x is defined }} {{ x | length }} {{ x | default('d') }} {% for i in x %}no{% endfor %}"),
            "[] False 0 d ");
  EXPECT_EQ(render("{{ none.x }}|"), "|");  // attribute of None: undefined, not an error
  EXPECT_EQ(error_of("{{ x.y }}"), "t.jinja:1:5: 'x' is undefined");
  EXPECT_EQ(error_of("{{ d.missing.x }}", {{"d", ojson::object()}}), "t.jinja:1:13: 'dict object' has no attribute 'missing'");
  EXPECT_EQ(error_of("{{ x + 1 }}"), "t.jinja:1:6: 'x' is undefined");
  EXPECT_EQ(error_of("{{ f() }}"), "t.jinja:1:5: 'f' is undefined");
}

TEST(Jinja, IfAndFor) {
  EXPECT_EQ(render("{% if 0 %}a{% elif '' %}b{% elif [1] %}c{% else %}d{% endif %}"), "c");
  EXPECT_EQ(render("{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
                   "{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
            "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
  EXPECT_EQ(render("{% for x in [1, 'a', 2, 'b'] if x is string %}{{ x }}{{ loop.index }}/{{ loop.length }} {% endfor %}"),
            "a1/2 b2/2 ");
  EXPECT_EQ(render("{% for x in [] %}{{ x }}{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;");
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
            "2");
  EXPECT_EQ(render("{% for x in [1, 2, 3] %}{{ loop.previtem }}>{{ x }}<{{ loop.nextitem }} {{ loop.cycle('o', 'e') }};{% endfor %}"),
            ">1<2 o;1>2<3 e;2>3< o;");
}

TEST(Jinja, SetScopingAndNamespace) {
  // A set inside a loop is gone after the iteration; if blocks leak.
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}"), "231");
  EXPECT_EQ(render("{% if true %}{% set y = 'yes' %}{% endif %}{{ y }}"), "yes");
  EXPECT_EQ(render("{% set ns = namespace(total=0) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}"),
            "6");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}"), "12");
  EXPECT_EQ(render("{% set blk %}in {{ 1 + 1 }}{% endset %}[{{ blk }}]{% set up | upper %}x{% endset %}{{ up }}"), "[in 2]X");
  EXPECT_EQ(error_of("{% set t = 1 %}{% set t.x = 2 %}"), "t.jinja:1:19: cannot assign attribute on non-namespace object 't'");
}

TEST(Jinja, MacrosAndFilterBlocks) {
  EXPECT_EQ(render("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
                   "{{ greet('Ann') }} {{ greet('Bo', greeting='Hi') }} {{ greet(name='Cy') }}"),
            "Hello, Ann! Hi, Bo! Hello, Cy!");
  EXPECT_EQ(render("{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }}"), "321");
  EXPECT_EQ(error_of("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"), "t.jinja:1:35: macro 'm' takes not more than 1 argument(s)");
  EXPECT_EQ(render("{% filter upper %}hi {{ 'there' }}{% endfilter %}"), "HI THERE");
}

TEST(Jinja, Filters) {
  EXPECT_EQ(render("{{ '  pad  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'hello wORLD' | title }} {{ 'hELLO' | capitalize }}"),
            "pad|hi|Hello World Hello");
  EXPECT_EQ(render("{{ 'héllo' | length }} {{ [1, 2] | count }} {{ '' | default('d', true) }} {{ 0 | d('z', boolean=true) }}"),
            "5 2 d z");
  ojson users = {{"users", ojson::parse(R"([{"name": "bo", "admin": true}, {"name": "ann", "admin": false}])")}};
  EXPECT_EQ(render("{{ users | map(attribute='name') | join(',') }} {{ users | selectattr('admin') | map(attribute='name') | list }}"
                   " {{ users | rejectattr('admin') | list | length }} {{ users | selectattr('name', 'equalto', 'ann') | list | length }}",
                   users),
            "bo,ann ['bo'] 1 1");
  EXPECT_EQ(render("{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3] | reject('divisibleby', 3) | list }} {{ ['A'] | map('lower') | list }}"),
            "[1, 3] [1, 2] ['a']");
  EXPECT_EQ(render("{{ 'a-b' | replace('-', '+') }} {{ '4.7' | int }} {{ 'x' | int(7) }} {{ '2.5' | float }} {{ -2.5 | abs }}"),
            "a+b 4 7 2.5 2.5");
  EXPECT_EQ(render("{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.567 | round(2) }} {{ 2.1 | round(0, 'ceil') }} {{ 7 | round }}"),
            "2.0 4.0 2.57 3.0 7");
  EXPECT_EQ(render("{{ ['b', 'A', 'a', 'C'] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ [1, 2, 2, 'a', 'A'] | unique | list }}"),
            "['A', 'a', 'b', 'C'] [3, 2, 1] [1, 2, 'a']");
  EXPECT_EQ(render("{{ [1, 2] | reverse | list }} {{ 'abc' | reverse }} {{ [1, 2] | first }} {{ [1, 2] | last }} {{ 'ab' | list }}"),
            "[2, 1] cba 1 2 ['a', 'b']");
  EXPECT_EQ(render("{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}"), "a\n  b\n\n  c|  a\n  b");
  EXPECT_EQ(render("{{ '<b>' | safe }} {{ '<&>' | e }} {{ 'one two' | wordcount }} {{ [3, 1] | min }} {{ [1, 2] | sum }}"),
            "<b> &lt;&amp;&gt; 2 1 3");
  EXPECT_EQ(error_of("{{ 1 | nosuch }}"), "t.jinja:1:8: no filter named 'nosuch'");
}

TEST(Jinja, TojsonAsTransformers) {
  // json.dumps(ensure_ascii=False): non-ASCII kept, no HTML escaping.
  EXPECT_EQ(render("{{ {'a': [1, 2.5, 'é<\"\\n'], 'b': none} | tojson }}"), "{\"a\": [1, 2.5, \"é<\\\"\\n\"], \"b\": null}");
  EXPECT_EQ(render("{{ {'a': [1, {}], 'b': []} | tojson(indent=2) }}"), "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ [1, 2] | tojson(separators=(',', ':')) }}"),
            "{\"a\": 2, \"b\": 1} [1,2]");
  EXPECT_EQ(render("{{ 1.0 | tojson }} {{ 1e100 | tojson }} {{ true | tojson }}"), "1.0 1e+100 true");
  EXPECT_EQ(error_of("{{ x | tojson }}"), "t.jinja:1:8: tojson: Object of type Undefined is not JSON serializable");
}

TEST(Jinja, Tests) {
  EXPECT_EQ(render("{{ x is defined }} {{ none is none }} {{ 1 is not none }} {{ 'x' is string }} {{ true is number }}"
                   " {{ true is integer }} {{ 1.0 is float }} {{ 1 is boolean }}"),
            "False True True True True False True False");
  EXPECT_EQ(render("{{ true is true }} {{ 1 is true }} {{ {} is mapping }} {{ [] is iterable }} {{ 1 is iterable }} {{ x is iterable }}"),
            "True False True True False True");
  EXPECT_EQ(render("{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'a' is equalto 'a' }} {{ 2 is in [1, 2] }}"
                   " {{ 1 is gt 0 }} {{ range is callable }}"),
            "True True True True True True True");
  EXPECT_EQ(error_of("{{ 1 is nosuch }}"), "t.jinja:1:6: no test named 'nosuch'");
}

TEST(Jinja, StringAndDictMethods) {
  EXPECT_EQ(render("[{{ '  x  '.strip() }}|{{ '  x '.lstrip() }}|{{ ' x  '.rstrip() }}|{{ 'xxyxx'.strip('x') }}|{{ '\\n\\nx'.lstrip('\\n') }}]"),
            "[x|x | x|y|x]");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }}"
                   " {{ 'a b c'.split(' ', 1) }}"),
            "True True ['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c']");
  EXPECT_EQ(render("{{ 'aXb'.replace('X', '-') }} {{ 'Hi'.upper() }} {{ 'Hi'.lower() }} {{ 'hi there'.title() }} {{ '-'.join(['a', 'b']) }}"),
            "a-b HI hi Hi There a-b");
  EXPECT_EQ(render("{{ '{} and {}'.format(1, 2) }} {{ '{1}{0}{{x}}{k!r}'.format('a', 'b', k='q') }}"), "1 and 2 ba{x}'q'");
  EXPECT_EQ(render("{{ 'a<think>b</think>c'.split('</think>')[0].split('<think>')[-1] }}"), "b");
  // The immutable sandbox refuses mutation.
  EXPECT_EQ(error_of("{% set l = [] %}{{ l.append(1) }}"), "t.jinja:1:28: access to attribute 'append' of 'list' object is unsafe.");
}

TEST(Jinja, PrintfFormatting) {
  EXPECT_EQ(render("{{ '%s-%d' % ('a', 3) }} {{ '%5.2f|%-4d|%03d|%x|%%' % (3.14159, 7, 5, 255) }} {{ '%(a)s' % {'a': 1} }}"),
            "a-3  3.14|7   |005|ff|% 1");
  EXPECT_EQ(render("{{ '%s and %s' | format('a', 'b') }} {{ '%s' % [1, 2] }}"), "a and b [1, 2]");
  EXPECT_EQ(error_of("{{ '%s %s' % ('a',) }}"), "t.jinja:1:12: not enough arguments for format string");
  EXPECT_EQ(render("{{ 'é😊' | tojson(ensure_ascii=true) }}"), "\"\\u00e9\\ud83d\\ude0a\"");
}

TEST(Jinja, Globals) {
  EXPECT_EQ(render("{{ range(3) | list }} {{ range(1, 10, 4) | list }} {{ dict(a=1) }} {{ namespace(x=1).x }}"),
            "[0, 1, 2] [1, 5, 9] {'a': 1} 1");
  auto t = Template::parse("{{ strftime_now('%Y-%m-%d') }}", "t");
  ASSERT_TRUE(t.ok());
  RenderOptions o;
  o.now_unix_s = 1721995200;  // 2024-07-26 12:00 UTC: the date is the same in every time zone
  auto r = t->render(ojson::object(), o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "2024-07-26");
  EXPECT_EQ(error_of("{{ raise_exception('roles must alternate') }}"), "t.jinja:1:19: roles must alternate");
}

TEST(Jinja, GenerationSpans) {
  auto t = Template::parse("{% for m in msgs %}<{% generation %}{{ m }}!{% endgeneration %}>{% endfor %}", "t");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->has_generation());
  auto r = t->render({{"msgs", {"é", "bc"}}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "<é!><bc!>");
  ASSERT_EQ(r->generation_spans.size(), 2u);
  EXPECT_EQ(r->text.substr(r->generation_spans[0].begin, r->generation_spans[0].end - r->generation_spans[0].begin), "é!");
  EXPECT_EQ(r->text.substr(r->generation_spans[1].begin, r->generation_spans[1].end - r->generation_spans[1].begin), "bc!");
  EXPECT_FALSE(Template::parse("{{ 1 }}", "t")->has_generation());
  EXPECT_NE(error_of("{% macro m() %}{% generation %}x{% endgeneration %}{% endmacro %}{{ m() }}").find("generation"),
            std::string::npos);
}

TEST(Jinja, SyntaxErrorsNameLineAndColumn) {
  EXPECT_EQ(error_of("line one\n{% if true %}unclosed"),
            "t.jinja:2:22: unexpected end of template: expected 'elif' or 'else' or 'endif'");
  EXPECT_EQ(error_of("{% for x in %}{% endfor %}"), "t.jinja:1:13: unexpected '%}'");
  EXPECT_EQ(error_of("\n\n  {{ 'unterminated }}"), "t.jinja:3:6: unterminated string literal");
  EXPECT_EQ(error_of("{% endif %}"), "t.jinja:1:4: unknown statement 'endif'");
  EXPECT_EQ(error_of("{{ (1 + }}"), "t.jinja:1:10: unexpected '}'");
  EXPECT_EQ(error_of("{% break %}"), "t.jinja:1:4: 'break' outside a for loop");
  EXPECT_EQ(error_of("{{ 1 @ 2 }}"), "t.jinja:1:6: unexpected character '@'");
  EXPECT_EQ(error_of("{# open"), "t.jinja:1:1: missing end of comment tag");
  EXPECT_EQ(error_of("{{ x"), "t.jinja:1:1: unexpected end of template: missing '}}'");
}

TEST(Jinja, RefusedConstructsSayWhy) {
  EXPECT_EQ(error_of("{% include 'x' %}"), "t.jinja:1:4: '{% include %}' is not supported in chat templates");
  EXPECT_EQ(error_of("{% for x in y recursive %}{% endfor %}"), "t.jinja:1:15: recursive for loops are not supported");
  EXPECT_EQ(error_of("{{ '{:>5}'.format(1) }}"), "t.jinja:1:18: format: format specifications are not supported");
  EXPECT_EQ(error_of("{{ {1: 2} }}"), "t.jinja:1:5: dict keys must be strings in lema's renderer");
  EXPECT_EQ(error_of("{{ '%100d' % 1 }}"), "t.jinja:1:12: format: width or precision above 99 is not supported");
}

TEST(Jinja, RunawayNestingAndRecursionAreErrors) {
  EXPECT_NE(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").find("nests too deeply"), std::string::npos);
  std::string ifs;
  for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
  EXPECT_NE(error_of(ifs).find("nests too deeply"), std::string::npos);
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("maximum recursion depth exceeded in macro 'f'"),
            std::string::npos);
  // Deep but legitimate recursion still works.
  EXPECT_EQ(render("{% macro r(n) %}{% if n > 0 %}{{ r(n - 1) }}{% else %}done{% endif %}{% endmacro %}{{ r(150) }}"), "done");
}

TEST(Jinja, HostileInputIsAStatusNotACrash) {
  EXPECT_EQ(render("{{ 1e999 }} {{ -1e999 }}"), "inf -inf");
  EXPECT_EQ(error_of("{{ 99999999999999999999 }}"), "t.jinja:1:4: integer literal 99999999999999999999 does not fit in 64 bits");
  EXPECT_EQ(error_of("{{ x.99999999999999999999 }}", {{"x", ojson::array()}}),
            "t.jinja:1:5: index .99999999999999999999 does not fit in 64 bits");
  EXPECT_EQ(error_of("{{ 'ab' * 2 ** 40 }}"), "t.jinja:1:9: repetition too large (more than 2^28 characters or items)");
  EXPECT_EQ(error_of("{{ '{99999999999}'.format(1) }}"), "t.jinja:1:26: format: replacement index 99999999999 out of range");
  EXPECT_EQ(render("{{ [[1]] | map(attribute='0.99999999999999') | list }}"), "[Undefined]");
}

// Random edits of valid templates must give a text or a Status, never a
// crash or an exception (fixed seed: the same cases every run).
TEST(Jinja, MutatedTemplatesNeverCrash) {
  const char* seeds[] = {
      "{% for m in messages %}{% if m.role == 'user' %}[{{ m.content | trim }}]{% else %}{{ m.content }}{% endif %}{% endfor %}",
      "{% set ns = namespace(x=0) %}{% for i in range(3) if i != 1 %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x ~ '!' }}",
      "{% macro f(a, b=2) %}{{ a * b }}{% endmacro %}{{ f(3) }}{{ {'k': [1, 2.5, none]} | tojson(indent=2) }}",
      "{{- 'x'[1:] if y is defined else \"z\" -}}{# c #}{% raw %}{{{% endraw %}",
  };
  const std::string alphabet = "{}%#-+()[]|.,:~'\"\\ \nabcifnorset0123456789=<>!*/";
  ojson ctx = {{"messages", ojson::array({{{"role", "user"}, {"content", " hi "}}, {{"role", "assistant"}, {"content", "yo"}}})}};
  uint64_t state = 42;
  auto next = [&]() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  int rendered = 0, failed = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string src = seeds[next() % 4];
    int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits && !src.empty(); ++e) {
      size_t at = next() % src.size();
      switch (next() % 3) {
        case 0: src.erase(at, 1 + next() % 3); break;
        case 1: src.insert(at, 1, alphabet[next() % alphabet.size()]); break;
        default: src[at] = alphabet[next() % alphabet.size()];
      }
    }
    auto t = Template::parse(src, "fuzz");
    if (!t.ok()) {
      ++failed;
      EXPECT_EQ(t.status().message().rfind("fuzz", 0), 0u) << t.status().message();
      continue;
    }
    auto r = t->render(ctx);
    (r.ok() ? rendered : failed)++;
  }
  EXPECT_GT(rendered, 100);
  EXPECT_GT(failed, 100);
}

TEST(Jinja, TemplateIsReusableAndContextMustBeAnObject) {
  auto t = Template::parse("{{ a }}", "t");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->render({{"a", 1}})->text, "1");
  EXPECT_EQ(t->render({{"a", "two"}})->text, "two");
  EXPECT_FALSE(t->render(ojson::array()).ok());
}

}  // namespace
}  // namespace lema::jinja
