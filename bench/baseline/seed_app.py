"""The seed's own stack doing our work, for the side-by-side benchmark: FastAPI with
`BackgroundTasks` and an aiohttp amoCRM client, as the original leads.py / amocrm.py were built,
pointed at the same moto and amoCRM sandbox as the Rust functions.

POST /leads does what lead-ingest does (validate, one transactional write of the idempotency
claim and the lead, 202) and then, as a background task in the same process, what crm-worker
does for one lead (contact search, the lead with its contact, the note, the mail copy, the lead
marked delivered). Two things the seed lacked are added so the figures compare like for like:
the DynamoDB write, and pacing under amoCRM's 7 requests per second (without it the sandbox
answers 429 after the second lead and the lead is lost).

Run: python -m uvicorn seed_app:app --app-dir bench/baseline. Environment: the functions' own
(LEADS_TABLE, AMOCRM_*, MAIL_FROM, SALES_MAILBOX, AWS_ENDPOINT_URL…); SEED_DELIVER=0 accepts
without delivering (the accept-only measurement). GET /bench/deliveries reports what the
background tasks did."""

import asyncio
import json
import os
import re
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Literal, Optional

import aiohttp
import boto3
from fastapi import BackgroundTasks, FastAPI, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

LEADS_TABLE = os.environ["LEADS_TABLE"]
AMO_BASE = os.environ["AMOCRM_BASE_URL"].rstrip("/")
PIPELINE_ID = int(os.environ.get("AMOCRM_PIPELINE_ID", "10226282"))
STATUS_ID = int(os.environ.get("AMOCRM_STATUS_ID", "80953554"))
USER_ID = int(os.environ.get("AMOCRM_RESPONSIBLE_USER_ID", "12380450"))
MAIL_FROM = os.environ.get("MAIL_FROM", "noreply@td-rss.ru")
SALES_MAILBOX = os.environ.get("SALES_MAILBOX", "zakaz@tdrusstankosbyt.ru")
DELIVER = os.environ.get("SEED_DELIVER", "1") != "0"
# A little under amoCRM's 7/s, as the Rust client paces itself.
MIN_INTERVAL = 1 / float(os.environ.get("SEED_AMOCRM_RPS", "6"))

dynamodb = boto3.client("dynamodb")
ses = boto3.client("sesv2")
secrets = boto3.client("secretsmanager")
TOKEN = json.loads(
    secrets.get_secret_value(SecretId=os.environ["AMOCRM_TOKEN_SECRET_ID"])["SecretString"]
)["access_token"]

stats = {"delivered": 0, "failed": 0, "durations_ms": [], "amocrm_requests": 0, "amocrm_429": 0}
# Set whenever a delivery ends, so the bench can wait for one without polling.
delivery_ended: Optional[asyncio.Condition] = None


class LeadIn(BaseModel):
    source: Literal["site", "bot", "cart", "tma"]
    intent: Literal["service", "parts"]
    name: str = Field(min_length=1, max_length=200)
    phone: Optional[str] = Field(default=None, max_length=40)
    email: Optional[str] = Field(default=None, max_length=254)
    message: Optional[str] = Field(default=None, max_length=5000)

    @field_validator("phone")
    @classmethod
    def phone_has_digits(cls, v):
        if v is not None and len(re.sub(r"\D", "", v)) < 10:
            raise ValueError("a phone number has at least 10 digits")
        return v

    @field_validator("email")
    @classmethod
    def email_has_at(cls, v):
        if v is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v):
            raise ValueError("not an e-mail address")
        return v


class Pacer:
    """At most one amoCRM request per MIN_INTERVAL across all background tasks."""

    def __init__(self):
        self.lock = asyncio.Lock()
        self.next_at = 0.0

    async def wait(self):
        async with self.lock:
            now = time.monotonic()
            if self.next_at > now:
                await asyncio.sleep(self.next_at - now)
            self.next_at = max(now, self.next_at) + MIN_INTERVAL


pacer = Pacer()
session: Optional[aiohttp.ClientSession] = None


@asynccontextmanager
async def lifespan(_app):
    global session, delivery_ended
    delivery_ended = asyncio.Condition()
    session = aiohttp.ClientSession(
        base_url=AMO_BASE, headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=aiohttp.ClientTimeout(total=10),
    )
    yield
    await session.close()


