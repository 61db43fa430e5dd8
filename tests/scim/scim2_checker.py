"""The `scim2` CLI (scim2-tester), with userNames an identity provider could really send Haven.

scim2-tester fills every string attribute with a random UUID; Haven's userName is an email
address in one of the organization's verified domains (a UUID is refused with 400). This runs
the same CLI with one change: userName values are `<uuid>@<domain>`, the domain from
HAVEN_CHECKER_DOMAIN. Every check and every verdict is scim2-tester's own."""
import os
import sys
import uuid

import scim2_tester.filling as filling
from scim2_cli import cli

_example_value = filling.get_random_example_value


def _example_or_address(path):
    if str(path).split(":")[-1].lower() == "username":
        return f"{uuid.uuid4()}@{os.environ['HAVEN_CHECKER_DOMAIN']}"
    return _example_value(path)


if __name__ == "__main__":
    filling.get_random_example_value = _example_or_address
    sys.argv[0] = "scim2"
    sys.exit(cli())
