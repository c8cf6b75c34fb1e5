// The C SDK's helpers over the generated bindings (see latch.h).

#include "latch.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

latch_text latch_text_of(const workflow_string_t *s) {
  return (latch_text){(const char *)s->ptr, s->len};
}

latch_text latch_start_input(const workflow_start_t *start) {
  if (start->tag == WORKFLOW_START_API) return latch_text_of(&start->val.api);
  return latch_text_of(&start->val.trigger.data);
}

// --- JSON reading: just enough scanning to find fields and decode strings; the engine
// hands guests only valid JSON.

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static const char *skip_space(const char *p, const char *end) {
  while (p < end && is_space(*p)) p++;
  return p;
}

// The end of the JSON string that starts at `p` (its opening quote), or NULL.
static const char *skip_string(const char *p, const char *end) {
  for (p++; p < end; p++) {
    if (*p == '\\') {
      p++;
    } else if (*p == '"') {
      return p + 1;
    }
  }
  return NULL;
}

// The end of the JSON value that starts at `p`, or NULL when it is cut short.
static const char *skip_value(const char *p, const char *end) {
  if (p >= end) return NULL;
  if (*p == '"') return skip_string(p, end);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (p < end) {
      if (*p == '"') {
        p = skip_string(p, end);
        if (!p) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[') depth++;
      if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
      p++;
    }
    return NULL;
  }
  // A number, true, false or null.
  const char *start = p;
  while (p < end && *p != ',' && *p != '}' && *p != ']' && !is_space(*p)) p++;
  return p > start ? p : NULL;
}

bool latch_json_field(latch_text object, const char *key, latch_text *value) {
  const char *end = object.ptr + object.len;
  const char *p = skip_space(object.ptr, end);
  if (p >= end || *p != '{') return false;
  p = skip_space(p + 1, end);
  while (p < end && *p == '"') {
    const char *key_end = skip_string(p, end);
    if (!key_end) return false;
    char *name = latch_json_string((latch_text){p, (size_t)(key_end - p)});
    bool found = name && strcmp(name, key) == 0;
    free(name);
    p = skip_space(key_end, end);
    if (p >= end || *p != ':') return false;
    p = skip_space(p + 1, end);
    const char *value_end = skip_value(p, end);
    if (!value_end) return false;
    if (found) {
      *value = (latch_text){p, (size_t)(value_end - p)};
      return true;
    }
    p = skip_space(value_end, end);
    if (p >= end || *p != ',') return false;
    p = skip_space(p + 1, end);
  }
  return false;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads the four hex digits of a `\u` escape at `p`; -1 when they are not.
static long read_hex4(const char *p, const char *end) {
  if (end - p < 4) return -1;
  long code = 0;
  for (int i = 0; i < 4; i++) {
    int digit = hex_digit(p[i]);
    if (digit < 0) return -1;
    code = code * 16 + digit;
  }
  return code;
}

static size_t put_utf8(char *out, unsigned long code) {
  if (code < 0x80) {
    out[0] = (char)code;
    return 1;
  }
  if (code < 0x800) {
    out[0] = (char)(0xC0 | (code >> 6));
    out[1] = (char)(0x80 | (code & 0x3F));
    return 2;
  }
  if (code < 0x10000) {
    out[0] = (char)(0xE0 | (code >> 12));
    out[1] = (char)(0x80 | ((code >> 6) & 0x3F));
    out[2] = (char)(0x80 | (code & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (code >> 18));
  out[1] = (char)(0x80 | ((code >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((code >> 6) & 0x3F));
  out[3] = (char)(0x80 | (code & 0x3F));
  return 4;
}

// Decodes the `\u` escape (and its low surrogate, if any) at `*p`, which points at the
// `u`, and moves `*p` to its last digit. Returns 0 for a malformed escape or an escaped
// NUL, which a C string cannot hold.
static unsigned long read_unicode_escape(const char **p, const char *end) {
  long code = read_hex4(*p + 1, end);
  if (code <= 0) return 0;
  *p += 4;
  bool high_surrogate = code >= 0xD800 && code <= 0xDBFF;
  if (high_surrogate && end - *p > 6 && (*p)[1] == '\\' && (*p)[2] == 'u') {
    long low = read_hex4(*p + 3, end);
    if (low >= 0xDC00 && low <= 0xDFFF) {
      *p += 6;
      return 0x10000 + (((unsigned long)code - 0xD800) << 10) + ((unsigned long)low - 0xDC00);
    }
  }
  // A lone surrogate (6 escaped bytes) becomes U+FFFD (3 bytes).
  return (code >= 0xD800 && code <= 0xDFFF) ? 0xFFFD : (unsigned long)code;
}

char *latch_json_string(latch_text value) {
  const char *end = value.ptr + value.len;
  const char *p = skip_space(value.ptr, end);
  if (p >= end || *p != '"') return NULL;
  // Decoding never makes a string longer than its escaped form.
  char *out = malloc(value.len + 1);
  if (!out) abort();
  size_t n = 0;
  for (p++; p < end && *p != '"'; p++) {
    if (*p != '\\') {
      out[n++] = *p;
      continue;
    }
    if (++p >= end) break;
    switch (*p) {
      case 'b': out[n++] = '\b'; break;
      case 'f': out[n++] = '\f'; break;
      case 'n': out[n++] = '\n'; break;
      case 'r': out[n++] = '\r'; break;
      case 't': out[n++] = '\t'; break;
      case 'u': {
        unsigned long code = read_unicode_escape(&p, end);
        if (code == 0) {
          free(out);
          return NULL;
        }
        n += put_utf8(out + n, code);
        break;
      }
      default: out[n++] = *p;  // `"`, `\` and `/`
    }
  }
  if (p >= end) {  // unterminated
    free(out);
    return NULL;
  }
  out[n] = '\0';
  return out;
}

// --- JSON writing.

static void reserve(latch_buf *buf, size_t extra) {
  if (buf->len + extra <= buf->cap) return;
  size_t cap = buf->cap ? buf->cap : 64;
  while (cap < buf->len + extra) cap *= 2;
  char *grown = realloc(buf->ptr, cap);
  if (!grown) abort();
  buf->ptr = grown;
  buf->cap = cap;
}

void latch_buf_raw(latch_buf *buf, latch_text text) {
  reserve(buf, text.len);
  memcpy(buf->ptr + buf->len, text.ptr, text.len);
  buf->len += text.len;
}

void latch_buf_str(latch_buf *buf, const char *s) {
  latch_buf_raw(buf, (latch_text){s, strlen(s)});
}

void latch_buf_json_string(latch_buf *buf, const char *s) {
  latch_buf_str(buf, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char escaped[8];
    if (c == '"' || c == '\\') {
      snprintf(escaped, sizeof escaped, "\\%c", c);
    } else if (c < 0x20) {
      snprintf(escaped, sizeof escaped, "\\u%04x", c);
    } else {
      escaped[0] = (char)c;
      escaped[1] = '\0';
    }
    latch_buf_str(buf, escaped);
  }
  latch_buf_str(buf, "\"");
}

// --- The engine.

void latch_log(const char *format, ...) {
  va_list args;
  va_start(args, format);
  int len = vsnprintf(NULL, 0, format, args);
  va_end(args);
  if (len < 0) return;
  char *line = malloc((size_t)len + 1);
  if (!line) abort();
  va_start(args, format);
  vsnprintf(line, (size_t)len + 1, format, args);
  va_end(args);
  // Imports borrow their arguments.
  workflow_string_t message = {(uint8_t *)line, (size_t)len};
  latch_workflow_context_log(LATCH_WORKFLOW_CONTEXT_LEVEL_INFO, &message);
  free(line);
}

static workflow_string_t borrowed(const char *s) {
  workflow_string_t text;
  workflow_string_set(&text, s);
  return text;
}

bool latch_webhook_create(latch_workflow_webhooks_webhook_t *hook, workflow_error_t *err) {
  workflow_tuple2_string_string_t content_type = {borrowed("content-type"), borrowed("application/json")};
  latch_workflow_webhooks_webhook_options_t options = {
      .single_use = true,
      .auth = {.tag = LATCH_WORKFLOW_TYPES_AUTH_NONE},
      .on_auth_failure = LATCH_WORKFLOW_TYPES_AUTH_FAILURE_ERROR,
      .response = {.tag = LATCH_WORKFLOW_TYPES_RESPONSE_MODE_AUTOMATIC,
                   .val.automatic = {.status = 202,
                                     .headers = {&content_type, 1},
                                     .body = borrowed("{\"accepted\":true}")}},
  };
  return latch_workflow_webhooks_create(&options, hook, err);
}

bool latch_next(const latch_workflow_webhooks_webhook_t *hook, latch_workflow_waits_incoming_request_t *request) {
  workflow_string_t id = hook->id;
  latch_workflow_waits_next_result_t result;
  latch_workflow_waits_next(&id, NULL, &result);
  if (result.tag != LATCH_WORKFLOW_WAITS_NEXT_RESULT_REQUEST) return false;
  *request = result.val.request;
  return true;
}

bool latch_succeed(workflow_json_t *ret, latch_buf *output) {
  if (output->len == 0) latch_buf_str(output, "null");
  ret->ptr = (uint8_t *)output->ptr;
  ret->len = output->len;
  *output = (latch_buf){0};
  return true;
}

bool latch_fail(workflow_error_t *err, const char *code, const char *message) {
  workflow_string_dup(&err->code, code);
  workflow_string_dup(&err->message, message);
  return false;
}
