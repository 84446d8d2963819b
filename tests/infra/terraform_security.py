"""Security rules over terraform/ as parsed by python-hcl2.

Plain functions over parsed documents, like ``infra_checks``: tests feed them the
real configuration and small broken snippets. Every role carries the permissions
boundary; every statement naming a service principal checks ``aws:SourceAccount``
and ``aws:SourceArn``; every bucket policy denies requests without TLS and uploads
asking for another encryption (in the form that keeps default encryption
working); landing/ is written per table only, and each role writes only its zones.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from tests.infra.infra_checks import Finding, Parsed, as_list, blocks, is_deny, local_values, statements

# ---------------------------------------------------------------- terraform: documents and actions

_DOC_REF = re.compile(r"data\.aws_iam_policy_document\.(\w+)")
_LOCAL_REF = re.compile(r"local\.(\w+)")
_ACTION_LITERAL = re.compile(r'"([a-z0-9-]+:[A-Za-z0-9*]+)"')


def policy_documents(parsed: Parsed) -> dict[str, dict[str, Any]]:
    """Every ``aws_iam_policy_document`` by name."""
    return {n: b for _, t, n, b in blocks(parsed, "data") if t == "aws_iam_policy_document"}


def referenced_document(value: Any) -> str | None:
    """The policy document an attribute such as ``policy = data.aws_iam_policy_document.x[each.key].json`` names."""
    m = _DOC_REF.search(str(value))
    return m.group(1) if m else None


def conditions(statement: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(as_list(statement.get("condition")))


def condition_on(
    statement: Mapping[str, Any], variable: str, tests: tuple[str, ...]
) -> dict[str, Any] | None:
    for c in conditions(statement):
        if c.get("variable") == variable and c.get("test") in tests and as_list(c.get("values")):
            return c
    return None


def statement_actions(statement: Mapping[str, Any], locs: Mapping[str, Any]) -> set[str]:
    """The actions of a statement: literal lists, ``local.x`` lists and ``concat(...)`` of both."""
    out: set[str] = set()

    def add(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                add(item)
            return
        text = str(value)
        if not text.startswith("${"):
            out.add(text)
            return
        for name in _LOCAL_REF.findall(text):
            add(locs.get(name, []))
        out.update(_ACTION_LITERAL.findall(text))

    add(statement.get("actions", []))
    return out


def document_actions(parsed: Parsed, names: set[str], allow_only: bool = True) -> set[str]:
    """Actions of the named documents and of the documents they merge (``source_policy_documents``)."""
    docs, locs = policy_documents(parsed), local_values(parsed)
    seen: set[str] = set()
    todo = list(names)
    actions: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in docs:
            continue
        seen.add(name)
        body = docs[name]
        todo += [
            n for n in (referenced_document(s) for s in as_list(body.get("source_policy_documents"))) if n
        ]
        for st in statements(body):
            if not (allow_only and is_deny(st)):
                actions |= statement_actions(st, locs)
    return actions


def identity_policy_documents(parsed: Parsed) -> set[str]:
    """Documents attached to roles (``aws_iam_role_policy``) or made into managed policies (``aws_iam_policy``)."""
    names = set()
    for _, t, _, body in blocks(parsed, "resource"):
        if t in ("aws_iam_role_policy", "aws_iam_policy"):
            name = referenced_document(body.get("policy"))
            if name:
                names.add(name)
    return names


# ---------------------------------------------------------------- terraform: boundary and trust


def find_roles_without_boundary(parsed: Parsed, variable: str = "permissions_boundary_arn") -> list[Finding]:
    """Roles without ``permissions_boundary = var.<variable>``, and a boundary variable that may be left out."""
    findings = []
    declared = {n: b for doc in parsed.values() for e in doc.get("variable", []) for n, b in e.items()}
    if variable not in declared:
        findings.append(Finding(f"variable.{variable}", "is not declared"))
    elif "default" in declared[variable]:
        findings.append(
            Finding(f"variable.{variable}", "has a default: a role could be created without the boundary")
        )
    for fname, t, n, body in blocks(parsed, "resource"):
        if t == "aws_iam_role" and body.get("permissions_boundary") != f"${{var.{variable}}}":
            findings.append(
                Finding(f"{fname}: aws_iam_role.{n}", f"does not set permissions_boundary = var.{variable}")
            )
    return findings


def _service_principals(statement: Mapping[str, Any]) -> list[str]:
    return [i for p in as_list(statement.get("principals")) if p.get("type") == "Service"
            for i in as_list(p.get("identifiers"))]  # fmt: skip


def find_service_principals_without_source(parsed: Parsed) -> list[Finding]:
    """Statements naming a service principal without both ``aws:SourceAccount`` and ``aws:SourceArn``.

    Covers trust policies and every resource policy (bucket, topic, key, log
    delivery). CloudWatch Logs' use of a key is scoped by its encryption context
    (``kms:EncryptionContext:aws:logs:arn``), the form AWS documents for it.
    Every role's trust policy must be such a document (an inline one cannot be checked).
    """
    findings = []
    for name, body in policy_documents(parsed).items():
        for st in statements(body):
            if not _service_principals(st) or is_deny(st):
                continue
            where = f"data.aws_iam_policy_document.{name} statement {st.get('sid', '?')}"
            if condition_on(st, "kms:EncryptionContext:aws:logs:arn", ("ArnLike", "ArnEquals")):
                continue
            if not condition_on(st, "aws:SourceAccount", ("StringEquals",)):
                findings.append(Finding(where, "service principal without aws:SourceAccount"))
            if not condition_on(st, "aws:SourceArn", ("ArnLike", "ArnEquals")):
                findings.append(Finding(where, "service principal without aws:SourceArn"))
    for fname, t, n, body in blocks(parsed, "resource"):
        if t == "aws_iam_role" and not referenced_document(body.get("assume_role_policy")):
            findings.append(
                Finding(f"{fname}: aws_iam_role.{n}", "trust policy is not an aws_iam_policy_document")
            )
    return findings


# ---------------------------------------------------------------- terraform: bucket policies

SSE = "s3:x-amz-server-side-encryption"
SSE_KEY = "s3:x-amz-server-side-encryption-aws-kms-key-id"


def _denies(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [st for st in statements(body) if is_deny(st)]


def _null_guarded(statement: Mapping[str, Any], variable: str) -> bool:
    return any(c.get("test") == "Null" and c.get("variable") == variable and as_list(c.get("values")) == ["false"]
               for c in conditions(statement))  # fmt: skip


def bucket_policy_problems(body: Mapping[str, Any]) -> list[str]:
    """What one bucket policy document lacks: the TLS deny on ``s3:*`` and the encryption denies.

    A deny on a negated encryption condition without the ``Null = false`` guard
    also matches uploads that send no encryption header, i.e. every writer that
    relies on the bucket's default encryption: that form is reported too.
    """
    problems = []
    denies = _denies(body)
    tls = [st for st in denies if condition_on(st, "aws:SecureTransport", ("Bool",))]
    if not any("s3:*" in as_list(st.get("actions")) and any(str(r).endswith("/*") for r in as_list(st.get("resources")))
               and any(not str(r).endswith("/*") for r in as_list(st.get("resources"))) for st in tls):  # fmt: skip
        problems.append("no deny of s3:* without TLS on the bucket and its objects")
    sse = [st for st in denies if any(c.get("variable") in (SSE, SSE_KEY) for c in conditions(st))]
    algorithm = [
        c
        for st in sse
        for c in conditions(st)
        if c.get("variable") == SSE and c.get("test") == "StringNotEquals"
    ]
    if not algorithm:
        problems.append("no deny of uploads asking for another encryption algorithm")
    if not any(as_list(c.get("values")) == ["AES256"] for c in algorithm):  # SSE-KMS: the key matters too
        if not any(condition_on(st, SSE_KEY, ("StringNotEquals",)) for st in sse):
            problems.append("no deny of uploads naming another KMS key")
        if not any(_null_guarded(st, SSE) and any(c.get("test") == "Null" and c.get("variable") == SSE_KEY
                   and as_list(c.get("values")) == ["true"] for c in conditions(st)) for st in sse):  # fmt: skip
            problems.append("no deny of SSE-KMS uploads without a key id (S3 would use the aws/s3 key)")
    for st in sse:
        for c in conditions(st):
            if c.get("test", "").startswith("StringNotEquals") and not _null_guarded(st, c["variable"]):
                problems.append(
                    f"statement {st.get('sid', '?')}: denies on {c['variable']} without a Null guard, "
                    "which also refuses uploads relying on the bucket's default encryption"
                )
    return problems


def find_buckets_without_policy_denies(parsed: Parsed) -> list[Finding]:
    """Buckets no bucket policy covers, and bucket policies missing the TLS and encryption denies."""
    docs = policy_documents(parsed)
    bucket_map = local_values(parsed).get("buckets", {})
    covered: set[str] = set()
    findings = []
    for fname, t, n, body in blocks(parsed, "resource"):
        if t != "aws_s3_bucket_policy":
            continue
        target = str(body.get("for_each", body.get("bucket", "")))
        if target == "${local.buckets}":
            covered |= {str(v).strip("${}").removeprefix("aws_s3_bucket.") for v in bucket_map.values()}
        covered |= set(re.findall(r"aws_s3_bucket\.(\w+)", str(body.get("bucket", ""))))
        doc = referenced_document(body.get("policy"))
        if doc is None or doc not in docs:
            findings.append(
                Finding(f"{fname}: aws_s3_bucket_policy.{n}", "policy is not an aws_iam_policy_document")
            )
            continue
        findings += [
            Finding(f"{fname}: data.aws_iam_policy_document.{doc}", p)
            for p in bucket_policy_problems(docs[doc])
        ]
    for fname, t, n, _ in blocks(parsed, "resource"):
        if t == "aws_s3_bucket" and n not in covered:
            findings.append(Finding(f"{fname}: aws_s3_bucket.{n}", "has no bucket policy"))
    return findings


# ---------------------------------------------------------------- terraform: who writes the lake

S3_OBJECT_WRITES = frozenset({
    "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectTagging", "s3:DeleteObjectTagging",
    "s3:PutObjectAcl", "s3:RestoreObject", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
    "s3:AbortMultipartUpload",
})  # fmt: skip
_LAKE_OBJECT = re.compile(r"\$\{aws_s3_bucket\.lake\.arn\}/([^\"\]]*)")
_INTERPOLATION = re.compile(r"\$\{[^{}]*\}")


def _zone_key(pattern: str, locs: Mapping[str, Any]) -> str:
    """A key pattern with ``${local.zones.x}`` and other plain locals substituted, any other ``${...}`` left."""
    zones = locs.get("zones", {})

    def sub(m: re.Match[str]) -> str:
        ref = m.group(0)[2:-1]
        if ref.startswith("local.zones."):
            return str(zones.get(ref.removeprefix("local.zones."), m.group(0)))
        if ref.startswith("local.") and isinstance(locs.get(ref[6:]), str):
            return _zone_key(str(locs[ref[6:]]), locs)
        return m.group(0)

    previous = None
    while previous != pattern:
        previous, pattern = pattern, re.sub(r"\$\{local\.[\w.]+\}", sub, pattern)
    return pattern


_FOR_LIST = re.compile(r'(\$\{)?\[for (\w+) in (\[[^\]]*\]|local\.\w+) : "((?:[^"\\]|\\.)*)"\](?(1)\})')


def _expand_for(text: str, locs: Mapping[str, Any]) -> list[str]:
    """``[for x in [a, b] : "..${x}.."]`` (or ``in local.list``) as one text per item; other texts unchanged."""
    m = _FOR_LIST.search(text)
    if not m:
        return [text]
    _, var, source, template = m.groups()
    if source.startswith("local."):
        value = locs.get(source[6:])
        if not isinstance(value, list):  # computed in terraform: each item stays an unknown ${var}
            return [text[: m.start()] + template + text[m.end() :]]
        items = [f'"{v}"' for v in value]
    else:
        items = [i.strip() for i in source[1:-1].split(",") if i.strip()]
    out = []
    for item in items:
        value = item[1:-1] if item.startswith('"') else "${" + item + "}"
        out += _expand_for(
            text[: m.start()] + template.replace("${" + var + "}", value) + text[m.end() :], locs
        )
    return out


def lake_writes(parsed: Parsed, documents: set[str] | None = None) -> list[tuple[str, str, str]]:
    """(document, sid, object key pattern) of every allowed object write on the lake bucket."""
    locs = local_values(parsed)
    out = []
    for name, body in policy_documents(parsed).items():
        if documents is not None and name not in documents:
            continue
        for st in statements(body):
            if is_deny(st) or not statement_actions(st, locs) & S3_OBJECT_WRITES:
                continue
            texts = [str(r) for r in as_list(st.get("resources"))]
            for text in list(texts):
                if re.fullmatch(r"\$\{local\.\w+\}", text):  # resources = local.x (a list of patterns)
                    texts += [str(v) for v in as_list(locs.get(text[8:-1])) if isinstance(v, str)]
            texts = [t for text in texts for t in _expand_for(text, locs)]
            for text in texts:
                out += [
                    (name, str(st.get("sid", "?")), _zone_key(m.group(1), locs))
                    for m in _LAKE_OBJECT.finditer(text)
                ]
    return out


def covers_any_table(key_pattern: str, zone: str = "landing/") -> bool:
    """Whether a key pattern reaches the objects of more than one table of a zone.

    Interpolations (a table from a list) become one chosen table; the pattern is
    per table if it then misses another table's objects.
    """
    chosen = _INTERPOLATION.sub("table_a", key_pattern)
    return fnmatch.fnmatchcase(f"{zone}table_b/x/part-00000.parquet", chosen)


def find_landing_writes_not_per_table(parsed: Parsed) -> list[Finding]:
    """Object writes that reach all of landing/ (``landing/*``, a bucket-wide ``*``) instead of one table's folder."""
    return [Finding(f"data.aws_iam_policy_document.{doc} statement {sid}", f"writes {key!r}: every table's landing folder")
            for doc, sid, key in lake_writes(parsed) if covers_any_table(key)]  # fmt: skip


def find_writes_outside(parsed: Parsed, documents: set[str], allowed: tuple[str, ...]) -> list[Finding]:
    """Lake object writes of ``documents`` whose key pattern does not start with one of ``allowed``."""
    return [Finding(f"data.aws_iam_policy_document.{doc} statement {sid}", f"writes {key!r} outside {list(allowed)}")
            for doc, sid, key in lake_writes(parsed, documents) if not key.startswith(allowed)]  # fmt: skip
