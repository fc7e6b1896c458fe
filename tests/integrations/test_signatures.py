"""Webhook signatures: the scheme itself, and every refusal through the real endpoints
(401 problem+json with a stable code, nothing stored, nothing enqueued)."""

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from integrations.models import InboundEvent, Partner, PartnerSecret
from integrations.signatures import SignatureError, sign, verify
from tests.integrations.webhook_support import (
    NOW,
    SECRETS,
    assert_problem,
    body_of,
    counts,
    envelope,
    post,
    post_raw,
)

T = int(NOW.timestamp())  # 1772442000
HEX = "a" * 64
pytestmark = pytest.mark.usefixtures("webhook_now")


def test_sign_matches_openssl() -> None:
    # printf '%s' '1772442000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac demo-wms-secret
    assert sign("demo-wms-secret", b'{"id":"evt_1"}', T) == (
        "t=1772442000,v1=8900a7a6b1d569756c143ce4b27b20f2f7df14491fd0e2f46402ddf369f72955"
    )


def test_verify_accepts_upper_case_hex_and_spaces_and_ignores_other_schemes() -> None:
    header = sign("s", b"{}", T)
    digest = header.split("v1=")[1]
    verify(f"t={T}, v0=abc, v1={digest.upper()}", b"{}", ["s"], now=T)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "signature_missing"),
        ("", "signature_missing"),
        ("garbage", "signature_malformed"),
        (f"t={T}", "signature_malformed"),
        ("v1=" + HEX, "signature_malformed"),
        (f"t=abc,v1={HEX}", "signature_malformed"),
        (f"t=-{T},v1={HEX}", "signature_malformed"),
        (f"t=\u00b2,v1={HEX}", "signature_malformed"),
        (f"t={T},t={T},v1={HEX}", "signature_malformed"),
        (f"t={T},v1=xyz", "signature_malformed"),
        (f"t={T},v1=" + "\u00e9" * 64, "signature_malformed"),
        (f"t={T},v1={HEX}", "signature_invalid"),
        (f"t={T - 301},v1={HEX}", "signature_expired"),
    ],
)
def test_verify_refusals(header: str | None, code: str) -> None:
    with pytest.raises(SignatureError) as refused:
        verify(header, b"{}", ["s"], now=T)
    assert refused.value.code == code


# --- through the endpoints --------------------------------------------------------------------

PICK = envelope(
    "pick.completed",
    {"order": "SO-1", "warehouse": "WH1", "lines": [{"sku": "SKU-1", "picked": 1}]},
    "evt_sig_1",
    "2026-03-02T08:59:00Z",
)
TRACKING = envelope(
    "tracking.updated", {"tracking": "JJD1", "status": "in_transit"}, "evt_sig_2", "2026-03-02T08:59:00Z"
)


