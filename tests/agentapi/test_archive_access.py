"""A device reads its own user's archives only; everything else is 404."""
from archives.models import Archive


def test_a_device_reads_its_own_archive(enrolled, alice):
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    assert client.get(f"/api/v1/archives/{archive_id}").json()["archive_id"] == archive_id


def test_a_device_reads_another_device_of_the_same_user(enrolled, alice):
    old = enrolled(alice, "old-laptop")
    new = enrolled(alice, "new-laptop")
    response = new.get(f"/api/v1/archives/{old.enrollment['archive_id']}")
    assert response.status_code == 200 and response.json()["device_name"] == "old-laptop"


def test_archives_of_another_user_or_org_are_404(enrolled, alice, bob, mallory):
    alice_archive = enrolled(alice).enrollment["archive_id"]
    for client in (enrolled(bob), enrolled(mallory)):
        response = client.get(f"/api/v1/archives/{alice_archive}")
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_garbage_and_sequential_ids_are_404(enrolled, alice):
    client = enrolled(alice)
    pk = Archive.objects.get(uuid=client.enrollment["archive_id"]).pk
    assert client.get(f"/api/v1/archives/{pk}").status_code == 404
    assert client.get("/api/v1/archives/not-a-uuid").status_code == 404
