#!/usr/bin/env python3
"""Signs Telegram Mini App initData the way Telegram does, to try passport-api by hand.

passport-api accepts `Authorization: tma <initData>` only when initData is signed with the bot token
in the app secret and `auth_date` is at most a day old, so the sample events in events/ go stale.
This prints a fresh header value, or (--event) a copy of a sample event carrying one:

    tools/scripts/tma_init_data.py                      # tma query_id=…&user=…&auth_date=…&hash=…
    tools/scripts/tma_init_data.py --event events/passport-get.json > /tmp/passport-get.json

The default bot token is the local stack's (`make run`; LOCAL_TELEGRAM_BOT_TOKEN overrides it there
and here). It is made up: never pass the real bot token on a command line.

Signature (Telegram, "Validating data received via the Mini App"): every field but `hash`, sorted
by key, joined as `key=value` lines; secret = HMAC-SHA256(key="WebAppData", msg=bot_token);
hash = hex(HMAC-SHA256(key=secret, msg=data-check-string)).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.parse

LOCAL_BOT_TOKEN = "123456:local-telegram-bot-token"
# The customer of the sample events (the same Telegram ID is in the won deal of
# events/amocrm-webhook-status-142.json).
DEFAULT_USER = {
    "id": 428113907,
    "first_name": "Алексей",
    "last_name": "Кузнецов",
    "username": "a_kuznetsov",
    "language_code": "ru",
    "allows_write_to_pm": True,
}


def sign(fields: list[tuple[str, str]], bot_token: str) -> str:
    """initData query string for `fields` (in order, any `hash` dropped) with its `hash` appended."""
    fields = [(k, v) for k, v in fields if k != "hash"]
    check_string = "\n".join(f"{k}={v}" for k, v in sorted(fields))
    secret = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    digest = hmac.new(secret, check_string.encode(), hashlib.sha256).hexdigest()
    # Telegram clients percent-encode every reserved character and spaces as %20.
    return "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in fields) + f"&hash={digest}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bot-token", default=os.environ.get("LOCAL_TELEGRAM_BOT_TOKEN", LOCAL_BOT_TOKEN))
    parser.add_argument("--user-id", type=int, default=DEFAULT_USER["id"])
    parser.add_argument("--auth-date", type=int, default=None, help="unix seconds (default: now)")
    parser.add_argument("--event", help="API Gateway event JSON whose authorization header to replace")
    args = parser.parse_args(argv)

    user = dict(DEFAULT_USER, id=args.user_id)
    auth_date = args.auth_date if args.auth_date is not None else int(time.time())
    init_data = sign(
        [
            ("query_id", "AAHzYYMZAAAAAPNhgxkBZ2Tq"),
            ("user", json.dumps(user, ensure_ascii=False, separators=(",", ":"))),
            ("auth_date", str(auth_date)),
        ],
        args.bot_token,
    )
    header = f"tma {init_data}"
    if not args.event:
        print(header)
        return 0
    with open(args.event, encoding="utf-8") as fh:
        event = json.load(fh)
    event.setdefault("headers", {})["authorization"] = header
    json.dump(event, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
