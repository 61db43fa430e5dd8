"""The suite's OpenBao is a real server with KV v1 at secret/ (the keystore's layout)."""


def test_openbao_stores_and_reads_a_kv_v1_secret(openbao):
    client = openbao["client"]
    assert client.sys.list_mounted_secrets_engines()["secret/"]["options"]["version"] == "1"
    client.secrets.kv.v1.create_or_update_secret(path="haven/probe", secret={"value": "x"}, mount_point="secret")
    assert client.secrets.kv.v1.read_secret(path="haven/probe", mount_point="secret")["data"] == {"value": "x"}