app = FastAPI(lifespan=lifespan)


async def amo(method, path, **kwargs):
    await pacer.wait()
    stats["amocrm_requests"] += 1
    async with session.request(method, path, **kwargs) as resp:
        if resp.status == 429:
            stats["amocrm_429"] += 1
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {(await resp.text())[:200]}")
        return await resp.json() if resp.status != 204 else None


async def deliver(lead_id: str, lead: dict, accepted_at: float):
    try:
        digits = re.sub(r"\D", "", lead.get("phone") or "")[-10:]
        found = await amo("GET", "/api/v4/contacts", params={"query": digits}) if digits else None
        contacts = ((found or {}).get("_embedded") or {}).get("contacts") or []
        contact = {"id": contacts[0]["id"]} if contacts else {
            "name": lead["name"],
            "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": lead["phone"], "enum_code": "WORK"}]}
            ] if lead.get("phone") else [],
        }
        title = f"Заявка с сайта: {lead['name']} [{lead_id}]"
        created = await amo("POST", "/api/v4/leads/complex", json=[{
            "name": title, "pipeline_id": PIPELINE_ID, "status_id": STATUS_ID,
            "responsible_user_id": USER_ID, "_embedded": {"contacts": [contact]},
        }])
        amo_lead_id = created[0]["id"]
        note = f"Источник: {lead['source']}\nСообщение: {lead.get('message') or '—'}\n[{lead_id}]"
        await amo("POST", "/api/v4/leads/notes", json=[
            {"entity_id": amo_lead_id, "note_type": "common", "params": {"text": note}}
        ])
        await run_in_threadpool(
            ses.send_email,
            FromEmailAddress=MAIL_FROM,
            Destination={"ToAddresses": [SALES_MAILBOX]},
            Content={"Simple": {
                "Subject": {"Data": title, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": note, "Charset": "UTF-8"}},
            }},
        )
        await run_in_threadpool(
            dynamodb.update_item,
            TableName=LEADS_TABLE,
            Key={"pk": {"S": f"SEED-LEAD#{lead_id}"}},
            UpdateExpression="SET #s = :d, amo_lead_id = :a",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":d": {"S": "delivered"}, ":a": {"N": str(amo_lead_id)}},
        )
        stats["delivered"] += 1
        stats["durations_ms"].append((time.monotonic() - accepted_at) * 1000)
    except Exception as exc:  # the seed logged and dropped a failed delivery
        stats["failed"] += 1
        stats["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
    async with delivery_ended:
        delivery_ended.notify_all()


@app.post("/leads", status_code=202)
async def accept(
    lead: LeadIn,
    background: BackgroundTasks,
    idempotency_key: Optional[str] = Header(default=None),
):
    accepted_at = time.monotonic()
    lead_id = str(uuid.uuid4())
    payload = lead.model_dump(exclude_none=True)
    key = idempotency_key or lead_id
    expires = int((datetime.now(timezone.utc) + timedelta(days=1)).timestamp())
    try:
        await run_in_threadpool(
            dynamodb.transact_write_items,
            TransactItems=[
                {"Put": {
                    "TableName": LEADS_TABLE,
                    "Item": {"pk": {"S": f"SEED-IDEM#{key}"}, "lead_id": {"S": lead_id},
                             "expires_at": {"N": str(expires)}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }},
                {"Put": {
                    "TableName": LEADS_TABLE,
                    "Item": {"pk": {"S": f"SEED-LEAD#{lead_id}"}, "kind": {"S": "seed-lead"},
                             "status": {"S": "pending"},
                             "payload": {"S": json.dumps(payload, ensure_ascii=False)}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }},
            ],
        )
    except dynamodb.exceptions.TransactionCanceledException:
        return JSONResponse(status_code=409, content={"error": "duplicate idempotency key"})
    if DELIVER:
        background.add_task(deliver, lead_id, payload, accepted_at)
    return {"status": "accepted", "lead_id": lead_id}


@app.get("/bench/deliveries")
async def deliveries(ended: int = 0):
    """What the background tasks did, once at least `ended` deliveries have ended (10 s)."""
    async with delivery_ended:
        try:
            await asyncio.wait_for(
                delivery_ended.wait_for(lambda: stats["delivered"] + stats["failed"] >= ended), 10
            )
        except asyncio.TimeoutError:
            pass
    return stats
