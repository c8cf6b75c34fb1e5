// order-payment in C: the same workflow, and the same output, as the Rust plugin.
//
// Input: {"order_id": string, "amount": number, "currency"?: string}.
// Output: {"order_id", "amount", "status": "paid" | "payment-failed", "payment": <callback data>}.

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "latch.h"

void exports_workflow_describe(workflow_module_info_t *ret) {
  *ret = (workflow_module_info_t){0};
  workflow_string_dup(&ret->description, "Waits for a payment provider's callback confirming an order's payment");
}

static bool is_blank(const char *s) {
  for (; *s; s++) {
    if (!isspace((unsigned char)*s)) return false;
  }
  return true;
}

// The string field `key` of `object`, decoded (free it), or NULL.
static char *string_field(latch_text object, const char *key) {
  latch_text value;
  return latch_json_field(object, key, &value) ? latch_json_string(value) : NULL;
}

// The raw JSON of field `key`, or `null`.
static latch_text raw_field(latch_text object, const char *key) {
  latch_text value;
  return latch_json_field(object, key, &value) ? value : (latch_text){"null", 4};
}

static bool is_number(latch_text json) {
  return json.len > 0 && (json.ptr[0] == '-' || isdigit((unsigned char)json.ptr[0]));
}

static bool wait_for_payment(const char *order_id, latch_text input, workflow_json_t *ret, workflow_error_t *err) {
  latch_text amount = raw_field(input, "amount");
  if (!is_number(amount)) return latch_fail(err, "bad-input", "amount must be a number");
  latch_text currency_json = raw_field(input, "currency");
  char *currency = latch_json_string(currency_json);
  bool no_currency = currency_json.len == 4 && memcmp(currency_json.ptr, "null", 4) == 0;
  if (!currency && !no_currency) {
    return latch_fail(err, "bad-input", "currency must be a string");
  }
  latch_workflow_webhooks_webhook_t callback;
  if (!latch_webhook_create(&callback, err)) {
    free(currency);
    return false;
  }
  latch_log("awaiting payment of %.*s %s for order %s", (int)amount.len, amount.ptr,
            currency ? currency : "(no currency)", order_id);
  latch_log("payment callback URL: %.*s", (int)callback.url.len, (const char *)callback.url.ptr);
  free(currency);

  latch_workflow_waits_incoming_request_t payment;
  bool delivered = latch_next(&callback, &payment);
  latch_workflow_webhooks_webhook_free(&callback);
  if (!delivered) return latch_fail(err, "closed", "the payment callback URL closed");

  latch_text data = latch_text_of(&payment.data);
  char *status = string_field(data, "status");
  bool failed = status && strcmp(status, "failed") == 0;
  free(status);
  latch_log("order %s: %s", order_id, failed ? "payment-failed" : "paid");

  latch_buf output = {0};
  latch_buf_str(&output, "{\"order_id\":");
  latch_buf_json_string(&output, order_id);
  latch_buf_str(&output, ",\"amount\":");
  latch_buf_raw(&output, amount);
  latch_buf_str(&output, failed ? ",\"status\":\"payment-failed\",\"payment\":" : ",\"status\":\"paid\",\"payment\":");
  latch_buf_raw(&output, data.len ? data : (latch_text){"null", 4});
  latch_buf_str(&output, "}");
  latch_workflow_waits_incoming_request_free(&payment);
  return latch_succeed(ret, &output);
}

bool exports_workflow_run(workflow_start_t *start, workflow_json_t *ret, workflow_error_t *err) {
  latch_text input = latch_start_input(start);
  char *order_id = string_field(input, "order_id");
  bool ok;
  if (!order_id) {
    ok = latch_fail(err, "bad-input", "order_id is required");
  } else if (is_blank(order_id)) {
    ok = latch_fail(err, "bad-input", "order_id must not be empty");
  } else {
    ok = wait_for_payment(order_id, input, ret, err);
  }
  free(order_id);
  workflow_start_free(start);
  return ok;
}