@pytest.fixture
def refused(
    client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> Callable[[Callable[[], Any], str], dict[str, Any]]:
    """Run a request that must be refused with 401 ``code``, writing and enqueuing nothing."""

    def check(request: Callable[[], Any], code: str) -> dict[str, Any]:
        before = counts()
        with django_capture_on_commit_callbacks() as enqueued:
            response = request()
        body = assert_problem(response, 401, code)
        assert counts() == before
        assert enqueued == []
        return body

    return check


@pytest.mark.django_db
@pytest.mark.parametrize("partner", ["wms", "carrier"])
def test_valid_signature_is_accepted(client: Client, partners: dict[str, Partner], partner: str) -> None:
    document = PICK if partner == "wms" else TRACKING
    response = post(client, partner, document)
    assert (response.status_code, response.json()) == (202, {"id": document["id"], "status": "accepted"})
    assert InboundEvent.objects.get().partner == partners[partner]


@pytest.mark.django_db
def test_wrong_secret(client: Client, partners: dict[str, Partner], refused: Callable[..., Any]) -> None:
    body = refused(lambda: post(client, "wms", PICK, secret="not-the-secret"), "signature_invalid")
    assert body["detail"] == "No signature matches an active secret of this partner."


@pytest.mark.django_db
def test_secrets_are_per_partner(
    client: Client, partners: dict[str, Partner], refused: Callable[..., Any]
) -> None:
    refused(lambda: post(client, "carrier", TRACKING, secret=SECRETS["wms"]), "signature_invalid")


@pytest.mark.django_db
def test_partner_not_configured(client: Client, refused: Callable[..., Any]) -> None:
    assert not Partner.objects.exists()
    refused(lambda: post(client, "wms", PICK), "signature_invalid")


@pytest.mark.django_db
def test_rotated_secrets(client: Client, partners: dict[str, Partner], refused: Callable[..., Any]) -> None:
    wms = partners["wms"]
    PartnerSecret.objects.create(partner=wms, secret="next-wms-secret")
    old = PartnerSecret.objects.create(partner=wms, secret="retired-wms-secret", is_active=False)

    for n, secret in enumerate([SECRETS["wms"], "next-wms-secret"]):
        document = {**PICK, "id": f"evt_rot_{n}"}
        assert post(client, "wms", document, secret=secret).status_code == 202
    refused(lambda: post(client, "wms", {**PICK, "id": "evt_rot_9"}, secret=old.secret), "signature_invalid")

    # The rotation ends: the demo secret is retired, the new one alone works.
    PartnerSecret.objects.filter(partner=wms, secret=SECRETS["wms"]).update(is_active=False)
    refused(lambda: post(client, "wms", {**PICK, "id": "evt_rot_8"}), "signature_invalid")
    assert post(client, "wms", {**PICK, "id": "evt_rot_7"}, secret="next-wms-secret").status_code == 202
    assert sorted(InboundEvent.objects.values_list("event_id", flat=True)) == [
        "evt_rot_0", "evt_rot_1", "evt_rot_7",
    ]  # fmt: skip


@pytest.mark.django_db
def test_a_secret_added_since_the_last_request_is_taken_at_once(
    client: Client, partners: dict[str, Partner]
) -> None:
    """The secrets are kept between requests; a signature that matches none of them reads
    them again."""
    assert post(client, "wms", {**PICK, "id": "evt_before"}).status_code == 202
    PartnerSecret.objects.create(partner=partners["wms"], secret="added-wms-secret")
    assert post(client, "wms", {**PICK, "id": "evt_after"}, secret="added-wms-secret").status_code == 202


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("document", "id_"),
    [
        (PICK, "evt_new"),  # would be stored
        (PICK, "evt_seen"),  # a duplicate
        ({**PICK, "type": "order.cancelled"}, "evt_new"),  # would be refused as an unknown type
        (b"{", None),  # would be refused as malformed
    ],
    ids=["new", "duplicate", "unknown-type", "malformed"],
)
def test_a_secret_deactivated_since_the_last_request_counts_no_more(
    client: Client, partners: dict[str, Partner], refused: Callable[..., Any], document: Any, id_: str | None
) -> None:
    assert post(client, "wms", {**PICK, "id": "evt_seen"}).status_code == 202  # the secret is known now
    PartnerSecret.objects.filter(secret=SECRETS["wms"]).update(is_active=False)
    body = document if id_ is None else {**document, "id": id_}
    refused(lambda: post(client, "wms", body), "signature_invalid")


@pytest.mark.django_db
def test_during_a_rotation_the_new_secret_carries_an_event_signed_with_both(
    client: Client, partners: dict[str, Partner]
) -> None:
    """The old secret, deactivated since the last request, matches first: the new one
    takes over."""
    PartnerSecret.objects.create(partner=partners["wms"], secret="next-wms-secret")
    body = body_of({**PICK, "id": "evt_both"})
    both = ",".join(
        [f"t={T}", *(sign(secret, body, T).split(",")[1] for secret in (SECRETS["wms"], "next-wms-secret"))]
    )
    assert post(client, "wms", {**PICK, "id": "evt_warm"}).status_code == 202
    PartnerSecret.objects.filter(secret=SECRETS["wms"]).update(is_active=False)
    response = post_raw(client, "wms", body, both)
    assert (response.status_code, response.json()["status"]) == (202, "accepted")


