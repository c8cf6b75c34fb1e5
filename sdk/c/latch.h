// Write Latch workflows in C.
//
// A workflow defines the two exports of world `latch:workflow/workflow`, declared in the
// generated `workflow.h`:
//
//   void exports_workflow_describe(workflow_module_info_t *ret);
//   bool exports_workflow_run(workflow_start_t *start, workflow_json_t *ret, workflow_error_t *err);
//
// and calls the engine through the generated imports or the helpers below, which cover
// the common path: read the JSON input, create a callback URL, wait for its call, write
// a JSON output. Build with `cargo run -p latch-c-build -- <app dir> -o app.wasm`.
//
// Memory: `run` owns `start` (free it with `workflow_start_free`), and everything placed
// in `*ret` or `*err` must be heap memory; the generated code frees it after the engine
// has read it.

#ifndef LATCH_H
#define LATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "workflow.h"

// Bytes borrowed from somewhere else, not NUL-terminated: JSON text, a URL.
typedef struct {
  const char *ptr;
  size_t len;
} latch_text;

latch_text latch_text_of(const workflow_string_t *s);

// The run's JSON input: the API input, or the data of the trigger call that started it.
latch_text latch_start_input(const workflow_start_t *start);

// JSON reading. `latch_json_field` finds `key` in a JSON object and sets `value` to the
// raw JSON text of its value. `latch_json_string` decodes a JSON string into a new
// NUL-terminated string (free it), or returns NULL when `value` is not a string, is
// malformed, or holds an escaped NUL (`\u0000`), which a C string cannot.
bool latch_json_field(latch_text object, const char *key, latch_text *value);
char *latch_json_string(latch_text value);

// JSON writing into a growing buffer.
typedef struct {
  char *ptr;
  size_t len;
  size_t cap;
} latch_buf;

void latch_buf_raw(latch_buf *buf, latch_text text);
void latch_buf_str(latch_buf *buf, const char *s);
// Appends `s` as a quoted, escaped JSON string.
void latch_buf_json_string(latch_buf *buf, const char *s);

// An info line in the run's event log, printf-style.
void latch_log(const char *format, ...) __attribute__((format(printf, 1, 2)));

// A single-use POST callback URL answered `202 {"accepted":true}`. False sets `err`.
bool latch_webhook_create(latch_workflow_webhooks_webhook_t *hook, workflow_error_t *err);

// Waits for the next call on `hook`. True with the call in `request` (free it with
// `latch_workflow_waits_incoming_request_free`); false when the URL closed or expired.
bool latch_next(const latch_workflow_webhooks_webhook_t *hook, latch_workflow_waits_incoming_request_t *request);

// Ends `run`: `latch_succeed` hands `output` to the engine as the run's result and
// returns true; `latch_fail` fills `err` and returns false.
bool latch_succeed(workflow_json_t *ret, latch_buf *output);
bool latch_fail(workflow_error_t *err, const char *code, const char *message);

#endif
