"""Signs a webhook call the way a sender would, with implementations other than Latch's:
the `standardwebhooks` package for Standard Webhooks, Python's hmac for Stripe and GitHub.

Reads {"scheme", "secret", "body", "timestamp", "id"?} as JSON from argv[1] and prints the
headers to send, as a JSON object.
"""
import datetime
import hashlib
import hmac
import json
import sys

request = json.loads(sys.argv[1])
scheme, secret, body, timestamp = request["scheme"], request["secret"], request["body"], request["timestamp"]
if scheme == "standard-webhooks":
    from standardwebhooks.webhooks import Webhook

    at = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    signature = Webhook(secret).sign(request["id"], at, body)
    headers = {"webhook-id": request["id"], "webhook-timestamp": str(timestamp), "webhook-signature": signature}
elif scheme == "stripe":
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    headers = {"Stripe-Signature": f"t={timestamp},v1={digest}"}
elif scheme == "github":
    digest = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": f"sha256={digest}"}
else:
    sys.exit(f"unknown scheme {scheme}")
print(json.dumps(headers))
