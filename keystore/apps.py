from django.apps import AppConfig


class KeystoreConfig(AppConfig):
    name = "keystore"
