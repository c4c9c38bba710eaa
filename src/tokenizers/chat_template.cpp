// A Jinja2 subset interpreter for chat templates, following jinja2 3.1 (lexer.py, parser.py, runtime.py, filters.py,
// tests.py, sandbox.py) as configured by transformers' _compile_jinja_template (tokenization_utils_base.py, v4.40):
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True), autoescape off, the raise_exception global.
// Values follow Python semantics (str(), repr(), int/float arithmetic, comparisons) so output matches byte for byte.
// Beyond 4.40 we also accept {% break %} / {% continue %} (the loopcontrols extension later versions enable).
#include "transformers/chat_template.h"

#include "transformers/errors.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

namespace transformers {

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Errors: a Fault carries the template line once known; render_chat_template turns it into ChatTemplateError.

struct Fault {
  std::string message;
  int line = 0;
};

[[noreturn]] void fail(const std::string& message, int line = 0) { throw Fault{message, line}; }

// ---------------------------------------------------------------------------------------------------------------
// Values

struct Value;
using List = std::vector<Value>;
struct Dict;
struct Object;
struct Args;
using Function = std::function<Value(Args&)>;

enum class Kind { Undefined, None, Bool, Int, Float, String, List, Tuple, Dict, Callable, Object };

struct Value {
  Kind kind = Kind::Undefined;
  bool b = false;
  bool markup = false;    // String: markupsafe.Markup (tojson, safe, escape): `str + Markup` escapes the str
  bool iterator = false;  // List: a generator (map, select, unique, ...): always truthy, no len(), no indexing
  int64_t i = 0;
  double f = 0;
  std::string s;  // String; for Undefined the hint raised when it is used
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<Function> fn;
  std::shared_ptr<Object> obj;

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool is_sequence() const { return kind == Kind::List || kind == Kind::Tuple; }
};

struct Dict {
  std::vector<std::pair<Value, Value>> items;  // insertion order, as Python dicts
  const Value* find(const Value& key) const;
  void set(const Value& key, Value value);
};

// Namespace (assignable attributes), LoopContext, Cycler/Joiner-like objects.
struct Object {
  std::string type;
  Dict attrs;
};

struct Args {
  List pos;
  std::vector<std::pair<std::string, Value>> kw;
};

Value undefined(std::string hint) {
  Value v;
  v.s = std::move(hint);
  return v;
}
Value none() {
  Value v;
  v.kind = Kind::None;
  return v;
}
Value boolean(bool b) {
  Value v;
  v.kind = Kind::Bool;
  v.b = b;
  return v;
}
Value integer(int64_t i) {
  Value v;
  v.kind = Kind::Int;
  v.i = i;
  return v;
}
Value floating(double f) {
  Value v;
  v.kind = Kind::Float;
  v.f = f;
  return v;
}
Value string(std::string s) {
  Value v;
  v.kind = Kind::String;
  v.s = std::move(s);
  return v;
}
Value markup(std::string s) {
  Value v = string(std::move(s));
  v.markup = true;
  return v;
}
// The string `s` with the Markup flag of `like` (markupsafe's str methods return Markup for Markup).
Value string_like(std::string s, const Value& like) {
  Value v = string(std::move(s));
  v.markup = like.markup;
  return v;
}
Value list(List items, Kind kind = Kind::List) {
  Value v;
  v.kind = kind;
  v.list = std::make_shared<List>(std::move(items));
  return v;
}
Value generator(List items) {
  Value v = list(std::move(items));
  v.iterator = true;
  return v;
}
Value dict(Dict d = {}) {
  Value v;
  v.kind = Kind::Dict;
  v.dict = std::make_shared<Dict>(std::move(d));
  return v;
}
Value function(Function f) {
  Value v;
  v.kind = Kind::Callable;
  v.fn = std::make_shared<Function>(std::move(f));
  return v;
}
Value object(std::string type) {
  Value v;
  v.kind = Kind::Object;
  v.obj = std::make_shared<Object>();
  v.obj->type = std::move(type);
  return v;
}

[[noreturn]] void fail_undefined(const Value& v) { fail(v.s.empty() ? "value is undefined" : v.s); }

std::string type_name(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Callable: return "function";
    case Kind::Object: return v.obj->type;
  }
  return "object";
}

// jinja2.utils.object_type_repr, used in undefined hints.
std::string object_type_repr(const Value& v) {
  if (v.kind == Kind::None) return "None";
  return type_name(v) + " object";
}

// --- UTF-8 helpers (Python strings index code points) ---

std::vector<uint32_t> decode_utf8(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp = c;
    size_t n = 1;
    if (c >= 0xF0) n = 4, cp = c & 0x07;
    else if (c >= 0xE0) n = 3, cp = c & 0x0F;
    else if (c >= 0xC0) n = 2, cp = c & 0x1F;
    if (n > 1 && i + n > s.size()) n = 1, cp = c;  // truncated sequence: keep the byte
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string encode_utf8(const std::vector<uint32_t>& cps) {
  std::string out;
  for (uint32_t cp : cps) append_utf8(out, cp);
  return out;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

// Python's str.isspace() for the characters templates meet (ASCII, NEL, NBSP, the Unicode spaces).
bool is_space(uint32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

uint32_t to_upper(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;  // Greek
  if (c >= 0x430 && c <= 0x44F) return c - 32;                 // Cyrillic
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}
uint32_t to_lower(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}
bool is_cased(uint32_t c) { return to_upper(c) != c || to_lower(c) != c; }

std::string upper(const std::string& s) {
  auto cps = decode_utf8(s);
  for (auto& c : cps) c = to_upper(c);
  return encode_utf8(cps);
}
std::string lower(const std::string& s) {
  auto cps = decode_utf8(s);
  for (auto& c : cps) c = to_lower(c);
  return encode_utf8(cps);
}
std::string capitalize(const std::string& s) {
  auto cps = decode_utf8(s);
  for (size_t k = 0; k < cps.size(); ++k) cps[k] = k == 0 ? to_upper(cps[k]) : to_lower(cps[k]);
  return encode_utf8(cps);
}
// Python str.title(): a cased character after an uncased one starts a word.
std::string py_title(const std::string& s) {
  auto cps = decode_utf8(s);
  bool previous_cased = false;
  for (auto& c : cps) {
    bool cased = is_cased(c);
    c = previous_cased ? to_lower(c) : to_upper(c);
    previous_cased = cased;
  }
  return encode_utf8(cps);
}

std::string strip(const std::string& s, bool left, bool right, const Value& chars) {
  auto cps = decode_utf8(s);
  std::vector<uint32_t> set;
  bool whitespace = chars.kind == Kind::None || chars.is_undefined();
  if (!whitespace) {
    if (!chars.is_string()) fail("strip arg must be None or str");
    set = decode_utf8(chars.s);
  }
  auto strip_it = [&](uint32_t c) {
    return whitespace ? is_space(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t begin = 0, end = cps.size();
  if (left)
    while (begin < end && strip_it(cps[begin])) ++begin;
  if (right)
    while (end > begin && strip_it(cps[end - 1])) --end;
  return encode_utf8(std::vector<uint32_t>(cps.begin() + static_cast<long>(begin), cps.begin() + static_cast<long>(end)));
}

std::string replace_all(const std::string& s, const std::string& old, const std::string& with, int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts `with` between every character
    auto cps = decode_utf8(s);
    int64_t done = 0;
    for (size_t k = 0; k <= cps.size(); ++k) {
      if (count < 0 || done < count) out += with, ++done;
      if (k < cps.size()) append_utf8(out, cps[k]);
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(old, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += with;
    pos = hit + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// str.splitlines() (without keepends)
std::vector<std::string> splitlines(const std::string& s) {
  std::vector<std::string> lines;
  auto cps = decode_utf8(s);
  std::vector<uint32_t> current;
  for (size_t k = 0; k < cps.size(); ++k) {
    uint32_t c = cps[k];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
               c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) {
      current.push_back(c);
      continue;
    }
    if (c == '\r' && k + 1 < cps.size() && cps[k + 1] == '\n') ++k;
    lines.push_back(encode_utf8(current));
    current.clear();
  }
  if (!current.empty()) lines.push_back(encode_utf8(current));
  return lines;
}

// --- Python str() / repr() ---

std::string float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
  char buf[64];
  int precision = 1;
  for (; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*e", precision - 1, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  // buf = "-d.dddde+XX": split into digits and exponent
  std::string text(buf);
  bool negative = text[0] == '-';
  if (negative) text.erase(0, 1);
  size_t e = text.find('e');
  int exponent = std::atoi(text.c_str() + e + 1);
  std::string digits;
  for (size_t k = 0; k < e; ++k)
    if (text[k] != '.') digits += text[k];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp_buf;
  }
  if (exponent < 0) return out + "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  size_t int_digits = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= int_digits) return out + digits + std::string(int_digits - digits.size(), '0') + ".0";
  return out + digits.substr(0, int_digits) + "." + digits.substr(int_digits);
}

std::string string_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (uint32_t c : decode_utf8(s)) {
    if (c == static_cast<uint32_t>(quote) || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || (c >= 0x7F && c < 0xA0) || c == 0xAD) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else append_utf8(out, c);
  }
  return out + quote;
}

std::string repr(const Value& v);

std::string str(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return v.b ? "True" : "False";
    case Kind::Int: return std::to_string(v.i);
    case Kind::Float: return float_repr(v.f);
    case Kind::String: return v.s;
    case Kind::List:
    case Kind::Tuple: {
      if (v.iterator) return "<generator object>";
      std::string out = v.kind == Kind::List ? "[" : "(";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
      if (v.kind == Kind::Tuple && v.list->size() == 1) out += ",";
      return out + (v.kind == Kind::List ? "]" : ")");
    }
    case Kind::Dict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, value] : v.dict->items) {
        out += (first ? "" : ", ") + repr(key) + ": " + repr(value);
        first = false;
      }
      return out + "}";
    }
    case Kind::Callable: return "<function>";
    case Kind::Object: {
      if (v.obj->type == "Namespace") {
        Value attrs;
        attrs.kind = Kind::Dict;
        attrs.dict = std::make_shared<Dict>(v.obj->attrs);
        return "<Namespace " + str(attrs) + ">";
      }
      return "<" + v.obj->type + ">";
    }
  }
  return "";
}

std::string repr(const Value& v) { return v.is_string() ? string_repr(v.s) : str(v); }

// --- truthiness, equality, ordering ---

bool truthy(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return v.b;
    case Kind::Int: return v.i != 0;
    case Kind::Float: return v.f != 0;
    case Kind::String: return !v.s.empty();
    case Kind::List:
    case Kind::Tuple: return v.iterator || !v.list->empty();
    case Kind::Dict: return !v.dict->items.empty();
    default: return true;
  }
}

double as_double(const Value& v) {
  return v.kind == Kind::Float ? v.f : v.kind == Kind::Int ? static_cast<double>(v.i) : (v.b ? 1.0 : 0.0);
}
int64_t as_int(const Value& v) { return v.kind == Kind::Int ? v.i : (v.kind == Kind::Bool ? (v.b ? 1 : 0) : 0); }

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind == Kind::Float || b.kind == Kind::Float) return as_double(a) == as_double(b);
    return as_int(a) == as_int(b);
  }
  if (a.kind != b.kind || a.iterator != b.iterator) return false;
  switch (a.kind) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String: return a.s == b.s;
    case Kind::List:
    case Kind::Tuple:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Kind::Dict:
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [key, value] : a.dict->items) {
        const Value* other = b.dict->find(key);
        if (!other || !equal(value, *other)) return false;
      }
      return true;
    case Kind::Callable: return a.fn == b.fn;
    case Kind::Object: return a.obj == b.obj;
    default: return false;
  }
}

const Value* Dict::find(const Value& key) const {
  for (const auto& item : items)
    if (equal(item.first, key)) return &item.second;
  return nullptr;
}
void Dict::set(const Value& key, Value value) {
  for (auto& item : items)
    if (equal(item.first, key)) {
      item.second = std::move(value);
      return;
    }
  items.emplace_back(key, std::move(value));
}

// Python's a < b: -1, 0, 1; TypeError for unorderable types.
int compare(const Value& a, const Value& b, const char* op) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  if (a.is_number() && b.is_number()) {
    if (a.kind == Kind::Float || b.kind == Kind::Float) {
      double x = as_double(a), y = as_double(b);
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    int64_t x = as_int(a), y = as_int(b);
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) return a.s < b.s ? -1 : (a.s > b.s ? 1 : 0);  // UTF-8 order = code point order
  if (a.kind == b.kind && a.is_sequence()) {
    for (size_t k = 0; k < std::min(a.list->size(), b.list->size()); ++k) {
      if (equal((*a.list)[k], (*b.list)[k])) continue;
      return compare((*a.list)[k], (*b.list)[k], op);
    }
    return a.list->size() < b.list->size() ? -1 : (a.list->size() > b.list->size() ? 1 : 0);
  }
  fail(std::string("'") + op + "' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) +
       "'");
}

