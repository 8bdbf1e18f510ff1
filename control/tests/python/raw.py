"""One raw HTTPS request to strait-control, for tests of what real clients never send.

usage: raw.py URL CA_FILE TOKEN METHOD PATH CONTENT_TYPE < BODY
prints one JSON line: {"status": code, "body": <JSON or text>, "warnings": [...]}
"""

import json
import ssl
import sys
import urllib.error
import urllib.request

url, ca, token, method, path, content_type = sys.argv[1:7]
body = sys.stdin.buffer.read()
context = ssl.create_default_context(cafile=ca)
headers = {"Content-Type": content_type, "Accept": "application/json"}
if token != "-":
    headers["Authorization"] = f"Bearer {token}"
request = urllib.request.Request(url + path, data=body or None, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        status, raw, got = response.status, response.read(), response.headers
except urllib.error.HTTPError as e:
    status, raw, got = e.code, e.read(), e.headers
try:
    parsed = json.loads(raw)
except ValueError:
    parsed = raw.decode(errors="replace")
print(json.dumps({"status": status, "body": parsed, "warnings": got.get_all("Warning") or []}))
