"""Cold-start baseline: a minimal Python 3.11 + boto3 handler doing what lead-ingest does at
init (DynamoDB, SES v2 and Secrets Manager clients; the app secret read once) and per event
(one DynamoDB PutItem of the lead, answered 202 like API Gateway expects)."""

import json
import os
import uuid

import boto3

dynamodb = boto3.client("dynamodb")
ses = boto3.client("sesv2")
secrets = boto3.client("secretsmanager")
APP_SECRET = json.loads(secrets.get_secret_value(SecretId=os.environ["APP_SECRET_ID"])["SecretString"])
LEADS_TABLE = os.environ["LEADS_TABLE"]


def handler(event, context):
    body = json.loads(event.get("body") or "{}")
    lead_id = str(uuid.uuid4())
    dynamodb.put_item(
        TableName=LEADS_TABLE,
        Item={
            "pk": {"S": f"BASELINE#{lead_id}"},
            "kind": {"S": "baseline"},
            "payload": {"S": json.dumps(body, ensure_ascii=False)},
        },
    )
    return {
        "statusCode": 202,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"status": "accepted", "lead_id": lead_id}),
    }
