#!/usr/bin/env python3
"""Least-privilege check for the SAM template, run by `make test`.

Fails (exit 1, one line per finding naming the resource) when a policy in the template:
  * allows Action "*", or "service:*" on a data service (DynamoDB, Secrets Manager, SQS, ...);
  * allows DynamoDB, Secrets Manager or SQS actions on Resource "*";
  * uses NotAction / NotResource with Allow (everything except ... is never least privilege);
  * grants a Secrets Manager write (PutSecretValue, UpdateSecret, ...) to a function that is not
    on the allow-list (--allow-secret-writes, function logical ids; default: none), or, for an entry
    FUNCTION=SECRET, on any resource but that secret (e.g. the app secret, or Resource "*");
  * attaches a broad AWS managed policy or SAM policy template (FullAccess, SecretsManagerReadWrite, ...);
  * grants EC2 actions other than the network-interface ones Lambda needs to attach a function to
    a VPC, grants them to a function that runs outside a VPC or under another condition than its
    VpcConfig, or runs a function in a VPC without them.

Statements inside Fn::If count under their condition (`AmoInVpc`, or `!AmoInVpc` for the else
branch); AWS::NoValue branches are no statement.

Policies are found in AWS::IAM::Role (inline), AWS::IAM::Policy / ManagedPolicy (attached to roles),
AWS::Serverless::Function `Policies`, and resource policies with a PolicyDocument. A role's grants
count for every function whose `Role` points at it.

Needs PyYAML (in .venv after tools/scripts/deps.sh). `--self-test` proves the check catches bad
templates and passes a good one.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from dataclasses import dataclass, field

try:
    import yaml
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("check_template: PyYAML is missing; run `make deps` and use .venv/bin/python3")

# Services whose data a wildcard action would expose.
DATA_SERVICES = {"dynamodb", "secretsmanager", "sqs", "sns", "s3", "kms", "ses", "kinesis", "logs"}
# Services whose actions must name their resources (no Resource "*").
SCOPED_SERVICES = {"dynamodb", "secretsmanager", "sqs"}
# Secrets Manager actions that change a secret or who may read it.
SECRET_WRITES = [
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecret",
    "secretsmanager:UpdateSecretVersionStage",
    "secretsmanager:CreateSecret",
    "secretsmanager:DeleteSecret",
    "secretsmanager:RestoreSecret",
    "secretsmanager:RotateSecret",
    "secretsmanager:CancelRotateSecret",
    "secretsmanager:PutResourcePolicy",
    "secretsmanager:DeleteResourcePolicy",
    "secretsmanager:ReplicateSecretToRegions",
    "secretsmanager:RemoveRegionsFromReplication",
    "secretsmanager:StopReplicationToReplica",
]
# AWS managed policies (by name) and SAM policy templates too broad for these functions.
BROAD_MANAGED = {
    "AdministratorAccess": "full account access",
    "PowerUserAccess": "near-full account access",
    "SecretsManagerReadWrite": "writes every secret",
    "AWSLambdaDynamoDBExecutionRole": "stream actions on Resource '*'",
    "AWSLambdaSQSQueueExecutionRole": "queue actions on Resource '*'",
}
SAM_TEMPLATE_GRANTS = {
    # template name -> actions it grants that this check cares about
    "AWSSecretsManagerRotationPolicy": ["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"],
    "DynamoDBCrudPolicy": [],
    "DynamoDBReadPolicy": [],
    "DynamoDBWritePolicy": [],
    "DynamoDBStreamReadPolicy": [],
    "AWSSecretsManagerGetSecretValuePolicy": [],
    "SESCrudPolicy": [],
    "SESBulkTemplatedCrudPolicy": [],
    "SQSSendMessagePolicy": [],
    "SQSPollerPolicy": [],
}
PROTECTED_RESOURCE_TYPES = ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
# What Lambda needs to attach a function to a VPC (the AWSLambdaVPCAccessExecutionRole set).
VPC_ENI_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}
# Without these Lambda refuses to create or update a function with a VpcConfig.
VPC_ENI_REQUIRED = {"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface"}


# --------------------------------------------------------------------------- YAML with SAM tags
class CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short forms (!Ref, !Sub, ...) as their long forms."""