@pytest.mark.django_db
def test_several_v1_values_one_valid(client: Client, partners: dict[str, Partner]) -> None:
    body = body_of(PICK)
    good = sign(SECRETS["wms"], body, T).split("v1=")[1]
    other = sign("an-old-secret", body, T).split("v1=")[1]
    response = post_raw(client, "wms", body, f"t={T},v1={other},v1={good},v1={'0' * 64}")
    assert (response.status_code, response.json()["status"]) == (202, "accepted")


@pytest.mark.django_db
def test_several_v1_values_none_valid(
    client: Client, partners: dict[str, Partner], refused: Callable[..., Any]
) -> None:
    body = body_of(PICK)
    wrong = [sign(secret, body, T).split("v1=")[1] for secret in ("a", "b")]
    refused(lambda: post_raw(client, "wms", body, f"t={T},v1={wrong[0]},v1={wrong[1]}"), "signature_invalid")


@pytest.mark.django_db
@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamp_at_the_edge_of_the_window_is_accepted(
    client: Client, partners: dict[str, Partner], offset: int
) -> None:
    assert post(client, "wms", PICK, timestamp=T + offset).status_code == 202


@pytest.mark.django_db
@pytest.mark.parametrize(
    "offset", [-301, -86400, 301, 86400], ids=["stale", "day-old", "future", "day-ahead"]
)
def test_stale_and_future_timestamps(
    client: Client, partners: dict[str, Partner], refused: Callable[..., Any], offset: int
) -> None:
    body = refused(lambda: post(client, "wms", PICK, timestamp=T + offset), "signature_expired")
    assert body["detail"] == "The signature timestamp is more than 300 s off."


@pytest.mark.django_db
def test_missing_header(client: Client, partners: dict[str, Partner], refused: Callable[..., Any]) -> None:
    refused(lambda: post_raw(client, "wms", body_of(PICK), None), "signature_missing")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        "sha256=abc",
        f"t={T}",
        "v1=" + HEX,
        f"t=soon,v1={HEX}",
        f"t={T},v1=not-hex",
        f"t={T},t={T + 1},v1={HEX}",
    ],
)
def test_malformed_header(
    client: Client, partners: dict[str, Partner], refused: Callable[..., Any], header: str
) -> None:
    refused(lambda: post_raw(client, "wms", body_of(PICK), header), "signature_malformed")


@pytest.mark.django_db
def test_non_ascii_header_is_malformed_not_a_crash(
    client: Client, partners: dict[str, Partner], refused: Callable[..., Any]
) -> None:
    # Django decodes header bytes as latin-1: a digest of "é"s must not reach compare_digest.
    header = (f"t={T},v1=" + "é" * 64).encode().decode("latin-1")
    refused(lambda: post_raw(client, "wms", body_of(PICK), header), "signature_malformed")


@pytest.mark.django_db
def test_tampered_body_and_moved_timestamp(
    client: Client, partners: dict[str, Partner], refused: Callable[..., Any]
) -> None:
    body = body_of(PICK)
    signature = sign(SECRETS["wms"], body, T)
    tampered = body.replace(b'"picked":1', b'"picked":0')
    refused(lambda: post_raw(client, "wms", tampered, signature), "signature_invalid")
    moved = signature.replace(f"t={T}", f"t={T + 1}")
    refused(lambda: post_raw(client, "wms", body, moved), "signature_invalid")


@pytest.mark.django_db
def test_signature_is_checked_before_the_body(
    client: Client, partners: dict[str, Partner], refused: Callable[..., Any]
) -> None:
    """An unsigned request learns nothing about what we would accept."""
    refused(lambda: post(client, "wms", b"{not json", secret="wrong"), "signature_invalid")
    refused(lambda: post_raw(client, "wms", b"{not json", None), "signature_missing")