// Iterating a value (for loops, filters): lists and tuples, dict keys, string characters, undefined as empty.
List iterate(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return {};
    case Kind::List:
    case Kind::Tuple: return *v.list;
    case Kind::Dict: {
      List keys;
      for (const auto& item : v.dict->items) keys.push_back(item.first);
      return keys;
    }
    case Kind::String: {
      List chars;
      for (uint32_t c : decode_utf8(v.s)) {
        std::string one;
        append_utf8(one, c);
        chars.push_back(string(one));
      }
      return chars;
    }
    default: fail("'" + type_name(v) + "' object is not iterable");
  }
}

// Python dict keys and set members must be hashable: lists and dicts are not (nor tuples holding them).
void check_hashable(const Value& v) {
  if (v.kind == Kind::List || v.kind == Kind::Dict) fail("unhashable type: '" + type_name(v) + "'");
  if (v.kind == Kind::Tuple)
    for (const auto& item : *v.list) check_hashable(item);
}

int64_t length(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return 0;
    case Kind::String: return static_cast<int64_t>(utf8_length(v.s));
    case Kind::List:
    case Kind::Tuple:
      if (v.iterator) fail("object of type 'generator' has no len()");
      return static_cast<int64_t>(v.list->size());
    case Kind::Dict: return static_cast<int64_t>(v.dict->items.size());
    case Kind::Object: return static_cast<int64_t>(v.obj->attrs.items.size());
    default: fail("object of type '" + type_name(v) + "' has no len()");
  }
}

// --- JSON (jinja2's tojson: htmlsafe_json_dumps with sort_keys=True) ---

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (uint32_t c : decode_utf8(s)) {
    char buf[16];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c > 0x7E) {  // ensure_ascii (0x7F stays as is)
          if (c == 0x7F) {
            out += static_cast<char>(c);
          } else if (c >= 0x10000) {
            uint32_t v = c - 0x10000;
            std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            out += buf;
          } else {
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          }
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void to_json(std::string& out, const Value& v, const std::string* indent, int depth) {
  auto newline = [&](int d) {
    out += '\n';
    for (int k = 0; k < d; ++k) out += *indent;
  };
  switch (v.kind) {
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += v.b ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(v.i); return;
    case Kind::Float:
      if (std::isnan(v.f)) out += "NaN";
      else if (std::isinf(v.f)) out += v.f > 0 ? "Infinity" : "-Infinity";
      else out += float_repr(v.f);
      return;
    case Kind::String: json_string(out, v.s); return;
    case Kind::List:
    case Kind::Tuple: {
      if (v.iterator) fail("Object of type generator is not JSON serializable");
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += indent ? "," : ", ";
        if (indent) newline(depth + 1);
        to_json(out, (*v.list)[k], indent, depth + 1);
      }
      if (indent) newline(depth);
      out += ']';
      return;
    }
    case Kind::Dict: {
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      std::vector<std::pair<std::string, const Value*>> items;
      for (const auto& [key, value] : v.dict->items) {
        std::string name;
        if (key.is_string()) name = key.s;
        else if (key.kind == Kind::None) name = "null";
        else if (key.kind == Kind::Bool) name = key.b ? "true" : "false";
        else if (key.kind == Kind::Int || key.kind == Kind::Float) name = str(key);
        else fail("keys must be str, int, float, bool or None, not " + type_name(key));
        if (!key.is_string() && !items.empty())
          fail("'<' not supported between instances of '" + type_name(key) + "' and 'str'");
        items.emplace_back(name, &value);
      }
      std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += indent ? "," : ", ";
        if (indent) newline(depth + 1);
        json_string(out, items[k].first);
        out += ": ";
        to_json(out, *items[k].second, indent, depth + 1);
      }
      if (indent) newline(depth);
      out += '}';
      return;
    }
    default: fail("Object of type " + type_name(v) + " is not JSON serializable");
  }
}

// markupsafe.escape
std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '"') out += "&#34;";
    else if (c == '\'') out += "&#39;";
    else out += c;
  }
  return out;
}

std::string tojson(const Value& v, const Value& indent) {
  std::string out, indent_text;
  const std::string* indent_ptr = nullptr;
  if (indent.kind == Kind::Int || indent.kind == Kind::Bool) {
    indent_text = std::string(static_cast<size_t>(std::max<int64_t>(0, as_int(indent))), ' ');
    indent_ptr = &indent_text;
  } else if (indent.is_string()) {
    indent_text = indent.s;
    indent_ptr = &indent_text;
  } else if (!indent.is_undefined() && indent.kind != Kind::None) {
    fail("tojson: indent must be an integer or a string, got " + type_name(indent));
  }
  to_json(out, v, indent_ptr, 0);
  std::string safe;
  for (char c : out) {
    if (c == '<') safe += "\\u003c";
    else if (c == '>') safe += "\\u003e";
    else if (c == '&') safe += "\\u0026";
    else if (c == '\'') safe += "\\u0027";
    else safe += c;
  }
  return safe;
}

Value from_json(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return none();
    case nlohmann::json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return integer(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: return integer(static_cast<int64_t>(j.get<uint64_t>()));
    case nlohmann::json::value_t::number_float: return floating(j.get<double>());
    case nlohmann::json::value_t::string: return string(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      List items;
      for (const auto& item : j) items.push_back(from_json(item));
      return list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.items.emplace_back(string(it.key()), from_json(it.value()));
      return dict(std::move(d));
    }
    default: return undefined("unsupported JSON value");
  }
}

Value from_json(const nlohmann::ordered_json& j) {
  if (j.is_array()) {
    List items;
    for (const auto& item : j) items.push_back(from_json(item));
    return list(std::move(items));
  }
  if (j.is_object()) {
    Dict d;
    for (auto it = j.begin(); it != j.end(); ++it) d.items.emplace_back(string(it.key()), from_json(it.value()));
    return dict(std::move(d));
  }
  if (j.is_null()) return none();
  if (j.is_boolean()) return boolean(j.get<bool>());
  if (j.is_number_integer()) return integer(j.get<int64_t>());
  if (j.is_number_float()) return floating(j.get<double>());
  if (j.is_string()) return string(j.get<std::string>());
  return undefined("unsupported JSON value");
}

// ---------------------------------------------------------------------------------------------------------------
// Lexer (jinja2/lexer.py with trim_blocks and lstrip_blocks on, keep_trailing_newline off)