def _long_form(tag: str):
    name = "Ref" if tag == "Ref" else ("Condition" if tag == "Condition" else f"Fn::{tag}")

    def construct(loader: CfnLoader, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for _tag in ("Ref", "Condition", "GetAtt", "Sub", "Join", "If", "Select", "Split", "Equals", "Not",
             "And", "Or", "FindInMap", "Base64", "Cidr", "ImportValue", "GetAZs", "Transform",
             "Length", "ToJsonString"):
    CfnLoader.add_constructor(f"!{_tag}", _long_form(_tag))


def load_template(text: str) -> dict:
    doc = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise ValueError("not a CloudFormation template (no Resources mapping)")
    return doc


# --------------------------------------------------------------------------- collecting grants
@dataclass
class Grant:
    """One policy statement and who holds it."""

    where: str  # resource holding the policy, e.g. "CrmWorkerRole"
    label: str  # the statement's Sid or its position
    statement: dict
    holders: list[str] = field(default_factory=list)  # functions (or roles) that get it
    condition: str | None = None  # "Cond" / "!Cond" when the statement sits in an Fn::If


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _ref_target(value) -> str | None:
    """Logical id behind !Ref X or !GetAtt X.Arn, else None."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            if isinstance(target, list) and target and isinstance(target[0], str):
                return target[0]
    return None


def _functions_by_role(resources: dict) -> dict[str, list[str]]:
    by_role: dict[str, list[str]] = {}
    for name, res in resources.items():
        if res.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            role = _ref_target((res.get("Properties") or {}).get("Role"))
            if role:
                by_role.setdefault(role, []).append(name)
    return by_role


def _is_no_value(value) -> bool:
    return isinstance(value, dict) and value.get("Ref") == "AWS::NoValue"


def _branches(value) -> list[tuple[object, str | None]]:
    """A value and its condition, or each branch of an Fn::If with its own."""
    if isinstance(value, dict) and "Fn::If" in value:
        cond, then, other = (list(value["Fn::If"]) + [None, None, None])[:3]
        return [(b, c) for b, c in ((then, str(cond)), (other, f"!{cond}")) if not _is_no_value(b)]
    return [(value, None)]


def _statements(where: str, document, holders: list[str]) -> list[Grant]:
    if not isinstance(document, dict):
        return []
    grants = []
    for i, entry in enumerate(_as_list(document.get("Statement")), start=1):
        for st, cond in _branches(entry):
            if isinstance(st, dict):
                grants.append(Grant(where, st.get("Sid") or f"statement {i}", st, holders, cond))
    return grants


def _vpc_condition(function: dict) -> tuple[bool, str | None]:
    """(runs in a VPC at all, the condition of its VpcConfig or None when unconditional)."""
    config = (function.get("Properties") or {}).get("VpcConfig")
    if config is None:
        return False, None
    branches = _branches(config)
    if not branches:
        return False, None
    return True, branches[0][1]


def check_vpc(resources: dict, grants: list[Grant]) -> list[str]:
    """EC2 grants only for Lambda's VPC attachment, only to functions in a VPC, under its condition."""
    out = []
    functions = {n: r for n, r in resources.items()
                 if r.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")}
    eni: dict[str, set[tuple[str, str | None]]] = {}
    for g in grants:
        if str(g.statement.get("Effect", "Allow")) != "Allow":
            continue
        actions = [a for a in _as_list(g.statement.get("Action")) if isinstance(a, str)]
        ec2 = [a for a in actions if _service(a) == "ec2"]
        if not ec2:
            continue
        at = f"{g.where} ({g.label})"
        for action in ec2:
            if action not in VPC_ENI_ACTIONS:
                out.append(f"{at}: {action} is not a network-interface action Lambda needs for a VPC")
        for holder in g.holders:
            if holder not in functions:
                continue
            in_vpc, vpc_cond = _vpc_condition(functions[holder])
            if not in_vpc:
                out.append(f"{at}: EC2 network-interface actions granted to {holder}, which runs "
                           "outside a VPC")
            elif g.condition != vpc_cond:
                out.append(f"{at}: EC2 network-interface actions granted to {holder} under "
                           f"{g.condition or 'no condition'}, its VpcConfig under "
                           f"{vpc_cond or 'no condition'}")
            for action in ec2:
                eni.setdefault(holder, set()).add((action, g.condition))
    for name, res in functions.items():
        in_vpc, vpc_cond = _vpc_condition(res)
        if not in_vpc:
            continue
        held = {a for a, c in eni.get(name, set()) if c == vpc_cond}
        missing = sorted(VPC_ENI_REQUIRED - held)
        if missing:
            out.append(f"{name}: runs in a VPC{f' when {vpc_cond}' if vpc_cond else ''} without "
                       f"{', '.join(missing)} (Lambda cannot attach it)")
    return out


def collect(resources: dict, findings: list[str]) -> list[Grant]:
    by_role = _functions_by_role(resources)
    grants: list[Grant] = []
    for name, res in resources.items():
        kind = res.get("Type")
        props = res.get("Properties") or {}
        if kind == "AWS::IAM::Role":
            holders = by_role.get(name) or [name]
            for pol in _as_list(props.get("Policies")):
                if isinstance(pol, dict):
                    grants += _statements(name, pol.get("PolicyDocument"), holders)
            for arn in _as_list(props.get("ManagedPolicyArns")):
                _check_managed(name, arn, findings)
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            holders = []
            for role in _as_list(props.get("Roles")):
                role_id = _ref_target(role)
                holders += by_role.get(role_id, [role_id]) if role_id else []
            grants += _statements(name, props.get("PolicyDocument"), holders or [name])
        elif kind == "AWS::Serverless::Function":
            for pol in _as_list(props.get("Policies")):
                if isinstance(pol, str):
                    _check_managed(name, pol, findings)
                elif isinstance(pol, dict) and "Statement" in pol:
                    grants += _statements(name, pol, [name])
                elif isinstance(pol, dict):
                    for template_name in pol:
                        actions = SAM_TEMPLATE_GRANTS.get(template_name)
                        if actions is None:
                            findings.append(f"{name}: SAM policy template {template_name!r} is not one "
                                            "this check knows; write the statement out instead")
                        elif actions:
                            stmt = {"Effect": "Allow", "Action": actions, "Resource": "(template)"}
                            grants.append(Grant(name, f"template {template_name}", stmt, [name]))
        elif isinstance(props.get("PolicyDocument"), dict):
            # Resource policies (queue, topic, secret): who may act on the resource.
            grants += _statements(name, props["PolicyDocument"], [name])
    return grants


def _check_managed(where: str, arn, findings: list[str]) -> None:
    text = arn if isinstance(arn, str) else str(arn)
    policy_name = text.rsplit("/", 1)[-1]
    if policy_name in BROAD_MANAGED:
        findings.append(f"{where}: managed policy {policy_name} ({BROAD_MANAGED[policy_name]})")
    elif policy_name.endswith("FullAccess"):
        findings.append(f"{where}: managed policy {policy_name} (full access to a service)")


# --------------------------------------------------------------------------- the rules
def _service(action: str) -> str:
    return action.split(":", 1)[0].lower() if ":" in action else ""


def _is_secret_write(action: str) -> bool:
    pattern = action.lower()
    return any(fnmatch.fnmatchcase(w.lower(), pattern) for w in SECRET_WRITES)


# Secret writers: function logical id -> secret logical ids it may write (None: any secret).
Writers = dict[str, "set[str] | None"]


def _writers(allowed) -> Writers:
    """Accepts a plain set of function ids (any secret) or the mapping itself."""
    return dict(allowed) if isinstance(allowed, dict) else {name: None for name in allowed}


def _describe(resource) -> str:
    target = _ref_target(resource)
    if target:
        return target
    return resource if isinstance(resource, str) else "a computed ARN"


def check_grant(g: Grant, allowed_writers: Writers) -> list[str]:
    st = g.statement
    if str(st.get("Effect", "Allow")) != "Allow":
        return []
    at = f"{g.where} ({g.label})"
    out = []
    actions = [a for a in _as_list(st.get("Action")) if isinstance(a, str)]
    resources = _as_list(st.get("Resource"))
    if "NotAction" in st:
        out.append(f"{at}: Allow with NotAction grants every other action")
    if "NotResource" in st:
        out.append(f"{at}: Allow with NotResource grants every other resource")
    for action in actions:
        if action == "*":
            out.append(f"{at}: Action '*'")
        elif action.endswith(":*") and _service(action) in DATA_SERVICES:
            out.append(f"{at}: Action {action!r} on a data service")
    if "*" in resources:
        scoped = sorted({_service(a) for a in actions if _service(a) in SCOPED_SERVICES or a == "*"} - {""})
        if scoped or "*" in actions:
            out.append(f"{at}: Resource '*' with {', '.join(scoped) or 'all'} actions")
    writes = sorted({a for a in actions if a == "*" or _is_secret_write(a)})
    if writes:
        for holder in g.holders:
            if holder not in allowed_writers:
                out.append(f"{at}: Secrets Manager write {', '.join(writes)} granted to {holder}, "
                           "which is not allowed to change secrets (--allow-secret-writes)")
                continue
            scope = allowed_writers[holder]
            if scope is None:
                continue
            outside = [_describe(r) for r in resources if _ref_target(r) not in scope]
            if outside or not resources:
                out.append(f"{at}: Secrets Manager write {', '.join(writes)} granted to {holder} on "
                           f"{', '.join(outside) or 'no named secret'}; it may write only "
                           f"{', '.join(sorted(scope))} (--allow-secret-writes {holder}=...)")
    return out


def check(text: str, allowed_writers) -> tuple[list[str], int]:
    """Returns (findings, number of statements checked). `allowed_writers`: see `_writers`."""
    resources = load_template(text)["Resources"]
    writers = _writers(allowed_writers)
    findings: list[str] = []
    grants = collect(resources, findings)
    for g in grants:
        findings += check_grant(g, writers)
    findings += check_vpc(resources, grants)
    return findings, len(grants)


# --------------------------------------------------------------------------- self-test
_GOOD = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Table: {Type: AWS::DynamoDB::Table}
  Secret: {Type: AWS::SecretsManager::Secret}
  TokenSecret: {Type: AWS::SecretsManager::Secret}
  FnRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - Sid: Table
                Effect: Allow
                Action: [dynamodb:PutItem, dynamodb:GetItem]
                Resource: [!GetAtt Table.Arn, !Sub '${Table.Arn}/index/*']
              - Sid: Read
                Effect: Allow
                Action: secretsmanager:GetSecretValue
                Resource: !Ref Secret
              - Sid: Traces
                Effect: Allow
                Action: [xray:PutTraceSegments]
                Resource: '*'
  Fn:
    Type: AWS::Serverless::Function
    Properties: {Role: !GetAtt FnRole.Arn, CodeUri: ., Handler: bootstrap}
"""

# The good template plus a write on the token secret only (allowed for Fn=TokenSecret).
_WRITE_TOKEN = _GOOD.replace("""              - Sid: Traces""", """              - Sid: WriteToken
                Effect: Allow
                Action: secretsmanager:PutSecretValue
                Resource: !Ref TokenSecret
              - Sid: Traces""")

# The good template with Fn in a VPC under a condition, and the ENI grant under the same one.
_VPC = _GOOD.replace("""              - Sid: Traces""", """              - !If
                - InVpc
                - Sid: Eni
                  Effect: Allow
                  Action: [ec2:CreateNetworkInterface, ec2:DescribeNetworkInterfaces, ec2:DeleteNetworkInterface]
                  Resource: '*'
                - !Ref AWS::NoValue
              - Sid: Traces""").replace(
    "Properties: {Role: !GetAtt FnRole.Arn, CodeUri: ., Handler: bootstrap}",
    "Properties: {Role: !GetAtt FnRole.Arn, CodeUri: ., Handler: bootstrap, "
    "VpcConfig: !If [InVpc, {SubnetIds: [subnet-1], SecurityGroupIds: [sg-1]}, !Ref AWS::NoValue]}")
_NO_VPC_CONFIG = ", VpcConfig: !If [InVpc, {SubnetIds: [subnet-1], SecurityGroupIds: [sg-1]}, !Ref AWS::NoValue]"

# (name, template text, allow-list, text the finding must contain)
_BAD_CASES = [
    ("VPC grant on a function outside a VPC", _VPC.replace(_NO_VPC_CONFIG, ""), set(),
     "granted to Fn, which runs outside a VPC"),
    ("VPC grant without the VpcConfig's condition",
     _VPC.replace("- !If\n                - InVpc", "- !If\n                - Always"), set(),
     "under Always, its VpcConfig under InVpc"),
    ("a VPC function without the ENI grant", _VPC.replace("ec2:CreateNetworkInterface, ", ""), set(),
     "Fn: runs in a VPC when InVpc without ec2:CreateNetworkInterface"),
    ("more EC2 than a VPC needs",
     _VPC.replace("ec2:DeleteNetworkInterface]", "ec2:DeleteNetworkInterface, ec2:CreateVpc]"), set(),
     "ec2:CreateVpc is not a network-interface action"),
    ("star action", _GOOD.replace("[xray:PutTraceSegments]", "['*']"), set(), "FnRole (Traces): Action '*'"),
    ("service wildcard", _GOOD.replace("[dynamodb:PutItem, dynamodb:GetItem]", "dynamodb:*"), set(),
     "FnRole (Table): Action 'dynamodb:*'"),
    ("star resource on secrets", _GOOD.replace("Resource: !Ref Secret", "Resource: '*'"), set(),
     "FnRole (Read): Resource '*' with secretsmanager"),
    ("secret write via role", _GOOD.replace("Action: secretsmanager:GetSecretValue",
                                            "Action: [secretsmanager:GetSecretValue, secretsmanager:PutSecretValue]"),
     set(), "granted to Fn"),
    ("secret write via wildcard", _GOOD.replace("Action: secretsmanager:GetSecretValue",
                                                "Action: secretsmanager:Put*"), set(), "granted to Fn"),
    ("allowed writer, wrong secret", _WRITE_TOKEN.replace("Resource: !Ref TokenSecret", "Resource: !Ref Secret"),
     {"Fn": {"TokenSecret"}}, "granted to Fn on Secret; it may write only TokenSecret"),
    ("allowed writer, any secret", _WRITE_TOKEN.replace("Resource: !Ref TokenSecret", "Resource: '*'"),
     {"Fn": {"TokenSecret"}}, "granted to Fn on *"),
    ("allowed writer, one good one bad", _WRITE_TOKEN.replace("Resource: !Ref TokenSecret",
                                                              "Resource: [!Ref TokenSecret, !Ref Secret]"),
     {"Fn": {"TokenSecret"}}, "granted to Fn on Secret;"),
    ("secret write inline on function", _GOOD + """
  Other:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Policies:
        - Statement:
            - Effect: Allow
              Action: secretsmanager:UpdateSecret
              Resource: !Ref Secret
""", {"Fn"}, "granted to Other"),
    ("NotAction", _GOOD.replace("Action: [xray:PutTraceSegments]", "NotAction: [iam:*]"), set(),
     "NotAction"),
    ("managed full access", _GOOD.replace("      Policies:\n", "      ManagedPolicyArns:\n"
                                          "        - arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess\n"
                                          "      Policies:\n", 1), set(), "AmazonDynamoDBFullAccess"),
    ("SAM rotation template", _GOOD + """
  Rotator:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Policies:
        - AWSSecretsManagerRotationPolicy: {FunctionName: x}
""", set(), "granted to Rotator"),
]


def self_test() -> int:
    failures = []
    findings, _ = check(_GOOD, set())
    if findings:
        failures.append(f"good template flagged: {findings}")
    write = next(text for name, text, _, _ in _BAD_CASES if name == "secret write via role")
    findings, _ = check(write, {"Fn"})
    if findings:
        failures.append(f"allow-listed writer still flagged: {findings}")
    findings, _ = check(_WRITE_TOKEN, {"Fn": {"TokenSecret"}})
    if findings:
        failures.append(f"writer allow-listed for its secret still flagged: {findings}")
    findings, _ = check(_VPC, set())
    if findings:
        failures.append(f"good VPC template flagged: {findings}")
    for name, text, allowed, expected in _BAD_CASES:
        findings, _ = check(text, allowed)
        if not any(expected in f for f in findings):
            failures.append(f"{name}: expected a finding containing {expected!r}, got {findings}")
    for f in failures:
        print(f"check_template self-test FAILED: {f}", file=sys.stderr)
    total = len(_BAD_CASES) + 4
    if failures:
        return 1
    print(f"check_template self-test: all {total} cases behave (2 good templates, 2 allow-lists, "
          f"{len(_BAD_CASES)} bad templates caught)")
    return 0


# --------------------------------------------------------------------------- command line
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template", nargs="?", default="template.yaml")
    parser.add_argument("--allow-secret-writes", metavar="FUNCTION[=SECRET]", action="append", default=[],
                        help="logical id of a function allowed to change secrets; with =SECRET only that "
                             "secret (logical id); repeatable or comma-separated")
    parser.add_argument("--self-test", action="store_true", help="prove the rules catch bad templates")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test()
    allowed: Writers = {}
    for entry in (n.strip() for item in args.allow_secret_writes for n in item.split(",")):
        if not entry:
            continue
        function, _, secret = (part.strip() for part in entry.partition("="))
        if not secret:
            allowed[function] = None
        elif function not in allowed or allowed[function] is not None:
            allowed[function] = (allowed.get(function) or set()) | {secret}
    try:
        with open(args.template, encoding="utf-8") as fh:
            findings, statements = check(fh.read(), allowed)
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"check_template: {args.template}: {err}", file=sys.stderr)
        return 1
    for f in findings:
        print(f"check_template: {args.template}: {f}", file=sys.stderr)
    if findings:
        print(f"check_template: {len(findings)} least-privilege violation(s)", file=sys.stderr)
        return 1
    writers = ", ".join(f"{f} ({', '.join(sorted(s)) if s else 'any secret'})"
                        for f, s in sorted(allowed.items())) or "none"
    print(f"check_template: {args.template}: {statements} policy statements least-privilege; "
          f"secret writers allowed: {writers}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
