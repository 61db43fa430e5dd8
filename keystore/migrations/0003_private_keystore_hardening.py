"""Private keystores get a uuid (bound into their sealed secrets, which are resealed as format v2);
migrations record whether the source copies were kept."""
import uuid

from django.db import migrations, models


def _reseal(apps, schema_editor):
    from keystore.sealing import StorageKeyMissing, private_keystore_owner, seal, unseal

    for keystore in apps.get_model("keystore", "PrivateKeystore").objects.select_related("organization"):
        keystore.uuid = keystore.uuid or uuid.uuid4()
        owner = private_keystore_owner(keystore)
        try:
            keystore.pkcs12_sealed = seal("pkcs12", unseal("pkcs12", keystore.pkcs12_sealed, owner=owner), owner=owner)
            keystore.password_sealed = seal("pkcs12-password", unseal("pkcs12-password", keystore.password_sealed,
                                                                      owner=owner), owner=owner)
        except (StorageKeyMissing, ValueError):
            pass  # left as v1 (still readable); `manage.py keystore reseal` rewrites it once HAVEN_STORAGE_KEY is set
        keystore.save(update_fields=["uuid", "pkcs12_sealed", "password_sealed"])


class Migration(migrations.Migration):

    dependencies = [
        ("keystore", "0002_userkey_location_privatekeystore_keystoremigration"),
    ]

    operations = [
        migrations.AddField(model_name="privatekeystore", name="uuid", field=models.UUIDField(null=True, editable=False)),
        migrations.RunPython(_reseal, migrations.RunPython.noop),
        migrations.AlterField(model_name="privatekeystore", name="uuid",
                              field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
        migrations.AddField(model_name="privatekeystore", name="cert_fingerprint",
                            field=models.CharField(blank=True, help_text="SHA-256 of the client certificate.",
                                                   max_length=64)),
        migrations.AddField(model_name="keystoremigration", name="keep_source",
                            field=models.BooleanField(default=False)),
        migrations.AddField(model_name="keystoremigration", name="source_copies_left",
                            field=models.IntegerField(default=0)),
    ]