enum class Tok { Data, BlockBegin, BlockEnd, VarBegin, VarEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok type;
  std::string text;  // Data text, Name, String value, Op
  int64_t ival = 0;
  double fval = 0;
  int line = 1;
};

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Python string literal escapes (the lexer's .encode("ascii", "backslashreplace").decode("unicode-escape")).
std::string unescape(const std::string& body, int line) {
  std::string out;
  for (size_t k = 0; k < body.size(); ++k) {
    char c = body[k];
    if (c != '\\' || k + 1 >= body.size()) {
      out += c;
      continue;
    }
    char e = body[++k];
    auto hex = [&](size_t digits) {
      if (k + digits >= body.size()) fail("truncated \\x escape", line);
      uint32_t cp = 0;
      for (size_t d = 1; d <= digits; ++d) {
        char h = body[k + d];
        int value = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (value < 0) fail("invalid escape in string literal", line);
        cp = cp * 16 + static_cast<uint32_t>(value);
      }
      k += digits;
      append_utf8(out, cp);
    };
    switch (e) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': hex(2); break;
      case 'u': hex(4); break;
      case 'U': hex(8); break;
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = static_cast<uint32_t>(e - '0');
          for (int d = 0; d < 2 && k + 1 < body.size() && body[k + 1] >= '0' && body[k + 1] <= '7'; ++d)
            cp = cp * 8 + static_cast<uint32_t>(body[++k] - '0');
          append_utf8(out, cp);
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(const std::string& source) {
    // Newlines normalised to \n; one trailing newline dropped (keep_trailing_newline=False).
    for (size_t k = 0; k < source.size(); ++k) {
      if (source[k] == '\r') {
        src_ += '\n';
        if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
      } else {
        src_ += source[k];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> tokenize() {
    while (pos_ < src_.size()) {
      size_t idx = pos_;
      while (idx + 1 < src_.size() &&
             !(src_[idx] == '{' && (src_[idx + 1] == '{' || src_[idx + 1] == '%' || src_[idx + 1] == '#')))
        ++idx;
      if (idx + 1 >= src_.size()) {
        emit_data(src_.substr(pos_));
        pos_ = src_.size();
        break;
      }
      char kind = src_[idx + 1];
      char sign = idx + 2 < src_.size() && (src_[idx + 2] == '-' || src_[idx + 2] == '+') ? src_[idx + 2] : 0;
      std::string text = src_.substr(pos_, idx - pos_);
      int text_lines = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
      size_t raw_end = kind == '%' ? match_raw_begin(idx) : 0;
      text = strip_before(text, sign, kind != '{');
      emit_data(text);
      line_ += text_lines;
      pos_ = idx + 2 + (sign ? 1 : 0);
      if (raw_end) {
        pos_ = raw_end;
        lex_raw();
      } else if (kind == '#') {
        lex_comment();
      } else {
        lex_tag(kind == '%');
      }
    }
    tokens_.push_back(Token{Tok::Eof, "", 0, 0, line_});
    return std::move(tokens_);
  }

 private:
  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;

  void emit_data(const std::string& text) {
    if (!text.empty()) tokens_.push_back(Token{Tok::Data, text, 0, 0, line_});
  }

  // OptionalLStrip: '-' strips all whitespace before the tag; otherwise lstrip_blocks strips a whitespace-only
  // line start before a block or comment tag.
  std::string strip_before(const std::string& text, char sign, bool lstrip) {
    if (sign == '-') {
      size_t end = text.size();
      while (end > 0 && is_ws(text[end - 1])) --end;
      return text.substr(0, end);
    }
    if (sign != '+' && lstrip) {
      size_t nl = text.rfind('\n');
      size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) && l_pos < text.size() &&
          std::all_of(text.begin() + static_cast<long>(l_pos), text.end(), is_ws))
        return text.substr(0, l_pos);
    }
    return text;
  }

  size_t skip_ws(size_t p) const {
    while (p < src_.size() && is_ws(src_[p])) ++p;
    return p;
  }
  bool at(size_t p, const char* s) const { return src_.compare(p, std::strlen(s), s) == 0; }

  // {%[-+]? raw [-]%}: returns the position after it, or 0.
  size_t match_raw_begin(size_t idx) const {
    size_t p = idx + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = skip_ws(p);
    if (!at(p, "raw")) return 0;
    p = skip_ws(p + 3);
    if (at(p, "-%}")) return skip_ws(p + 3);
    if (at(p, "%}")) return p + 2;
    return 0;
  }

  void count_lines(size_t from, size_t to) {
    line_ += static_cast<int>(std::count(src_.begin() + static_cast<long>(from), src_.begin() + static_cast<long>(to), '\n'));
  }

  void lex_raw() {
    for (size_t p = pos_; p + 1 < src_.size(); ++p) {
      if (!at(p, "{%")) continue;
      size_t q = p + 2;
      char sign = q < src_.size() && (src_[q] == '-' || src_[q] == '+') ? src_[q] : 0;
      if (sign) ++q;
      q = skip_ws(q);
      if (!at(q, "endraw")) continue;
      q = skip_ws(q + 6);
      size_t end;
      if (at(q, "+%}")) end = q + 3;
      else if (at(q, "-%}")) end = skip_ws(q + 3);
      else if (at(q, "%}")) end = q + 2 + (q + 2 < src_.size() && src_[q + 2] == '\n' ? 1 : 0);
      else continue;
      std::string text = src_.substr(pos_, p - pos_);
      int text_lines = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
      emit_data(strip_before(text, sign, true));
      line_ += text_lines;
      count_lines(p, end);
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return;
    }
    fail("Missing end of raw directive", line_);
  }

  void lex_comment() {
    for (size_t p = pos_; p < src_.size(); ++p) {
      size_t end = 0;
      if (at(p, "+#}")) end = p + 3;
      else if (at(p, "-#}")) end = skip_ws(p + 3);
      else if (at(p, "#}")) end = p + 2 + (p + 2 < src_.size() && src_[p + 2] == '\n' ? 1 : 0);
      if (!end) continue;
      count_lines(pos_, end);
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return;
    }
    fail("Missing end of comment tag", line_);
  }

  void lex_tag(bool block) {
    tokens_.push_back(Token{block ? Tok::BlockBegin : Tok::VarBegin, "", 0, 0, line_});
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size()) fail(std::string("unexpected end of template, expected '") + (block ? "%}" : "}}") + "'", line_);
      if (balance.empty()) {
        size_t end = 0;
        if (block) {
          if (at(pos_, "+%}")) end = pos_ + 3;
          else if (at(pos_, "-%}")) end = skip_ws(pos_ + 3);
          else if (at(pos_, "%}")) end = pos_ + 2 + (pos_ + 2 < src_.size() && src_[pos_ + 2] == '\n' ? 1 : 0);
        } else {
          if (at(pos_, "-}}")) end = skip_ws(pos_ + 3);
          else if (at(pos_, "}}")) end = pos_ + 2;
        }
        if (end) {
          tokens_.push_back(Token{block ? Tok::BlockEnd : Tok::VarEnd, "", 0, 0, line_});
          count_lines(pos_, end);
          line_starting_ = src_[end - 1] == '\n';
          pos_ = end;
          return;
        }
      }
      char c = src_[pos_];
      if (is_ws(c)) {
        if (c == '\n') ++line_;
        ++pos_;
      } else if (is_digit(c)) {
        lex_number();
      } else if (is_name_start(c)) {
        size_t start = pos_;
        while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
        tokens_.push_back(Token{Tok::Name, src_.substr(start, pos_ - start), 0, 0, line_});
      } else if (c == '\'' || c == '"') {
        size_t p = pos_ + 1;
        while (p < src_.size() && src_[p] != c) p += src_[p] == '\\' ? 2 : 1;
        if (p >= src_.size()) fail("unexpected char " + std::string(1, c) + " (unterminated string)", line_);
        std::string body = src_.substr(pos_ + 1, p - pos_ - 1);
        tokens_.push_back(Token{Tok::String, unescape(body, line_), 0, 0, line_});
        line_ += static_cast<int>(std::count(body.begin(), body.end(), '\n'));
        pos_ = p + 1;
      } else {
        static const char* ops[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                    ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};
        const char* found = nullptr;
        for (const char* op : ops)
          if (at(pos_, op)) {
            found = op;
            break;
          }
        if (!found) fail(std::string("unexpected char '") + c + "'", line_);
        std::string op(found);
        if (op == "(" || op == "[" || op == "{") balance.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
        if (op == ")" || op == "]" || op == "}") {
          if (balance.empty()) fail("unexpected '" + op + "'", line_);
          if (balance.back() != op[0]) fail("unexpected '" + op + "', expected '" + std::string(1, balance.back()) + "'", line_);
          balance.pop_back();
        }
        tokens_.push_back(Token{Tok::Op, op, 0, 0, line_});
        pos_ += op.size();
      }
    }
  }

  void lex_number() {
    size_t start = pos_;
    auto digits = [&](size_t p) {
      size_t q = p;
      while (q < src_.size() && (is_digit(src_[q]) || (src_[q] == '_' && q + 1 < src_.size() && is_digit(src_[q + 1]) && q > p)))
        ++q;
      return q;
    };
    size_t p = digits(pos_);
    bool is_float = false;
    if (p + 1 < src_.size() && src_[p] == '.' && is_digit(src_[p + 1]) && !(start > 0 && src_[start - 1] == '.')) {
      p = digits(p + 1);
      is_float = true;
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && is_digit(src_[q])) {
        p = digits(q);
        is_float = true;
      }
    }
    std::string text;
    for (size_t k = start; k < p; ++k)
      if (src_[k] != '_') text += src_[k];
    if (is_float) {
      tokens_.push_back(Token{Tok::Float, text, 0, std::strtod(text.c_str(), nullptr), line_});
    } else {
      int base = 10;
      if (text == "0" && p < src_.size() && (src_[p] == 'x' || src_[p] == 'X' || src_[p] == 'o' || src_[p] == 'O' ||
                                             src_[p] == 'b' || src_[p] == 'B')) {
        base = (src_[p] == 'x' || src_[p] == 'X') ? 16 : (src_[p] == 'o' || src_[p] == 'O') ? 8 : 2;
        size_t q = p + 1;
        text.clear();
        while (q < src_.size() && (std::isxdigit(static_cast<unsigned char>(src_[q])) || src_[q] == '_')) {
          if (src_[q] != '_') text += src_[q];
          ++q;
        }
        p = q;
      }
      errno = 0;
      int64_t value = std::strtoll(text.c_str(), nullptr, base);
      if (errno == ERANGE) fail("integer literal too large: " + text, line_);
      tokens_.push_back(Token{Tok::Int, text, value, 0, line_});
    }
    pos_ = p;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// AST (jinja2/nodes.py, flattened into one node type)

enum class N {
  // expressions
  Const, Name, ListLit, TupleLit, DictLit, Getattr, Getitem, Slice, Call, Filter, Test, CondExpr, And, Or, Not, Neg,
  Pos, Bin, Concat, Compare, NSRef,
  // statements
  Data, Output, If, For, Assign, AssignBlock, Macro, CallBlock, FilterBlock, With, Break, Continue
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  N type;
  int line = 0;
  std::string name;  // Name, attribute, filter/test/macro name, operator, Data text
  Value value;       // Const
  std::vector<NodePtr> a;                            // children / positional args / tuple items
  std::vector<std::pair<std::string, NodePtr>> kw;  // keyword args / macro defaults
  NodePtr x, y, z;                                   // operands, call target, loop target/iter/test...
  NodePtr dyn_args, dyn_kwargs;
  std::vector<std::string> ops;    // Compare
  std::vector<std::string> params;  // Macro / CallBlock parameters
  Body body, else_body;
  Node(N t, int l) : type(t), line(l) {}
};

NodePtr make(N type, int line) { return std::make_unique<Node>(type, line); }

// ---------------------------------------------------------------------------------------------------------------
// Parser (jinja2/parser.py)

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Body parse() {
    Body body = subparse({});
    if (cur().type != Tok::Eof) fail("unexpected tag", cur().line);
    return body;
  }

 private:
  std::vector<Token> t_;
  size_t p_ = 0;
  int loop_depth_ = 0;
  int expression_depth_ = 0;
  int block_depth_ = 0;
  std::vector<std::string> end_stack_;

  const Token& cur() const { return t_[p_]; }
  const Token& look() const { return t_[std::min(p_ + 1, t_.size() - 1)]; }
  const Token& next() { return t_[p_ < t_.size() - 1 ? p_++ : p_]; }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* name) const { return cur().type == Tok::Name && cur().text == name; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }

  static std::string describe(const Token& tok) {
    switch (tok.type) {
      case Tok::Eof: return "end of template";
      case Tok::BlockEnd: return "end of statement block";
      case Tok::VarEnd: return "end of print statement";
      case Tok::BlockBegin: return "begin of statement block";
      case Tok::VarBegin: return "begin of print statement";
      case Tok::Data: return "template data";
      case Tok::String: return "string";
      case Tok::Int: return "integer";
      case Tok::Float: return "float";
      default: return tok.text;
    }
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(std::string("expected token '") + op + "', got '" + describe(cur()) + "'", cur().line);
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) fail("expected token 'name', got '" + describe(cur()) + "'", cur().line);
    return next().text;
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) fail("expected token 'end of statement block', got '" + describe(cur()) + "'", cur().line);
    next();
  }

  Body subparse(const std::vector<std::string>& end_tokens) {
    Body body;
    while (cur().type != Tok::Eof) {
      const Token& tok = cur();
      if (tok.type == Tok::Data) {
        auto node = make(N::Data, tok.line);
        node->name = tok.text;
        body.push_back(std::move(node));
        next();
      } else if (tok.type == Tok::VarBegin) {
        next();
        auto node = make(N::Output, tok.line);
        node->x = parse_tuple(false, true, {}, false);
        if (cur().type != Tok::VarEnd) fail("expected token 'end of print statement', got '" + describe(cur()) + "'", cur().line);
        next();
        body.push_back(std::move(node));
      } else if (tok.type == Tok::BlockBegin) {
        next();
        if (cur().type == Tok::Name &&
            std::find(end_tokens.begin(), end_tokens.end(), cur().text) != end_tokens.end())
          return body;
        body.push_back(parse_statement());
        expect_block_end();
      } else {
        fail("internal parser error: unexpected token '" + describe(tok) + "'", tok.line);
      }
    }
    if (!end_tokens.empty()) {
      std::string expected;
      for (const auto& e : end_tokens) expected += (expected.empty() ? "'" : " or '") + e + "'";
      fail("Unexpected end of template. Jinja was looking for the following tags: " + expected +
               ". The innermost block that needs to be closed is '" + (end_stack_.empty() ? "" : end_stack_.back()) + "'.",
           cur().line);
    }
    return body;
  }

  Body parse_statements(const std::vector<std::string>& end_tokens, bool drop_needle) {
    skip_op(":");
    expect_block_end();
    if (++block_depth_ > 100) fail("blocks nested too deeply", cur().line);
    Body body = subparse(end_tokens);
    --block_depth_;
    if (cur().type == Tok::Eof) fail("Unexpected end of template", cur().line);
    if (drop_needle) next();
    return body;
  }

  NodePtr parse_statement() {
    const Token& tok = cur();
    if (tok.type != Tok::Name) fail("tag name expected", tok.line);
    const std::string name = tok.text;
    if (name == "if") return end_scope("if", [&] { return parse_if(); });
    if (name == "for") return end_scope("for", [&] { return parse_for(); });
    if (name == "set") return parse_set();
    if (name == "macro") return end_scope("macro", [&] { return parse_macro(); });
    if (name == "call") return end_scope("call", [&] { return parse_call_block(); });
    if (name == "filter") return end_scope("filter", [&] { return parse_filter_block(); });
    if (name == "with") return end_scope("with", [&] { return parse_with(); });
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail("'" + name + "' outside of a loop", tok.line);
      next();
      return make(name == "break" ? N::Break : N::Continue, tok.line);
    }
    if (name == "block" || name == "extends" || name == "include" || name == "import" || name == "from" ||
        name == "autoescape" || name == "print" || name == "do")
      fail("the '" + name + "' tag is not supported in chat templates", tok.line);
    fail("Encountered unknown tag '" + name + "'.", tok.line);
  }

  template <typename F>
  NodePtr end_scope(const std::string& tag, F f) {
    end_stack_.push_back(tag);
    NodePtr node = f();
    end_stack_.pop_back();
    return node;
  }

  NodePtr parse_if() {
    auto result = make(N::If, next().line);
    Node* node = result.get();
    while (true) {
      node->x = parse_tuple(false, false, {}, false);
      node->body = parse_statements({"elif", "else", "endif"}, false);
      const Token& tok = next();
      if (tok.text == "elif") {
        // elif chains become nested Ifs in the else branch (same semantics as jinja's elif_ list)
        auto nested = make(N::If, tok.line);
        Node* raw = nested.get();
        node->else_body.push_back(std::move(nested));
        node = raw;
        continue;
      }
      if (tok.text == "else") node->else_body = parse_statements({"endif"}, true);
      break;
    }
    return result;
  }

  NodePtr parse_for() {
    auto node = make(N::For, next().line);
    node->x = parse_assign_target(true, {"in"}, false);
    if (!skip_name("in")) fail("expected token 'in', got '" + describe(cur()) + "'", cur().line);
    node->y = parse_tuple(false, false, {"recursive"}, false);
    if (skip_name("if")) node->z = parse_expression(true);
    if (skip_name("recursive")) fail("recursive for loops are not supported in chat templates", node->line);
    ++loop_depth_;
    node->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (next().text != "endfor") node->else_body = parse_statements({"endfor"}, true);
    return node;
  }

  NodePtr parse_set() {
    int line = next().line;
    NodePtr target = parse_assign_target(true, {}, true);
    if (skip_op("=")) {
      auto node = make(N::Assign, line);
      node->x = std::move(target);
      node->y = parse_tuple(false, true, {}, false);
      return node;
    }
    auto node = make(N::AssignBlock, line);
    node->x = std::move(target);
    if (is_op("|")) node->y = parse_filter(nullptr, false);
    end_stack_.push_back("set");
    node->body = parse_statements({"endset"}, true);
    end_stack_.pop_back();
    return node;
  }

  void parse_signature(Node* node) {
    expect_op("(");
    while (!is_op(")")) {
      if (!node->params.empty()) expect_op(",");
      std::string param = expect_name();
      node->params.push_back(param);
      if (skip_op("=")) node->kw.emplace_back(param, parse_expression(true));
      else if (!node->kw.empty()) fail("non-default argument follows default argument", cur().line);
    }
    expect_op(")");
  }

  NodePtr parse_macro() {
    auto node = make(N::Macro, next().line);
    node->name = expect_name();
    parse_signature(node.get());
    int saved = loop_depth_;
    loop_depth_ = 0;
    node->body = parse_statements({"endmacro"}, true);
    loop_depth_ = saved;
    return node;
  }

  NodePtr parse_call_block() {
    auto node = make(N::CallBlock, next().line);
    if (is_op("(")) parse_signature(node.get());
    node->x = parse_expression(true);
    if (node->x->type != N::Call) fail("expected call", node->line);
    int saved = loop_depth_;
    loop_depth_ = 0;
    node->body = parse_statements({"endcall"}, true);
    loop_depth_ = saved;
    return node;
  }

  NodePtr parse_filter_block() {
    auto node = make(N::FilterBlock, next().line);
    node->x = parse_filter(nullptr, true);
    node->body = parse_statements({"endfilter"}, true);
    return node;
  }

  NodePtr parse_with() {
    auto node = make(N::With, next().line);
    while (cur().type != Tok::BlockEnd) {
      if (!node->a.empty()) expect_op(",");
      NodePtr target = parse_assign_target(false, {}, false);
      expect_op("=");
      auto pair = make(N::Assign, target->line);
      pair->x = std::move(target);
      pair->y = parse_expression(true);
      node->a.push_back(std::move(pair));
    }
    node->body = parse_statements({"endwith"}, true);
    return node;
  }

  NodePtr parse_assign_target(bool with_tuple, const std::vector<std::string>& extra_end, bool with_namespace) {
    if (with_namespace && cur().type == Tok::Name && look().type == Tok::Op && look().text == ".") {
      auto node = make(N::NSRef, cur().line);
      node->name = next().text;
      next();
      node->value = string(expect_name());
      return node;
    }
    NodePtr target = with_tuple ? parse_tuple(true, true, extra_end, false) : parse_primary();
    auto check = [&](const Node& n) {
      if (n.type != N::Name) fail("can't assign to '" + std::string(n.type == N::Const ? "const" : "expression") + "'", n.line);
      if (n.name == "true" || n.name == "false" || n.name == "none" || n.name == "True" || n.name == "False" || n.name == "None")
        fail("can't assign to '" + n.name + "'", n.line);
    };
    if (target->type == N::TupleLit)
      for (const auto& item : target->a) check(*item);
    else
      check(*target);
    return target;
  }

  // --- expressions ---

  NodePtr parse_expression(bool with_condexpr) {
    if (++expression_depth_ > 100) fail("expression nested too deeply", cur().line);
    NodePtr node = with_condexpr ? parse_condexpr() : parse_or();
    --expression_depth_;
    return node;
  }

  NodePtr parse_condexpr() {
    int line = cur().line;
    NodePtr expr1 = parse_or();
    while (skip_name("if")) {
      auto node = make(N::CondExpr, line);
      node->x = parse_or();  // test
      node->y = std::move(expr1);
      if (skip_name("else")) node->z = parse_condexpr();
      expr1 = std::move(node);
      line = cur().line;
    }
    return expr1;
  }

  NodePtr binary(N type, NodePtr left, NodePtr right, int line, const std::string& op = "") {
    auto node = make(type, line);
    node->x = std::move(left);
    node->y = std::move(right);
    node->name = op;
    return node;
  }

  NodePtr parse_or() {
    int line = cur().line;
    NodePtr left = parse_and();
    while (skip_name("or")) {
      left = binary(N::Or, std::move(left), parse_and(), line);
      line = cur().line;
    }
    return left;
  }

  NodePtr parse_and() {
    int line = cur().line;
    NodePtr left = parse_not();
    while (skip_name("and")) {
      left = binary(N::And, std::move(left), parse_not(), line);
      line = cur().line;
    }
    return left;
  }

  NodePtr parse_not() {
    if (is_name("not")) {
      if (++expression_depth_ > 100) fail("expression nested too deeply", cur().line);
      auto node = make(N::Not, next().line);
      node->x = parse_not();
      return node;
    }
    return parse_compare();
  }

  NodePtr parse_compare() {
    int line = cur().line;
    NodePtr expr = parse_math1();
    auto node = make(N::Compare, line);
    while (true) {
      if (cur().type == Tok::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                    cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        node->ops.push_back(next().text);
      } else if (skip_name("in")) {
        node->ops.push_back("in");
      } else if (is_name("not") && look().type == Tok::Name && look().text == "in") {
        next();
        next();
        node->ops.push_back("notin");
      } else {
        break;
      }
      node->a.push_back(parse_math1());
    }
    if (node->ops.empty()) return expr;
    node->x = std::move(expr);
    return node;
  }

  NodePtr parse_math1() {
    int line = cur().line;
    NodePtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = next().text;
      left = binary(N::Bin, std::move(left), parse_concat(), line, op);
      line = cur().line;
    }
    return left;
  }

  NodePtr parse_concat() {
    int line = cur().line;
    NodePtr first = parse_math2();
    if (!is_op("~")) return first;
    auto node = make(N::Concat, line);
    node->a.push_back(std::move(first));
    while (skip_op("~")) node->a.push_back(parse_math2());
    return node;
  }

  NodePtr parse_math2() {
    int line = cur().line;
    NodePtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = next().text;
      left = binary(N::Bin, std::move(left), parse_pow(), line, op);
      line = cur().line;
    }
    return left;
  }

  NodePtr parse_pow() {
    int line = cur().line;
    NodePtr left = parse_unary(true);
    while (skip_op("**")) {
      left = binary(N::Bin, std::move(left), parse_unary(true), line, "**");
      line = cur().line;
    }
    return left;
  }

  NodePtr parse_unary(bool with_filter) {
    int line = cur().line;
    NodePtr node;
    if ((is_op("-") || is_op("+")) && ++expression_depth_ > 100) fail("expression nested too deeply", line);
    if (skip_op("-")) {
      node = make(N::Neg, line);
      node->x = parse_unary(false);
    } else if (skip_op("+")) {
      node = make(N::Pos, line);
      node->x = parse_unary(false);
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  NodePtr parse_primary() {
    const Token& tok = cur();
    NodePtr node;
    if (tok.type == Tok::Name) {
      if (tok.text == "true" || tok.text == "True" || tok.text == "false" || tok.text == "False") {
        node = make(N::Const, tok.line);
        node->value = boolean(tok.text == "true" || tok.text == "True");
      } else if (tok.text == "none" || tok.text == "None") {
        node = make(N::Const, tok.line);
        node->value = none();
      } else {
        node = make(N::Name, tok.line);
        node->name = tok.text;
      }
      next();
    } else if (tok.type == Tok::String) {
      node = make(N::Const, tok.line);
      std::string text;
      while (cur().type == Tok::String) text += next().text;  // adjacent literals concatenate
      node->value = string(text);
    } else if (tok.type == Tok::Int || tok.type == Tok::Float) {
      node = make(N::Const, tok.line);
      node->value = tok.type == Tok::Int ? integer(tok.ival) : floating(tok.fval);
      next();
    } else if (is_op("(")) {
      next();
      node = parse_tuple(false, true, {}, true);
      expect_op(")");
    } else if (is_op("[")) {
      node = make(N::ListLit, next().line);
      while (!is_op("]")) {
        if (!node->a.empty()) expect_op(",");
        if (is_op("]")) break;
        node->a.push_back(parse_expression(true));
      }
      expect_op("]");
    } else if (is_op("{")) {
      node = make(N::DictLit, next().line);
      while (!is_op("}")) {
        if (!node->a.empty()) expect_op(",");
        if (is_op("}")) break;
        node->a.push_back(parse_expression(true));
        expect_op(":");
        node->a.push_back(parse_expression(true));
      }
      expect_op("}");
    } else {
      fail("unexpected '" + describe(tok) + "'", tok.line);
    }
    return node;
  }

  bool is_tuple_end(const std::vector<std::string>& extra_end) const {
    if (cur().type == Tok::VarEnd || cur().type == Tok::BlockEnd || cur().type == Tok::Eof || is_op(")")) return true;
    return cur().type == Tok::Name && std::find(extra_end.begin(), extra_end.end(), cur().text) != extra_end.end();
  }

  NodePtr parse_tuple(bool simplified, bool with_condexpr, const std::vector<std::string>& extra_end,
                      bool explicit_parentheses) {
    int line = cur().line;
    std::vector<NodePtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      args.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
      line = cur().line;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parentheses) fail("Expected an expression, got '" + describe(cur()) + "'", cur().line);
    }
    auto node = make(N::TupleLit, line);
    node->a = std::move(args);
    return node;
  }

  NodePtr parse_postfix(NodePtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) node = parse_subscript(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else break;
    }
    return node;
  }

  NodePtr parse_filter_expr(NodePtr node) {
    while (true) {
      if (is_op("|")) node = parse_filter(std::move(node), false);
      else if (is_name("is")) node = parse_test(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else break;
    }
    return node;
  }

  NodePtr parse_subscript(NodePtr node) {
    const Token& tok = next();
    if (tok.text == ".") {
      const Token& attr = next();
      if (attr.type == Tok::Name) {
        auto get = make(N::Getattr, tok.line);
        get->x = std::move(node);
        get->name = attr.text;
        return get;
      }
      if (attr.type != Tok::Int) fail("expected name or number", attr.line);
      auto get = make(N::Getitem, tok.line);
      get->x = std::move(node);
      get->y = make(N::Const, attr.line);
      get->y->value = integer(attr.ival);
      return get;
    }
    std::vector<NodePtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto get = make(N::Getitem, tok.line);
    get->x = std::move(node);
    if (args.size() == 1) {
      get->y = std::move(args[0]);
    } else {
      get->y = make(N::TupleLit, tok.line);
      get->y->a = std::move(args);
    }
    return get;
  }

  NodePtr parse_subscribed() {
    int line = cur().line;
    auto slice = make(N::Slice, line);
    if (skip_op(":")) {
      // start omitted
    } else {
      NodePtr node = parse_expression(true);
      if (!is_op(":")) return node;
      next();
      slice->x = std::move(node);
    }
    if (!is_op(":") && !is_op("]") && !is_op(",")) slice->y = parse_expression(true);
    if (skip_op(":"))
      if (!is_op("]") && !is_op(",")) slice->z = parse_expression(true);
    return slice;
  }

  void parse_call_args(Node* node) {
    int line = cur().line;
    expect_op("(");
    bool require_comma = false;
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (skip_op("*")) {
        if (node->dyn_args || node->dyn_kwargs) fail("invalid syntax for function call expression", line);
        node->dyn_args = parse_expression(true);
      } else if (skip_op("**")) {
        if (node->dyn_kwargs) fail("invalid syntax for function call expression", line);
        node->dyn_kwargs = parse_expression(true);
      } else if (cur().type == Tok::Name && look().type == Tok::Op && look().text == "=") {
        if (node->dyn_kwargs) fail("invalid syntax for function call expression", line);
        std::string key = next().text;
        next();
        node->kw.emplace_back(key, parse_expression(true));
      } else {
        if (node->dyn_args || node->dyn_kwargs || !node->kw.empty())
          fail("invalid syntax for function call expression", line);
        node->a.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
  }

  NodePtr parse_call(NodePtr callee) {
    auto node = make(N::Call, cur().line);
    node->x = std::move(callee);
    parse_call_args(node.get());
    return node;
  }

  NodePtr parse_filter(NodePtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      int line = cur().line;
      std::string name = expect_name();
      while (skip_op(".")) name += "." + expect_name();
      auto filter = make(N::Filter, line);
      filter->name = name;
      filter->x = std::move(node);
      if (is_op("(")) parse_call_args(filter.get());
      node = std::move(filter);
      start_inline = false;
    }
    return node;
  }

  NodePtr parse_test(NodePtr node) {
    int line = next().line;
    bool negated = skip_name("not");
    std::string name = expect_name();
    while (skip_op(".")) name += "." + expect_name();
    auto test = make(N::Test, line);
    test->name = name;
    test->x = std::move(node);
    const Token& tok = cur();
    if (is_op("(")) {
      parse_call_args(test.get());
    } else if ((tok.type == Tok::Name || tok.type == Tok::String || tok.type == Tok::Int || tok.type == Tok::Float ||
                is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("You cannot chain multiple tests with is", tok.line);
      test->a.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return test;
    auto neg = make(N::Not, line);
    neg->x = std::move(test);
    return neg;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Evaluation

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
  const Value* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { Normal, Break, Continue };

Value arg(const Args& args, size_t index, const char* name, const Value& fallback) {
  for (const auto& [key, value] : args.kw)
    if (key == name) return value;
  if (index < args.pos.size()) return args.pos[index];
  return fallback;
}

const Value kUndefined;
const Value kNone = none();

std::string as_string_arg(const Value& v, const char* what) {
  if (!v.is_string()) fail(std::string(what) + " must be a string, got " + type_name(v));
  return v.s;
}

int64_t as_int_arg(const Value& v, const char* what) {
  if (v.kind != Kind::Int && v.kind != Kind::Bool)
    fail(std::string(what) + " must be an integer, got " + type_name(v));
  return as_int(v);
}

// Python slice semantics (PySlice_AdjustIndices)
std::vector<size_t> slice_indices(int64_t n, const Value& start_v, const Value& stop_v, const Value& step_v) {
  auto given = [](const Value& v) { return !v.is_undefined() && v.kind != Kind::None; };
  int64_t step = given(step_v) ? as_int_arg(step_v, "slice step") : 1;
  if (step == 0) fail("slice step cannot be zero");
  int64_t start, stop;
  if (!given(start_v)) start = step < 0 ? n - 1 : 0;
  else {
    start = as_int_arg(start_v, "slice index");
    if (start < 0) start = std::max<int64_t>(start + n, step < 0 ? -1 : 0);
    else if (start >= n) start = step < 0 ? n - 1 : n;
  }
  if (!given(stop_v)) stop = step < 0 ? -1 : n;
  else {
    stop = as_int_arg(stop_v, "slice index");
    if (stop < 0) stop = std::max<int64_t>(stop + n, step < 0 ? -1 : 0);
    else if (stop >= n) stop = step < 0 ? n - 1 : n;
  }
  std::vector<size_t> out;
  if (step > 0)
    for (int64_t k = start; k < stop; k += step) out.push_back(static_cast<size_t>(k));
  else
    for (int64_t k = start; k > stop; k += step) out.push_back(static_cast<size_t>(k));
  return out;
}

class Renderer {
 public:
  explicit Renderer(ScopePtr globals) : globals_(std::move(globals)) {}

  void render(const Body& body, std::string& out) {
    ScopePtr scope = std::make_shared<Scope>();
    scope->parent = globals_;
    exec_body(body, scope, out);
  }

 private:
  ScopePtr globals_;
  int depth_ = 0;

  // --- statements ---

  Flow exec_body(const Body& body, const ScopePtr& scope, std::string& out) {
    for (const auto& node : body) {
      Flow flow = exec(*node, scope, out);
      if (flow != Flow::Normal) return flow;
    }
    return Flow::Normal;
  }

  Flow exec(const Node& node, const ScopePtr& scope, std::string& out) {
    try {
      return exec_inner(node, scope, out);
    } catch (Fault& fault) {
      if (fault.line == 0) fault.line = node.line;
      throw;
    }
  }

  Flow exec_inner(const Node& node, const ScopePtr& scope, std::string& out) {
    switch (node.type) {
      case N::Data: out += node.name; return Flow::Normal;
      case N::Output: out += str(eval(*node.x, scope)); return Flow::Normal;
      case N::If: {
        if (truthy(eval(*node.x, scope))) return exec_body(node.body, scope, out);
        return exec_body(node.else_body, scope, out);
      }
      case N::For: return exec_for(node, scope, out);
      case N::Assign: assign(*node.x, eval(*node.y, scope), scope); return Flow::Normal;
      case N::AssignBlock: {
        std::string captured;
        ScopePtr inner = child(scope);
        exec_body(node.body, inner, captured);
        Value value = string(captured);
        if (node.y) value = apply_filter_chain(*node.y, value, scope);
        assign(*node.x, value, scope);
        return Flow::Normal;
      }
      case N::Macro: scope->vars[node.name] = make_macro(node, scope); return Flow::Normal;
      case N::CallBlock: {
        Value caller = make_macro(node, scope);
        Args args = eval_args(*node.x, scope);
        args.kw.emplace_back("caller", caller);
        Value callee = eval(*node.x->x, scope);
        out += str(call(callee, args));
        return Flow::Normal;
      }
      case N::FilterBlock: {
        std::string captured;
        exec_body(node.body, child(scope), captured);
        out += str(apply_filter_chain(*node.x, string(captured), scope));
        return Flow::Normal;
      }
      case N::With: {
        ScopePtr inner = child(scope);
        for (const auto& pair : node.a) assign(*pair->x, eval(*pair->y, scope), inner);
        return exec_body(node.body, inner, out);
      }
      case N::Break: return Flow::Break;
      case N::Continue: return Flow::Continue;
      default: fail("internal error: not a statement", node.line);
    }
  }

  static ScopePtr child(const ScopePtr& parent) {
    auto scope = std::make_shared<Scope>();
    scope->parent = parent;
    return scope;
  }

  void assign(const Node& target, const Value& value, const ScopePtr& scope) {
    if (target.type == N::Name) {
      scope->vars[target.name] = value;
      return;
    }
    if (target.type == N::NSRef) {
      const Value* ns = scope->find(target.name);
      if (!ns || ns->kind != Kind::Object || ns->obj->type != "Namespace")
        fail("cannot assign attribute on non-namespace object");
      ns->obj->attrs.set(target.value, value);
      return;
    }
    // tuple unpacking
    List items = iterate(value);
    if (items.size() != target.a.size())
      fail(items.size() < target.a.size()
               ? "not enough values to unpack (expected " + std::to_string(target.a.size()) + ", got " + std::to_string(items.size()) + ")"
               : "too many values to unpack (expected " + std::to_string(target.a.size()) + ")");
    for (size_t k = 0; k < items.size(); ++k) assign(*target.a[k], items[k], scope);
  }

  Flow exec_for(const Node& node, const ScopePtr& scope, std::string& out) {
    Value iterable = eval(*node.y, scope);
    List items = iterate(iterable);
    if (node.z) {  // {% for x in xs if test %}: filtered before the loop, so loop.length counts the kept items
      List kept;
      for (const auto& item : items) {
        ScopePtr test_scope = child(scope);
        assign(*node.x, item, test_scope);
        if (truthy(eval(*node.z, test_scope))) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const int64_t n = static_cast<int64_t>(items.size());
    const Value* outer_loop = scope->find("loop");
    int64_t depth = 1;
    if (outer_loop && outer_loop->kind == Kind::Object && outer_loop->obj->type == "LoopContext")
      depth = as_int(*outer_loop->obj->attrs.find(string("depth"))) + 1;
    for (int64_t k = 0; k < n; ++k) {
      ScopePtr iteration = child(scope);
      Value loop = object("LoopContext");
      Dict& attrs = loop.obj->attrs;
      attrs.set(string("index"), integer(k + 1));
      attrs.set(string("index0"), integer(k));
      attrs.set(string("revindex"), integer(n - k));
      attrs.set(string("revindex0"), integer(n - k - 1));
      attrs.set(string("first"), boolean(k == 0));
      attrs.set(string("last"), boolean(k == n - 1));
      attrs.set(string("length"), integer(n));
      attrs.set(string("depth"), integer(depth));
      attrs.set(string("depth0"), integer(depth - 1));
      attrs.set(string("previtem"), k > 0 ? items[static_cast<size_t>(k - 1)] : undefined("there is no previous item"));
      attrs.set(string("nextitem"), k + 1 < n ? items[static_cast<size_t>(k + 1)] : undefined("there is no next item"));
      attrs.set(string("cycle"), function([k](Args& args) -> Value {
                  if (args.pos.empty()) fail("no items for cycling given");
                  return args.pos[static_cast<size_t>(k) % args.pos.size()];
                }));
      iteration->vars["loop"] = loop;
      assign(*node.x, items[static_cast<size_t>(k)], iteration);
      Flow flow = exec_body(node.body, iteration, out);
      if (flow == Flow::Break) break;
    }
    if (n == 0) return exec_body(node.else_body, child(scope), out);
    return Flow::Normal;
  }

  Value make_macro(const Node& node, const ScopePtr& scope) {
    const Node* def = &node;
    ScopePtr closure = scope;
    return function([this, def, closure](Args& args) -> Value {
      ScopePtr frame = child(closure);
      List varargs;
      Dict kwargs;
      size_t positional = 0;
      for (size_t k = 0; k < args.pos.size(); ++k) {
        if (k < def->params.size()) frame->vars[def->params[k]] = args.pos[k], ++positional;
        else varargs.push_back(args.pos[k]);
      }
      for (const auto& [key, value] : args.kw) {
        auto it = std::find(def->params.begin(), def->params.end(), key);
        if (it != def->params.end()) {
          if (static_cast<size_t>(it - def->params.begin()) < positional)
            fail("macro '" + def->name + "' got multiple values for argument '" + key + "'");
          frame->vars[key] = value;
        } else {
          if (key == "caller") frame->vars["caller"] = value;
          else kwargs.items.emplace_back(string(key), value);
        }
      }
      for (size_t k = positional; k < def->params.size(); ++k) {
        const std::string& param = def->params[k];
        if (frame->vars.count(param)) continue;
        Value fallback = undefined("parameter '" + param + "' was not provided");
        for (const auto& [name, expr] : def->kw)
          if (name == param) fallback = eval(*expr, frame);
        frame->vars[param] = fallback;
      }
      frame->vars["varargs"] = list(std::move(varargs));
      frame->vars["kwargs"] = dict(std::move(kwargs));
      if (++depth_ > 200) fail("maximum recursion depth exceeded in macro '" + def->name + "'");
      std::string captured;
      try {
        exec_body(def->body, frame, captured);
      } catch (...) {
        --depth_;
        throw;
      }
      --depth_;
      return string(captured);
    });
  }

  // --- expressions ---

  Value eval(const Node& node, const ScopePtr& scope) {
    switch (node.type) {
      case N::Const: return node.value;
      case N::Name: {
        const Value* v = scope->find(node.name);
        return v ? *v : undefined("'" + node.name + "' is undefined");
      }
      case N::ListLit:
      case N::TupleLit: {
        List items;
        for (const auto& item : node.a) items.push_back(eval(*item, scope));
        return list(std::move(items), node.type == N::ListLit ? Kind::List : Kind::Tuple);
      }
      case N::DictLit: {
        Dict d;
        for (size_t k = 0; k + 1 < node.a.size(); k += 2) {
          Value key = eval(*node.a[k], scope);
          check_hashable(key);
          d.set(key, eval(*node.a[k + 1], scope));
        }
        return dict(std::move(d));
      }
      case N::Getattr: return getattr(eval(*node.x, scope), node.name);
      case N::Getitem: {
        Value obj = eval(*node.x, scope);
        if (node.y->type == N::Slice) {
          const Node& s = *node.y;
          return slice(obj, s.x ? eval(*s.x, scope) : kNone, s.y ? eval(*s.y, scope) : kNone,
                       s.z ? eval(*s.z, scope) : kNone);
        }
        return getitem(obj, eval(*node.y, scope));
      }
      case N::Slice: fail("slice outside of a subscript", node.line);
      case N::Call: {
        Value callee = eval(*node.x, scope);
        Args args = eval_args(node, scope);
        try {
          return call(callee, args);
        } catch (Fault& fault) {
          if (fault.line == 0) fault.line = node.line;
          throw;
        }
      }
      case N::Filter: return apply_filter(node, eval(*node.x, scope), scope);
      case N::Test: {
        Args args = eval_args(node, scope);
        return boolean(apply_test(node.name, eval(*node.x, scope), args));
      }
      case N::CondExpr: {
        if (truthy(eval(*node.x, scope))) return eval(*node.y, scope);
        if (node.z) return eval(*node.z, scope);
        return undefined("the inline if-expression on line " + std::to_string(node.line) +
                         " evaluated to false and no else section was defined.");
      }
      case N::And: {
        Value left = eval(*node.x, scope);
        return truthy(left) ? eval(*node.y, scope) : left;
      }
      case N::Or: {
        Value left = eval(*node.x, scope);
        return truthy(left) ? left : eval(*node.y, scope);
      }
      case N::Not: return boolean(!truthy(eval(*node.x, scope)));
      case N::Neg:
      case N::Pos: {
        Value v = eval(*node.x, scope);
        if (v.is_undefined()) fail_undefined(v);
        if (!v.is_number()) fail(std::string("bad operand type for unary ") + (node.type == N::Neg ? "-" : "+") + ": '" + type_name(v) + "'");
        if (node.type == N::Pos) return v.kind == Kind::Bool ? integer(as_int(v)) : v;
        return v.kind == Kind::Float ? floating(-v.f) : integer(-as_int(v));
      }
      case N::Bin: return binop(node.name, eval(*node.x, scope), eval(*node.y, scope));
      case N::Concat: {
        std::string out;
        for (const auto& part : node.a) out += str(eval(*part, scope));
        return string(out);
      }
      case N::Compare: {
        Value left = eval(*node.x, scope);
        for (size_t k = 0; k < node.ops.size(); ++k) {
          Value right = eval(*node.a[k], scope);
          if (!compare_op(node.ops[k], left, right)) return boolean(false);
          left = std::move(right);
        }
        return boolean(true);
      }
      default: fail("internal error: not an expression", node.line);
    }
  }

  Args eval_args(const Node& node, const ScopePtr& scope) {
    Args args;
    for (const auto& a : node.a) args.pos.push_back(eval(*a, scope));
    for (const auto& [key, expr] : node.kw) args.kw.emplace_back(key, eval(*expr, scope));
    if (node.dyn_args)
      for (auto& v : iterate(eval(*node.dyn_args, scope))) args.pos.push_back(v);
    if (node.dyn_kwargs) {
      Value kw = eval(*node.dyn_kwargs, scope);
      if (kw.kind != Kind::Dict) fail("argument after ** must be a mapping, not " + type_name(kw));
      for (const auto& [key, value] : kw.dict->items) args.kw.emplace_back(str(key), value);
    }
    return args;
  }

  static Value call(const Value& callee, Args& args) {
    if (callee.is_undefined()) fail_undefined(callee);
    if (callee.kind != Kind::Callable) fail("'" + type_name(callee) + "' object is not callable");
    return (*callee.fn)(args);
  }

  static bool compare_op(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return equal(a, b);
    if (op == "!=") return !equal(a, b);
    if (op == "in") return contains(b, a);
    if (op == "notin") return !contains(b, a);
    int c = compare(a, b, op.c_str());
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;
  }

  static bool contains(const Value& container, const Value& item) {
    switch (container.kind) {
      case Kind::Undefined: return false;
      case Kind::String:
        if (!item.is_string())
          fail("'in <string>' requires string as left operand, not " + type_name(item));
        return container.s.find(item.s) != std::string::npos;
      case Kind::List:
      case Kind::Tuple:
        for (const auto& v : *container.list)
          if (equal(v, item)) return true;
        return false;
      case Kind::Dict:
        check_hashable(item);
        return container.dict->find(item) != nullptr;
      case Kind::Object: return container.obj->attrs.find(item) != nullptr;
      default: fail("argument of type '" + type_name(container) + "' is not iterable");
    }
  }

 public:
  static Value binop(const std::string& op, const Value& a, const Value& b) {
    if (a.is_undefined()) fail_undefined(a);
    if (b.is_undefined()) fail_undefined(b);
    auto unsupported = [&]() -> Value {
      fail("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
    };
    if (a.is_number() && b.is_number()) {
      bool floats = a.kind == Kind::Float || b.kind == Kind::Float;
      if (op == "/") {
        if (as_double(b) == 0) fail(floats ? "float division by zero" : "division by zero");
        return floating(as_double(a) / as_double(b));
      }
      if (floats) {
        double x = as_double(a), y = as_double(b);
        if (op == "+") return floating(x + y);
        if (op == "-") return floating(x - y);
        if (op == "*") return floating(x * y);
        if (op == "//") {
          if (y == 0) fail("float floor division by zero");
          return floating(std::floor(x / y));
        }
        if (op == "%") {
          if (y == 0) fail("float modulo");
          double r = std::fmod(x, y);
          if (r != 0 && ((r < 0) != (y < 0))) r += y;
          return floating(r);
        }
        if (op == "**") return floating(std::pow(x, y));
        return unsupported();
      }
      int64_t x = as_int(a), y = as_int(b);
      if (op == "+") return integer(x + y);
      if (op == "-") return integer(x - y);
      if (op == "*") return integer(x * y);
      if (op == "//" || op == "%") {
        if (y == 0) fail(op == "//" ? "integer division or modulo by zero" : "integer modulo by zero");
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) --q, r += y;
        return integer(op == "//" ? q : r);
      }
      if (op == "**") {
        if (y < 0) return floating(std::pow(static_cast<double>(x), static_cast<double>(y)));
        int64_t result = 1;
        for (int64_t k = 0; k < y; ++k) result *= x;
        return integer(result);
      }
      return unsupported();
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) {
        if (!a.markup && !b.markup) return string(a.s + b.s);
        return markup((a.markup ? a.s : html_escape(a.s)) + (b.markup ? b.s : html_escape(b.s)));  // Markup.__add__
      }
      if (a.is_sequence() && a.kind == b.kind) {
        List items = *a.list;
        items.insert(items.end(), b.list->begin(), b.list->end());
        return list(std::move(items), a.kind);
      }
      if (a.is_string() || a.is_sequence())  // Python's message for the common `'text' + message['content']`
        fail("can only concatenate " + type_name(a) + " (not \"" + type_name(b) + "\") to " + type_name(a));
      return unsupported();
    }
    if (op == "*") {
      const Value& seq = a.is_number() ? b : a;
      const Value& count = a.is_number() ? a : b;
      if (!(count.kind == Kind::Int || count.kind == Kind::Bool)) {
        if (seq.is_string() || seq.is_sequence()) fail("can't multiply sequence by non-int of type '" + type_name(count) + "'");
        return unsupported();
      }
      int64_t n = std::max<int64_t>(0, as_int(count));
      if (seq.is_string()) {
        std::string out;
        for (int64_t k = 0; k < n; ++k) out += seq.s;
        return string_like(out, seq);
      }
      if (seq.is_sequence()) {
        List items;
        for (int64_t k = 0; k < n; ++k) items.insert(items.end(), seq.list->begin(), seq.list->end());
        return list(std::move(items), seq.kind);
      }
      return unsupported();
    }
    if (op == "%" && a.is_string()) return string(printf_format(a.s, b));
    return unsupported();
  }

  // Python's printf-style `str % args` for %s %r %d %i %f %%.
  static std::string printf_format(const std::string& format, const Value& args) {
    List values = args.kind == Kind::Tuple ? *args.list : List{args};
    size_t next = 0;
    std::string out;
    for (size_t k = 0; k < format.size(); ++k) {
      if (format[k] != '%') {
        out += format[k];
        continue;
      }
      if (k + 1 >= format.size()) fail("incomplete format");
      char spec = format[++k];
      if (spec == '%') {
        out += '%';
        continue;
      }
      if (next >= values.size()) fail("not enough arguments for format string");
      const Value& v = values[next++];
      if (spec == 's') out += str(v);
      else if (spec == 'r') out += repr(v);
      else if (spec == 'd' || spec == 'i') {
        if (!v.is_number()) fail("%" + std::string(1, spec) + " format: a real number is required, not " + type_name(v));
        out += std::to_string(v.kind == Kind::Float ? static_cast<int64_t>(v.f) : as_int(v));
      } else if (spec == 'f') {
        if (!v.is_number()) fail("must be real number, not " + type_name(v));
        char buf[64];
        std::snprintf(buf, sizeof buf, "%f", as_double(v));
        out += buf;
      } else fail(std::string("unsupported format character '") + spec + "'");
    }
    bool mapping_like = args.kind == Kind::List || args.kind == Kind::Dict;  // Python skips the check for these
    if (next < values.size() && !(next == 0 && mapping_like)) fail("not all arguments converted during string formatting");
    return out;
  }

  static Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
    if (obj.is_undefined()) fail_undefined(obj);
    if (obj.is_string()) {
      auto cps = decode_utf8(obj.s);
      std::vector<uint32_t> out;
      for (size_t k : slice_indices(static_cast<int64_t>(cps.size()), start, stop, step)) out.push_back(cps[k]);
      return string_like(encode_utf8(out), obj);
    }
    if (obj.is_sequence() && !obj.iterator) {
      List out;
      for (size_t k : slice_indices(static_cast<int64_t>(obj.list->size()), start, stop, step)) out.push_back((*obj.list)[k]);
      return list(std::move(out), obj.kind);
    }
    return undefined("'" + object_type_repr(obj) + "' object is not subscriptable");
  }

  // environment.getitem: obj[key], falling back to the attribute of that name.
  static Value getitem(const Value& obj, const Value& key) {
    if (obj.is_undefined()) fail_undefined(obj);
    if (obj.kind == Kind::Dict) {
      if (const Value* v = obj.dict->find(key)) return *v;
    } else if ((obj.is_sequence() && !obj.iterator) || obj.is_string()) {
      if (key.kind == Kind::Int || key.kind == Kind::Bool) {
        int64_t index = as_int(key);
        if (obj.is_string()) {
          auto cps = decode_utf8(obj.s);
          int64_t n = static_cast<int64_t>(cps.size());
          if (index < 0) index += n;
          if (index >= 0 && index < n) {
            std::string out;
            append_utf8(out, cps[static_cast<size_t>(index)]);
            return string_like(out, obj);
          }
        } else {
          int64_t n = static_cast<int64_t>(obj.list->size());
          if (index < 0) index += n;
          if (index >= 0 && index < n) return (*obj.list)[static_cast<size_t>(index)];
        }
        return undefined("'" + object_type_repr(obj) + "' has no element " + str(key));
      }
    }
    if (key.is_string()) {
      Value attr = attribute(obj, key.s);
      if (!attr.is_undefined()) return attr;
      return undefined("'" + object_type_repr(obj) + "' has no attribute '" + key.s + "'");
    }
    return undefined("'" + object_type_repr(obj) + "' has no element " + repr(key));
  }

  // environment.getattr: the attribute, falling back to obj[name].
  static Value getattr(const Value& obj, const std::string& name) {
    if (obj.is_undefined()) fail_undefined(obj);
    Value attr = attribute(obj, name);
    if (!attr.is_undefined() || !attr.s.empty()) return attr;
    if (obj.kind == Kind::Dict)
      if (const Value* v = obj.dict->find(string(name))) return *v;
    return undefined("'" + object_type_repr(obj) + "' has no attribute '" + name + "'");
  }

  // Python attributes: methods of str / dict / list, LoopContext and Namespace fields. An empty-hint undefined
  // means "no such attribute"; a hinted one is the sandbox's unsafe-attribute marker.
  static Value attribute(const Value& obj, const std::string& name) {
    if (obj.kind == Kind::Object) {
      if (const Value* v = obj.obj->attrs.find(string(name))) return *v;
      return Value{};
    }
    if (obj.is_string()) {
      Value method = string_method(obj.s, name);
      if (obj.markup && method.kind == Kind::Callable &&
          (name == "strip" || name == "lstrip" || name == "rstrip" || name == "upper" || name == "lower" ||
           name == "title" || name == "capitalize")) {
        std::shared_ptr<Function> inner = method.fn;
        return function([inner](Args& args) {
          Value result = (*inner)(args);
          result.markup = true;
          return result;
        });
      }
      return method;
    }
    if (obj.kind == Kind::Dict) {
      std::shared_ptr<Dict> d = obj.dict;
      if (name == "items")
        return function([d](Args&) {
          List items;
          for (const auto& [key, value] : d->items) items.push_back(list({key, value}, Kind::Tuple));
          return list(std::move(items));
        });
      if (name == "keys")
        return function([d](Args&) {
          List keys;
          for (const auto& item : d->items) keys.push_back(item.first);
          return list(std::move(keys));
        });
      if (name == "values")
        return function([d](Args&) {
          List values;
          for (const auto& item : d->items) values.push_back(item.second);
          return list(std::move(values));
        });
      if (name == "get")
        return function([d](Args& args) {
          if (args.pos.empty()) fail("get expected at least 1 argument, got 0");
          if (const Value* v = d->find(args.pos[0])) return *v;
          return args.pos.size() > 1 ? args.pos[1] : none();
        });
      if (name == "copy") return function([obj](Args&) { return dict(*obj.dict); });
      if (name == "update" || name == "pop" || name == "popitem" || name == "setdefault" || name == "clear")
        return undefined("access to attribute '" + name + "' of 'dict' object is unsafe.");
      return Value{};
    }
    if (obj.is_sequence()) {
      std::shared_ptr<List> items = obj.list;
      if (name == "index")
        return function([items](Args& args) -> Value {
          if (args.pos.empty()) fail("index expected at least 1 argument, got 0");
          for (size_t k = 0; k < items->size(); ++k)
            if (equal((*items)[k], args.pos[0])) return integer(static_cast<int64_t>(k));
          fail(repr(args.pos[0]) + " is not in list");
        });
      if (name == "count")
        return function([items](Args& args) {
          if (args.pos.empty()) fail("count() takes exactly one argument (0 given)");
          return integer(std::count_if(items->begin(), items->end(), [&](const Value& v) { return equal(v, args.pos[0]); }));
        });
      if (obj.kind == Kind::List && (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
                                     name == "remove" || name == "clear" || name == "sort" || name == "reverse"))
        return undefined("access to attribute '" + name + "' of 'list' object is unsafe.");
    }
    return Value{};
  }

  static Value string_method(const std::string& s, const std::string& name) {
    auto method = [](auto f) { return function(std::move(f)); };
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      bool left = name != "rstrip", right = name != "lstrip";
      return method([s, left, right](Args& args) { return string(strip(s, left, right, arg(args, 0, "chars", kNone))); });
    }
    if (name == "upper") return method([s](Args&) { return string(upper(s)); });
    if (name == "lower") return method([s](Args&) { return string(lower(s)); });
    if (name == "title") return method([s](Args&) { return string(py_title(s)); });
    if (name == "capitalize") return method([s](Args&) { return string(capitalize(s)); });
    if (name == "startswith" || name == "endswith") {
      bool starts = name == "startswith";
      return method([s, starts](Args& args) {
        if (args.pos.empty()) fail(std::string(starts ? "startswith" : "endswith") + "() takes at least 1 argument (0 given)");
        List candidates = args.pos[0].kind == Kind::Tuple ? *args.pos[0].list : List{args.pos[0]};
        for (const auto& c : candidates) {
          if (!c.is_string())
            fail(std::string(starts ? "startswith" : "endswith") + " first arg must be str or a tuple of str, not " + type_name(c));
          if (c.s.size() <= s.size() &&
              (starts ? s.compare(0, c.s.size(), c.s) == 0 : s.compare(s.size() - c.s.size(), c.s.size(), c.s) == 0))
            return boolean(true);
        }
        return boolean(false);
      });
    }
    if (name == "split" || name == "rsplit") {
      bool reverse = name == "rsplit";
      return method([s, reverse](Args& args) {
        const Value& sep = arg(args, 0, "sep", kNone);
        int64_t maxsplit = as_int_arg(arg(args, 1, "maxsplit", integer(-1)), "maxsplit");
        List parts;
        if (sep.kind == Kind::None) {
          auto cps = decode_utf8(s);
          std::vector<std::string> words;
          if (!reverse) {
            size_t k = 0;
            while (k < cps.size()) {
              while (k < cps.size() && is_space(cps[k])) ++k;
              if (k >= cps.size()) break;
              if (maxsplit >= 0 && static_cast<int64_t>(words.size()) >= maxsplit) {
                size_t end = cps.size();
                while (end > k && is_space(cps[end - 1])) --end;
                words.push_back(encode_utf8(std::vector<uint32_t>(cps.begin() + static_cast<long>(k), cps.begin() + static_cast<long>(end))));
                break;
              }
              size_t start = k;
              while (k < cps.size() && !is_space(cps[k])) ++k;
              words.push_back(encode_utf8(std::vector<uint32_t>(cps.begin() + static_cast<long>(start), cps.begin() + static_cast<long>(k))));
            }
          } else {
            size_t k = cps.size();
            while (k > 0) {
              while (k > 0 && is_space(cps[k - 1])) --k;
              if (k == 0) break;
              if (maxsplit >= 0 && static_cast<int64_t>(words.size()) >= maxsplit) {
                size_t begin = 0;
                while (begin < k && is_space(cps[begin])) ++begin;
                words.push_back(encode_utf8(std::vector<uint32_t>(cps.begin() + static_cast<long>(begin), cps.begin() + static_cast<long>(k))));
                break;
              }
              size_t end = k;
              while (k > 0 && !is_space(cps[k - 1])) --k;
              words.push_back(encode_utf8(std::vector<uint32_t>(cps.begin() + static_cast<long>(k), cps.begin() + static_cast<long>(end))));
            }
            std::reverse(words.begin(), words.end());
          }
          for (auto& w : words) parts.push_back(string(w));
          return list(std::move(parts));
        }
        std::string separator = as_string_arg(sep, "split separator");
        if (separator.empty()) fail("empty separator");
        std::vector<std::string> pieces;
        if (!reverse) {
          size_t pos = 0;
          while (maxsplit < 0 || static_cast<int64_t>(pieces.size()) < maxsplit) {
            size_t hit = s.find(separator, pos);
            if (hit == std::string::npos) break;
            pieces.push_back(s.substr(pos, hit - pos));
            pos = hit + separator.size();
          }
          pieces.push_back(s.substr(pos));
        } else {
          size_t end = s.size();
          while (maxsplit < 0 || static_cast<int64_t>(pieces.size()) < maxsplit) {
            if (end < separator.size()) break;
            size_t hit = s.rfind(separator, end - separator.size());
            if (hit == std::string::npos) break;
            pieces.push_back(s.substr(hit + separator.size(), end - hit - separator.size()));
            end = hit;
          }
          pieces.push_back(s.substr(0, end));
          std::reverse(pieces.begin(), pieces.end());
        }
        for (auto& p : pieces) parts.push_back(string(p));
        return list(std::move(parts));
      });
    }
    if (name == "replace")
      return method([s](Args& args) {
        if (args.pos.size() < 2) fail("replace expected at least 2 arguments, got " + std::to_string(args.pos.size()));
        int64_t count = args.pos.size() > 2 ? as_int_arg(args.pos[2], "count") : -1;
        return string(replace_all(s, as_string_arg(args.pos[0], "replace() argument 1"),
                                  as_string_arg(args.pos[1], "replace() argument 2"), count));
      });
    if (name == "find" || name == "rfind" || name == "count" || name == "index")
      return method([s, name](Args& args) -> Value {
        if (args.pos.empty()) fail(name + "() takes at least 1 argument (0 given)");
        std::string needle = as_string_arg(args.pos[0], "substring");
        if (name == "count") {
          if (needle.empty()) return integer(static_cast<int64_t>(utf8_length(s)) + 1);
          int64_t n = 0;
          for (size_t pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + needle.size())) ++n;
          return integer(n);
        }
        size_t hit = name == "rfind" ? s.rfind(needle) : s.find(needle);
        if (hit == std::string::npos) {
          if (name == "index") fail("substring not found");
          return integer(-1);
        }
        return integer(static_cast<int64_t>(utf8_length(s.substr(0, hit))));
      });
    if (name == "join")
      return method([s](Args& args) {
        if (args.pos.empty()) fail("join() takes exactly one argument (0 given)");
        std::string out;
        bool first = true;
        for (const auto& item : iterate(args.pos[0])) {
          if (!item.is_string()) fail("sequence item: expected str instance, " + type_name(item) + " found");
          out += (first ? "" : s) + item.s;
          first = false;
        }
        return string(out);
      });
    if (name == "splitlines")
      return method([s](Args&) {
        List parts;
        for (auto& line : splitlines(s)) parts.push_back(string(line));
        return list(std::move(parts));
      });
    if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isupper" || name == "islower" ||
        name == "isalnum")
      return method([s, name](Args&) {
        auto cps = decode_utf8(s);
        if (cps.empty()) return boolean(false);
        if (name == "isupper" || name == "islower") {
          bool any_cased = false;
          for (uint32_t c : cps) {
            if (!is_cased(c)) continue;
            any_cased = true;
            if (name == "isupper" ? to_upper(c) != c : to_lower(c) != c) return boolean(false);
          }
          return boolean(any_cased);
        }
        for (uint32_t c : cps) {
          bool digit = c >= '0' && c <= '9';
          bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && is_cased(c));
          bool ok = name == "isdigit" ? digit : name == "isalpha" ? alpha : name == "isalnum" ? (digit || alpha) : is_space(c);
          if (!ok) return boolean(false);
        }
        return boolean(true);
      });
    if (name == "format")
      return method([s](Args& args) {
        std::string out;
        size_t auto_index = 0;
        for (size_t k = 0; k < s.size(); ++k) {
          if (s[k] == '{' && k + 1 < s.size() && s[k + 1] == '{') {
            out += '{', ++k;
          } else if (s[k] == '}' && k + 1 < s.size() && s[k + 1] == '}') {
            out += '}', ++k;
          } else if (s[k] == '{') {
            size_t close = s.find('}', k);
            if (close == std::string::npos) fail("Single '{' encountered in format string");
            std::string field = s.substr(k + 1, close - k - 1);
            if (field.find(':') != std::string::npos || field.find('!') != std::string::npos)
              fail("format specs are not supported in chat templates: {" + field + "}");
            if (field.empty()) {
              if (auto_index >= args.pos.size()) fail("Replacement index " + std::to_string(auto_index) + " out of range");
              out += str(args.pos[auto_index++]);
            } else if (std::all_of(field.begin(), field.end(), is_digit)) {
              size_t index = std::stoul(field);
              if (index >= args.pos.size()) fail("Replacement index " + field + " out of range");
              out += str(args.pos[index]);
            } else {
              const Value& v = arg(args, SIZE_MAX, field.c_str(), kUndefined);
              if (v.is_undefined()) fail("KeyError: '" + field + "'");
              out += str(v);
            }
            k = close;
          } else {
            out += s[k];
          }
        }
        return string(out);
      });
    return Value{};
  }

  // --- filters (jinja2/filters.py) ---

  Value apply_filter_chain(const Node& filter, const Value& input, const ScopePtr& scope) {
    // {% set x | f | g %} / {% filter f | g %}: the innermost Filter node has no input expression
    if (!filter.x) return apply_filter(filter, input, scope);
    Value inner = apply_filter_chain(*filter.x, input, scope);
    return apply_filter(filter, inner, scope);
  }

  Value apply_filter(const Node& node, const Value& input, const ScopePtr& scope) {
    Args args = eval_args(node, scope);
    try {
      return filter(node.name, input, args);
    } catch (Fault& fault) {
      if (fault.line == 0) fault.line = node.line;
      throw;
    }
  }

  // make_attrgetter: "a.b.0" looked up with getitem, part by part.
  static Value attr_path(const Value& item, const Value& attribute, const Value* fallback = nullptr) {
    if (attribute.kind == Kind::None || attribute.is_undefined()) return item;
    std::vector<Value> parts;
    if (attribute.is_string()) {
      size_t start = 0;
      while (true) {
        size_t dot = attribute.s.find('.', start);
        std::string part = attribute.s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        bool digits = !part.empty() && std::all_of(part.begin(), part.end(), is_digit);
        parts.push_back(digits ? integer(std::stoll(part)) : string(part));
        if (dot == std::string::npos) break;
        start = dot + 1;
      }
    } else {
      parts.push_back(attribute);
    }
    Value v = item;
    for (const auto& part : parts) {
      v = getitem(v, part);
      if (fallback && !fallback->is_undefined() && fallback->kind != Kind::None && v.is_undefined()) v = *fallback;
    }
    return v;
  }

  static Value ignore_case(const Value& v) { return v.is_string() ? string(lower(v.s)) : v; }

  Value filter(const std::string& name, const Value& v, Args& args) {
    if (name == "safe" || name == "string" || name == "forceescape" || name == "e" || name == "escape") {
      if (name == "safe") return v.is_string() ? markup(v.s) : markup(str(v));
      if (name == "string") return v.is_string() ? v : string(str(v));
      if (v.markup && name != "forceescape") return v;
      return markup(html_escape(str(v)));
    }
    if (name == "trim") return string_like(strip(str(v), true, true, arg(args, 0, "chars", kNone)), v);
    if (name == "upper") return string_like(upper(str(v)), v);
    if (name == "lower") return string_like(lower(str(v)), v);
    if (name == "capitalize") return string_like(capitalize(str(v)), v);
    if (name == "title") {
      // do_title: split on [-\s({\[<]+ and upper-case each part's first character
      auto cps = decode_utf8(str(v));
      bool word_start = true;
      for (auto& c : cps) {
        bool sep = c == '-' || is_space(c) || c == '(' || c == '{' || c == '[' || c == '<';
        if (sep) {
          word_start = true;
          c = to_upper(c);
          continue;
        }
        c = word_start ? to_upper(c) : to_lower(c);
        word_start = false;
      }
      return string(encode_utf8(cps));
    }
    if (name == "length" || name == "count") return integer(length(v));
    if (name == "first") {
      List items = iterate(v);
      return items.empty() ? undefined("No first item, sequence was empty.") : items.front();
    }
    if (name == "last") {
      if (v.iterator) fail("'generator' object is not reversible");
      List items = iterate(v);
      return items.empty() ? undefined("No last item, sequence was empty.") : items.back();
    }
    if (name == "join") {
      const Value& attribute = arg(args, 1, "attribute", kNone);
      std::string sep = str(arg(args, 0, "d", string("")));
      std::string out;
      bool first = true;
      for (const auto& item : iterate(v)) {
        out += (first ? "" : sep) + str(attr_path(item, attribute));
        first = false;
      }
      return string(out);
    }
    if (name == "default" || name == "d") {
      const Value& fallback = arg(args, 0, "default_value", string(""));
      bool check_bool = truthy(arg(args, 1, "boolean", boolean(false)));
      return v.is_undefined() || (check_bool && !truthy(v)) ? fallback : v;
    }
    if (name == "list") return list(iterate(v));
    if (name == "int") {
      const Value& fallback = arg(args, 0, "default", integer(0));
      int64_t base = as_int_arg(arg(args, 1, "base", integer(10)), "base");
      if (v.is_undefined()) fail_undefined(v);
      if (v.kind == Kind::Int) return v;
      if (v.kind == Kind::Bool) return integer(as_int(v));
      if (v.kind == Kind::Float) return std::isfinite(v.f) ? integer(static_cast<int64_t>(v.f)) : fallback;
      if (v.is_string()) {
        std::string text = strip(v.s, true, true, kNone);
        errno = 0;
        char* end = nullptr;
        long long parsed = std::strtoll(text.c_str(), &end, static_cast<int>(base));
        if (!text.empty() && end && *end == '\0' && errno == 0 && text.find('.') == std::string::npos) return integer(parsed);
        double d = std::strtod(text.c_str(), &end);
        if (!text.empty() && end && *end == '\0' && std::isfinite(d)) return integer(static_cast<int64_t>(d));
      }
      return fallback;
    }
    if (name == "float") {
      const Value& fallback = arg(args, 0, "default", floating(0.0));
      if (v.is_undefined()) fail_undefined(v);
      if (v.is_number()) return floating(as_double(v));
      if (v.is_string()) {
        std::string text = strip(v.s, true, true, kNone);
        char* end = nullptr;
        double d = std::strtod(text.c_str(), &end);
        if (!text.empty() && end && *end == '\0') return floating(d);
      }
      return fallback;
    }
    if (name == "abs") {
      if (v.is_undefined()) fail_undefined(v);
      if (v.kind == Kind::Float) return floating(std::fabs(v.f));
      if (v.kind == Kind::Int || v.kind == Kind::Bool) return integer(std::llabs(as_int(v)));
      fail("bad operand type for abs(): '" + type_name(v) + "'");
    }
    if (name == "round") {
      int64_t precision = as_int_arg(arg(args, 0, "precision", integer(0)), "precision");
      std::string method = str(arg(args, 1, "method", string("common")));
      if (v.is_undefined()) fail_undefined(v);
      if (!v.is_number()) fail("type " + type_name(v) + " doesn't define __round__ method");
      if (method == "common") {
        if (v.kind != Kind::Float) return integer(as_int(v));  // round(int, n) stays an int
        char buf[512];
        std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::clamp<int64_t>(precision, 0, 300)), v.f);  // exact, half-even
        return floating(std::strtod(buf, nullptr));
      }
      if (method != "ceil" && method != "floor") fail("method must be common, ceil or floor");
      double scale = std::pow(10.0, static_cast<double>(precision));
      double x = as_double(v) * scale;
      return floating((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
    }
    if (name == "replace") {
      if (args.pos.size() < 2) fail("replace filter needs old and new strings");
      const Value& count = arg(args, 2, "count", kNone);
      return string(replace_all(str(v), str(args.pos[0]), str(args.pos[1]),
                                count.kind == Kind::None ? -1 : as_int_arg(count, "count")));
    }
    if (name == "tojson") return markup(tojson(v, arg(args, 0, "indent", kNone)));
    if (name == "items") {
      if (v.is_undefined()) return generator({});
      if (v.kind != Kind::Dict) fail("Can only get item pairs from a mapping.");
      return generator(*call(attribute(v, "items"), args).list);
    }
    if (name == "dictsort") {
      if (v.kind != Kind::Dict) fail("dictsort expects a mapping, got " + type_name(v));
      bool case_sensitive = truthy(arg(args, 0, "case_sensitive", boolean(false)));
      std::string by = str(arg(args, 1, "by", string("key")));
      bool reverse = truthy(arg(args, 2, "reverse", boolean(false)));
      if (by != "key" && by != "value") fail("You can only sort by either \"key\" or \"value\"");
      List items;
      for (const auto& [key, value] : v.dict->items) items.push_back(list({key, value}, Kind::Tuple));
      size_t pos = by == "key" ? 0 : 1;
      sort_values(items, reverse, [&](const Value& item) {
        const Value& x = (*item.list)[pos];
        return case_sensitive ? x : ignore_case(x);
      });
      return list(std::move(items));
    }
    if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
      bool lookup = name == "selectattr" || name == "rejectattr";
      bool keep_when = name == "selectattr" || name == "select";
      List out;
      if (!truthy(v)) return generator(std::move(out));
      size_t off = 0;
      Value attribute = kNone;
      if (lookup) {
        if (args.pos.empty()) fail("Missing parameter for attribute name");
        attribute = args.pos[0];
        off = 1;
      }
      for (const auto& item : iterate(v)) {
        Value x = attr_path(item, attribute);
        bool result;
        if (args.pos.size() > off) {
          Args test_args;
          test_args.pos.assign(args.pos.begin() + static_cast<long>(off) + 1, args.pos.end());
          test_args.kw = args.kw;
          result = apply_test(str(args.pos[off]), x, test_args);
        } else {
          result = truthy(x);
        }
        if (result == keep_when) out.push_back(item);
      }
      return generator(std::move(out));
    }
    if (name == "map") {
      List out;
      if (!truthy(v)) return generator(std::move(out));
      if (args.pos.empty()) {
        Value attribute = kUndefined, fallback = kNone;
        for (const auto& [key, value] : args.kw) {
          if (key == "attribute") attribute = value;
          else if (key == "default") fallback = value;
          else fail("Unexpected keyword argument '" + key + "'");
        }
        if (attribute.is_undefined()) fail("map requires a filter argument");
        for (const auto& item : iterate(v)) out.push_back(attr_path(item, attribute, &fallback));
        return generator(std::move(out));
      }
      std::string filter_name = str(args.pos[0]);
      Args rest;
      rest.pos.assign(args.pos.begin() + 1, args.pos.end());
      rest.kw = args.kw;
      for (const auto& item : iterate(v)) {
        Args copy = rest;
        out.push_back(filter(filter_name, item, copy));
      }
      return generator(std::move(out));
    }
    if (name == "unique") {
      bool case_sensitive = truthy(arg(args, 0, "case_sensitive", boolean(false)));
      const Value& attribute = arg(args, 1, "attribute", kNone);
      List out, seen;
      for (const auto& item : iterate(v)) {
        Value key = attr_path(item, attribute);
        if (!case_sensitive) key = ignore_case(key);
        check_hashable(key);
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, key); })) continue;
        seen.push_back(key);
        out.push_back(item);
      }
      return generator(std::move(out));
    }
    if (name == "sort") {
      bool reverse = truthy(arg(args, 0, "reverse", boolean(false)));
      bool case_sensitive = truthy(arg(args, 1, "case_sensitive", boolean(false)));
      const Value& attribute = arg(args, 2, "attribute", kNone);
      List items = iterate(v);
      sort_values(items, reverse, [&](const Value& item) {
        Value key = attr_path(item, attribute);
        return case_sensitive ? key : ignore_case(key);
      });
      return list(std::move(items));
    }
    if (name == "reverse") {
      if (v.is_string()) {
        auto cps = decode_utf8(v.s);
        std::reverse(cps.begin(), cps.end());
        return string_like(encode_utf8(cps), v);
      }
      List items = iterate(v);
      std::reverse(items.begin(), items.end());
      return v.iterator ? list(std::move(items)) : generator(std::move(items));  // reversed() is an iterator
    }
    if (name == "sum") {
      const Value& attribute = arg(args, 0, "attribute", kNone);
      Value total = arg(args, 1, "start", integer(0));
      for (const auto& item : iterate(v)) total = binop("+", total, attr_path(item, attribute));
      return total;
    }
    if (name == "min" || name == "max") {
      bool case_sensitive = truthy(arg(args, 0, "case_sensitive", boolean(false)));
      const Value& attribute = arg(args, 1, "attribute", kNone);
      List items = iterate(v);
      if (items.empty()) return undefined("No aggregated item, sequence was empty.");
      size_t best = 0;
      for (size_t k = 1; k < items.size(); ++k) {
        Value a = attr_path(items[k], attribute), b = attr_path(items[best], attribute);
        if (!case_sensitive) a = ignore_case(a), b = ignore_case(b);
        int c = compare(a, b, "<");
        if (name == "min" ? c < 0 : c > 0) best = k;
      }
      return items[best];
    }
    if (name == "indent") {
      const Value& width = arg(args, 0, "width", integer(4));
      bool first = truthy(arg(args, 1, "first", boolean(false)));
      bool blank = truthy(arg(args, 2, "blank", boolean(false)));
      std::string indention = width.is_string() ? width.s : std::string(static_cast<size_t>(std::max<int64_t>(0, as_int_arg(width, "width"))), ' ');
      if (v.is_undefined()) fail_undefined(v);
      if (!v.is_string()) fail("unsupported operand type(s) for +=: '" + type_name(v) + "' and 'str'");
      std::vector<std::string> lines = splitlines(v.s + "\n");
      std::string rv;
      if (blank) {
        for (size_t k = 0; k < lines.size(); ++k) rv += (k ? "\n" + indention : "") + lines[k];
      } else {
        rv = lines.empty() ? "" : lines[0];
        for (size_t k = 1; k < lines.size(); ++k) rv += "\n" + (lines[k].empty() ? "" : indention + lines[k]);
      }
      if (first) rv = indention + rv;
      return string_like(rv, v);
    }
    if (name == "center") {
      int64_t width = as_int_arg(arg(args, 0, "width", integer(80)), "width");
      std::string s = str(v);
      int64_t n = static_cast<int64_t>(utf8_length(s));
      if (width <= n) return string(s);
      int64_t pad = width - n, left = pad / 2 + (pad & width & 1);
      return string(std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(pad - left), ' '));
    }
    if (name == "wordcount") {  // len(re.findall(r"\w+", s))
      int64_t words = 0;
      bool in_word = false;
      for (uint32_t c : decode_utf8(str(v))) {
        bool word = (c >= '0' && c <= '9') || c == '_' || (c < 0x80 ? std::isalpha(static_cast<int>(c)) != 0 : !is_space(c));
        if (word && !in_word) ++words;
        in_word = word;
      }
      return integer(words);
    }
    if (name == "batch") {
      int64_t size = as_int_arg(arg(args, 0, "linecount", integer(1)), "linecount");
      if (size <= 0) fail("batch size must be positive");
      const Value& fill = arg(args, 1, "fill_with", kNone);
      List out, current;
      for (const auto& item : iterate(v)) {
        current.push_back(item);
        if (static_cast<int64_t>(current.size()) == size) out.push_back(list(std::move(current))), current.clear();
      }
      if (!current.empty()) {
        if (fill.kind != Kind::None)
          while (static_cast<int64_t>(current.size()) < size) current.push_back(fill);
        out.push_back(list(std::move(current)));
      }
      return generator(std::move(out));
    }
    if (name == "format") {
      Value fmt_args = list(args.pos, Kind::Tuple);
      return string(printf_format(str(v), fmt_args));
    }
    if (name == "attr") {
      if (args.pos.empty()) fail("attr filter needs a name");
      Value a = attribute(v, str(args.pos[0]));
      return a.is_undefined() && a.s.empty() ? undefined("'" + object_type_repr(v) + "' has no attribute '" + str(args.pos[0]) + "'") : a;
    }
    if (name == "pprint") return string(repr(v));
    fail("No filter named '" + name + "'.");
  }

  template <typename Key>
  static void sort_values(List& items, bool reverse, Key key) {
    std::vector<std::pair<Value, size_t>> keyed;
    for (size_t k = 0; k < items.size(); ++k) keyed.emplace_back(key(items[k]), k);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
      return reverse ? compare(b.first, a.first, "<") < 0 : compare(a.first, b.first, "<") < 0;
    });
    List sorted;
    for (const auto& [k, index] : keyed) sorted.push_back(items[index]);
    items = std::move(sorted);
  }

  // --- tests (jinja2/tests.py) ---

  bool apply_test(const std::string& name, const Value& v, Args& args) {
    const Value& other = arg(args, 0, "other", kUndefined);
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.kind == Kind::None;
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.kind == Kind::Int;
    if (name == "float") return v.kind == Kind::Float;
    if (name == "boolean") return v.kind == Kind::Bool;
    if (name == "true") return v.kind == Kind::Bool && v.b;
    if (name == "false") return v.kind == Kind::Bool && !v.b;
    if (name == "mapping") return v.kind == Kind::Dict;
    if (name == "sequence") return v.is_string() || (v.is_sequence() && !v.iterator) || v.kind == Kind::Dict || v.is_undefined();
    if (name == "iterable") return v.is_string() || v.is_sequence() || v.kind == Kind::Dict || v.is_undefined();
    if (name == "callable") return v.kind == Kind::Callable || v.is_undefined();  // Undefined defines __call__
    if (name == "odd" || name == "even" || name == "divisibleby") {
      if (v.is_undefined()) fail_undefined(v);
      if (name == "divisibleby") {
        Value r = binop("%", v, arg(args, 0, "num", kUndefined));
        return as_double(r) == 0;
      }
      Value r = binop("%", v, integer(2));
      return (as_double(r) == 1) == (name == "odd");
    }
    if (name == "lower" || name == "upper") {  // str(value).islower() / isupper()
      bool any_cased = false;
      for (uint32_t c : decode_utf8(str(v))) {
        if (!is_cased(c)) continue;
        any_cased = true;
        if (name == "lower" ? to_lower(c) != c : to_upper(c) != c) return false;
      }
      return any_cased;
    }
    if (name == "escaped") return v.markup;
    if (name == "sameas") {
      if (v.kind != other.kind) return false;
      if (v.kind == Kind::List || v.kind == Kind::Tuple) return v.list == other.list;
      if (v.kind == Kind::Dict) return v.dict == other.dict;
      return equal(v, other);
    }
    if (name == "eq" || name == "equalto" || name == "==") return equal(v, other);
    if (name == "ne" || name == "!=") return !equal(v, other);
    if (name == "lt" || name == "lessthan" || name == "<") return compare(v, other, "<") < 0;
    if (name == "le" || name == "<=") return compare(v, other, "<=") <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, other, ">") > 0;
    if (name == "ge" || name == ">=") return compare(v, other, ">=") >= 0;
    if (name == "in") return contains(arg(args, 0, "seq", kUndefined), v);
    if (name == "filter" || name == "test") return false;
    fail("No test named '" + name + "'.");
  }
};

