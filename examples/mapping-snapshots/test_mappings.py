"""Every case under cases/ rendered through gateway.yaml, compared to its snapshot.

A template edit changes a rendered request or answer, so it shows up as a snapshot diff;
accept an intended one with ``pytest --snapshot-update`` and commit the changed .json files.
"""


def test_mapping(gateway_case, gateway_rendered, gateway_snapshot):
    assert gateway_rendered == gateway_snapshot
