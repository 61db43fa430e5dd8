"""Hostile input gets a SCIM error document (application/scim+json, a 4xx), never a 500 or an HTML
page: huge or deeply nested filters and bodies, oversized bodies, control characters in names."""
import json

import pytest

from accounts.models import Group, User
from tests.scim.conftest import SCIM_JSON, ScimClient, group_body, op, user_body

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
MANY_TERMS = " or ".join(f'userName eq "u{n}@a.example"' for n in range(300))
DEEP = "(" * 500 + 'userName eq "bob@a.example"' + ")" * 500


def scim_error(response, status: int, scim_type: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == SCIM_JSON
    error = response.json()
    assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"] and error["status"] == str(status)
    assert error.get("scimType") == scim_type
    return error


@pytest.mark.parametrize("query", [MANY_TERMS, DEEP, "not (" * 30 + 'userName pr' + ")" * 30,
                                   'emails[' * 20 + 'value pr' + ']' * 20, 'userName eq "' + "x" * 5000 + '"'],
                         ids=["300-or-terms", "500-parentheses", "30-nots", "20-brackets", "5000-characters"])
def test_huge_filters_are_refused_before_parsing(alice, scim_a, query):
    scim_error(scim_a.get("Users", filter=query), 400, "invalidFilter")
    scim_error(scim_a.get("Groups", filter=query), 400, "invalidFilter")
    scim_error(scim_a.post(".search", {"schemas": [SEARCH], "filter": query}), 400, "invalidFilter")


def test_filters_within_the_bounds_still_work(alice, bob, scim_a):
    terms = " or ".join(f'userName eq "u{n}@a.example"' for n in range(24)) + ' or userName eq "bob@a.example"'
    nested = "(" * 6 + 'userName eq "bob@a.example"' + ")" * 6
    quoted = 'userName eq "bob@a.example" or displayName eq "(((((((((( and or not"'

    for query in (terms, nested, quoted):
        response = scim_a.get("Users", filter=query)
        assert response.status_code == 200, response.content
        assert [r["userName"] for r in response.json()["Resources"]] == ["bob@a.example"]


@pytest.mark.parametrize("value", [42, ["userName pr"], {"a": 1}])
def test_a_search_filter_that_is_not_a_string_is_refused(alice, scim_a, value):
    scim_error(scim_a.post("Users/.search", {"schemas": [SEARCH], "filter": value}), 400, "invalidFilter")


@pytest.mark.parametrize("body", ["[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000,
                                  '{"userName": "carol@a.example", "displayName": ' + "[" * 40 + "]" * 40 + "}"],
                         ids=["1000-arrays", "1000-objects", "40-deep-value"])
def test_deeply_nested_json_is_invalid_syntax(bob, scim_a, body):
    scim_error(scim_a.post("Users", body), 400, "invalidSyntax")
    scim_error(scim_a.put(f"Users/{bob.uuid}", body), 400, "invalidSyntax")
    scim_error(scim_a.http.patch(f"/scim/v2/Users/{bob.uuid}", body, content_type=SCIM_JSON), 400, "invalidSyntax")
    scim_error(scim_a.post("Users/.search", body), 400, "invalidSyntax")
    assert not User.objects.filter(email="carol@a.example").exists()


def test_brackets_inside_strings_do_not_count_as_nesting(scim_a):
    response = scim_a.post("Users", user_body("carol@a.example", displayName="[" * 100 + '\\" {{{'))

    assert response.status_code == 201, response.content


def test_a_body_over_the_limit_is_a_scim_413(alice, scim_a, settings):
    big = json.dumps(user_body("big@a.example", displayName="x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)))

    error = scim_error(scim_a.post("Users", big), 413)
    assert "larger than" in error["detail"]
    scim_error(scim_a.put(f"Users/{alice.uuid}", big), 413)
    scim_error(ScimClient(None).post("Users", big), 413)  # refused before anything reads it, token or not
    assert not User.objects.filter(email="big@a.example").exists()


def test_too_many_query_parameters_are_a_scim_400(alice, scim_a):
    response = scim_a.http.get("/scim/v2/Users?" + "&".join(f"p{n}=1" for n in range(1500)))

    scim_error(response, 400, "invalidSyntax")


def test_a_nul_in_an_id_is_a_scim_400_not_a_database_error(alice, scim_a):
    scim_error(scim_a.get("Users/a%00b"), 400, "invalidValue")
    scim_error(scim_a.get("Users", filter='userName eq "a\x00b"'), 400, "invalidValue")


@pytest.mark.parametrize("user_name", ["notanemail", "a@b@a.example", "@a.example", "carol@", "carol@a.example\n",
                                       "carol\x00@a.example", "carol@a.example\x1b[2J"])
def test_user_names_must_be_email_addresses(scim_a, user_name):
    scim_error(scim_a.post("Users", user_body(user_name)), 400, "invalidValue")
    assert not User.objects.filter(email__startswith="carol").exists()


@pytest.mark.parametrize("attributes", [
    {"displayName": "Carol\x00Jones"},
    {"displayName": "Carol\x1b[31mJones"},
    {"displayName": "Carol\nJones"},
    {"displayName": "Carol\u2028Jones"},
    {"displayName": "Carol \ud800"},
    {"name": {"givenName": "Ca\x00rol", "familyName": "Jones"}},
    {"name": {"formatted": "Carol\x07"}},
    {"displayName": "Carol Jones", "name": {"familyName": "Jo\x00nes"}},  # even a part Haven would not keep
    {"externalId": "okta\x00-1"},
])
def test_names_with_control_characters_are_refused(scim_a, attributes):
    scim_error(scim_a.post("Users", user_body("carol@a.example", **attributes)), 400, "invalidValue")
    assert not User.objects.filter(email="carol@a.example").exists()


@pytest.mark.parametrize("operation", [
    op("replace", "userName", "bob\x00@a.example"),
    op("replace", "userName", "not-an-email"),
    op("replace", "displayName", "Bob\x00"),
    op("replace", "name.givenName", "B\x1bob"),
    op("replace", value={"displayName": "Bob\x0b"}),
    op("replace", "name", {"givenName": "Bob", "familyName": "\x00"}),
])
def test_patches_with_control_characters_are_refused(bob, scim_a, operation):
    scim_error(scim_a.patch(f"Users/{bob.uuid}", operation), 400, "invalidValue")
    bob.refresh_from_db()
    assert (bob.email, bob.full_name) == ("bob@a.example", "")


def test_group_names_with_control_characters_are_refused(org_a, scim_a):
    scim_error(scim_a.post("Groups", group_body("Eng\x00")), 400, "invalidValue")
    group = Group.objects.create(organization=org_a, name="Eng")
    scim_error(scim_a.patch(f"Groups/{group.uuid}", op("replace", "displayName", "Eng\r\nX-Evil: 1")), 400,
               "invalidValue")
    scim_error(scim_a.put(f"Groups/{group.uuid}", group_body("\x1b[2JEng")), 400, "invalidValue")
    assert list(Group.objects.values_list("name", flat=True)) == ["Eng"]


def test_ordinary_unicode_names_are_kept(scim_a):
    response = scim_a.post("Users", user_body("zoe@a.example", displayName="Zoë Ñúñez-O'Brien 山田 👩‍💻"))

    assert response.status_code == 201, response.content
    assert User.objects.get(email="zoe@a.example").full_name == "Zoë Ñúñez-O'Brien 山田 👩‍💻"


@pytest.mark.slow
def test_hostile_input_over_real_http(org_a, alice, live_haven):
    """The same requests through gunicorn and a real HTTP client: each a SCIM error, none a 5xx."""
    import httpx

    from accounts.services import scim_token_issue

    token = {"Authorization": f"Bearer {scim_token_issue(organization=org_a)}", "Content-Type": SCIM_JSON}
    fifty_mb = json.dumps(user_body("big@a.example", displayName="x" * (50 * 1024 * 1024))).encode()
    requests = [
        # 300 terms in a GET exceed gunicorn's request line (414 before Haven): POSTed to .search.
        ("POST", "/Users/.search", {"json": {"schemas": [SEARCH], "filter": MANY_TERMS}}, 400, "invalidFilter"),
        ("GET", "/Users", {"params": {"filter": DEEP}}, 400, "invalidFilter"),
        ("POST", "/.search", {"json": {"schemas": [SEARCH], "filter": DEEP}}, 400, "invalidFilter"),
        ("POST", "/Users", {"content": b"[" * 1000 + b"]" * 1000}, 400, "invalidSyntax"),
        ("PATCH", f"/Users/{alice.uuid}", {"content": b'{"Operations": ' + b"[" * 5000}, 400, "invalidSyntax"),
        ("POST", "/Users", {"content": b"{not json"}, 400, "invalidSyntax"),
        ("POST", "/Users", {"content": fifty_mb}, 413, None),
        ("POST", "/Users", {"json": user_body("x\x00@a.example")}, 400, "invalidValue"),
        ("POST", "/Users", {"json": user_body("not-an-address")}, 400, "invalidValue"),
    ]
    with httpx.Client(base_url=f"{live_haven}/scim/v2", headers=token, timeout=60) as http:
        for method, path, options, status, scim_type in requests:
            response = http.request(method, path, **options)
            what = (method, path, response.status_code, response.text[:200])
            assert response.status_code == status, what
            assert response.headers["Content-Type"] == SCIM_JSON, what
            assert response.json().get("scimType") == scim_type, what
        assert http.get("/Users", params={"filter": "active eq true"}).json()["totalResults"] == 1
    assert not User.objects.filter(email="big@a.example").exists()