ScopePtr make_globals(const Value& context) {
  auto globals = std::make_shared<Scope>();
  auto& g = globals->vars;
  g["raise_exception"] = function([](Args& args) -> Value {
    fail(args.pos.empty() ? std::string("raise_exception() called") : str(args.pos[0]));
  });
  g["range"] = function([](Args& args) -> Value {
    if (args.pos.empty() || args.pos.size() > 3) fail("range expected 1 to 3 arguments, got " + std::to_string(args.pos.size()));
    int64_t start = 0, stop, step = 1;
    if (args.pos.size() == 1) stop = as_int_arg(args.pos[0], "range() argument");
    else {
      start = as_int_arg(args.pos[0], "range() argument");
      stop = as_int_arg(args.pos[1], "range() argument");
      if (args.pos.size() == 3) step = as_int_arg(args.pos[2], "range() argument");
    }
    if (step == 0) fail("range() arg 3 must not be zero");
    List out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      if (out.size() >= 100000) fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      out.push_back(integer(k));
    }
    return list(std::move(out));
  });
  g["dict"] = function([](Args& args) -> Value {
    Dict d;
    for (const auto& [key, value] : args.kw) d.set(string(key), value);
    return dict(std::move(d));
  });
  g["namespace"] = function([](Args& args) -> Value {
    Value ns = object("Namespace");
    if (!args.pos.empty()) {
      if (args.pos[0].kind != Kind::Dict) fail("namespace() takes a mapping as its positional argument");
      for (const auto& [key, value] : args.pos[0].dict->items) ns.obj->attrs.set(key, value);
    }
    for (const auto& [key, value] : args.kw) ns.obj->attrs.set(string(key), value);
    return ns;
  });
  g["joiner"] = function([](Args& args) -> Value {
    std::string sep = args.pos.empty() ? ", " : str(args.pos[0]);
    auto used = std::make_shared<bool>(false);
    return function([sep, used](Args&) {
      if (!*used) {
        *used = true;
        return string("");
      }
      return string(sep);
    });
  });
  if (context.kind == Kind::Dict)
    for (const auto& [key, value] : context.dict->items) g[str(key)] = value;  // render kwargs override globals
  return globals;
}

std::string render(const std::string& source, const Value& context) {
  try {
    Body body = Parser(Lexer(source).tokenize()).parse();
    Renderer renderer(make_globals(context));
    std::string out;
    renderer.render(body, out);
    return out;
  } catch (const Fault& fault) {
    throw ChatTemplateError("chat template line " + std::to_string(fault.line) + ": " + fault.message);
  }
}

}  // namespace

std::string render_chat_template(const std::string& source, const nlohmann::json& context) {
  if (!context.is_object() && !context.is_null())
    throw ChatTemplateError("render_chat_template: the context must be a JSON object, got " + std::string(context.type_name()));
  return render(source, from_json(context));
}

std::string render_chat_template(const std::string& source, const nlohmann::ordered_json& context) {
  if (!context.is_object() && !context.is_null())
    throw ChatTemplateError("render_chat_template: the context must be a JSON object, got " + std::string(context.type_name()));
  return render(source, from_json(context));
}

}  // namespace transformers
